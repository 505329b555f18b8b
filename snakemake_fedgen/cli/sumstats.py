"""``fedgen sumstats``: export PLINK 2 results to GWAS-SSF and check files against the airlock."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Export PLINK 2 --glm results to GWAS-SSF with disclosure control; airlock checks."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` and ``check`` sub-subcommands."""
    sub = parser.add_subparsers(dest="sumstats_command", metavar="ACTION", required=True)

    ex = sub.add_parser(
        "export",
        help="convert a plink2 --glm report to GWAS-SSF (.tsv.gz + -meta.yaml) at the site",
        description="Convert a PLINK 2 --glm report (.glm.linear, .glm.logistic.hybrid, "
        ".glm.firth) to a sorted GWAS-SSF table with disclosure control; writes OUT.tsv.gz and "
        "OUT.tsv.gz-meta.yaml. Rows with n < --min-n or minor allele count < --min-mac are "
        "withheld and counted in the sidecar.",
    )
    ex.add_argument("--glm", required=True, help="the plink2 --glm report")
    ex.add_argument("--out", required=True, help="output table (.tsv.gz appended if missing)")
    ex.add_argument("--site", required=True, help="site name recorded in the sidecar")
    ex.add_argument("--assembly", required=True, help="genome assembly, e.g. GRCh38")
    ex.add_argument(
        "--trait-type",
        choices=("quantitative", "binary"),
        help="default: from the report name (.glm.linear = quantitative)",
    )
    ex.add_argument("--n-cases", type=int, help="number of cases (binary traits)")
    ex.add_argument("--n-controls", type=int, help="number of controls (binary traits)")
    ex.add_argument(
        "--pheno",
        help="PLINK phenotype table to count cases (2) and controls (1) from, at the site",
    )
    ex.add_argument("--pheno-name", help="phenotype column for --pheno")
    ex.add_argument(
        "--keep", help="sample list (.psam/.fam/IDs) restricting the --pheno count, e.g. post-QC"
    )
    ex.add_argument("--min-n", type=int, default=50, help="smallest n per row (default 50)")
    ex.add_argument(
        "--min-mac", type=float, default=10.0, help="smallest minor allele count (default 10)"
    )
    ex.add_argument("--ancestry", help="sample ancestry label, e.g. EUR")
    ex.add_argument("--trait-description", help="trait description (default: phenotype name)")
    ex.add_argument(
        "--rsids", help="CHROM:POS:REF:ALT<TAB>rsID map: fills the rsid column (IDs are positional)"
    )
    ex.add_argument("--refget-digest", help="refget sequence-collection digest of the reference")
    ex.add_argument(
        "--refget-vcf",
        metavar="VCF",
        help="compute the refget digest from this VCF's ##contig names and lengths",
    )
    ex.add_argument(
        "--aligned-to-panel",
        metavar="FILE",
        help="the reference panel the genotypes were aligned to (strand and REF/ALT) before the "
        "GWAS; its SHA-256 goes to the sidecar as fedgen.aligned_panel, and the meta-analysis "
        "keeps palindromic SNPs of sites that declare the same panel",
    )
    ex.add_argument(
        "--genotyping-technology",
        default="Genome-wide genotyping array",
        help="GWAS-SSF genotyping_technology",
    )
    ex.set_defaults(_sumstats_run=_run_export)

    ck = sub.add_parser(
        "check",
        help="run the site airlock on a file and print the decision (exit 1 if refused)",
        description="Run the egress airlock on FILE locally, as the node would before "
        "publishing it. Exit status 0 = accepted, 1 = refused.",
    )
    ck.add_argument("file", help="file to inspect")
    ck.add_argument("--name", help="name it would be published under (default: its file name)")
    ck.add_argument(
        "--policy",
        help="YAML file with the airlock mapping (min_n, min_mac, min_cell, ...) or a node "
        "config holding it under 'airlock'",
    )
    ck.add_argument("--min-n", type=int, help="override min_n")
    ck.add_argument("--min-mac", type=float, help="override min_mac")
    ck.add_argument("--min-cell", type=int, help="override min_cell")
    ck.add_argument("--json", action="store_true", help="print the decision as JSON")
    ck.set_defaults(_sumstats_run=_run_check)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    return args._sumstats_run(args)


