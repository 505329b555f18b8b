"""``fedgen pgs``: polygenic score weights (clumping a meta-analysis, or a PGS Catalog scoring
file) and scoring at a site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "Polygenic scores: C+T weights from a meta-analysis or a PGS Catalog scoring file; scoring "
    "a site's dosages."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen pgs`` subcommands."""
    sub = parser.add_subparsers(dest="pgs_command", metavar="STEP", required=True)
    p = sub.add_parser(
        "clump",
        help="centre: clumping and p-value thresholding of a meta-analysis (LD of a public panel)",
    )
    p.add_argument("--meta", required=True, type=Path, help="fedgen meta results (.tsv.gz)")
    p.add_argument("--panel", required=True, type=Path, help="public reference panel (VCF)")
    p.add_argument("--sites", required=True, help="sites the meta-analysis covers (recorded)")
    p.add_argument("--p", type=float, default=1e-3, help="largest p-value kept (default 1e-3)")
    p.add_argument("--r2", type=float, default=0.1, help="clumping r2 (default 0.1)")
    p.add_argument("--kb", type=float, default=250.0, help="clumping window, kb (default 250)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, type=Path, help="weights file (fedgen-weights/1)")
    p.set_defaults(_pgs_run=_run_clump)

    p = sub.add_parser(
        "from-catalog",
        help="weights from a PGS Catalog scoring file (harmonised or author-reported)",
        description="Convert a PGS Catalog scoring file (.txt or .txt.gz) into a weights file "
        "on the study's assembly. A file on another build is refused (download the harmonised "
        "PGS..._hmPOS_<assembly>.txt.gz); non-additive scores are refused; OR/HR weights are "
        "logged; the rows left out are counted by reason in the weights file's header.",
    )
    p.add_argument("--scoring-file", required=True, type=Path, help="PGS Catalog scoring file")
    p.add_argument("--assembly", required=True, help="the study's assembly (GRCh38, GRCh37)")
    p.add_argument("--out", required=True, type=Path, help="weights file (fedgen-weights/1)")
    p.set_defaults(_pgs_run=_run_from_catalog)

    p = sub.add_parser(
        "score",
        help="site only: score the site's dosages (the per-person scores never leave the site)",
        description="Match a weights file to the site's variants and run plink2 --score on its "
        "dosages. The score table is individual-level: it stays at the site. The coverage "
        "counts (a QC counts table, step pgs) may leave.",
    )
    p.add_argument("--pfile", required=True, help="the site's imputed fileset (prefix)")
    p.add_argument("--weights", required=True, type=Path, help="weights file")
    p.add_argument("--min-coverage", type=float, default=0.5, help="share of |weight| matched")
    p.add_argument("--min-cell", type=int, default=5, help="suppress coverage counts below")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, type=Path, help="score table (IID, pgs)")
    p.add_argument("--coverage", required=True, type=Path, help="coverage counts table")
    p.set_defaults(_pgs_run=_run_score)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``fedgen pgs`` subcommand."""
    return int(args._pgs_run(args))


def _run_clump(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.pgs import clump_meta

    sites = [s for s in args.sites.split(",") if s]
    counts = clump_meta(
        args.meta, args.panel, args.out, sites=sites, p_threshold=args.p, r2=args.r2,
        kb=args.kb, threads=args.threads,
    )  # fmt: skip
    print(
        f"meta-analysis of {','.join(sites)}: {counts['meta_without_beta_or_p']} rows without a "
        f"usable beta or p, {counts['meta_below_threshold']} variants with "
        f"p <= {args.p:g}, {counts['not_in_panel']} not in the panel, "
        f"{counts['clumped_away']} clumped away (r2 {args.r2:g}, {args.kb:g} kb) -> "
        f"{counts['weights']} weights in {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_from_catalog(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.pgs import read_pgs_catalog, write_weights

    weights, meta = read_pgs_catalog(args.scoring_file, assembly=args.assembly)
    write_weights(args.out, weights, meta)
    dropped = ", ".join(
        f"{v} {k.removeprefix('rows_dropped_')}" for k, v in meta.items()
        if k.startswith("rows_dropped_")
    )  # fmt: skip
    logged = " (OR/HR weights logged)" if meta["weights_logged"] == "true" else ""
    print(
        f"{meta['pgs_id']} ({args.scoring_file.name}, {meta['assembly']}): "
        f"{meta['rows_read']} rows, {meta['rows_kept']} kept{logged} "
        f"({meta['rows_effect_allele_only']} with the effect allele only); dropped: {dropped} "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from snakemake_fedgen.egress.disclosure import write_counts_table
    from snakemake_fedgen.risk.pgs import score_site

    cov = score_site(
        args.pfile, args.weights, out=args.out, min_coverage=args.min_coverage,
        threads=args.threads,
    )  # fmt: skip
    write_counts_table(
        args.coverage,
        [{"step": "pgs", "quantity": q, "count": c} for q, c in cov.counts()],
        min_cell=args.min_cell,
    )
    print(
        f"{args.weights}: {cov.matched} of {cov.in_weights} variants matched "
        f"({cov.swapped} with the effect allele as REF, {cov.strand_flipped} strand-flipped, "
        f"{cov.ambiguous} ambiguous A/T or C/G, {cov.effect_only} on the effect allele alone, "
        f"{cov.not_at_site} not at the site, {cov.effect_only_unresolved} unresolved at a "
        "multi-allelic site), "
        f"{cov.share:.1%} of the absolute weight -> {args.out} (individual-level: keep it at "
        "the site)",
        file=sys.stderr,
    )
    return 0
