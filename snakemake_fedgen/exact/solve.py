"""Centre side of exact mode: the pooled model per variant from summed site aggregates.

For ``y ~ C + g`` with ``A = C'C``, ``b = C'g``, the effect of ``g`` follows from the Schur
complement of ``A`` in the normal equations::

    s    = g'g - b' A^-1 b                       (residual variance of g given C, times n)
    beta = (g'y - b' A^-1 C'y) / s
    RSS  = (y'y - C'y' A^-1 C'y) - beta^2 s
    se   = sqrt(RSS / (n - k - 1) / s)

``A`` is factorised once (Cholesky, after scaling to unit diagonal) and every variant is a
column of one triangular solve, so the centre's cost is O(m k^2).

Every variant a site sent is accounted for (:class:`VariantCounts`): solved, or not solved
because it is absent at some site (which one, for plain aggregates) or singular in the pooled
fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import HarmonisationError

from snakemake_fedgen.exact.aggregates import SiteAggregates, atomic_write_text

__all__ = [
    "PooledResult",
    "VariantCounts",
    "model_columns",
    "solve",
    "sum_aggregates",
    "t_logsf",
    "variant_counts",
    "write_results",
    "write_variant_counts",
]

#: A variant whose variance left after adjusting for C is below this fraction of g'g is
#: collinear with the covariates (e.g. monomorphic): its statistics are NA.
COLLINEAR_TOL = 1e-8


@dataclass
class PooledResult:
    """Per-variant pooled estimates (shape (m,) arrays; NaN where not estimable)."""

    chrom: np.ndarray
    pos: np.ndarray
    vid: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    n: int
    df: int
    alt_freq: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    neg_log10_p: np.ndarray
    columns_used: tuple[str, ...]


def sum_aggregates(aggs: Sequence[SiteAggregates]) -> SiteAggregates:
    """Add site aggregates, keeping the variants present at every site.

    Raises
    ------
    HarmonisationError
        Sites disagree about the trait, the site order or the columns of ``C``, or a site
        appears twice.
    """
    if not aggs:
        raise HarmonisationError("no site aggregates given")
    first = aggs[0]
    seen: set[str] = set()
    for agg in aggs:
        for attr in ("trait", "sites", "columns"):
            if getattr(agg, attr) != getattr(first, attr):
                raise HarmonisationError(
                    f"site {agg.site} has {attr}={getattr(agg, attr)!r} but site {first.site} "
                    f"has {getattr(first, attr)!r}; all sites must run `fedgen exact aggregate` "
                    "with the same phenotype, covariates and registry site order"
                )
        if agg.site in seen:
            raise HarmonisationError(f"site {agg.site} is given twice")
        seen.add(agg.site)
    # One site's key set at a time: the union, the intersection and each site's size tell
    # every site's absences (the union minus the site's own variants).
    union: set[str] = set()
    common: set[str] = set()
    held: list[int] = []
    for i, agg in enumerate(aggs):
        keys = set(agg.variant_keys())
        held.append(len(keys))
        union |= keys
        common = keys if i == 0 else common & keys
        del keys
    order = [i for i, key in enumerate(first.variant_keys()) if key in common]
    del common
    total = first.subset(np.array(order, dtype=np.int64))
    total.gtg = total.gtg.copy()
    total.gty = total.gty.copy()
    total.ctg = total.ctg.copy()
    total.cty = total.cty.copy()
    total.ctc = total.ctc.copy()
    total_keys = total.variant_keys()
    for agg in aggs[1:]:
        pos = {key: i for i, key in enumerate(agg.variant_keys())}
        idx = np.array([pos[key] for key in total_keys], dtype=np.int64)
        total.n += agg.n
        total.yty += agg.yty
        total.cty += agg.cty
        total.ctc += agg.ctc
        total.gtg += agg.gtg[idx]
        total.gty += agg.gty[idx]
        total.ctg += agg.ctg[idx]
    total.site = "+".join(a.site for a in aggs)
    total.meta = {
        "sites_summed": ",".join(a.site for a in aggs),
        "variants_not_at_every_site": str(len(union) - len(order)),
        "variants_seen_at_any_site": str(len(union)),
        "variants_absent_at_site": ",".join(
            f"{a.site}={len(union) - n}" for a, n in zip(aggs, held, strict=True)
        ),
    }
    return total


def model_columns(agg: SiteAggregates) -> np.ndarray:
    """Indices of the columns of ``C`` that enter the pooled model.

    A site indicator whose column is all zero (the site did not take part, e.g. after a dropout
    rerun) is dropped. If the reference site (first in the order) did not take part, the
    remaining indicators add up to the intercept, so the first of them is dropped too.
    """
    diag = np.diag(agg.ctc)
    keep = [i for i in range(agg.k) if diag[i] > 0]
    indicators = [i for i in keep if agg.columns[i].startswith("site_")]
    if indicators and math.isclose(sum(diag[i] for i in indicators), agg.n, rel_tol=1e-12):
        keep.remove(indicators[0])
    return np.array(keep, dtype=np.int64)


def t_logsf(t: np.ndarray, df: float) -> np.ndarray:
    """``log P(T_df > t)`` that stays finite far in the tail (scipy's underflows to -inf).

    Uses ``P(T > t) = I_x(df/2, 1/2) / 2`` with ``x = df / (df + t^2)`` and the series
    ``I_x(a, b) = x^a (1-x)^b / (a B(a, b)) 2F1(a + b, 1; a + 1; x)``, in logs, wherever
    scipy's value is below ~1e-290.
    """
    from scipy import special, stats

    t = np.asarray(t, dtype=np.float64)
    out = stats.t.logsf(t, df)
    tail = np.isfinite(t) & (t > 0) & ~(out > -667.0)
    if tail.any():
        a, b = df / 2.0, 0.5
        x = df / (df + t[tail] ** 2)
        out[tail] = (
            math.log(0.5)
            + a * np.log(x)
            + b * np.log1p(-x)
            - math.log(a)
            - special.betaln(a, b)
            + np.log(special.hyp2f1(a + b, 1.0, a + 1.0, x))
        )
    return out


def solve(agg: SiteAggregates) -> PooledResult:
    """Solve the pooled linear model ``y ~ C + g`` for every variant of ``agg``.

    Parameters
    ----------
    agg : SiteAggregates
        Aggregates summed over sites (:func:`sum_aggregates` or the secure sum).

    Returns
    -------
    PooledResult
        ``beta`` is the effect of one ALT allele; ``p`` is two-sided from the t distribution
        with ``n - k - 1`` degrees of freedom; ``neg_log10_p`` is computed in log space so it
        stays finite when ``p`` underflows.
    """
    from scipy import linalg

    cols = model_columns(agg)
    a = agg.ctc[np.ix_(cols, cols)]
    b = agg.ctg[:, cols]
    cy = agg.cty[cols]
    k = len(cols)
    df = agg.n - k - 1
    if df < 1:
        raise HarmonisationError(
            f"n={agg.n} samples cannot fit {k} covariate columns plus the variant; need "
            f"n > k + 1 (n={agg.n}, k={k})"
        )
    # Scale C to unit diagonal before factorising: covariates such as age have large means
    # and make C'C badly scaled otherwise.
    d = np.sqrt(np.diag(a))
    a_s = a / np.outer(d, d)
    b_s = b / d
    cy_s = cy / d
    try:
        factor = linalg.cho_factor(a_s, lower=True)
    except linalg.LinAlgError as exc:
        raise HarmonisationError(
            f"C'C is singular for columns {', '.join(agg.columns[i] for i in cols)}: a "
            "covariate is constant or collinear across the pooled samples; drop it"
        ) from exc
    w = linalg.cho_solve(factor, b_s.T)  # (k, m)
    u = linalg.cho_solve(factor, cy_s)  # (k,)
    s = agg.gtg - np.einsum("mk,km->m", b_s, w)
    gy_adj = agg.gty - b_s @ u
    rss0 = agg.yty - cy_s @ u
    ok = s > COLLINEAR_TOL * np.maximum(agg.gtg, np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(ok, gy_adj / s, np.nan)
        rss = rss0 - beta * gy_adj
        se = np.sqrt(rss / df / s)
        t = beta / se
    logp = t_logsf(np.abs(t), df) + math.log(2.0)
    p = np.exp(logp)
    return PooledResult(
        chrom=agg.chrom,
        pos=agg.pos,
        vid=agg.vid,
        ref=agg.ref,
        alt=agg.alt,
        n=agg.n,
        df=df,
        alt_freq=agg.ctg[:, 0] / (2.0 * agg.n),
        beta=beta,
        se=se,
        t=t,
        p=p,
        neg_log10_p=-logp / math.log(10.0),
        columns_used=tuple(agg.columns[i] for i in cols),
    )


@dataclass(frozen=True)
class VariantCounts:
    """What became of every variant seen at some site.

    ``seen == solved + absent + singular``.

    Attributes
    ----------
    sites : tuple of str
        The sites summed, in order.
    seen : int
        Variants in at least one site's aggregates (for masked uploads: in the shared variant
        list and at one participant or more).
    solved : int
        Variants with a finite pooled beta and standard error.
    absent : int
        Not solved: absent at one site or more (not in its aggregates: not in its genotypes, or
        withheld by its ``min_mac``), so the pooled sums would be partial.
    absent_at_site : dict of str to int, or None
        For each site, the seen variants absent there; a variant absent at two sites counts at
        both. None for masked uploads: secure aggregation hides which site lacks a variant.
    singular : int
        Not solved: at every site, but the pooled fit has no estimate (the dosage is collinear
        with the covariates, e.g. monomorphic in the pooled samples, or leaves no residual).
    """

    sites: tuple[str, ...]
    seen: int
    solved: int
    absent: int
    absent_at_site: dict[str, int] | None
    singular: int

    def summary(self) -> str:
        """One line: solved of seen, and why the others were not."""
        where = ""
        if self.absent_at_site is not None:
            where = " (" + ", ".join(f"{s} {n}" for s, n in self.absent_at_site.items()) + ")"
        elif self.absent:
            where = " (which site: hidden by secure aggregation)"
        return (
            f"{self.solved} of {self.seen} variants seen at any site solved; not solved: "
            f"{self.absent} absent at some site{where}, {self.singular} singular"
        )


def variant_counts(total: SiteAggregates, result: PooledResult) -> VariantCounts:
    """Account for every variant seen at a site: solved, absent at some site, or singular.

    Parameters
    ----------
    total : SiteAggregates
        The sum :func:`sum_aggregates` or :func:`~snakemake_fedgen.exact.secure.unmask_sum`
        returned (its ``meta`` holds the per-site presence counts).
    result : PooledResult
        ``solve(total)``.
    """
    seen = int(total.meta.get("variants_seen_at_any_site", total.m))
    absent_at = None
    listing = total.meta.get("variants_absent_at_site")
    if listing is not None:
        absent_at = {}
        for item in filter(None, listing.split(",")):
            site, _, count = item.rpartition("=")
            absent_at[site] = int(count)
    solved = int(np.count_nonzero(np.isfinite(result.beta) & np.isfinite(result.se)))
    sites = tuple(total.meta.get("sites_summed", total.site.replace("+", ",")).split(","))
    return VariantCounts(
        sites=sites,
        seen=seen,
        solved=solved,
        absent=seen - total.m,
        absent_at_site=absent_at,
        singular=total.m - solved,
    )


def write_variant_counts(counts: VariantCounts, path: str | Path) -> None:
    """Write :class:`VariantCounts` as a TSV (``status site variants``, atomically).

    Rows: ``seen``, ``solved``, ``not_solved_absent`` (site ``all``), one ``absent_at_site``
    per site (``NA`` for masked uploads), ``not_solved_singular`` (site ``all``).
    """
    per_site = counts.absent_at_site
    rows = [
        ("seen", "all", str(counts.seen)),
        ("solved", "all", str(counts.solved)),
        ("not_solved_absent", "all", str(counts.absent)),
        *(
            ("absent_at_site", s, "NA" if per_site is None else str(per_site.get(s, 0)))
            for s in counts.sites
        ),
        ("not_solved_singular", "all", str(counts.singular)),
    ]
    atomic_write_text(Path(path), ["status\tsite\tvariants", *("\t".join(r) for r in rows)])


RESULT_COLUMNS = (
    "chromosome",
    "base_pair_location",
    "variant_id",
    "other_allele",
    "effect_allele",
    "effect_allele_frequency",
    "beta",
    "standard_error",
    "t_statistic",
    "p_value",
    "neg_log_10_p_value",
    "n",
)


def _num(value: float) -> str:
    return "NA" if not math.isfinite(value) else repr(float(value))


def write_results(
    result: PooledResult, path, *, note: str = "", method: str = "exact-linear"
) -> None:
    """Write pooled results as a GWAS-SSF-style TSV (atomically).

    ``method`` ``exact-logistic``: ``beta`` is a log odds ratio and ``t_statistic`` the Wald z.
    """

    def lines() -> Iterator[str]:
        if method == "exact-linear":
            yield f"## fedgen exact-linear: columns {','.join(result.columns_used)}; df={result.df}"
        else:
            yield f"## fedgen {method}: log odds ratios; t_statistic is the Wald z"
        if note:
            yield f"## {note}"
        yield "\t".join(RESULT_COLUMNS)
        for i in range(len(result.beta)):
            yield "\t".join(
                (
                    str(result.chrom[i]),
                    str(result.pos[i]),
                    str(result.vid[i]),
                    str(result.ref[i]),
                    str(result.alt[i]),
                    _num(result.alt_freq[i]),
                    _num(result.beta[i]),
                    _num(result.se[i]),
                    _num(result.t[i]),
                    _num(result.p[i]),
                    _num(result.neg_log10_p[i]),
                    str(result.n),
                )
            )

    atomic_write_text(path, lines())
