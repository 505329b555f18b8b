"""Suite-wide test rules.

``needs_bwrap``: a test that needs bubblewrap fails where bubblewrap cannot run, so a machine
that silently lacks the sandbox never reports the sandbox tests as passed or skipped. A machine
known to have no bubblewrap says so explicitly with ``FEDGEN_NO_BWRAP=1``: then they are
skipped with that reason.
"""

from __future__ import annotations

import functools
import os

import pytest

from snakemake_fedgen.node.runtime import bwrap_works

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
