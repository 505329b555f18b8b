"""A tiny simulated federation shared by the simulate tests (written once per session)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SEED = 7


def run_simulate(out: Path, *extra: str, seed: int = SEED) -> subprocess.CompletedProcess:
    """Run ``fedgen simulate`` as a user would."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "snakemake_fedgen", "simulate"),
            *("--out", str(out), "--seed", str(seed), *extra),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def simulate_cli():
    """The :func:`run_simulate` helper, for tests that write their own federation."""
    return run_simulate


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fed") / "sim"
    proc = run_simulate(out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def truth(tiny: Path) -> dict:
    return json.loads((tiny / "truth.json").read_text())


@pytest.fixture(scope="session")
def tiny3(tmp_path_factory) -> Path:
    """A tiny federation on chromosomes 20, 21 and 22 (given out of order on purpose)."""
    out = tmp_path_factory.mktemp("fed3") / "sim"
    proc = run_simulate(out, "--chromosomes", "22,20,21")
    assert proc.returncode == 0, proc.stderr
    assert "on chromosomes 20,21,22" in proc.stdout
    return out


@pytest.fixture(scope="session")
def truth3(tiny3: Path) -> dict:
    return json.loads((tiny3 / "truth.json").read_text())
