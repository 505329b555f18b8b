"""Seeded simulated summary statistics for the meta-analysis tests.

Every study reports the same true variants in its own way: some rows swapped (effect and other
allele exchanged), some strand-flipped (complemented), some missing. Each variant carries a
category so tests can compare against GWAMA and PLINK exactly where those tools define the same
answer (GWAMA aligns palindromic SNPs by their labels only; PLINK does not strand-flip).
The files are written in three formats: GWAS-SSF (for us), GWAMA and PLINK 1.9 meta-analysis.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BASES = np.array(list("ACGT"))
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


@dataclass
class Variant:
    vid: str
    chrom: str
    pos: int
    ea: str
    oa: str
    freq: float
    category: str  # snp, palindromic_low, palindromic_high, indel, multiallelic
    rows: dict[int, dict] = field(default_factory=dict)  # study -> row as written
    strand_flipped_in: set[int] = field(default_factory=set)
    mismatched_in: set[int] = field(default_factory=set)


def _comp(allele: str) -> str:
    return "".join(COMPLEMENT[b] for b in allele)


def simulate(
    n_variants: int = 1200,
    n_studies: int = 4,
    *,
    seed: int = 7,
    p_missing: float = 0.15,
    p_swap: float = 0.35,
    p_strand: float = 0.15,
    p_mismatch: float = 0.01,
) -> tuple[list[Variant], list[int]]:
    """Simulate variants and each study's rows.

    Returns
    -------
    variants : list of Variant
        Sorted by chromosome and position.
    sizes : list of int
        Sample size of each study.
    """
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(800, 6000, n_studies)]
    chroms = ["1", "2", "22"]
    variants: list[Variant] = []
    per_chrom = n_variants // len(chroms)
    vid = 0
    for chrom in chroms:
        positions = np.sort(rng.choice(np.arange(10_000, 5_000_000), per_chrom, replace=False))
        for pos in positions:
            u = rng.random()
            if u < 0.06:
                category = "palindromic_low"
                pair = ["A", "T"] if rng.random() < 0.5 else ["C", "G"]
                freq = float(rng.uniform(0.05, 0.3))
            elif u < 0.10:
                category = "palindromic_high"
                pair = ["A", "T"] if rng.random() < 0.5 else ["C", "G"]
                freq = float(rng.uniform(0.42, 0.58))
            elif u < 0.15:
                category = "indel"
                base = str(rng.choice(BASES))
                ins = "".join(rng.choice(BASES, int(rng.integers(1, 4))))
                pair = [base + ins, base]
                freq = float(rng.uniform(0.05, 0.5))
            else:
                category = "snp"
                a = int(rng.integers(0, 4))
                # Non-palindromic partner: not the base itself nor its complement.
                b = int(rng.choice([x for x in range(4) if x not in (a, 3 - a)]))
                pair = [BASES[a], BASES[b]]
                freq = float(rng.uniform(0.02, 0.5))
            rng.shuffle(pair)
            variants.append(Variant(f"v{vid}", chrom, int(pos), pair[0], pair[1], freq, category))
            vid += 1
            if category == "snp" and rng.random() < 0.02:
                # A second SNP at the same position: a multi-allelic site split in two rows.
                other = [x for x in BASES if x not in (pair[0], pair[1], _comp(pair[0]))]
                if other:
                    alt = str(rng.choice(other))
                    variants.append(
                        Variant(f"v{vid}", chrom, int(pos), pair[0], alt, freq / 2, "multiallelic")
                    )
                    vid += 1
    multi_pos = {(v.chrom, v.pos) for v in variants if v.category == "multiallelic"}
    partner_present: dict[tuple[str, int], np.ndarray] = {}
    for v in variants:
        beta_true = float(rng.normal(0, 0.02)) if rng.random() < 0.1 else 0.0
        if rng.random() < 0.01:
            beta_true = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.4))
        hetero = rng.random() < 0.2
        present = rng.random(n_studies) >= p_missing
        if not present.any():
            present[int(rng.integers(0, n_studies))] = True
        site = (v.chrom, v.pos)
        if v.category == "multiallelic":
            # Studies imputed from one panel report every allele of a site: the second allele
            # is present where the first is (a lone A/G next to another study's A/C is, for
            # the engine, an allele mismatch).
            present = partner_present[site].copy()
        elif site in multi_pos:
            partner_present[site] = present
        for s in np.flatnonzero(present):
            s = int(s)
            n = sizes[s]
            f = float(np.clip(v.freq + rng.normal(0, 0.01), 0.01, 0.99))
            se = 1.0 / np.sqrt(2 * n * f * (1 - f)) * float(rng.uniform(0.9, 1.1))
            beta = beta_true + (float(rng.normal(0, 0.05)) if hetero else 0.0)
            beta = float(rng.normal(beta, se))
            ea, oa, eaf = v.ea, v.oa, f
            if rng.random() < p_swap:
                ea, oa, beta, eaf = oa, ea, -beta, 1 - eaf
            if v.category != "indel" and rng.random() < p_strand:
                ea, oa = _comp(ea), _comp(oa)
                v.strand_flipped_in.add(s)
            mismatch_ok = v.category == "snp" and (v.chrom, v.pos) not in multi_pos
            if mismatch_ok and s != 0 and rng.random() < p_mismatch:
                # A wrong allele: A/C reported as A/G matches A/C by no swap or strand flip.
                oa = _comp(oa)
                v.mismatched_in.add(s)
            n_row = n - int(rng.integers(0, 50))
            v.rows[s] = {"ea": ea, "oa": oa, "beta": beta, "se": se, "eaf": eaf, "n": n_row}
    variants.sort(key=lambda v: (int(v.chrom), v.pos))
    return variants, sizes


def _fmt(x: float) -> str:
    return repr(float(x))


def write_ssf(variants: list[Variant], study: int, path: Path) -> None:
    """Write one study as a sorted GWAS-SSF tsv.gz."""
    from scipy.stats import norm

    from snakemake_fedgen.sumstats.columns import MANDATORY

    header = [*MANDATORY, "n", "rsid"]
    lines = ["\t".join(header)]
    for v in variants:
        r = v.rows.get(study)
        if r is None:
            continue
        p = 2 * norm.sf(abs(r["beta"] / r["se"]))
        lines.append(
            "\t".join(
                [
                    v.chrom,
                    str(v.pos),
                    r["ea"],
                    r["oa"],
                    _fmt(r["beta"]),
                    _fmt(r["se"]),
                    _fmt(r["eaf"]),
                    _fmt(p),
                    str(r["n"]),
                    v.vid,
                ]
            )
        )
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def write_gwama(variants: list[Variant], study: int, path: Path) -> None:
    """Write one study in GWAMA's quantitative-trait input format."""
    lines = ["MARKERNAME\tEA\tNEA\tBETA\tSE\tN\tEAF\tSTRAND"]
    for v in variants:
        r = v.rows.get(study)
        if r is None:
            continue
        lines.append(
            f"{v.vid}\t{r['ea']}\t{r['oa']}\t{_fmt(r['beta'])}\t{_fmt(r['se'])}\t{r['n']}\t"
            f"{_fmt(r['eaf'])}\t+"
        )
    path.write_text("\n".join(lines) + "\n")


def write_plink(variants: list[Variant], study: int, path: Path) -> None:
    """Write one study for PLINK 1.9 ``--meta-analysis ... + qt``."""
    from scipy.stats import norm

    lines = ["CHR\tBP\tSNP\tA1\tA2\tBETA\tSE\tP"]
    for v in variants:
        r = v.rows.get(study)
        if r is None:
            continue
        p = 2 * norm.sf(abs(r["beta"] / r["se"]))
        lines.append(
            f"{v.chrom}\t{v.pos}\t{v.vid}\t{r['ea']}\t{r['oa']}\t{_fmt(r['beta'])}\t"
            f"{_fmt(r['se'])}\t{_fmt(p)}"
        )
    path.write_text("\n".join(lines) + "\n")


def canonical_key(chrom: str, pos: int, a: str, b: str) -> tuple:
    """Strand- and orientation-independent identity of a variant (for joining outputs)."""
    if len(a) == 1 and len(b) == 1:
        pair = "".join(sorted((a, b)))
        comp = "".join(sorted((_comp(a), _comp(b))))
        return (str(chrom), int(pos), min(pair, comp))
    return (str(chrom), int(pos), "/".join(sorted((a, b))))
