"""Dry runs of the federated-gwas workflow on the tiny simulated federation (seconds each).

``tiny_registry`` (tests/conftest.py) simulates the federation once per test session (seed 3);
a test copies its ``sites.yaml`` into its own work directory and never writes to it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from snakemake_fedgen import demo


def simulate_tiny(out: Path, *, seed: int = 3) -> Path:
    """``fedgen simulate --scale tiny`` into ``out``; returns its ``sites.yaml``."""
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(out), "--seed",
         str(seed), "--scale", "tiny"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "sites.yaml"


def dry_run(
    workdir: Path, registry: Path, config: dict[str, Any] | str | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """``snakemake -n -p`` of the demo workflow in ``workdir`` with a copy of ``registry`` and
    ``config`` (a mapping, or YAML text) on top of the demo config; ``args`` go to snakemake."""
    workdir.mkdir(exist_ok=True)
    (workdir / "sites.yaml").write_text(registry.read_text())
    extra = workdir / "extra.yaml"
    if isinstance(config, dict):
        extra.write_text(yaml.safe_dump(config))
    else:
        extra.write_text(config or "{}\n")
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1",
        "--snakefile", str(demo.SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(demo.CONFIGFILE), str(extra), *args,
        "--config", "sites=sites.yaml",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=demo.tool_env(), check=False)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the "Job stats" table of a (dry) run's output."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def shell_commands(output: str, start: str) -> list[str]:
    """The shell commands of a ``-p`` dry run that begin with ``start``."""
    lines = (ln.removeprefix("Shell command: ") for ln in output.splitlines())
    return [ln for ln in lines if ln.startswith(start)]
