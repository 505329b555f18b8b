"""Meta-analysis statistics, vectorised over variants.

Every function takes per-row arrays (one row per study and variant) plus ``variant``, the index
of the variant each row belongs to, and returns per-variant arrays of length ``n_variants``.
Sums use :func:`numpy.bincount`, so a chromosome of millions of rows costs a few passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Median of the chi-squared distribution with one degree of freedom (genomic control).
CHI2_MEDIAN_1DF = 0.4549364231195728

_LN10 = np.log(10.0)
_SQRT1_2 = np.sqrt(0.5)
# Beyond this |z| the two-sided p (about 1e-280) nears the smallest normal double.
_ERFC_SAFE_Z = 35.0


def log10_p_from_z(z: np.ndarray) -> np.ndarray:
    """Two-sided log10 p-value of standard normal z scores, exact in log space.

    Never -inf for finite z (z = 1000 gives about -217147), so p is never 0.

    Parameters
    ----------
    z : array of float
        Z scores; NaN stays NaN.
    """
    from scipy.special import erfc, log_ndtr

    z = np.abs(np.asarray(z, dtype=np.float64))
    # p = erfc(|z|/sqrt 2) keeps full relative precision until it nears the smallest double
    # and costs a fraction of log_ndtr, which takes over in the far tail.
    with np.errstate(divide="ignore"):
        out = np.log10(erfc(z * _SQRT1_2))
    far = z > _ERFC_SAFE_Z
    if far.any():
        out[far] = (np.log(2.0) + log_ndtr(-z[far])) / _LN10
    return out


def log10_chi2_sf(q: np.ndarray, df: np.ndarray) -> np.ndarray:
    """log10 of the chi-squared upper tail ``P(X > q)`` with ``df`` degrees of freedom.

    NaN where ``df < 1``. Uses the fast regularised gamma function and falls back to
    ``scipy.stats.chi2.logsf`` only where the tail underflows a double.
    """
    from scipy.special import chdtrc

    q = np.asarray(q, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    out = np.full(q.shape, np.nan)
    ok = df >= 1
    if ok.any():
        with np.errstate(divide="ignore"):
            out[ok] = np.log10(chdtrc(df[ok], np.maximum(q[ok], 0.0)))
        tiny = ok & ~(out > -290)
        if tiny.any():
            out[tiny] = _log_upper_gamma_tail(df[tiny] / 2.0, q[tiny] / 2.0) / _LN10
    return out


def _log_upper_gamma_tail(s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log Q(s, x) (regularised upper incomplete gamma) for x much larger than s.

    Asymptotic series ``x^(s-1) e^-x / Gamma(s) * sum_n (s-1)...(s-n) / x^n``, used only where
    Q underflows a double (x > 300), so a dozen terms are far below double precision.
    """
    from scipy.special import gammaln

    term = np.ones_like(x)
    total = np.ones_like(x)
    for n in range(1, 13):
        term = term * (s - n) / x
        total = total + term
    return (s - 1) * np.log(x) - x - gammaln(s) + np.log(total)


def _sum(variant: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(variant, weights=weights, minlength=n)


@dataclass
class FixedEffects:
    """Per-variant inverse-variance fixed-effect results (arrays of length n_variants)."""

    beta: np.ndarray
    se: np.ndarray
    z: np.ndarray
    q: np.ndarray
    df: np.ndarray
    i2: np.ndarray
    sum_w: np.ndarray
    sum_w2: np.ndarray


def fixed_effects(
    variant: np.ndarray, beta: np.ndarray, se: np.ndarray, n_variants: int
) -> FixedEffects:
    """Inverse-variance weighted fixed-effect meta-analysis with Cochran's Q and I^2.

    Parameters
    ----------
    variant : int array, shape (rows,)
        Variant index of each row.
    beta, se : float arrays, shape (rows,)
        Aligned effect sizes and standard errors.
    n_variants : int
        Number of variants.

    Returns
    -------
    FixedEffects
        ``I^2 = max(0, (Q - df) / Q)``, NaN for a single study (as GWAMA prints).
    """
    w = 1.0 / (se * se)
    sum_w = _sum(variant, w, n_variants)
    sum_wb = _sum(variant, w * beta, n_variants)
    k = np.bincount(variant, minlength=n_variants)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = sum_wb / sum_w
        est_se = 1.0 / np.sqrt(sum_w)
        resid = beta - est[variant]
        q = _sum(variant, w * resid * resid, n_variants)
        df = (k - 1).astype(np.float64)
        i2 = np.where(q > df, (q - df) / q, 0.0)
        i2[k < 2] = np.nan
    return FixedEffects(
        est, est_se, est / est_se, q, df, i2, sum_w, _sum(variant, w * w, n_variants)
    )


@dataclass
class RandomEffects:
    """Per-variant DerSimonian-Laird random-effects results."""

    beta: np.ndarray
    se: np.ndarray
    z: np.ndarray
    tau2: np.ndarray


def random_effects(
    variant: np.ndarray, beta: np.ndarray, se: np.ndarray, fixed: FixedEffects
) -> RandomEffects:
    """DerSimonian-Laird random-effects meta-analysis.

    ``tau^2 = max(0, (Q - df) / (sum w - sum w^2 / sum w))``; weights ``1 / (se^2 + tau^2)``.
    """
    n = len(fixed.beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = fixed.sum_w - fixed.sum_w2 / fixed.sum_w
        tau2 = np.where((fixed.q > fixed.df) & (denom > 0), (fixed.q - fixed.df) / denom, 0.0)
        w = 1.0 / (se * se + tau2[variant])
        sum_w = _sum(variant, w, n)
        est = _sum(variant, w * beta, n) / sum_w
        est_se = 1.0 / np.sqrt(sum_w)
    return RandomEffects(est, est_se, est / est_se, tau2)


def samplesize_z(
    variant: np.ndarray, beta: np.ndarray, se: np.ndarray, n: np.ndarray, n_variants: int
) -> np.ndarray:
    """METAL's SAMPLESIZE scheme: ``Z = sum(sqrt(N_i) z_i) / sqrt(sum N_i)``.

    ``n`` is each study's (effective) sample size; ``z_i = beta_i / se_i`` carries the aligned
    direction of effect.
    """
    z_i = beta / se
    with np.errstate(divide="ignore", invalid="ignore"):
        return _sum(variant, np.sqrt(n) * z_i, n_variants) / np.sqrt(_sum(variant, n, n_variants))


def gc_lambda(z: np.ndarray) -> float:
    """Genomic-control inflation factor ``median(z^2) / 0.4549364`` (NaN for no data)."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.isfinite(z)]
    if len(z) == 0:
        return float("nan")
    return float(np.median(z * z) / CHI2_MEDIAN_1DF)
