"""Manhattan and QQ plots of meta-analysis p-values (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.fileio import atomic_write

from snakemake_fedgen.sumstats.columns import CHROM_LABELS

# Points below this -log10(p) are thinned: they are millions and all look the same.
_THIN_BELOW = 2.0
_MAX_THIN_POINTS = 60_000
_GENOME_WIDE = -np.log10(5e-8)


def _figure(size: tuple[float, float]):
    """A figure drawn by the Agg backend, without pyplot's global state (and import time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    """Save a figure as PNG at ``path``, atomically (nothing is left there on an error)."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")


def _thin(neg_log10_p: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices to draw: every point above the thinning line, a fixed sample below it."""
    low = np.flatnonzero(neg_log10_p < _THIN_BELOW)
    high = np.flatnonzero(~(neg_log10_p < _THIN_BELOW))
    if len(low) > _MAX_THIN_POINTS:
        low = np.random.default_rng(seed).choice(low, _MAX_THIN_POINTS, replace=False)
    return np.sort(np.concatenate([low, high]))


def manhattan(
    path: Path,
    *,
    chrom: np.ndarray,
    pos: np.ndarray,
    neg_log10_p: np.ndarray,
    title: str = "Meta-analysis",
) -> None:
    """Draw a Manhattan plot.

    Parameters
    ----------
    path : Path
        PNG to write.
    chrom, pos, neg_log10_p : arrays, shape (variants,)
        Chromosome codes (1-25), 1-based positions and -log10 p-values.
    title : str
        Plot title (exact mode draws its pooled fit with this code too).
    """
    keep = np.isfinite(neg_log10_p)
    chrom, pos, y = chrom[keep], pos[keep], neg_log10_p[keep]
    idx = _thin(y)
    chrom, pos, y = chrom[idx], pos[idx], y[idx]
    fig = _figure((12, 4.5))
    ax = fig.subplots()
    offset = 0.0
    ticks, labels = [], []
    for i, code in enumerate(np.unique(chrom)):
        sel = chrom == code
        x = pos[sel].astype(np.float64)
        lo, hi = x.min(), x.max()
        ax.scatter(
            offset + x - lo,
            y[sel],
            s=3,
            color=("#1f4e79" if i % 2 == 0 else "#6fa8dc"),
            rasterized=True,
            linewidths=0,
        )
        ticks.append(offset + (hi - lo) / 2)
        labels.append(CHROM_LABELS[int(code)])
        offset += (hi - lo) + max(1.0, (hi - lo) * 0.02) + 1e6
    ax.axhline(_GENOME_WIDE, color="#c00000", linewidth=0.8, linestyle="--")
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(r"$-\log_{10}(p)$")
    ax.set_ylim(bottom=0, top=max(float(y.max()) if len(y) else 0.0, _GENOME_WIDE) * 1.08)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def qq(path: Path, *, neg_log10_p: np.ndarray, lambda_gc: float | None = None) -> None:
    """Draw a QQ plot of observed against expected -log10 p under the null.

    Parameters
    ----------
    path : Path
        PNG to write.
    neg_log10_p : array, shape (variants,)
        Observed -log10 p-values.
    lambda_gc : float, optional
        Genomic-control lambda to print on the plot.
    """
    obs = np.sort(neg_log10_p[np.isfinite(neg_log10_p)])[::-1]
    m = len(obs)
    expected = -np.log10((np.arange(1, m + 1) - 0.5) / max(m, 1))
    idx = _thin(obs)
    fig = _figure((5, 5))
    ax = fig.subplots()
    ax.scatter(expected[idx], obs[idx], s=4, color="#1f4e79", rasterized=True, linewidths=0)
    top = float(expected.max()) if m else 1.0
    ax.plot([0, top], [0, top], color="#c00000", linewidth=0.8)
    ax.set_xlabel(r"expected $-\log_{10}(p)$")
    ax.set_ylabel(r"observed $-\log_{10}(p)$")
    if lambda_gc is not None and np.isfinite(lambda_gc):
        ax.set_title(rf"QQ plot ($\lambda_{{GC}}$ = {lambda_gc:.3f}, {m:,} variants)")
    fig.tight_layout()
    _save(fig, path)


__all__ = ["manhattan", "qq"]
