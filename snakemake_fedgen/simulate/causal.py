"""Causal variants: which variants drive the traits, and how strongly."""

from __future__ import annotations

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.simulate import genomes as gen
from snakemake_fedgen.simulate.phenotypes import CausalVariant, effect_sizes
from snakemake_fedgen.simulate.scales import Scale

#: Variance shares of the two weaker causal variants (the strong one's comes from the scale).
WEAK_SHARES = (0.015, 0.008)
#: Array markers within this distance (same locus) are candidate tags of a causal variant.
TAG_WINDOW_BP = 100_000
MIN_CAUSAL_SPACING_BP = 150_000


def _max_r2(x: np.ndarray, ys: np.ndarray) -> float:
    """Largest squared correlation between dosage vector ``x`` and the rows of ``ys``."""
    if ys.shape[0] == 0:
        return 0.0
    x = x - x.mean()
    y = ys - ys.mean(axis=1, keepdims=True)
    denom = np.sqrt((x * x).sum() * (y * y).sum(axis=1))
    r = np.divide(y @ x, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(np.max(r * r))


def choose_causal(
    g: gen.Genomes,
    *,
    panel_poly: np.ndarray,
    backbone: np.ndarray,
    site_cols: dict[str, np.ndarray],
    scale: Scale,
    rng: np.random.Generator,
) -> tuple[list[CausalVariant], dict[int, float]]:
    """Pick one strong and two weaker causal variants and give them effects.

    Candidates are panel variants off the array, not palindromic, in a locus away from its
    edges; the strong one is common at every site, and each is preferably tagged by an array
    marker (r2 >= 0.8 / 0.6) so imputation can recover it. With several chromosomes each
    variant is drawn from a chromosome holding none yet, while any is left (the strong one
    from any). Returns the variants and their best tag r2.
    """
    all_cols = np.sort(np.concatenate(list(site_cols.values())))
    on_array = np.zeros(g.n_variants, dtype=bool)
    on_array[backbone] = True
    base = panel_poly & ~on_array & ~gen.is_palindromic(g.ref, g.alt)
    site_maf = np.stack(
        [np.minimum(f, 1 - f) for f in (gen.row_mean(g.haps, c) for c in site_cols.values())]
    ).min(axis=0)
    pooled = gen.row_mean(g.haps, all_cols)
    pooled_maf = np.minimum(pooled, 1 - pooled)
    # In a long locus and away from its edges, so imputation has flanking markers.
    offset = g.pos - g.locus_start[np.maximum(g.locus, 0)]
    edge = (g.locus >= 0) & (offset > 0.2 * scale.locus_bp) & (offset < 0.8 * scale.locus_bp)
    cache: dict[int, np.ndarray] = {}  # pooled founder dosages, only for rows looked at

    def dosage(rows: np.ndarray) -> np.ndarray:
        for r in rows.tolist():
            if r not in cache:
                h = g.haps[r, all_cols]
                cache[r] = (h[0::2] + h[1::2]).astype(float)
        return np.array([cache[r] for r in rows.tolist()])

    chosen: list[int] = []
    r2: dict[int, float] = {}
    specs = [(0.15, 0.8, scale.h2_strong), (0.05, 0.6, WEAK_SHARES[0]), (0.05, 0.6, WEAK_SHARES[1])]
    for k, (min_maf, min_r2, _) in enumerate(specs):
        ok = base & edge & ((site_maf if k == 0 else pooled_maf) >= min_maf)
        for c in chosen:
            ok &= (g.chrom != g.chrom[c]) | (np.abs(g.pos - g.pos[c]) >= MIN_CAUSAL_SPACING_BP)
        elsewhere = ok & ~np.isin(g.chrom, g.chrom[chosen])
        if chosen and elsewhere.any():
            ok = elsewhere  # spread over the chromosomes (never the case with one chromosome)
        candidates = rng.permutation(np.flatnonzero(ok))[:400]
        best, best_r2 = None, -1.0
        for c in candidates.tolist():
            near = backbone[
                (g.locus[backbone] == g.locus[c])
                & (np.abs(g.pos[backbone] - g.pos[c]) <= TAG_WINDOW_BP)
            ]
            d = dosage(np.concatenate([[c], near]).astype(np.int64))
            value = _max_r2(d[0], d[1:])
            if value > best_r2:
                best, best_r2 = c, value
            if value >= min_r2:
                break
        if best is None:
            raise SimulationError(
                f"no candidate causal variant with MAF >= {min_maf}; the region is too small"
            )
        chosen.append(best)
        r2[best] = best_r2
    freqs = [float(pooled[c]) for c in chosen]
    shares = [s[2] for s in specs]
    betas = effect_sizes(freqs, shares, rng=rng)
    causal = [
        CausalVariant(row=c, beta=b, variance_explained=h)
        for c, b, h in zip(chosen, betas, shares, strict=True)
    ]
    return sorted(causal, key=lambda c: c.row), r2
