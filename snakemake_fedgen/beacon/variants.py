"""Genomic variant queries answered from the site's indexed VCF/BCF with bcftools.

Every query is a region query (``bcftools query -r``, tabix/csi index), never a full scan,
and runs as a subprocess without a shell and with a timeout. Coordinates follow Beacon v2:
``start`` is 0-based, so a sequence query at ``start`` is the VCF record at ``POS = start+1``;
a range query covers ``POS`` in ``start+1 .. end``.

The count of a query is the number of individuals carrying a matching alternate allele: a
genotype call naming the allele (``0/1``, ``1/1``, ``1|2``, haploid ``1``) counts the person
once, however many copies or matching variants; ``0/0`` and missing calls (``./.``, ``.``)
never count. ``alt_allele_counts`` (what the budget charges by) holds, per matched variant
allele, the number of copies called in the dataset.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import FedgenError

BCFTOOLS_TIMEOUT_SECONDS = 30.0
MAX_RANGE_BP = 5_000_000
VARIANT_TYPES = ("SNP", "INDEL", "INS", "DEL", "MNP")

#: RefSeq accession versions of the primary chromosomes (NCBI GRCh38.p14 / GRCh37.p13), 1-22,
#: X, Y (checked against three independent public tables of RefSeq accessions; the versions
#: are the same in every patch of an assembly).
_REFSEQ_VERSION = {
    "GRCh38": dict(zip([*map(str, range(1, 23)), "X", "Y"], [11, 12, 12, 12, 10, 12, 14, 11, 12, 11, 10, 12, 11, 9, 10, 10, 11, 10, 10, 11, 9, 11, 11, 10], strict=True)),
    "GRCh37": dict(zip([*map(str, range(1, 23)), "X", "Y"], [10, 11, 11, 11, 9, 11, 13, 10, 11, 10, 9, 11, 10, 8, 9, 9, 10, 9, 9, 10, 8, 10, 10, 9], strict=True)),
}  # fmt: skip
_REFSEQ = re.compile(r"^NC_0000(\d\d)\.(\d+)$")
_BASES = re.compile(r"^[ACGTN]+$")


class QueryError(FedgenError):
    """A query the Beacon cannot answer as asked (answered as a Beacon error, HTTP 400)."""


@dataclass(frozen=True)
class VariantQuery:
    """A Beacon sequence (``end`` None) or range query, coordinates as Beacon sends them."""

    reference_name: str
    start: int
    end: int | None = None
    reference_bases: str | None = None
    alternate_bases: str | None = None
    variant_type: str | None = None
    assembly_id: str | None = None


@dataclass(frozen=True)
class VariantAnswer:
    """Individuals carrying a matching allele, and the copies of each matched allele."""

    exists: bool
    carriers: int
    n_individuals: int
    alt_allele_counts: list[int] = field(default_factory=list)
    variants: int = 0
    #: Per matched allele: its copies and the people (column indices) carrying it.
    alleles: list[tuple[int, frozenset[int]]] = field(default_factory=list, repr=False)

    def hiding(self, below: int) -> VariantAnswer:
        """The answer with every allele of fewer than ``below`` copies treated as absent."""
        kept = [(c, people) for c, people in self.alleles if c >= below]
        carriers: set[int] = set().union(*(people for _, people in kept))
        return VariantAnswer(
            bool(carriers),
            len(carriers),
            self.n_individuals,
            [c for c, _ in kept],
            self.variants if kept else 0,
            kept,
        )


def chromosome_code(name: str, assembly: str) -> str:
    """``21``, ``chr21`` or RefSeq ``NC_000021.9`` (of ``assembly``) -> ``21``.

    Raises
    ------
    QueryError
        a RefSeq accession of another assembly version.
    """
    text = name.strip()
    m = _REFSEQ.match(text)
    if m:
        number, version = int(m.group(1)), int(m.group(2))
        code = "X" if number == 23 else "Y" if number == 24 else str(number)
        expected = _REFSEQ_VERSION.get(assembly, {}).get(code)
        if expected is not None and expected != version:
            raise QueryError(
                f"referenceName {text} is not a {assembly} sequence (that is "
                f"NC_0000{number:02d}.{expected})."
            )
        return code
    if text[:3].lower() == "chr":
        text = text[3:]
    return {"23": "X", "x": "X", "M": "MT"}.get(text, text)


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run(
            ["bcftools", *args],
            capture_output=True,
            text=True,
            timeout=BCFTOOLS_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FedgenError(
            f"bcftools {args[0]} took longer than {BCFTOOLS_TIMEOUT_SECONDS:.0f} s"
        ) from None
    if done.returncode != 0:
        raise FedgenError(f"bcftools {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


@lru_cache(maxsize=64)
def _file_facts(path: str, mtime: float) -> tuple[dict[str, str], int]:
    """Contig code -> the file's contig name (from the index), and the number of samples."""
    contigs: dict[str, str] = {}
    for line in _run(["index", "-s", path]).splitlines():
        name = line.split("\t")[0]
        contigs.setdefault(chromosome_code(name, ""), name)
    samples = len(_run(["query", "-l", path]).split())
    return contigs, samples


