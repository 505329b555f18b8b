"""One QC table for the report: each site's egress counts side by side (suppressed as '<k')."""

import sys

import pandas as pd


def qc_table(paths: list[str], sites: list[str]) -> pd.DataFrame:
    """Rows (step, quantity), one column per site, in the order the steps ran."""
    merged: pd.DataFrame | None = None
    for site, path in zip(sites, paths, strict=True):
        table = pd.read_csv(path, sep="\t", dtype=str).rename(columns={"count": site})
        merged = (
            table
            if merged is None
            else merged.merge(table, on=["step", "quantity"], how="outer", sort=False)
        )
    assert merged is not None
    return merged.fillna("withheld")


def main(smk) -> None:
    table = qc_table(list(smk.input.counts), list(smk.params.sites))
    table.to_csv(smk.output.table, sep="\t", index=False)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stderr = log
        main(snakemake)  # noqa: F821
