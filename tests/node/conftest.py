"""Fixtures for node tests: a site directory layout and real ``fedgen node`` processes."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from snakemake_fedgen.node.process import NodeProcess
from tests.conftest import bwrap_runtime

ACTIVE_STATES = ("QUEUED", "INITIALIZING", "RUNNING", "CANCELING")


@dataclass
class Site:
    """Directories of one test site: data (read root), work (write root), egress inside work."""

    root: Path
    data: Path
    work: Path
    egress: Path
    state: Path

    def config(self, **extra: Any) -> dict[str, Any]:
        cfg = {
            "read_roots": [str(self.data)],
            "write_roots": [str(self.work)],
            "egress_root": str(self.egress),
            "node_id": "test-site",
            # These tests read their tasks' stdout/stderr; tests/security/test_task_logs.py
            # checks what a caller not listed here gets.
            "caller_logs": ["anonymous"],
        }
        cfg.update(extra)
        # Never `auto`: a missing sandbox must not turn these into host-runtime tests silently.
        cfg.setdefault("runtime", bwrap_runtime())
        if cfg.get("runtime") == "host" and os.geteuid() == 0:
            # A node running as root runs host tasks only as an unprivileged task user.
            cfg.setdefault("task_user", "nobody")
        return cfg

    def area(self, caller: str | None = None) -> Path:
        """Where the node keeps ``caller``'s files of the work root (None: anonymous)."""
        return area(self.work, caller)

    def egress_area(self, caller: str | None = None) -> Path:
        """Where the node publishes ``caller``'s egress files (None: anonymous)."""
        return area(self.egress, caller)


def area(root: Path, caller: str | None = None) -> Path:
    """A caller's area of a write root: static token callers by name, None for anonymous."""
    return root / ("anonymous" if caller is None else f"static-{caller}")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory host tasks (run as the task user) and the test can both write to."""
    path = Path(tempfile.mkdtemp(prefix="fedgen-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    s = Site(root, root / "data", root / "work", root / "work" / "egress", tmp_path / "state")
    for d in (s.data, s.work, s.egress):
        d.mkdir(parents=True)
    return s


@pytest.fixture
def start_node() -> Iterator[Callable[..., NodeProcess]]:
    """Factory starting NodeProcess instances; all are stopped at teardown."""
    nodes: list[NodeProcess] = []

    def start(state_dir: Path, **kwargs: Any) -> NodeProcess:
        node = NodeProcess(state_dir, **kwargs)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def wait_task(
    url: str, task_id: str, *, headers: dict | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Poll GetTask FULL until the task leaves the active states; return the document."""
    deadline = time.monotonic() + timeout
    while True:
        doc = httpx.get(f"{url}/tasks/{task_id}", params={"view": "FULL"}, headers=headers).json()
        if doc["state"] not in ACTIVE_STATES or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def wait_state(
    url: str, task_id: str, states: tuple[str, ...], *, headers: dict | None = None, timeout=30
) -> str:
    """Poll until the task is in one of ``states``; return the state seen last."""
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{url}/tasks/{task_id}", headers=headers).json()["state"]
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def simple_task(command: str, **extra: Any) -> dict[str, Any]:
    """A one-executor task running ``sh -c command`` in /fedgen/work."""
    task = {
        "name": extra.pop("name", "t"),
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["sh", "-c", command],
                "workdir": "/fedgen/work",
            }
        ],
    }
    task.update(extra)
    return task
