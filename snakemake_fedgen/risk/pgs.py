"""Polygenic score weights and scoring a site's dosages.

Weights file (``fedgen-weights/1``, TSV): ``##key=value`` header lines (``source``, ``sites``
the weights came from, ``p_threshold``, clumping settings, variant counts), then the columns
``chromosome  base_pair_location  effect_allele  other_allele  weight  p_value``.

- :func:`clump_meta` (centre): clumping and p-value thresholding (C+T, as PRSice-2) of a
  meta-analysis: the variants with ``p <= p_threshold`` are clumped by ``plink --clump`` (1.9) on the
  LD of the public reference panel (index variants by p, ``r2`` and ``kb`` window), and the
  index variants keep their meta-analysis beta as weight. The header names the sites the
  meta-analysis covered (leave-one-site-out weights name all sites but the held-out one).
- :func:`match_weights` (site): each weight is matched to the site's variants by chromosome,
  position and alleles: the same two alleles in either order (plink2 scores the effect allele
  whatever its REF/ALT role), else the complementary strand. A/T and C/G variants match only on
  the strand given (a flip cannot be told from a swap there): right for weights from this
  workflow's meta-analysis, whose sites are all aligned to the one reference panel; they are
  counted (``variants_ambiguous``) so a user of external weights sees how many there are.
  A weight whose other allele is unknown (``other_allele`` empty, or a ``/``-separated set of
  candidates, as a PGS Catalog file may give) is matched on its effect allele alone, as
  pgsc_calc does: the one site variant at the position that carries the effect allele (and
  whose other allele is among the candidates), on the strand given; if two site variants there
  carry it (a split multi-allelic site), the weight is left out and counted
  (``variants_effect_only_unresolved``).
- :func:`read_pgs_catalog` (centre or site; public input): a PGS Catalog scoring file,
  harmonised (``hm_chr``/``hm_pos`` on ``#HmPOS_build``) or author-reported
  (``chr_name``/``chr_position`` on ``#genome_build``), as weights on the study's assembly.
  Only additive single-variant weights are used (odds or hazard ratios are logged); every row
  left out is counted by reason in the header. The ambiguous A/T and C/G variants of an
  external score are matched on the strand given, and counted, by :func:`match_weights`.
- :func:`score_site` (site): ``plink2 --score`` of the matched weights on the imputed dosages;
  the per-person score table stays at the site, only the coverage counts may leave.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    HarmonisationError,
    SiteDataError,
    SumstatsError,
)
from snakemake_executor_plugin_fedgen.fileio import atomic_write, open_text

__all__ = [
    "FORMAT_LINE",
    "Coverage",
    "Weight",
    "clump_meta",
    "match_weights",
    "read_pgs_catalog",
    "read_weights",
    "score_site",
    "write_weights",
]

FORMAT_LINE = "##format=fedgen-weights/1"
COLUMNS = (
    "chromosome",
    "base_pair_location",
    "effect_allele",
    "other_allele",
    "weight",
    "p_value",
)
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


@dataclass(frozen=True)
class Weight:
    """One variant's weight for its effect allele."""

    chrom: str
    pos: int
    effect: str
    other: str
    weight: float
    p: float = float("nan")

    @property
    def ambiguous(self) -> bool:
        """A/T or C/G: the two alleles are each other's complement."""
        return self.effect.translate(_COMPLEMENT) == self.other

    @property
    def other_known(self) -> bool:
        """One other allele is given (not empty, not a ``/``-separated set of candidates)."""
        return bool(self.other) and "/" not in self.other


def write_weights(path: Path, weights: Sequence[Weight], meta: dict[str, str]) -> None:
    """Write a weights file atomically."""
    with atomic_write(Path(path)) as f:
        f.write(FORMAT_LINE + "\n")
        for k, v in meta.items():
            f.write(f"##{k}={v}\n")
        f.write("\t".join(COLUMNS) + "\n")
        for w in weights:
            f.write(f"{w.chrom}\t{w.pos}\t{w.effect}\t{w.other}\t{w.weight!r}\t{w.p!r}\n")


