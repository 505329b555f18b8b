"""The strongest associations of a meta-analysis, for the report and the demo's summary."""

import gzip
import itertools
import sys

import numpy as np
import pandas as pd


def top_hits(path: str, *, n: int) -> pd.DataFrame:
    """The ``n`` variants with the smallest p-values (ties by position)."""
    # The exact-mode results start with `## ...` notes (fit details); meta results have none.
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        notes = sum(1 for _ in itertools.takewhile(lambda line: line.startswith("##"), f))
    table = pd.read_csv(path, sep="\t", skiprows=notes)
    if "neg_log_10_p_value" in table:
        mlog10p = table["neg_log_10_p_value"].astype(float)
    else:
        mlog10p = -np.log10(table["p_value"].astype(float))
    table = table.assign(neg_log_10_p_value=mlog10p)
    return table.sort_values(
        ["neg_log_10_p_value", "chromosome", "base_pair_location"],
        ascending=[False, True, True],
    ).head(n)


def main(smk) -> None:
    hits = top_hits(smk.input.meta, n=smk.params.n)
    hits.to_csv(smk.output.top, sep="\t", index=False)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stderr = log
        main(snakemake)  # noqa: F821
