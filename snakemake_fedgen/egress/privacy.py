"""Differential privacy for released summary statistics: the Gaussian mechanism and a budget.

Optional (node config ``differential_privacy``). The node adds the noise itself, after the task
ended and before the airlock, to every summary-statistics table it releases, and charges the
release to a per-dataset (epsilon, delta) budget kept in its task database.

What is released, per variant, for a quantitative trait analysed as standardised and bounded
by ``trait_bound`` standard deviations (an assumption the site states, see below):

* ``effect_allele_frequency`` + N(0, (s / n)^2): one person moves a frequency over 2n alleles
  by at most 1/n;
* ``beta`` + N(0, (s * D_beta)^2) with ``D_beta = 4 * trait_bound / (n * v0)``: one person's
  share of the covariance, |g - mean(g)| * |y - mean(y)| <= 2 * 2 * trait_bound, over the
  genotype variance, at least ``v0 = 2 f0 (1 - f0)`` for variants whose (noisy) minor allele
  frequency is at least ``min_maf = f0``; rows under it are withheld and counted;
* ``standard_error`` and ``p_value`` recomputed from the noisy values and public ``n``
  (post-processing costs nothing): se = sqrt(1 / (n * 2 f (1 - f)) + (s * D_beta)^2), so a
  meta-analysis stays calibrated; other numeric columns become NA.

All m released rows are one Gaussian mechanism on a vector of 2m coordinates scaled to unit
sensitivity: its L2 sensitivity is sqrt(2m) and ``s`` is the analytic Gaussian mechanism's
noise for that sensitivity (Balle and Wang, ICML 2018, Theorem 8; :func:`gaussian_sigma`).
Successive releases of one dataset add up (basic sequential composition,
:class:`PrivacyLedger`). The guarantee is as good as the bound: a trait with outliers beyond
``trait_bound`` SDs that the workflow did not clip has a larger sensitivity than assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

__all__ = [
    "DpRelease",
    "PrivacySettings",
    "gaussian_delta",
    "gaussian_sigma",
    "privatise_rows",
]


def gaussian_delta(sigma: float, *, epsilon: float, sensitivity: float) -> float:
    """The smallest delta for which N(0, sigma^2) noise is (epsilon, delta)-DP at this L2
    sensitivity (Balle and Wang 2018, Theorem 8)."""
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    # Phi(a - b) - e^eps Phi(-a - b), the second term in log space (e^eps can be large).
    first = stats.norm.cdf(a - b)
    second = math.exp(epsilon + stats.norm.logcdf(-a - b))
    return float(max(0.0, first - second))


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """The least noise standard deviation of the analytic Gaussian mechanism.

    Solves :func:`gaussian_delta` = ``delta`` for sigma (it falls as sigma grows).

    Raises
    ------
    ValueError
        epsilon <= 0, delta not in (0, 1) or sensitivity <= 0.
    """
    if not (epsilon > 0 and 0 < delta < 1 and sensitivity > 0):
        raise ValueError(
            f"need epsilon > 0, 0 < delta < 1, sensitivity > 0; got {epsilon}, {delta}, "
            f"{sensitivity}"
        )
    lo, hi = sensitivity * 1e-6, sensitivity
    while gaussian_delta(hi, epsilon=epsilon, sensitivity=sensitivity) > delta:
        hi *= 2.0
    while gaussian_delta(lo, epsilon=epsilon, sensitivity=sensitivity) <= delta:
        lo /= 2.0
    return float(
        optimize.brentq(
            lambda s: gaussian_delta(s, epsilon=epsilon, sensitivity=sensitivity) - delta,
            lo,
            hi,
            xtol=1e-12 * sensitivity,
            rtol=1e-12,
        )
    )


@dataclass(frozen=True)
class PrivacySettings:
    """A site's differential-privacy settings (node config ``differential_privacy``)."""

    epsilon: float  # per release
    delta: float  # per release
    total_epsilon: float  # per dataset, over all releases
    total_delta: float
    trait_bound: float = 3.0  # trait in SDs, as assumed by the sensitivity
    min_maf: float = 0.05


@dataclass(frozen=True)
class DpRelease:
    """What :func:`privatise_rows` did: rows in and out, the unit noise scale."""

    rows: int
    released: int
    withheld_maf: int
    sigma_unit: float


def privatise_rows(
    beta: np.ndarray,
    eaf: np.ndarray,
    n: np.ndarray,
    settings: PrivacySettings,
    rng: np.random.Generator,
    *,
    min_mac: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, DpRelease]:
    """Noisy (beta, eaf, se, p) of the released rows and the mask of rows released.

    Parameters
    ----------
    beta, eaf, n : arrays of one table's rows (n per row).
    settings : the site's epsilon, delta, trait bound and MAF floor.
    rng : the node's random generator (cryptographic seeding in production).
    min_mac : rows whose noisy minor allele count ``2 n maf`` is below it are withheld too (the
        airlock's rule, applied to what is released).
    """
    m = int(beta.size)
    sigma = gaussian_sigma(
        epsilon=settings.epsilon, delta=settings.delta, sensitivity=math.sqrt(2.0 * max(m, 1))
    )
    f0 = settings.min_maf
    v0 = 2.0 * f0 * (1.0 - f0)
    n = np.maximum(n.astype(float) - 1.0, 1.0)  # the neighbouring table may have one fewer
    d_beta = 4.0 * settings.trait_bound / (n * v0)
    d_eaf = 1.0 / n
    noisy_eaf = np.clip(eaf + rng.normal(0.0, sigma * d_eaf), 0.0, 1.0)
    noisy_beta = beta + rng.normal(0.0, sigma * d_beta)
    maf = np.minimum(noisy_eaf, 1.0 - noisy_eaf)
    keep = (maf >= f0) & (2.0 * (n + 1.0) * maf >= min_mac)
    het = np.maximum(2.0 * noisy_eaf * (1.0 - noisy_eaf), v0)
    se = np.sqrt(1.0 / (n * het) + (sigma * d_beta) ** 2)
    p = 2.0 * stats.norm.sf(np.abs(noisy_beta / se))
    report = DpRelease(m, int(keep.sum()), int(m - keep.sum()), float(sigma))
    return noisy_beta, noisy_eaf, se, p, keep, report


def basic_composition(spent: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Total (epsilon, delta) of releases under basic sequential composition."""
    return float(sum(e for e, _ in spent)), float(sum(d for _, d in spent))
