"""One QC table for the report: each site's egress counts side by side (suppressed as '<k')."""

import sys

import pandas as pd


def qc_table(paths: list[str], sites: list[str], more: list[str] | None = None) -> pd.DataFrame:
    """Rows (step, quantity) in the order the steps ran, one column per site; ``more`` are
    further tables of the same sites (the imputation counts), appended below."""
    groups = zip(paths, more, strict=True) if more else ((p,) for p in paths)
    tables = [
        pd.concat([pd.read_csv(path, sep="\t", dtype=str) for path in group]).rename(
            columns={"count": site}
        )
        for site, group in zip(sites, groups, strict=True)
    ]
    keys = pd.concat([t[["step", "quantity"]] for t in tables]).drop_duplicates()
    merged = keys
    for table in tables:
        merged = merged.merge(table, on=["step", "quantity"], how="left", sort=False)
    return merged.fillna("withheld")


def main(smk) -> None:
    table = qc_table(list(smk.input.counts), list(smk.params.sites), list(smk.input.imputation))
    table.to_csv(smk.output.table, sep="\t", index=False)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stderr = log
        main(snakemake)  # noqa: F821