def read_weights(path: Path) -> tuple[list[Weight], dict[str, str]]:
    """Read a weights file; returns the weights and the header's keys."""
    meta: dict[str, str] = {}
    weights: list[Weight] = []
    with open_text(path) as f:
        first = f.readline().rstrip("\n")
        if first != FORMAT_LINE:
            raise SiteDataError(f"{path}: line 1 is not {FORMAT_LINE!r}")
        lineno = 1
        header = None
        for line in f:
            lineno += 1
            line = line.rstrip("\n")
            if line.startswith("##"):
                key, _, value = line[2:].partition("=")
                meta[key] = value
                continue
            if header is None:
                header = line.split("\t")
                if tuple(header) != COLUMNS:
                    raise SiteDataError(f"{path} line {lineno}: header is not {COLUMNS}")
                continue
            row = line.split("\t")
            try:
                weights.append(
                    Weight(row[0], int(row[1]), row[2].upper(), row[3].upper(), float(row[4]),
                           float(row[5]))
                )  # fmt: skip
            except (IndexError, ValueError):
                raise SiteDataError(f"{path} line {lineno}: not a weights row") from None
    return weights, meta


@dataclass
class Coverage:
    """How a weights file matched a site's variants (aggregate counts; may leave the site)."""

    in_weights: int = 0
    matched: int = 0
    swapped: int = 0
    strand_flipped: int = 0
    ambiguous: int = 0  # A/T or C/G matched on the same strand
    effect_only: int = 0  # other allele unknown: matched on the effect allele alone
    effect_only_unresolved: int = 0  # ... and two site variants there carry it: left out
    not_at_site: int = 0
    weight_total: float = 0.0
    weight_matched: float = 0.0
    #: (site variant ID, the allele scored, the weight) of every matched variant.
    matched_ids: list[tuple[str, str, Weight]] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of the absolute weight matched."""
        return self.weight_matched / self.weight_total if self.weight_total > 0 else 0.0

    def counts(self) -> list[tuple[str, int]]:
        """(quantity, count) rows of the ``pgs`` step of a counts table."""
        return [
            ("variants_in_weights", self.in_weights),
            ("variants_matched", self.matched),
            ("variants_swap", self.swapped),
            ("variants_flip", self.strand_flipped),
            ("variants_ambiguous", self.ambiguous),
            ("variants_effect_only", self.effect_only),
            ("variants_effect_only_unresolved", self.effect_only_unresolved),
            ("variants_not_at_site", self.not_at_site),
        ]


def _pvar_index(pvar: Path) -> dict[tuple[str, int], list[tuple[str, str, str]]]:
    """(chrom, pos) -> [(ID, REF, ALT)] of a .pvar."""
    index: dict[tuple[str, int], list[tuple[str, str, str]]] = {}
    cols: list[str] | None = None
    with open_text(pvar) as f:
        for line in f:
            if line.startswith("##"):
                continue
            row = line.rstrip("\n").split("\t")
            if cols is None:
                cols = [c.lstrip("#") for c in row]
                continue
            r = dict(zip(cols, row, strict=False))
            index.setdefault((r["CHROM"], int(r["POS"])), []).append(
                (r["ID"], r["REF"].upper(), r["ALT"].upper())
            )
    return index


def _chrom(label: str) -> str:
    return label.removeprefix("chr")


def _match_one(
    w: Weight, site: Sequence[tuple[str, str, str]]
) -> tuple[str, str, str] | Literal["not_at_site", "unresolved"]:
    """(site variant ID, allele scored, how: same, swap or flip) of one weight among the site's
    variants at its position, or why there is none."""
    if not w.other_known:
        candidates = set(w.other.split("/")) - {""}
        found = [
            (vid, w.effect, "swap" if w.effect == ref else "same")
            for vid, ref, alt in site
            if w.effect in (ref, alt)
            and (not candidates or ({ref, alt} - {w.effect}) <= candidates)
        ]
        if len(found) > 1:
            return "unresolved"
        return found[0] if found else "not_at_site"
    for vid, ref, alt in site:
        if {ref, alt} == {w.effect, w.other}:
            return vid, w.effect, "swap" if w.effect == ref else "same"
    if not w.ambiguous:
        fe, fo = w.effect.translate(_COMPLEMENT), w.other.translate(_COMPLEMENT)
        for vid, ref, alt in site:
            if {ref, alt} == {fe, fo}:
                return vid, fe, "flip"
    return "not_at_site"


def match_weights(weights: Sequence[Weight], pvar: Path) -> Coverage:
    """Match weights to a site's variants (see the module docstring for the rules)."""
    index = _pvar_index(pvar)
    cov = Coverage(in_weights=len(weights))
    for w in weights:
        cov.weight_total += abs(w.weight)
        site = index.get((_chrom(w.chrom), w.pos)) or index.get((w.chrom, w.pos)) or []
        hit = _match_one(w, site)
        if hit == "unresolved":
            cov.effect_only_unresolved += 1
            continue
        if hit == "not_at_site":
            cov.not_at_site += 1
            continue
        vid, allele, how = hit
        cov.matched += 1
        cov.effect_only += not w.other_known
        cov.ambiguous += w.ambiguous
        cov.swapped += how == "swap"
        cov.strand_flipped += how == "flip"
        cov.weight_matched += abs(w.weight)
        cov.matched_ids.append((vid, allele, w))
    return cov


