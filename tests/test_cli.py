"""The ``fedgen`` command line itself."""

import subprocess
import sys

from snakemake_fedgen.cli import SUBCOMMANDS, build_parser


def test_cli__help_lists_available_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "usage: fedgen" in out
    parser = build_parser()
    available = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in available:
        assert name in SUBCOMMANDS
        assert name in out


def test_cli__no_command_prints_help_and_fails():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "usage: fedgen" in proc.stdout


def test_executor_plugin__discovered_by_snakemake():
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--fedgen-sites" in out
