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

from snakemake_executor_plugin_fedgen.errors import ConfigError, SiteDataError
from snakemake_executor_plugin_fedgen.fileio import atomic_write, open_text

__all__ = [
    "FORMAT_LINE",
    "Coverage",
    "Weight",
    "clump_meta",
    "match_weights",
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


def match_weights(weights: Sequence[Weight], pvar: Path) -> Coverage:
    """Match weights to a site's variants (see the module docstring for the rules)."""
    index = _pvar_index(pvar)
    cov = Coverage(in_weights=len(weights))
    for w in weights:
        cov.weight_total += abs(w.weight)
        site = index.get((_chrom(w.chrom), w.pos)) or index.get((w.chrom, w.pos)) or []
        hit = None
        for vid, ref, alt in site:
            if {ref, alt} == {w.effect, w.other}:
                hit = (vid, w.effect, "swap" if w.effect == ref else "same")
                break
        if hit is None and not w.ambiguous:
            fe, fo = w.effect.translate(_COMPLEMENT), w.other.translate(_COMPLEMENT)
            for vid, ref, alt in site:
                if {ref, alt} == {fe, fo}:
                    hit = (vid, fe, "flip")
                    break
        if hit is None:
            cov.not_at_site += 1
            continue
        vid, allele, how = hit
        cov.matched += 1
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
            f"{min_coverage:.0%}; {cov.not_at_site} not at the site with these alleles): check the "
            "assembly and the variant list, or lower min_coverage"
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
