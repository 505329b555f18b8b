"""``fedgen demo``: simulate three sites, start a node for each, run the federated GWAS and
the federated risk model.

The orchestration is :func:`snakemake_fedgen.demo.run_demo`; ``make demo`` calls this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snakemake_fedgen import demo

HELP = (
    "simulate three sites, start a node for each and run the federated GWAS and the "
    "federated CVD risk model across them"
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``."""
    parser.add_argument("--out", type=Path, default=Path("demo-run"), help="demo directory")
    parser.add_argument("--scale", default="small", choices=("tiny", "small", "demo"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--runtime", default="auto", help="node runtime: auto (bubblewrap), bwrap, host"
    )
    parser.add_argument(
        "--chromosomes",
        default="20",
        help="chromosomes to simulate and analyse, e.g. 20,21,22 (default 20); each is "
        "imputed in 20 Mb chunks and tested on its own",
    )
    parser.add_argument(
        "--no-risk",
        action="store_true",
        help="the GWAS only: no polygenic score, risk model or its evaluation",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code."""
    chromosomes = [c.strip() for c in args.chromosomes.split(",") if c.strip()]
    return demo.run_demo(
        args.out,
        scale=args.scale,
        seed=args.seed,
        runtime=args.runtime,
        chromosomes=chromosomes,
        risk=not args.no_risk,
    )
