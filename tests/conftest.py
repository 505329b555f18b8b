"""Suite-wide test rules.

``needs_bwrap``: a test that needs bubblewrap fails where bubblewrap cannot run, so a machine
that silently lacks the sandbox never reports the sandbox tests as passed or skipped. A machine
known to have no bubblewrap says so explicitly with ``FEDGEN_NO_BWRAP=1``: then they are
skipped with that reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snakemake_fedgen.node.runtime import bwrap_works
from tests.slurm_cluster import ClusterUnavailable, SlurmCluster

NO_BWRAP_ENV = "FEDGEN_NO_BWRAP"


@functools.cache
def _bwrap_works() -> bool:
    return bwrap_works()


def bwrap_runtime() -> str:
    """The runtime for tests that want the sandbox: bwrap, or host only where the machine is
    declared to have no bubblewrap (FEDGEN_NO_BWRAP=1); never a silent fallback."""
    if _bwrap_works():
        return "bwrap"
    if os.environ.get(NO_BWRAP_ENV) == "1":
        return "host"
    pytest.fail(
        "bubblewrap cannot run on this machine; install the 'bubblewrap' package (make "
        f"install does) or set {NO_BWRAP_ENV}=1 to declare a machine without it",
        pytrace=False,
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_bwrap") is None or _bwrap_works():
        return
    if os.environ.get(NO_BWRAP_ENV) == "1":
        pytest.skip(f"bubblewrap cannot run here ({NO_BWRAP_ENV}=1)")
    pytest.fail(
        "this test needs bubblewrap, which cannot run on this machine; install the "
        f"'bubblewrap' package (make install does) or set {NO_BWRAP_ENV}=1 to skip it",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A private one-machine Slurm cluster for the session (tests/slurm_cluster.py).

    Skipped with the reason where it cannot start; under CI (CI=true) that is a failure.
    """
    # Not under the test's 0700 basetemp: munged runs as user munge and must reach its socket.
    root = Path(tempfile.mkdtemp(prefix="fedgen-slurm-"))
    try:
        cluster = SlurmCluster.start(root)
    except ClusterUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"the private Slurm cluster did not start: {exc}", pytrace=False)
        pytest.skip(f"the private Slurm cluster cannot start here: {exc}")
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny simulated federation's ``sites.yaml`` (seed 3), simulated once per session for
    the workflow's dry-run tests (tests/dry_run.py); tests copy it, never write to it."""
    from tests.dry_run import simulate_tiny

    return simulate_tiny(tmp_path_factory.mktemp("tiny-federation"))
