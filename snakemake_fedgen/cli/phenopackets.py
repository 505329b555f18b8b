"""``fedgen phenopackets to-table``: Phenopacket v2 folder -> plink2 phenotype/covariate table."""

from __future__ import annotations

import argparse
import sys

HELP = "Turn a folder of GA4GH Phenopacket v2 JSON files into the plink2 phenotype table."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``to-table`` action."""
    sub = parser.add_subparsers(dest="phenopackets_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "to-table",
        help="write '#FID IID sex age qt bt [columns]' from phenopackets",
        description="Write the plink2 pheno/covariate table (#FID IID sex age qt bt, then any "
        "--columns) from a folder of Phenopacket v2 JSON files. Runs at the site: the table is individual-level "
        "data and never leaves it.",
    )
    p.add_argument("directory", metavar="DIR", help="folder of *.json phenopackets")
    p.add_argument("--out", required=True, help="output table path (e.g. phenotypes.tsv)")
    p.add_argument(
        "--qt",
        metavar="ASSAY",
        help="measurement assay term id giving the quantitative trait (e.g. LOINC:2345-7; "
        "'none': no quantitative trait)",
    )
    p.add_argument(
        "--bt",
        metavar="TERM",
        action="append",
        default=[],
        help="phenotypic feature or disease term id(s) marking cases (repeatable or "
        "comma-separated; e.g. HP:0000822; 'none': no binary trait)",
    )
    p.add_argument(
        "--bt-unmentioned",
        choices=("control", "missing"),
        default="control",
        help="bt of individuals whose packet does not mention the term (default: control)",
    )
    p.add_argument("--qt-name", default="qt", help="column name of the quantitative trait")
    p.add_argument("--bt-name", default="bt", help="column name of the binary trait")
    p.add_argument(
        "--columns",
        metavar="YAML",
        help="further columns after bt, e.g. clinical risk factors and an event: a workflow "
        "config (its phenopackets.columns) or a YAML mapping of column -> {assay: TERM[, unit: "
        "TERM]} (measurement value), {terms: [TERM...][, coding: '1/2'|'0/1']} (observed/"
        "excluded feature or disease) or {onset_of: [TERM...], censor_years: Y} (years from "
        "age to the onset, Y when excluded). 'none' or unset: no further columns",
    )


def run(args: argparse.Namespace) -> int:
    """Write the table; print a one-line summary (counts only, no identifiers)."""
    from snakemake_fedgen.governance import phenopackets

    # "none" and comma-separated terms: the workflow passes every option with a value.
    qt = None if args.qt in (None, "none") else args.qt
    terms = [t for arg in args.bt for t in arg.split(",") if t and t != "none"]
    columns = [] if args.columns in (None, "none") else phenopackets.load_column_specs(args.columns)
    rows = phenopackets.write_table(
        args.directory,
        args.out,
        qt_assay=qt,
        bt_terms=terms,
        unmentioned=args.bt_unmentioned,
        qt_name=args.qt_name,
        bt_name=args.bt_name,
        columns=columns,
    )
    cases = sum(r.bt == 2 for r in rows)
    with_qt = sum(r.qt is not None for r in rows)
    print(
        f"{len(rows)} individuals -> {args.out} ({with_qt} with {args.qt_name}, "
        f"{cases} cases of {args.bt_name}"
        + (f"; columns {', '.join(c.name for c in columns)}" if columns else "")
        + ")",
        file=sys.stderr,
    )
    return 0