def _run(argv: list[str], cwd: Path) -> None:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise SiteDataError(f"{' '.join(argv[:5])} ... failed: {' | '.join(tail)}")


def _plink2(argv: list[str], cwd: Path) -> None:
    _run(["plink2", *argv], cwd)


def score_site(
    pfile: str | Path,
    weights: Path,
    *,
    out: Path,
    min_coverage: float = 0.5,
    threads: int = 1,
) -> Coverage:
    """Score the site's dosages with ``weights``; write ``IID  pgs`` to ``out`` (site only).

    ``pgs`` is plink2's ``SCORE1_SUM``: the sum over matched variants of weight x dosage of
    the effect allele (no mean imputation: imputed dosages have no missing values).

    Raises
    ------
    SiteDataError
        Less than ``min_coverage`` of the absolute weight matched the site's variants, or no
        variant at all.
    """
    ws, _ = read_weights(weights)
    cov = match_weights(ws, Path(f"{pfile}.pvar"))
    if not cov.matched or cov.share < min_coverage:
        raise SiteDataError(
            f"{weights}: {cov.matched} of {cov.in_weights} variants matched this site's "
            f"{pfile}.pvar, {cov.share:.1%} of the absolute weight (min_coverage "
            f"{min_coverage:.0%}; {cov.not_at_site} not at the site with these alleles, "
            f"{cov.effect_only_unresolved} with an unknown other allele at a multi-allelic "
            "site): check the assembly and the variant list, or lower min_coverage"
        )
    with tempfile.TemporaryDirectory(prefix="pgs-", dir=Path(out).parent) as tmp:
        t = Path(tmp)
        lines = ["ID\tA1\tWEIGHT", *(f"{v}\t{a}\t{w.weight!r}" for v, a, w in cov.matched_ids)]
        (t / "score.tsv").write_text("\n".join(lines) + "\n")
        _plink2(
            ["--pfile", str(Path(pfile).absolute()), "--score", "score.tsv", "1", "2", "3",
             "header", "no-mean-imputation", "cols=+scoresums", "--threads", str(threads),
             "--out", "s"],
            t,
        )  # fmt: skip
        with (t / "s.sscore").open() as f, atomic_write(Path(out)) as sink:
            cols = f.readline().rstrip("\n").lstrip("#").split("\t")
            iid, total = cols.index("IID"), cols.index("SCORE1_SUM")
            sink.write("IID\tpgs\n")
            for line in f:
                row = line.rstrip("\n").split("\t")
                sink.write(f"{row[iid]}\t{row[total]}\n")
    return cov


