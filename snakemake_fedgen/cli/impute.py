"""``fedgen impute``: chunked imputation steps at the site (logic in :mod:`snakemake_fedgen.impute`).

``chunks`` prints the chunk grid of chromosomes, ``split-panel`` writes the reference panel as
one indexed file per chromosome, ``window`` cuts one chunk's window out of the site's genotypes
and the panel, ``ligate`` puts the imputed chunks of a chromosome back together, ``sum-counts``
adds up the per-chromosome counts tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Chunked imputation at the site: chunk grid, panel split, chunk windows, ligation."


def _chromosomes(text: str) -> list[str]:
    items = [c.strip() for c in text.split(",") if c.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one chromosome, e.g. 20,21,22")
    return items


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen impute`` sub-subcommands."""
    sub = parser.add_subparsers(dest="impute_command", metavar="STEP", required=True)

    p = sub.add_parser("chunks", help="Print the chunk grid (TSV) of chromosomes of an assembly.")
    p.add_argument("--assembly", required=True, help="GRCh37 or GRCh38")
    p.add_argument("--chromosomes", type=_chromosomes, required=True, help="e.g. 20,21,22")
    p.add_argument("--chunk-mb", type=float, required=True, help="chunk size in Mb (0: whole)")
    p.add_argument("--overlap-mb", type=float, required=True, help="flank on each side in Mb")

    p = sub.add_parser(
        "split-panel", help="The reference panel as one indexed VCF per chromosome (one pass)."
    )
    p.add_argument("--panel", type=Path, required=True, help="reference panel VCF/BCF")
    p.add_argument("--chromosomes", type=_chromosomes, required=True, help="e.g. 20,21,22")
    p.add_argument(
        "--out-dir", type=Path, required=True, help="writes <chrom>.vcf.gz (+ .tbi) here"
    )

    p = sub.add_parser("window", help="Cut one chunk's window out of the target and the panel.")
    p.add_argument(
        "--target", type=Path, required=True, help="site VCF of the chromosome (indexed)"
    )
    p.add_argument(
        "--panel", type=Path, required=True, help="panel VCF of the chromosome (indexed)"
    )
    p.add_argument("--chrom", required=True)
    p.add_argument("--chunk", type=int, required=True, help="chunk number (1-based)")
    p.add_argument("--start", type=int, required=True, help="first position of the chunk")
    p.add_argument("--end", type=int, required=True, help="last position of the chunk")
    p.add_argument("--window-start", type=int, required=True)
    p.add_argument("--window-end", type=int, required=True)
    p.add_argument("--min-markers", type=int, required=True, help="fewer typed markers: skip")
    p.add_argument("--out-target", type=Path, required=True)
    p.add_argument("--out-panel", type=Path, required=True)
    p.add_argument("--status", type=Path, required=True, help="the chunk's status table")

    p = sub.add_parser("ligate", help="Concatenate a chromosome's imputed chunks (own positions).")
    p.add_argument("--vcf", type=Path, nargs="+", required=True, help="imputed chunk VCFs")
    p.add_argument(
        "--status", type=Path, nargs="+", required=True, help="their status tables, same order"
    )
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--counts", type=Path, required=True, help="counts table of the chunks")

    p = sub.add_parser("sum-counts", help="Add up per-chromosome counts tables.")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("tables", type=Path, nargs="+", help="step/quantity/count tables")


def run(args: argparse.Namespace) -> int:
    """Run one step."""
    from snakemake_fedgen import impute
    from snakemake_fedgen.assemblies import chrom_length

    if args.impute_command == "chunks":
        print("chrom\tchunk\tstart\tend\twindow_start\twindow_end")
        size, overlap = round(args.chunk_mb * 1e6), round(args.overlap_mb * 1e6)
        for chrom in impute.sort_chromosomes(args.chromosomes):
            length = chrom_length(args.assembly, chrom) if size else 1
            for c in impute.chunk_grid(chrom, length, size_bp=size, overlap_bp=overlap):
                print(f"{c.chrom}\t{c.index}\t{c.start}\t{c.end}\t{c.window_start}\t{c.window_end}")
    elif args.impute_command == "split-panel":
        counts = impute.split_panel(args.panel, args.chromosomes, args.out_dir)
        for chrom, n in counts.items():
            print(f"chromosome {chrom}: {n} panel variants")
    elif args.impute_command == "window":
        chunk = impute.Chunk(
            args.chrom, args.chunk, args.start, args.end, args.window_start, args.window_end
        )
        status = impute.extract_window(
            target=args.target,
            panel=args.panel,
            chunk=chunk,
            out_target=args.out_target,
            out_panel=args.out_panel,
            status=args.status,
            min_markers=args.min_markers,
        )
        print(
            f"chunk {chunk.region} (window {chunk.window_start}-{chunk.window_end}): "
            f"{status.target_markers} typed markers, {status.panel_variants} panel variants; "
            + ("imputed" if status.impute else "not imputed (too few typed markers)")
        )
    elif args.impute_command == "ligate":
        if len(args.vcf) != len(args.status):
            raise SystemExit("fedgen impute ligate: give one --status per --vcf")
        counts = impute.ligate(
            list(zip(args.vcf, args.status, strict=True)), output=args.output, counts=args.counts
        )
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
        impute.sum_counts(args.tables, output=args.output)
    return 0