def file_facts(path: Path) -> tuple[dict[str, str], int]:
    """(contig code -> contig name, number of individuals) of an indexed VCF/BCF."""
    return _file_facts(str(path), path.stat().st_mtime)


def _matches(ref: str, alt: str, q: VariantQuery) -> bool:
    if q.alternate_bases not in (None, "N") and alt != q.alternate_bases:
        return False
    if q.reference_bases not in (None, "N") and ref != q.reference_bases:
        return False
    kind = q.variant_type
    if kind is None:
        return True
    if kind == "SNP":
        return len(ref) == 1 and len(alt) == 1
    if kind == "MNP":
        return len(ref) == len(alt) > 1
    if kind == "INS":
        return len(alt) > len(ref)
    if kind == "DEL":
        return len(alt) < len(ref)
    return len(alt) != len(ref)  # INDEL


def check_query(q: VariantQuery, *, assembly: str) -> None:
    """Refuse what the Beacon cannot answer: another assembly, bad bases, too wide a range."""
    if q.assembly_id and q.assembly_id.lower() not in (assembly.lower(), _ALIASES.get(assembly)):
        raise QueryError(
            f"assemblyId {q.assembly_id} does not match this dataset's assembly {assembly}."
        )
    if q.start < 0 or (q.end is not None and q.end <= q.start):
        raise QueryError(f"start {q.start} / end {q.end}: need 0 <= start < end (0-based).")
    for what, bases in (
        ("referenceBases", q.reference_bases),
        ("alternateBases", q.alternate_bases),
    ):
        if bases is not None and not _BASES.match(bases):
            raise QueryError(f"{what} {bases!r} must be bases A, C, G, T or N.")
    if q.end is None and q.alternate_bases is None:
        raise QueryError("a sequence query needs alternateBases (or give end for a range query).")
    if q.end is not None and q.end - q.start > MAX_RANGE_BP:
        raise QueryError(f"range {q.end - q.start} bp is wider than {MAX_RANGE_BP} bp; split it.")
    if q.variant_type is not None and q.variant_type not in VARIANT_TYPES:
        raise QueryError(
            f"variantType {q.variant_type!r} is not one of {', '.join(VARIANT_TYPES)}."
        )


_ALIASES = {"GRCh38": "hg38", "GRCh37": "hg19"}


def query_variants(path: Path, q: VariantQuery, *, assembly: str) -> VariantAnswer:
    """Answer ``q`` from the indexed VCF/BCF ``path`` (see the module doc for the counting)."""
    check_query(q, assembly=assembly)
    contigs, n = file_facts(path)
    contig = contigs.get(chromosome_code(q.reference_name, assembly))
    if contig is None:
        return VariantAnswer(False, 0, n)
    first = q.start + 1
    last = q.end if q.end is not None else first
    out = _run(
        ["query", "-r", f"{contig}:{first}-{last}", "-f", r"%POS\t%REF\t%ALT[\t%GT]\n", str(path)]
    )
    carriers: set[int] = set()
    alleles: list[tuple[int, frozenset[int]]] = []
    variants = 0
    for line in out.splitlines():
        pos, ref, alts, *calls = line.split("\t")
        if q.end is None and int(pos) != first:
            continue  # a deletion spanning the position: not this record
        wanted = [str(i + 1) for i, alt in enumerate(alts.split(",")) if _matches(ref, alt, q)]
        if not wanted:
            continue
        variants += 1
        copies = dict.fromkeys(wanted, 0)
        people: dict[str, set[int]] = {a: set() for a in wanted}
        for person, call in enumerate(calls):
            for a in re.split(r"[/|]", call):
                if a in copies:
                    copies[a] += 1
                    people[a].add(person)
        for a in wanted:
            carriers |= people[a]
            alleles.append((copies[a], frozenset(people[a])))
    counts = [c for c, _ in alleles]
    return VariantAnswer(bool(carriers), len(carriers), n, counts, variants, alleles)