def _run_export(args: argparse.Namespace) -> int:
    from snakemake_executor_plugin_fedgen.errors import ConfigError

    from snakemake_fedgen.egress.export import count_cases_controls, export_glm, read_rsids

    n_cases, n_controls = args.n_cases, args.n_controls
    if args.pheno and args.trait_type == "quantitative":
        # One command for every trait (approved templates): the case count is for binary ones.
        args.pheno = args.pheno_name = args.keep = None
    if args.pheno:
        if n_cases is not None or n_controls is not None:
            raise ConfigError("give either --n-cases/--n-controls or --pheno, not both")
        if not args.pheno_name:
            raise ConfigError("--pheno needs --pheno-name (the binary phenotype column)")
        n_cases, n_controls = count_cases_controls(args.pheno, args.pheno_name, keep=args.keep)
    elif args.keep or args.pheno_name:
        raise ConfigError("--keep and --pheno-name only apply together with --pheno")
    result = export_glm(
        args.glm,
        args.out,
        site=args.site,
        assembly=args.assembly,
        trait_type=args.trait_type,
        n_cases=n_cases,
        n_controls=n_controls,
        min_n=args.min_n,
        min_mac=args.min_mac,
        ancestry=args.ancestry,
        trait_description=args.trait_description,
        refget_digest=args.refget_digest or _refget_of(args.refget_vcf),
        genotyping_technology=args.genotyping_technology,
        rsids=read_rsids(args.rsids) if args.rsids else None,
        aligned_panel=_panel_of(args.aligned_to_panel),
    )
    withheld = ", ".join(f"{k}: {v}" for k, v in result.variants_dropped.items()) or "none"
    print(
        f"wrote {result.data_path} ({result.variants_exported} of {result.variants_read} "
        f"variants; withheld {withheld}) and {result.meta_path}"
    )
    return 0


def _load_policy(args: argparse.Namespace):
    from pathlib import Path

    import yaml
    from snakemake_executor_plugin_fedgen.errors import ConfigError

    from snakemake_fedgen.egress.airlock import AirlockPolicy

    mapping: dict = {}
    if args.policy:
        try:
            doc = yaml.safe_load(Path(args.policy).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{args.policy}: cannot read the airlock policy ({exc})") from None
        if isinstance(doc, dict) and isinstance(doc.get("airlock"), dict):
            doc = doc["airlock"]
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"{args.policy}: expected a YAML mapping of airlock settings")
        mapping = dict(doc or {})
    for key in ("min_n", "min_mac", "min_cell"):
        value = getattr(args, key)
        if value is not None:
            mapping[key] = value
    try:
        return AirlockPolicy.from_mapping(mapping)
    except ConfigError as exc:
        raise ConfigError(f"{args.policy or 'command line'}: {exc}") from None


def _run_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from snakemake_fedgen.egress.airlock import inspect

    decision = inspect(Path(args.file), _load_policy(args), name=args.name)
    if args.json:
        print(json.dumps(asdict(decision), indent=2))
    else:
        verdict = "ACCEPTED" if decision.accepted else "REFUSED"
        print(f"{verdict} kind={decision.kind} size={decision.size} sha256={decision.sha256}")
        print(decision.reason)
    sys.stdout.flush()
    return 0 if decision.accepted else 1


def _panel_of(panel: str | None) -> str | None:
    """``sha256:<hex>`` of the reference panel file, or None."""
    if not panel:
        return None
    from pathlib import Path

    from snakemake_fedgen.sumstats.sidecar import panel_digest

    return panel_digest(Path(panel))


def _refget_of(vcf: str | None) -> str | None:
    """fedgen's refget seqcol digest of a VCF header (names + lengths), or None."""
    if not vcf:
        return None
    from snakemake_fedgen.governance.refget import vcf_digest

    return vcf_digest(vcf)
