"""``fedgen qc``: the small site-side QC steps (the logic is in :mod:`snakemake_fedgen.qc`).

``import`` reads the genotypes as the site holds them into one PLINK 2 fileset (counting what
it does not carry on), ``phenotypes`` matches the phenotype table to the genotype samples,
``align`` writes the PLINK 2 lists that align site SNPs with the reference panel,
``het-outliers`` the samples with outlying heterozygosity, ``covariates`` one ``--covar`` file
from the phenotype table and the principal components, ``counts`` the per-step QC counts table
that may leave the site (small counts suppressed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snakemake_fedgen import qc

HELP = "Site-side QC helpers: panel alignment lists, heterozygosity outliers, covariates, counts."


def _step_prefix(text: str) -> tuple[str, Path]:
    step, sep, prefix = text.partition("=")
    if not sep or not step or not prefix:
        raise argparse.ArgumentTypeError(f"expected STEP=PREFIX, got {text!r}")
    return step, Path(prefix)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen qc`` sub-subcommands."""
    sub = parser.add_subparsers(dest="qc_command", metavar="STEP", required=True)

    p = sub.add_parser(
        "import", help="Genotypes as the site holds them -> one PLINK 2 fileset of SNPs."
    )
    p.add_argument(
        "--genotypes",
        type=Path,
        required=True,
        help="VCF/BCF, folder of per-chromosome VCF/BCF, or PLINK 1/2 fileset (.bed/.pgen "
        "or its folder).",
    )
    p.add_argument("--out-prefix", type=Path, required=True, help="PLINK 2 fileset written.")
    p.add_argument(
        "--chromosomes",
        default="",
        help="comma-separated chromosomes to keep (e.g. 20,21,22); variants on others are "
        "counted as variants_other_contig. Default: 1-22, X, Y, XY, MT",
    )
    p.add_argument("--threads", type=int, default=1, help="plink2 --threads.")
    p.add_argument("--memory", type=int, default=2000, help="plink2 --memory (MiB).")

    p = sub.add_parser(
        "phenotypes", help="Match the phenotype table to the genotype samples, with counts."
    )
    p.add_argument("--pheno", type=Path, required=True, help="Table keyed by FID IID or IID.")
    p.add_argument("--psam", type=Path, required=True, help="The genotypes' .psam.")
    p.add_argument("--output", type=Path, required=True, help="Table keyed as the genotypes.")
    p.add_argument("--counts", type=Path, required=True, help="Counts table (step phenotypes).")

    p = sub.add_parser("align", help="Lists that align site SNPs with the reference panel.")
    p.add_argument("--afreq", type=Path, required=True, help="plink2 --freq output (.afreq).")
    p.add_argument(
        "--panel-alleles", type=Path, required=True, help="Panel SNPs: CHROM POS REF ALT AF."
    )
    p.add_argument("--out-prefix", type=Path, required=True, help="Prefix of the lists written.")
    p.add_argument("--max-af-diff", type=float, default=0.3, help="Frequency check threshold.")
    p.add_argument(
        "--ambiguous-maf",
        type=float,
        default=0.4,
        help="Drop A/T and C/G SNPs whose panel MAF exceeds this.",
    )

    p = sub.add_parser("het-outliers", help="Samples with heterozygosity F beyond mean +- k SD.")
    p.add_argument("--het", type=Path, required=True, help="plink2 --het output (.het).")
    p.add_argument("--output", type=Path, required=True, help="Sample list for plink2 --remove.")
    p.add_argument("--sd", type=float, default=3.0, help="Threshold in standard deviations.")
    p.add_argument(
        "--eigenvec",
        type=Path,
        default=None,
        help="Principal components (PC1...): judge F relative to the samples' ancestry.",
    )
    p.add_argument("--pcs", type=int, default=None, help="Use PC1..PC<N> only (0: none).")

    p = sub.add_parser("covariates", help="Join phenotype covariates with principal components.")
    p.add_argument("--pheno", type=Path, required=True, help="Phenotype/covariate table.")
    p.add_argument("--eigenvec", type=Path, required=True, help="plink2 --pca eigenvectors.")
    p.add_argument("--output", type=Path, required=True, help="Covariate file for --covar.")
    p.add_argument(
        "--columns", default="", help="Comma-separated covariate columns (none: no column)."
    )
    p.add_argument("--pcs", type=int, default=5, help="Number of principal components.")
    p.add_argument("--keep", type=Path, default=None, help="Only the samples of this .psam.")
    p.add_argument(
        "--collinear-output",
        type=Path,
        default=None,
        help="Also write the file without PCs collinear with the other covariates (for --glm).",
    )

    p = sub.add_parser("counts", help="Per-step QC counts table with small-cell suppression.")
    p.add_argument(
        "--fileset",
        type=_step_prefix,
        action="append",
        default=[],
        metavar="STEP=PREFIX",
        help="PLINK 2 fileset after STEP, in QC order (the first is the input).",
    )
    p.add_argument(
        "--table",
        type=Path,
        action="append",
        default=[],
        help="Further 'step quantity count' table to merge (e.g. from `fedgen qc align`).",
    )
    p.add_argument("--min-cell", type=int, default=5, help="Smallest count published.")
    p.add_argument("--output", type=Path, required=True, help="Counts table that may egress.")
    p.add_argument(
        "--full-output",
        type=Path,
        default=None,
        help="Unsuppressed table for the site's own records (never an egress path).",
    )


def run(args: argparse.Namespace) -> int:
    """Run one ``fedgen qc`` step."""
    if args.qc_command == "import":
        chromosomes = [c.strip() for c in args.chromosomes.split(",") if c.strip()]
        qc.import_genotypes(
            args.genotypes,
            out_prefix=args.out_prefix,
            chromosomes=chromosomes or None,
            threads=args.threads,
            memory_mb=args.memory,
        )
        return 0
    if args.qc_command == "phenotypes":
        qc.match_phenotypes(args.pheno, args.psam, output=args.output, counts=args.counts)
        return 0
    if args.qc_command == "align":
        counts = qc.align(
            args.afreq,
            args.panel_alleles,
            out_prefix=args.out_prefix,
            max_af_diff=args.max_af_diff,
            ambiguous_maf=args.ambiguous_maf,
        )
        qc.check_alignment(counts, afreq=args.afreq, panel=args.panel_alleles)
        return 0
    if args.qc_command == "het-outliers":
        qc.het_outliers(
            args.het, output=args.output, sd=args.sd, eigenvec=args.eigenvec, pcs=args.pcs
        )
        return 0
    if args.qc_command == "covariates":
        columns = [c for c in args.columns.split(",") if c and args.columns != "none"]
        qc.covariates(
            args.pheno,
            args.eigenvec,
            output=args.output,
            columns=columns,
            pcs=args.pcs,
            keep=args.keep,
            collinear_output=args.collinear_output,
        )
        return 0
    rows = qc.fileset_counts(args.fileset)
    for table in args.table:
        rows += qc.read_counts_table(table)
    qc.write_counts(
        rows,
        output=args.output,
        min_cell=args.min_cell,
        first_step=args.fileset[0][0] if args.fileset else "",
        full_output=args.full_output,
    )
    return 0
