"""The ``fedgen`` command line.

Each command group lives in its own module of this package that only parses arguments and calls
library functions; it defines ``HELP`` (one line),
``configure(parser)`` and ``run(args) -> int``. Modules keep heavy imports inside ``run`` so
``fedgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import FedgenError

from snakemake_fedgen import __version__

SUBCOMMANDS: dict[str, str] = {
    "node": "snakemake_fedgen.cli.node",
    "sites": "snakemake_fedgen.cli.sites",
    "simulate": "snakemake_fedgen.cli.simulate",
    "qc": "snakemake_fedgen.cli.qc",
    "impute": "snakemake_fedgen.cli.impute",
    "sumstats": "snakemake_fedgen.cli.sumstats",
    "meta": "snakemake_fedgen.cli.meta",
    "exact": "snakemake_fedgen.cli.exact",
    "pgs": "snakemake_fedgen.cli.pgs",
    "risk": "snakemake_fedgen.cli.risk",
    "keys": "snakemake_fedgen.cli.keys",
    "phenopackets": "snakemake_fedgen.cli.phenopackets",
    "provenance": "snakemake_fedgen.cli.provenance",
    "demo": "snakemake_fedgen.cli.demo",
    "discover": "snakemake_fedgen.cli.discover",
}


def put_on_path() -> None:
    """Put this Python's ``bin`` (where ``fedgen`` is installed) first on ``PATH``.

    The workflow calls it so that its coordinator-side steps find ``fedgen`` when Snakemake was
    started as ``.venv/bin/snakemake`` without activating the environment.
    """
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing subcommand module is skipped; a broken import inside it is an error.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fedgen`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="fedgen",
        description="Federated genomics over GA4GH TES: site nodes, summary statistics, "
        "meta-analysis and governance tools.",
    )
    parser.add_argument("--version", action="version", version=f"fedgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedgen`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except FedgenError as exc:
        print(f"fedgen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