def _read_meta(path: Path, p_threshold: float) -> tuple[list[Weight], int]:
    """Rows with ``p <= p_threshold``, and the number of rows without a usable beta or p."""
    rows: list[Weight] = []
    unusable = 0
    with open_text(path) as f:
        cols = f.readline().rstrip("\n").split("\t")
        need = ("chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
                "p_value")  # fmt: skip
        missing = [c for c in need if c not in cols]
        if missing:
            raise SiteDataError(f"{path}: no column(s) {', '.join(missing)}")
        ix = [cols.index(c) for c in need]
        for line in f:
            r = line.rstrip("\n").split("\t")
            try:
                p = float(r[ix[5]])
                beta = float(r[ix[4]])
            except ValueError:
                unusable += 1
                continue
            if not (math.isfinite(p) and math.isfinite(beta)):
                unusable += 1
            elif p <= p_threshold:
                rows.append(
                    Weight(r[ix[0]], int(r[ix[1]]), r[ix[2]].upper(), r[ix[3]].upper(), beta, p)
                )
    return rows, unusable


def clump_meta(
    meta: Path,
    panel: Path,
    out: Path,
    *,
    sites: Sequence[str],
    p_threshold: float = 1e-3,
    r2: float = 0.1,
    kb: float = 250.0,
    threads: int = 1,
) -> dict[str, int]:
    """C+T weights from a meta-analysis with the LD of the public panel; returns counts.

    Variants of the meta-analysis not in the panel cannot be clumped and are left out
    (counted as ``not_in_panel``).
    """
    if not 0 < p_threshold <= 1:
        raise ConfigError(f"p_threshold {p_threshold} is not in (0, 1]")
    candidates, unusable = _read_meta(meta, p_threshold)
    counts = {
        "meta_without_beta_or_p": unusable,
        "meta_below_threshold": len(candidates),
        "not_in_panel": 0,
        "clumped_away": 0,
    }
    kept: list[Weight] = []
    with tempfile.TemporaryDirectory(prefix="clump-", dir=Path(out).parent) as tmp:
        t = Path(tmp)
        if candidates:
            _plink2(
                ["--vcf", str(Path(panel).absolute()), "--set-all-var-ids", "@:#:$r:$a",
                 "--new-id-max-allele-len", "100", "missing", "--make-just-pvar", "--out",
                 "panel"],
                t,
            )  # fmt: skip
            cov = match_weights(candidates, t / "panel.pvar")
            by_id = {vid: w for vid, _, w in cov.matched_ids}
            counts["not_in_panel"] = len(candidates) - len(by_id)
            if by_id:
                lines = ["ID\tP", *(f"{v}\t{w.p!r}" for v, w in by_id.items())]
                (t / "clump.tsv").write_text("\n".join(lines) + "\n")
                # plink 1.9's --clump (the plink2 of Debian bookworm has none) on the panel
                # with the IDs the candidates were matched by.
                _plink2(
                    ["--vcf", str(Path(panel).absolute()), "--set-all-var-ids", "@:#:$r:$a",
                     "--new-id-max-allele-len", "100", "missing", "--make-bed", "--out",
                     "panel"],
                    t,
                )  # fmt: skip
                _run(
                    ["plink1.9", "--bfile", "panel", "--clump", "clump.tsv", "--clump-field",
                     "P", "--clump-snp-field", "ID", "--clump-p1", repr(p_threshold),
                     "--clump-p2", repr(p_threshold), "--clump-r2", repr(r2), "--clump-kb",
                     repr(kb), "--threads", str(threads), "--out", "c"],
                    t,
                )  # fmt: skip
                index_ids = _clump_index(t / "c.clumped")
                kept = [by_id[v] for v in index_ids if v in by_id]
                counts["clumped_away"] = len(by_id) - len(kept)
    kept.sort(key=lambda w: (w.chrom, w.pos))
    counts["weights"] = len(kept)
    write_weights(
        out,
        kept,
        {
            "source": "meta-clump",
            "sites": ",".join(sites),
            "p_threshold": f"{p_threshold:g}",
            "clump_r2": f"{r2:g}",
            "clump_kb": f"{kb:g}",
            **{k: str(v) for k, v in counts.items()},
        },
    )
    return counts


def _clump_index(path: Path) -> list[str]:
    """Index variant IDs of a plink 1.9 ``.clumped`` report (whitespace-separated; absent when
    no variant was clumped)."""
    if not path.exists():
        return []
    with path.open() as f:
        cols = f.readline().split()
        i = cols.index("SNP")
        return [line.split()[i] for line in f if line.strip()]


