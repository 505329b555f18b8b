"""``fedgen risk``: the federated risk model (fit by rounds, evaluate, apply at a site)."""

from __future__ import annotations

import argparse

HELP = "Federated risk model: standardisation sums, Newton rounds, evaluation, scoring at a site."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen risk`` subcommands."""
    sub = parser.add_subparsers(dest="risk_command", metavar="STEP", required=True)
    _configure_model(sub)
    _configure_evaluate(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``fedgen risk`` subcommand."""
    return int(args._risk_run(args))


# == model: moments, terms, step, score (snakemake_fedgen.risk.model) =========================


def _configure_model(sub) -> None:
    """Subcommands of the model rounds; each sets ``_risk_run``."""


# == evaluate: site counts, centre metrics (snakemake_fedgen.risk.evaluate) ===================


def _configure_evaluate(sub) -> None:
    """Subcommands of the federated evaluation; each sets ``_risk_run``."""
