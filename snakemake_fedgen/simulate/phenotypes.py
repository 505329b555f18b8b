"""Phenotypes and covariates with known causal variants.

Quantitative trait (arbitrary biomarker units, residual SD 1)::

    qt = 3.0 + site_offset + ancestry_offset + 0.015 * (age - 50) + 0.2 * [female]
         + sum_j beta_j * alt_count_j + e,      e ~ N(0, 1)

Binary trait: a liability with the same causal alleles (``liability_beta = 0.8 * beta``),
covariates and offsets, standard-normal noise, thresholded at the pooled 70th percentile so
about 30% of samples are cases (plink2 coding 1 = control, 2 = case). Duplicate samples are
the same person and carry the original's phenotypes; about 1% of ``qt`` values are missing
(``NA``).

The clinical columns of the table (``ldl sbp smoking diabetes cvd cvd_followup_years``) come
from :mod:`~snakemake_fedgen.simulate.clinical`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from snakemake_fedgen.simulate.cohort import Cohort

if TYPE_CHECKING:
    from snakemake_fedgen.simulate.clinical import SiteClinical

#: Columns after ``bt`` when the table carries the clinical data.
CLINICAL_COLUMNS = ("ldl", "sbp", "smoking", "diabetes", "cvd", "cvd_followup_years")

INTERCEPT = 3.0
AGE_EFFECT = 0.015
FEMALE_EFFECT = 0.2
LIABILITY_SCALE = 0.8
PREVALENCE = 0.30
QT_MISSING = 0.01
ANCESTRY_OFFSET = {"AFR": 0.30, "EUR": 0.0, "ASIA": -0.25, "ADMIX": 0.15}
SITE_OFFSET = {"A": 0.0, "B": 0.20, "C": -0.15}
AGE_MEAN = {"A": 58.0, "B": 50.0, "C": 45.0}


@dataclass
class CausalVariant:
    """A variant with a true effect on both traits (``row`` indexes the simulation's variants)."""

    row: int
    beta: float  # per ALT allele on qt
    variance_explained: float  # share of the non-covariate variance of qt (pooled sites)

    @property
    def liability_beta(self) -> float:
        """Per-ALT-allele effect on the binary trait's liability (noise SD 1)."""
        return LIABILITY_SCALE * self.beta


def effect_sizes(
    freqs: list[float], shares: list[float], *, rng: np.random.Generator
) -> list[float]:
    """Per-allele effects giving each variant its share of the non-covariate variance.

    With noise variance 1, ``beta_j**2 * 2 p_j (1 - p_j) = share_j / (1 - sum(shares))``.
    Signs are random.
    """
    rest = 1.0 - sum(shares)
    out = []
    for p, h in zip(freqs, shares, strict=True):
        size = float(np.sqrt(h / rest / (2 * p * (1 - p))))
        out.append(size if rng.random() < 0.5 else -size)
    return out


@dataclass
class SitePhenotypes:
    """Per-sample phenotypes of one site, in VCF column order."""

    sex: np.ndarray  # 1 = male, 2 = female
    age: np.ndarray  # years, one decimal
    qt: np.ndarray  # float, NaN = missing
    liability: np.ndarray
    bt: np.ndarray | None = None  # 1/2, set by assign_cases


def simulate_phenotypes(
    cohort: Cohort, causal: list[CausalVariant], *, rng: np.random.Generator
) -> SitePhenotypes:
    """Draw covariates and traits for a cohort from its true causal genotypes."""
    n = cohort.n
    sex = rng.integers(1, 3, size=n)
    age = np.clip(rng.normal(AGE_MEAN[cohort.site], 10.0, size=n), 18, 90).round(1)
    dosage = cohort.dosage()
    where = np.searchsorted(cohort.rows, [c.row for c in causal])
    g = dosage[where].astype(float)  # (n_causal, n)
    offset = SITE_OFFSET[cohort.site] + np.array(
        [ANCESTRY_OFFSET[s.population] for s in cohort.samples]
    )
    cov = AGE_EFFECT * (age - 50) + FEMALE_EFFECT * (sex == 2)
    qt_gen = np.array([c.beta for c in causal]) @ g
    liab_gen = np.array([c.liability_beta for c in causal]) @ g
    qt = INTERCEPT + offset + cov + qt_gen + rng.normal(size=n)
    liability = 0.5 * offset + cov + liab_gen + rng.normal(size=n)
    qt[rng.random(n) < QT_MISSING] = np.nan
    # A duplicate is the same person: copy sex, age and traits from the original.
    for i, s in enumerate(cohort.samples):
        if s.kind == "duplicate":
            j = s.partner
            sex[i], age[i], qt[i], liability[i] = sex[j], age[j], qt[j], liability[j]
    return SitePhenotypes(sex=sex, age=age, qt=qt, liability=liability)


def assign_cases(phenos: dict[str, SitePhenotypes]) -> float:
    """Set ``bt`` at every site from a pooled liability threshold; return the threshold."""
    pooled = np.concatenate([p.liability for p in phenos.values()])
    threshold = float(np.quantile(pooled, 1 - PREVALENCE))
    for p in phenos.values():
        p.bt = np.where(p.liability > threshold, 2, 1)
    return threshold


def clinical_fields(c: SiteClinical, i: int) -> list[str]:
    """Person ``i``'s clinical columns as written (the format ``fedgen phenopackets to-table``
    writes too: measurements ``%.6g``, follow-up 2 decimals)."""
    return [
        f"{c.ldl[i]:.6g}",
        f"{c.sbp[i]:.6g}",
        str(c.smoking[i]),
        str(c.diabetes[i]),
        str(c.cvd[i]),
        f"{c.followup[i]:.2f}",
    ]


def phenotype_table(
    cohort: Cohort, pheno: SitePhenotypes, clinical: SiteClinical | None = None
) -> str:
    """Return the plink2 phenotype/covariate file text (``#FID IID sex age qt bt``, then
    :data:`CLINICAL_COLUMNS` when ``clinical`` is given)."""
    extra = CLINICAL_COLUMNS if clinical is not None else ()
    lines = ["\t".join(["#FID", "IID", "sex", "age", "qt", "bt", *extra])]
    for i, s in enumerate(cohort.samples):
        qt = "NA" if np.isnan(pheno.qt[i]) else f"{pheno.qt[i]:.4f}"
        line = f"{s.iid}\t{s.iid}\t{pheno.sex[i]}\t{pheno.age[i]:.1f}\t{qt}\t{pheno.bt[i]}"
        if clinical is not None:
            line += "\t" + "\t".join(clinical_fields(clinical, i))
        lines.append(line)
    return "\n".join(lines) + "\n"
