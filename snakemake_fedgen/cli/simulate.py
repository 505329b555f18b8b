"""``fedgen simulate``: write a simulated federation (panel, three sites, registry, truth)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Simulate a federation: reference panel, three sites' genotypes/phenotypes, sites.yaml."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options."""
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--seed", required=True, type=int, help="random seed (same seed, same bytes)"
    )
    parser.add_argument(
        "--scale",
        default="tiny",
        choices=["tiny", "small", "demo"],
        help="size: tiny (tests; 485 site samples, panel 300), small (1,121; panel 900) or "
        "demo (2,533; panel 1,500); default tiny",
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
        "Phenopacket v2 files (sites/<S>/phenopackets/); their registry phenotypes dataset "
        "points at it (format: phenopackets). Default: none",
    )


def run(args: argparse.Namespace) -> int:
    """Simulate and print a one-line summary per site."""
    from snakemake_fedgen.simulate.federation import simulate

    packets = [s.strip() for s in args.phenopackets_sites.split(",") if s.strip()]
    fed = simulate(
        args.out,
        seed=args.seed,
        scale=args.scale,
        base_port=args.base_port,
        phenopackets_sites=packets,
    )
    t = fed.truth
    print(
        f"simulated {t['scale']} federation (seed {t['seed']}) in {Path(args.out).resolve()}: "
        f"panel {t['reference_panel']['n_samples']} samples x "
        f"{t['reference_panel']['n_variants']} variants"
    )
    for s, info in t["sites"].items():
        kind = " (phenotypes as phenopackets)" if s in packets else ""
        print(f"  site {s}: {info['n_samples']} samples x {info['n_variants']} array markers{kind}")
    return 0
