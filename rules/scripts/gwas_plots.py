"""Manhattan and QQ plots of a meta-analysis (GWAS-SSF table), for the Snakemake report."""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats


def neg_log10_p(table: pd.DataFrame) -> np.ndarray:
    """-log10 p from neg_log_10_p_value if present (finite at any z), else from p_value."""
    if "neg_log_10_p_value" in table:
        return table["neg_log_10_p_value"].to_numpy(dtype=float)
    return -np.log10(table["p_value"].to_numpy(dtype=float))


def manhattan(table: pd.DataFrame, path: str, *, threshold: float, title: str) -> None:
    """One point per variant, chromosomes side by side, genome-wide line at ``threshold``."""
    chrom = table["chromosome"].astype(str)
    order = sorted(chrom.unique(), key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else c))
    fig, ax = plt.subplots(figsize=(10, 4))
    offset, ticks = 0, []
    for i, c in enumerate(order):
        part = table[chrom == c]
        x = part["base_pair_location"].to_numpy(dtype=float)
        if len(order) > 1:
            x = x - x.min() + offset
        ax.scatter(x / 1e6, part["_mlog10p"], s=4, color=("#1f4e79", "#7fa7d1")[i % 2])
        ticks.append(((x.min() + x.max()) / 2e6, c))
        offset = x.max() + 1e6
    ax.axhline(-np.log10(threshold), color="#c0392b", linestyle="--", linewidth=1)
    if len(order) > 1:
        ax.set_xticks([t for t, _ in ticks], [c for _, c in ticks])
        ax.set_xlabel("chromosome")
    else:
        ax.set_xlabel(f"chromosome {order[0]} position (Mb)")
    ax.set_ylabel("-log10 p")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def qq(table: pd.DataFrame, path: str, *, title: str) -> None:
    """Observed against expected -log10 p, with the genomic inflation factor lambda."""
    observed = np.sort(table["_mlog10p"].to_numpy())[::-1]
    n = observed.size
    expected = -np.log10((np.arange(1, n + 1) - 0.5) / n)
    chi2 = stats.chi2.isf(np.power(10.0, -observed), 1)
    lam = float(np.median(chi2) / stats.chi2.ppf(0.5, 1)) if n else float("nan")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(expected, observed, s=4, color="#1f4e79")
    top = max(expected.max(initial=1), 1)
    ax.plot([0, top], [0, top], color="#c0392b", linewidth=1)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    ax.set_title(f"{title} (lambda = {lam:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(smk) -> None:
    table = pd.read_csv(smk.input.meta, sep="\t", comment=None)
    table["_mlog10p"] = neg_log10_p(table)
    table = table[np.isfinite(table["_mlog10p"])]
    title = f"{smk.wildcards.trait}: meta-analysis of {len(table)} variants"
    manhattan(table, smk.output.manhattan, threshold=smk.params.threshold, title=title)
    qq(table, smk.output.qq, title=smk.wildcards.trait)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stderr = log
        main(snakemake)  # noqa: F821