# PGS Catalog scoring files (https://www.pgscatalog.org/downloads/#dl_ftp_scoring).
_ASSEMBLIES = {"grch37": "GRCh37", "hg19": "GRCh37", "grch38": "GRCh38", "hg38": "GRCh38"}
#: weight_type values whose effect_weight is a ratio (its log is the additive weight).
_RATIO_TYPES = {"or", "hr", "odds ratio", "hazard ratio"}
#: Columns whose True makes a row something plink2's additive --score cannot compute.
_NON_ADDITIVE = ("is_dominant", "is_recessive", "is_haplotype", "is_diplotype", "is_interaction")
_DROP_REASONS = ("unmapped", "non_acgt_allele", "duplicate")
_ACGT = frozenset("ACGT")


def _assembly(name: str) -> str | None:
    text = name.strip()
    return None if text in ("", "NR", "NA") else _ASSEMBLIES.get(text.lower(), text)


def _catalog_table(path: Path) -> tuple[dict[str, str], list[str], list[list[str]]]:
    """``#key=value`` header pairs, the column names and the rows of a scoring file."""
    meta: dict[str, str] = {}
    columns: list[str] | None = None
    rows: list[list[str]] = []
    with open_text(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("#"):
                # '###PGS CATALOG SCORING FILE' and '##SECTION' lines carry no key.
                key, sep, value = line.lstrip("#").partition("=")
                if sep and not line.startswith("##"):
                    meta[key.strip()] = value.strip()
            elif line.strip() and columns is None:
                columns = line.split("\t")
            elif line.strip():
                rows.append(line.split("\t"))
    if columns is None:
        raise SumstatsError(f"{path}: no column header line; is this a PGS Catalog scoring file?")
    return meta, columns, rows


def read_pgs_catalog(path: Path, *, assembly: str) -> tuple[list[Weight], dict[str, str]]:
    """Read a PGS Catalog scoring file (plain or gzip) as weights on ``assembly``.

    A harmonised file (``#HmPOS_build=`` in its header) is read from ``hm_chr``/``hm_pos``; a
    missing ``other_allele`` is taken from ``hm_inferOtherAllele`` (one allele, or a
    ``/``-separated set of candidates, as pgsc_calc does); a row with none is kept with its
    other allele unknown, for :func:`match_weights` to match on the effect allele alone. An
    author-reported file is read from ``chr_name``/``chr_position`` on its ``#genome_build=``.
    With ``#weight_type`` OR or HR the weight is ``log(effect_weight)``.

    Returns
    -------
    weights : list of Weight
        One per kept row (``p`` is NaN: a catalog score has none).
    meta : dict of str to str
        The fedgen-weights/1 header: ``source=pgs-catalog``, ``pgs_id``, ``assembly``, the
        catalog's own keys, ``rows_read``, ``rows_kept``, ``rows_effect_allele_only`` (kept
        rows whose other allele is unknown or one of several) and ``rows_dropped_<reason>``
        for the reasons ``unmapped`` (no position on the build), ``non_acgt_allele`` and
        ``duplicate``.

    Raises
    ------
    HarmonisationError
        The file's build is not ``assembly`` or is not reported.
    SumstatsError
        A required column is missing, the row count differs from ``#variants_number``, a
        weight is not a number, an OR/HR is not positive, or the score is not additive.
    """
    path = Path(path)
    meta, columns, rows = _catalog_table(path)
    want = _assembly(assembly) or assembly
    harmonised = "HmPOS_build" in meta
    build_key = "HmPOS_build" if harmonised else "genome_build"
    build = _assembly(meta.get(build_key, ""))
    pgs_id = meta.get("pgs_id") or path.name.split(".")[0].split("_hmPOS")[0]
    fix = (
        f"download the harmonised file {pgs_id}_hmPOS_{want}.txt.gz from the PGS Catalog "
        f"(https://ftp.ebi.ac.uk/pub/databases/spot/pgs/scores/{pgs_id}/ScoringFiles/"
        f"Harmonized/), whose positions are on {want}"
    )
    if build != want:
        found = f"#{build_key}={meta[build_key]}" if build_key in meta else f"no #{build_key} line"
        raise HarmonisationError(
            f"{path}: header has {found} but the study assembly is {want}; {fix}"
        )
    index = {name: i for i, name in enumerate(columns)}
    chrom_col, pos_col = ("hm_chr", "hm_pos") if harmonised else ("chr_name", "chr_position")
    missing = [c for c in (chrom_col, pos_col, "effect_allele", "effect_weight") if c not in index]
    if missing:
        raise SumstatsError(
            f"{path}: no column(s) {', '.join(missing)} (columns: {', '.join(columns)}); a score "
            f"is matched on chromosome and position: {fix}"
        )
    dosage = [c for c in columns if c.startswith("dosage_") and c.endswith("_weight")]
    if dosage:
        raise SumstatsError(
            f"{path}: per-dosage weights ({', '.join(dosage)}); only additive scores can be "
            "computed (plink2 --score sums weight x dosage): choose another score"
        )

    def cell(row: list[str], name: str) -> str:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for flag in _NON_ADDITIVE:
        flagged = sum(cell(r, flag).lower() == "true" for r in rows)
        if flagged:
            raise SumstatsError(
                f"{path}: {flagged} row(s) with {flag}=True; only additive single-variant "
                "weights can be computed (plink2 --score sums weight x dosage): choose another "
                "score"
            )
    expected = meta.get("variants_number", "")
    if expected.isdigit() and int(expected) != len(rows):
        raise SumstatsError(
            f"{path}: #variants_number={expected} but {len(rows)} rows were read; the file is "
            "truncated or edited: download it again"
        )
    weight_type = meta.get("weight_type", "")
    ratio = weight_type.strip().lower() in _RATIO_TYPES
    dropped = dict.fromkeys(_DROP_REASONS, 0)
    seen: set[tuple[str, int, str, str]] = set()
    weights: list[Weight] = []
    effect_only = 0
    for lineno, row in enumerate(rows, start=1):
        chrom, pos_text = cell(row, chrom_col), cell(row, pos_col)
        if not chrom or not pos_text:
            dropped["unmapped"] += 1
            continue
        effect, other = cell(row, "effect_allele").upper(), cell(row, "other_allele").upper()
        if not other and harmonised:
            other = cell(row, "hm_inferOtherAllele").upper()
        if not effect or not set(effect) <= _ACGT or not set(other) <= _ACGT | {"/"}:
            dropped["non_acgt_allele"] += 1
            continue
        other = "/".join(sorted({a for a in other.split("/") if a}))
        text = cell(row, "effect_weight")
        try:
            pos, value = int(pos_text), float(text)
        except ValueError:
            raise SumstatsError(
                f"{path}: data row {lineno}: position {pos_text!r} or effect_weight {text!r} is "
                "not a number"
            ) from None
        if ratio:
            if not value > 0:
                raise SumstatsError(
                    f"{path}: data row {lineno}: #weight_type={weight_type} but effect_weight "
                    f"{text!r} is not a positive ratio; fix the file or choose another score"
                )
            value = math.log(value)
        if not math.isfinite(value):
            raise SumstatsError(f"{path}: data row {lineno}: effect_weight {text!r} not finite")
        key = (_chrom(chrom), pos, effect, other)
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        effect_only += "/" in other or not other
        weights.append(Weight(key[0], pos, effect, other, value))
    if not weights:
        raise SumstatsError(f"{path}: no usable rows (dropped: {dropped}); choose another score")
    weights.sort(key=lambda w: (w.chrom, w.pos))
    header = {"source": "pgs-catalog", "pgs_id": pgs_id, "assembly": want}
    for name in ("pgs_name", "trait_reported", "trait_efo", "format_version", "genome_build",
                 "HmPOS_build", "HmPOS_date", "weight_type"):  # fmt: skip
        if meta.get(name):
            header[name] = meta[name]
    header["weights_logged"] = "true" if ratio else "false"
    header["rows_read"] = str(len(rows))
    header["rows_kept"] = str(len(weights))
    header["rows_effect_allele_only"] = str(effect_only)
    header.update({f"rows_dropped_{k}": str(v) for k, v in dropped.items()})
    return weights, header
