"""Genotyping arrays: marker design, calling errors and variant-level QC failures.

The array is a backbone of common variants (a share of those with MAF >= 5% set by the scale,
and a few lower-frequency ones); each site's array
version lacks a random few percent of the backbone (failed or retired probes). Calls carry
~1% missingness and ~0.1% genotype errors. Injected variant failures: markers with high
missingness, markers failing Hardy-Weinberg (a cluster-calling artefact that calls most
heterozygotes homozygous), and a batch of strand-flipped (complemented alleles) or
REF/ALT-swapped markers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snakemake_fedgen.simulate.cohort import Cohort
from snakemake_fedgen.simulate.genomes import complement, is_palindromic

#: Code of a missing call in the genotype matrices (0/1/2 = ALT allele count).
MISSING = 3
MISSINGNESS = 0.01
ERROR_RATE = 0.001
LOW_CALL_MISSINGNESS = 0.15
BAD_VARIANT_MISSINGNESS = 0.25
HWE_HET_TO_HOM = 0.85
CONTAMINATION_HET = 0.65
SITE_PROBE_FAILURE = 0.04


def design_backbone(
    maf: np.ndarray,
    *,
    rate: np.ndarray | float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Choose array markers from pooled minor-allele frequencies.

    Parameters
    ----------
    maf
        ``(n_variants,)`` pooled minor-allele frequency over panel and cohorts.
    rate
        Chance that a variant with MAF >= 5% is on the array (a fifth of it for 1-5%); a
        scalar or one value per variant.

    Returns
    -------
    numpy.ndarray
        Increasing variant indices of the backbone.
    """
    p = np.where(maf >= 0.05, rate, np.where(maf >= 0.01, rate / 5, 0.0))
    return np.flatnonzero(rng.random(maf.shape[0]) < p)


def site_markers(backbone: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Return the site's array version: the backbone minus a few failed probes."""
    return backbone[rng.random(backbone.shape[0]) >= SITE_PROBE_FAILURE]


@dataclass
class SiteCalls:
    """A site's array genotype calls as they will appear in its VCF.

    Attributes
    ----------
    rows
        ``(n_markers,)`` variant indices (into the simulation's variants).
    ref, alt
        ``(n_markers,)`` alleles as the site reports them (after flips/swaps).
    calls
        ``(n_markers, n_samples)`` uint8, 0/1/2 ALT count or :data:`MISSING`.
    injected
        Variant-level failures: ``high_missingness``, ``hwe_failure``, ``strand_flipped``,
        ``ref_alt_swapped`` -> lists of variant indices.
    """

    rows: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    calls: np.ndarray
    injected: dict[str, list[int]] = field(default_factory=dict)


def call_genotypes(
    cohort: Cohort,
    markers: np.ndarray,
    *,
    ref: np.ndarray,
    alt: np.ndarray,
    in_panel: np.ndarray,
    n_missing_variants: int,
    n_hwe_variants: int,
    batch: str | None,
    batch_fraction: float,
    rng: np.random.Generator,
) -> SiteCalls:
    """Turn a cohort's true haplotypes into array calls with errors and injected failures.

    Parameters
    ----------
    cohort
        The site's cohort (its ``rows`` must contain ``markers``).
    markers
        Variant indices on the site's array, increasing.
    ref, alt
        ``(n_variants,)`` true alleles of the whole simulation.
    in_panel
        ``(n_variants,)`` True where the reference panel has the variant.
    n_missing_variants, n_hwe_variants
        Numbers of high-missingness and HWE-failing markers to inject.
    batch
        ``"strand_flipped"``, ``"ref_alt_swapped"`` or None: the allele-coding fault of this site.
    batch_fraction
        Fraction of eligible markers in that batch.
    """
    where = np.searchsorted(cohort.rows, markers)
    dosage = cohort.dosage()[where]
    calls = dosage.astype(np.uint8)
    n_m, n_s = calls.shape

    for idx, contam in cohort.contaminant.items():
        # A DNA mixture: where the two people differ the caller mostly sees both alleles.
        differ = contam[where] != dosage[:, idx]
        hit = differ & (rng.random(n_m) < CONTAMINATION_HET)
        calls[hit, idx] = 1

    # Genotype errors first (a wrong call), then missingness (no call) on top.
    err = rng.random((n_m, n_s)) < ERROR_RATE
    calls[err] = (calls[err] + rng.integers(1, 3, size=int(err.sum()))) % 3
    missing = rng.random((n_m, n_s)) < MISSINGNESS
    for i, s in enumerate(cohort.samples):
        if s.qc == "low_call_rate":
            missing[:, i] |= rng.random(n_m) < LOW_CALL_MISSINGNESS
    calls[missing] = MISSING

    freq = dosage.mean(axis=1) / 2.0
    maf = np.minimum(freq, 1 - freq)
    taken = np.zeros(n_m, dtype=bool)

    def choose(eligible: np.ndarray, n: int) -> np.ndarray:
        pool = np.flatnonzero(eligible & ~taken)
        chosen = np.sort(rng.choice(pool, size=min(n, pool.shape[0]), replace=False))
        taken[chosen] = True
        return chosen

    injected: dict[str, list[int]] = {}
    hwe = choose(maf >= 0.25, n_hwe_variants)
    for m in hwe:
        het = np.flatnonzero(calls[m] == 1)
        flip = het[rng.random(het.shape[0]) < HWE_HET_TO_HOM]
        calls[m, flip] = np.where(rng.random(flip.shape[0]) < 0.5, 0, 2)
    injected["hwe_failure"] = markers[hwe].tolist()
    bad_miss = choose(maf >= 0.05, n_missing_variants)
    for m in bad_miss:
        calls[m, rng.random(n_s) < BAD_VARIANT_MISSINGNESS] = MISSING
    injected["high_missingness"] = markers[bad_miss].tolist()

    site_ref, site_alt = ref[markers].copy(), alt[markers].copy()
    if batch is not None:
        # Only non-palindromic markers the panel has: a flipped A/T SNP is indistinguishable
        # from a swap, and a marker missing from the panel cannot be realigned at all.
        eligible = ~is_palindromic(site_ref, site_alt) & (maf >= 0.01) & in_panel[markers]
        chosen = choose(eligible, round(batch_fraction * float(eligible.sum())))
        if batch == "strand_flipped":
            site_ref[chosen] = complement(site_ref[chosen])
            site_alt[chosen] = complement(site_alt[chosen])
        elif batch == "ref_alt_swapped":
            site_ref[chosen], site_alt[chosen] = site_alt[chosen], site_ref[chosen].copy()
            sub = calls[chosen]
            calls[chosen] = np.where(sub == MISSING, MISSING, 2 - sub.astype(np.int8)).astype(
                np.uint8
            )
        injected[batch] = markers[chosen].tolist()
    return SiteCalls(rows=markers, ref=site_ref, alt=site_alt, calls=calls, injected=injected)
