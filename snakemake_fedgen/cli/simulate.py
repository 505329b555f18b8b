"""``fedgen simulate``: write a simulated federation (panel, three sites, registry, truth)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "Simulate a federation on one or more chromosomes: reference panel, three sites' genotypes, "
    "phenotypes and clinical data (risk factors, an incident CVD event), sites.yaml, truth.json."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options."""
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--seed", required=True, type=int, help="random seed (same seed, same bytes)"
    )
    from snakemake_fedgen.simulate.scales import SCALES

    parser.add_argument(
        "--scale",
        default="tiny",
        choices=list(SCALES),
        help="size (loci and background SNPs are totals, spread over the chromosomes): "
        + "; ".join(sc.summary() for sc in SCALES.values())
        + ". tiny is for tests (seconds); large and genome are for benchmarks, far too slow "
        "for tests (minutes and gigabytes of memory). Default tiny",
    )
    parser.add_argument(
        "--chromosomes",
        default=None,
        metavar="LIST",
        help="autosomes to simulate, e.g. 20,21,22 or 1-22 (names as in the VCFs, no 'chr'). "
        "Each gets its own loci and background SNPs (the scale's totals spread over them: "
        "loci evenly, at least one each; background SNPs in proportion to GRCh38 length), its "
        "##contig line and its genetic-map rows; the causal variants go to different "
        "chromosomes. Default: the scale's (20; 1-22 for genome)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=8101,
        help="TES port of site A's node in sites.yaml; B and C use the next ports (default 8101)",
    )
    parser.add_argument(
        "--phenopackets-sites",
        default="",
        metavar="SITES",
        help="comma-separated sites (e.g. C) that hold their phenotypes as a folder of GA4GH "
        "Phenopacket v2 files (sites/<S>/phenopackets/; clinical data as LOINC measurements, "
        "NCIT/MONDO features and diseases); their registry phenotypes dataset points at it "
        "(format: phenopackets). Default: none",
    )


def run(args: argparse.Namespace) -> int:
    """Simulate and print a one-line summary per site."""
    from snakemake_fedgen.simulate.chromosomes import parse_chromosomes
    from snakemake_fedgen.simulate.federation import simulate

    packets = [s.strip() for s in args.phenopackets_sites.split(",") if s.strip()]
    chromosomes = None if args.chromosomes is None else parse_chromosomes(args.chromosomes)
    fed = simulate(
        args.out,
        seed=args.seed,
        scale=args.scale,
        chromosomes=chromosomes,
        base_port=args.base_port,
        phenopackets_sites=packets,
    )
    t = fed.truth
    chroms = sorted(set(fed.genomes.chrom.tolist()), key=int)
    print(
        f"simulated {t['scale']} federation (seed {t['seed']}) in {Path(args.out).resolve()}: "
        f"panel {t['reference_panel']['n_samples']} samples x "
        f"{t['reference_panel']['n_variants']} variants on chromosome"
        f"{'s' if len(chroms) > 1 else ''} {','.join(chroms)}"
    )
    for s, info in t["sites"].items():
        kind = " (phenotypes as phenopackets)" if s in packets else ""
        cvd = t["clinical_model"]["sites"][s]
        print(
            f"  site {s}: {info['n_samples']} samples x {info['n_variants']} array markers, "
            f"{cvd['n_events']} CVD events ({cvd['event_rate']:.1%}){kind}"
        )
    return 0
