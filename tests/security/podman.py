"""A live podman engine for the tests: the repository's containers.conf and a Debian image.

The image is built once from Debian packages (``images/build-debian-image.sh``: debootstrap
``--variant=minbase`` + ``podman import``, no registry) and stays in podman's storage, so later
sessions reuse it (the build takes about a minute; reusing it well under a second). Tests that
need it are marked ``slow`` and ``podman``. Where podman cannot run they skip with the reason;
with ``FEDGEN_REQUIRE_PODMAN=1`` (set by ``.ci/run``) they fail instead, so CI never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "containers.conf"
BUILD_SCRIPT = REPO / "images" / "build-debian-image.sh"
TEST_IMAGE = "localhost/fedgen-test-minbase:bookworm"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it where podman is required (CI)."""
    if os.environ.get("FEDGEN_REQUIRE_PODMAN") == "1":
        pytest.fail(f"podman is required here (FEDGEN_REQUIRE_PODMAN=1) but {reason}")
    pytest.skip(reason)


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


@pytest.fixture(scope="session")
def podman_image() -> str:
    """The test image's digest reference ``localhost/fedgen-test-minbase@sha256:...``."""
    missing = [c for c in ("podman", "runc", "debootstrap") if shutil.which(c) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (make install installs them)")
    if os.geteuid() != 0:
        unavailable("the podman tests need root (rootful podman, debootstrap)")
    res = subprocess.run(
        ["bash", str(BUILD_SCRIPT), TEST_IMAGE],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        unavailable(f"building {TEST_IMAGE} failed:\n{res.stderr[-3000:]}")
    ref = res.stdout.strip().splitlines()[-1]
    probe = subprocess.run(
        ["podman", "run", "--rm", "--pull", "never", "--network", "none", "--", ref, "true"],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        unavailable(f"podman cannot run a container here: {probe.stderr.strip()[-2000:]}")
    return ref
