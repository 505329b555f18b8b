"""Imputation in chunks at a site, as the Michigan and TOPMed imputation servers do it.

Each chromosome is cut into chunks of a fixed size (config ``impute.chunk_mb``) that tile it
without gaps; each chunk is imputed on a *window*, the chunk plus ``impute.overlap_mb`` of flank
on both sides, so that the haplotypes at a chunk's edge are phased and imputed with context.
Afterwards each chunk keeps only the variants whose position lies in its own chunk (the overlap
is resolved by position: every variant belongs to exactly one chunk), and the chunks of a
chromosome are concatenated in order (:func:`ligate`).

The grid comes from the assembly's chromosome lengths (:mod:`snakemake_fedgen.assemblies`) and
the config, not from any site's data: the coordinator knows every task before the first one
runs, and a workflow cannot turn chunk boundaries into a channel for site data. What a chunk
holds comes from the reference panel (its variants in the window); a chunk whose window holds
fewer typed markers than ``impute.min_chunk_markers`` is not imputed and its panel variants are
counted (``variants_chunk_skipped``), as the imputation servers exclude such chunks.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.assemblies import chrom_sort_key, plink_chrom

__all__ = [
    "Chunk",
    "ChunkStatus",
    "chunk_grid",
    "extract_window",
    "ligate",
    "split_panel",
    "sum_counts",
]


@dataclass(frozen=True)
class Chunk:
    """One chunk of a chromosome: its own positions and the window it is imputed on (1-based,
    inclusive)."""

    chrom: str
    index: int
    start: int
    end: int
    window_start: int
    window_end: int

    @property
    def region(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


def chunk_grid(chrom: str, length: int, *, size_bp: int, overlap_bp: int) -> list[Chunk]:
    """The chunks of a chromosome of ``length`` bp: ``size_bp`` each (the last one shorter),
    windows ``overlap_bp`` wider on both sides (clipped to the chromosome). ``size_bp`` 0: the
    whole chromosome is one chunk without flanks."""
    if length < 1:
        raise ConfigError(f"chromosome {chrom}: length {length} must be positive")
    if size_bp < 0 or overlap_bp < 0:
        raise ConfigError("impute.chunk_mb and impute.overlap_mb must not be negative")
    if size_bp == 0:
        return [Chunk(chrom, 1, 1, length, 1, length)]
    chunks = []
    for i in range(math.ceil(length / size_bp)):
        start = i * size_bp + 1
        end = min((i + 1) * size_bp, length)
        chunks.append(
            Chunk(
                chrom,
                i + 1,
                start,
                end,
                max(1, start - overlap_bp),
                min(length, end + overlap_bp),
            )
        )
    return chunks


# ------------------------------------------------------------------------------------------
# tools
# ------------------------------------------------------------------------------------------


def _run(argv: Sequence[str], *, what: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"{what}: {argv[0]} failed: {' / '.join(tail)}")
    return proc.stdout


def _count_records(vcf: Path) -> int:
    """Records of a VCF/BCF (streamed)."""
    with subprocess.Popen(
        ["bcftools", "view", "-H", "-G", str(vcf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        n = sum(1 for _ in proc.stdout)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise ConfigError(f"{vcf}: bcftools view failed: {err.strip()[-300:]}")
    return n


def _contigs(vcf: Path) -> list[str]:
    """Contig names a VCF declares (``##contig``) or, without any, the ones its records use."""
    header = _run(["bcftools", "view", "-h", str(vcf)], what=str(vcf))
    names = [
        line.split("ID=", 1)[1].split(",", 1)[0].rstrip(">")
        for line in header.splitlines()
        if line.startswith("##contig=<")
    ]
    if names:
        return names
    out = _run(["bcftools", "query", "-f", "%CHROM\\n", str(vcf)], what=str(vcf))
    return list(dict.fromkeys(out.split()))


def _name_in(chrom: str, contigs: Sequence[str]) -> str | None:
    """The contig of ``contigs`` that is chromosome ``chrom`` (``20``, ``chr20``; ``X``/``23``)."""
    code = plink_chrom(chrom)
    for name in contigs:
        if plink_chrom(name) == code:
            return name
    return None


# ------------------------------------------------------------------------------------------
# the panel, one indexed file per chromosome
# ------------------------------------------------------------------------------------------


def split_panel(panel: Path, chromosomes: Sequence[str], out_dir: Path) -> dict[str, int]:
    """Write ``out_dir/<chrom>.vcf.gz`` (+ ``.tbi``) for each chromosome, in one pass over the
    panel (``bcftools +scatter``): the chunks then read their windows by index.

    Returns the panel's variants per chromosome. A chromosome the panel does not hold is an
    error naming it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contigs = _contigs(panel)
    names = {c: _name_in(c, contigs) for c in chromosomes}
    missing = [c for c, n in names.items() if n is None]
    if missing:
        raise ConfigError(
            f"{panel}: the reference panel has no chromosome {', '.join(missing)} (its "
            f"contigs: {', '.join(contigs[:30]) or 'none'}); config `chromosomes` lists the "
            "chromosomes to impute, each must be in the panel"
        )
    scatter = out_dir / "scatter.regions"
    scatter.write_text("".join(f"{names[c]}\t{c}\n" for c in chromosomes))
    try:
        _run(
            ["bcftools", "+scatter", str(panel), "-Oz", "-o", str(out_dir), "-S", str(scatter)],
            what=f"{panel}: split by chromosome",
        )
    finally:
        scatter.unlink(missing_ok=True)
    counts = {}
    for chrom in chromosomes:
        part = out_dir / f"{chrom}.vcf.gz"
        if not part.exists():  # +scatter writes nothing for a contig without records
            _run(
                ["bcftools", "view", "-h", "-Oz", "-o", str(part), str(panel)],
                what=f"{panel}: empty chromosome {chrom}",
            )
        _run(["tabix", "-f", "-p", "vcf", str(part)], what=f"{part}: index")
        counts[chrom] = _count_records(part)
        if counts[chrom] == 0:
            raise ConfigError(
                f"{panel}: the reference panel has no variants on chromosome {chrom}; drop it "
                "from config `chromosomes` or use a panel that covers it"
            )
    return counts


# ------------------------------------------------------------------------------------------
# one chunk's window
# ------------------------------------------------------------------------------------------

STATUS_FIELDS = (
    "chrom",
    "chunk",
    "start",
    "end",
    "window_start",
    "window_end",
    "target_markers",
    "panel_variants",
    "panel_variants_in_chunk",
    "impute",
)


@dataclass(frozen=True)
class ChunkStatus:
    """What a chunk's window holds and whether it is imputed (the ``.status.tsv`` of a chunk)."""

    chunk: Chunk
    target_markers: int  # typed markers of the site in the window
    panel_variants: int  # panel variants in the window
    panel_variants_in_chunk: int  # panel variants the chunk itself keeps after imputation
    impute: bool

    def write(self, path: Path) -> None:
        c = self.chunk
        values = (
            c.chrom,
            c.index,
            c.start,
            c.end,
            c.window_start,
            c.window_end,
            self.target_markers,
            self.panel_variants,
            self.panel_variants_in_chunk,
            "yes" if self.impute else "no",
        )
        write_text_atomic(
            path,
            "".join(f"{k}\t{v}\n" for k, v in zip(STATUS_FIELDS, values, strict=True)),
        )

    @classmethod
    def read(cls, path: Path) -> ChunkStatus:
        try:
            pairs = dict(
                line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line
            )
            chunk = Chunk(
                pairs["chrom"],
                *(int(pairs[k]) for k in ("chunk", "start", "end", "window_start", "window_end")),
            )
            return cls(
                chunk,
                int(pairs["target_markers"]),
                int(pairs["panel_variants"]),
                int(pairs["panel_variants_in_chunk"]),
                pairs["impute"] == "yes",
            )
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: not a chunk status table ({exc})") from None


def extract_window(
    *,
    target: Path,
    panel: Path,
    chunk: Chunk,
    out_target: Path,
    out_panel: Path,
    status: Path,
    min_markers: int,
) -> ChunkStatus:
    """Cut a chunk's window out of the site's target VCF and the panel (both indexed, one
    chromosome each); the target is named as the panel names the chromosome (Beagle needs one
    name). Records are taken by position (``--regions-overlap 0``)."""
    panel_name = _name_in(chunk.chrom, _contigs(panel)) or chunk.chrom
    target_name = _name_in(chunk.chrom, _contigs(target)) or chunk.chrom
    view = ["bcftools", "view", "--regions-overlap", "0", "-Oz"]
    _run(
        [*view, "-r", f"{panel_name}:{chunk.window_start}-{chunk.window_end}",
         "-o", str(out_panel), str(panel)],
        what=f"{panel}: window of chunk {chunk.index}",
    )  # fmt: skip
    window = f"{target_name}:{chunk.window_start}-{chunk.window_end}"
    if target_name == panel_name:
        _run(
            [*view, "-r", window, "-o", str(out_target), str(target)],
            what=f"{target}: window of chunk {chunk.index}",
        )
    else:
        cut = out_target.with_name(out_target.name + ".cut.vcf.gz")
        renames = out_target.with_name(out_target.name + ".chroms")
        renames.write_text(f"{target_name}\t{panel_name}\n")
        try:
            _run(
                [*view, "-r", window, "-o", str(cut), str(target)],
                what=f"{target}: window of chunk {chunk.index}",
            )
            _run(
                ["bcftools", "annotate", "--rename-chrs", str(renames), "-Oz",
                 "-o", str(out_target), str(cut)],
                what=f"{target}: chromosome named as in the panel ({panel_name})",
            )  # fmt: skip
        finally:
            renames.unlink(missing_ok=True)
            cut.unlink(missing_ok=True)
    core = _run(
        ["bcftools", "view", "-H", "-G", "--regions-overlap", "0",
         "-r", f"{panel_name}:{chunk.start}-{chunk.end}", str(panel)],
        what=f"{panel}: chunk {chunk.index}",
    ).count("\n")  # fmt: skip
    markers = _count_records(out_target)
    result = ChunkStatus(
        chunk,
        target_markers=markers,
        panel_variants=_count_records(out_panel),
        panel_variants_in_chunk=core,
        impute=markers >= max(1, min_markers) and core > 0,
    )
    result.write(status)
    return result


# ------------------------------------------------------------------------------------------
# ligation: each chunk keeps its own positions, chunks concatenated in order
# ------------------------------------------------------------------------------------------


def ligate(chunks: Sequence[tuple[Path, Path]], *, output: Path, counts: Path) -> dict[str, int]:
    """Concatenate the imputed chunks of one chromosome (``(vcf, status)`` pairs).

    Each chunk keeps the records whose position lies in its own chunk (the flanks belong to the
    neighbours), chunks not imputed are skipped and their panel variants counted; the result
    holds every position once, in order. ``counts`` gets the ``imputation`` step's chunk
    counts. Returns them.
    """
    if not chunks:
        raise ConfigError("ligate: no chunks given")
    statuses = [(vcf, ChunkStatus.read(status)) for vcf, status in chunks]
    chroms = {plink_chrom(s.chunk.chrom) for _, s in statuses}
    if len(chroms) != 1:
        raise ConfigError(f"ligate: chunks of several chromosomes ({', '.join(sorted(chroms))})")
    statuses.sort(key=lambda item: item[1].chunk.start)
    for (_, a), (_, b) in itertools.pairwise(statuses):
        if b.chunk.start != a.chunk.end + 1:
            raise ConfigError(
                f"ligate: chunk {a.chunk.index} ends at {a.chunk.end} but chunk {b.chunk.index} "
                f"starts at {b.chunk.start}; the chunks must tile the chromosome"
            )
    output = Path(output)
    work = output.with_name(output.name + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    skipped = [s for _, s in statuses if not s.impute]
    try:
        for vcf, status in statuses:
            if not status.impute:
                continue
            names = _contigs(vcf)
            name = _name_in(status.chunk.chrom, names) or status.chunk.chrom
            part = work / f"{status.chunk.index}.vcf.gz"
            _run(
                ["bcftools", "view", "--targets-overlap", "0",
                 "-t", f"{name}:{status.chunk.start}-{status.chunk.end}",
                 "-Oz", "-o", str(part), str(vcf)],
                what=f"{vcf}: chunk {status.chunk.index}",
            )  # fmt: skip
            # bcftools concat needs the contig: Beagle writes no ##contig lines, an index has it.
            _run(["tabix", "-f", "-p", "vcf", str(part)], what=f"{part}: index")
            parts.append(part)
        partial = output.with_name(output.name + ".partial")
        if parts:
            _run(
                ["bcftools", "concat", "-Oz", "-o", str(partial), *map(str, parts)],
                what="bcftools concat",
            )
        else:
            first = statuses[0][0]
            _run(["bcftools", "view", "-h", "-Oz", "-o", str(partial), str(first)], what=str(first))
        partial.replace(output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "chunks": len(statuses),
        "chunks_skipped": len(skipped),
        "variants_chunk_skipped": sum(s.panel_variants_in_chunk for s in skipped),
    }
    write_text_atomic(
        counts,
        "step\tquantity\tcount\n" + "".join(f"imputation\t{k}\t{v}\n" for k, v in result.items()),
    )
    return result


def sum_counts(tables: Sequence[Path], *, output: Path) -> list[tuple[str, str, int]]:
    """Add up counts tables of disjoint parts (chromosomes): one row per (step, quantity), in
    the order first seen."""
    totals: dict[tuple[str, str], int] = {}
    for path in tables:
        lines = Path(path).read_text().splitlines()
        if not lines or lines[0].split("\t") != ["step", "quantity", "count"]:
            raise ConfigError(f"{path}: header must be 'step quantity count'")
        for lineno, line in enumerate(lines[1:], start=2):
            step, quantity, count = line.split("\t")
            if not count.isdigit():
                raise ConfigError(f"{path}: line {lineno}: count {count!r} is not an integer")
            totals[(step, quantity)] = totals.get((step, quantity), 0) + int(count)
    rows = [(s, q, c) for (s, q), c in totals.items()]
    write_text_atomic(
        output, "step\tquantity\tcount\n" + "".join(f"{s}\t{q}\t{c}\n" for s, q, c in rows)
    )
    return rows


def sort_chromosomes(chromosomes: Sequence[str]) -> list[str]:
    """Chromosomes as PLINK codes, once each, in genome order."""
    return sorted({plink_chrom(c) for c in chromosomes}, key=chrom_sort_key)
