"""Fixtures for the executor tests: real ``fedgen node`` processes and a matching sites.yaml."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from snakemake_fedgen.node.process import NodeProcess

CALLER = "coordinator"


@dataclass
class SiteNode:
    """A running node with its own storage roots, and the registry entry pointing at it."""

    name: str
    node: NodeProcess
    root: Path
    token: str
    token_env: str

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def egress(self) -> Path:
        return self.root / "egress"

    @property
    def area(self) -> Path:
        """Where the node keeps the coordinator's files of the work root (its caller area)."""
        return self.work / f"static-{CALLER}"

    @property
    def egress_area(self) -> Path:
        return self.egress / f"static-{CALLER}"

    def held(self, url: str) -> Path:
        """The host file a site URL of the coordinator names (the node maps it to its area)."""
        path = Path(unquote(url.removeprefix("file://")))
        for root, area in ((self.egress, self.egress_area), (self.work, self.area)):
            if path.is_relative_to(root):
                return area / path.relative_to(root)
        return path

    def audit(self) -> list[dict[str, Any]]:
        path = self.node.state_dir / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def registry_entry(self, **extra: Any) -> dict[str, Any]:
        entry = {
            "tes_url": self.node.url,
            "token_env": self.token_env,
            "work_url": f"file://{self.work}",
            "egress_url": f"file://{self.egress}",
            "egress_read_url": self.node.egress_read_url,
            "egress": "allow-list",
            "egress_allow": ["results/sumstats/**"],
            "default_image": "fedgen/tools:0.1",
            "max_parallel_tasks": 8,
        }
        entry.update(extra)
        return entry


@dataclass
class Federation:
    """Several site nodes plus the environment that holds their tokens."""

    sites: dict[str, SiteNode] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def write_registry(self, path: Path, *, default_site: str | None = None, **per_site) -> Path:
        data = {
            "version": 1,
            "default_site": default_site,
            "sites": {
                name: s.registry_entry(**per_site.get(name, {})) for name, s in self.sites.items()
            },
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def tokens(self) -> list[str]:
        return [s.token for s in self.sites.values()]


def start_site(
    base: Path,
    name: str,
    *,
    runtime: str = "host",
    cpu_cores: int = 2,
    caller_logs: bool = False,
    **extra: Any,
) -> SiteNode:
    """Start a node for site ``name`` with storage roots under ``base/name``.

    ``caller_logs``: the site returns task logs (redacted) to the coordinator, so a failed
    site step's stderr reaches the analyst; by default logs stay at the site.
    """
    root = base / f"site{name}"
    (root / "work").mkdir(parents=True)
    (root / "egress").mkdir(parents=True)
    (root / "data").mkdir(parents=True)
    token = secrets.token_urlsafe(24)
    token_file = root / "tokens.yaml"
    token_file.write_text(yaml.safe_dump({CALLER: token}))
    token_file.chmod(0o600)
    node = NodeProcess(
        root / "state",
        config={
            "node_id": f"site-{name}",
            "read_roots": [str(root / "data"), str(root / "work"), str(root / "egress")],
            "write_roots": [str(root / "work"), str(root / "egress")],
            "egress_root": str(root / "egress"),
            "runtime": runtime,
            "token_file": str(token_file),
            "cpu_cores": cpu_cores,
            # A node running as root runs host tasks only as an unprivileged task user.
            **({"task_user": "nobody"} if runtime == "host" and os.geteuid() == 0 else {}),
            "allowed_images": ["fedgen/tools:*"],
            "airlock": {"min_n": 5, "min_mac": 1, "min_cell": 1},
            "caller_logs": [CALLER] if caller_logs else [],
            **extra,
        },
    )
    return SiteNode(name, node, root, token, f"FEDGEN_TEST_TOKEN_{name}")


@pytest.fixture
def federation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Federation]:
    """Three site nodes A, B, C on loopback, tokens exported in the environment."""
    fed = Federation()
    try:
        for name in "ABC":
            # Site A sandboxes its tasks with bubblewrap; B and C run them as host processes.
            runtime = "bwrap" if name == "A" else "host"
            site = start_site(tmp_path / "sites", name, runtime=runtime)
            fed.sites[name] = site
            fed.env[site.token_env] = site.token
            monkeypatch.setenv(site.token_env, site.token)
        yield fed
    finally:
        for site in fed.sites.values():
            site.node.stop()


def host_tasks_run_python() -> bool:
    """Whether a host task can run this node's Python (tests as root: tasks run as nobody)."""
    if os.geteuid() != 0:
        return True
    python = Path(os.path.realpath(sys.executable))
    return all(p.stat().st_mode & 0o001 for p in python.parents)


@pytest.fixture
def one_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Federation]:
    """One site node A on loopback (host runtime, or bwrap where host tasks cannot run the
    node's Python as the task user, e.g. an interpreter under /root)."""
    from tests.conftest import bwrap_runtime

    fed = Federation()
    runtime = "host" if host_tasks_run_python() else bwrap_runtime()
    site = start_site(tmp_path / "sites", "A", runtime=runtime)
    fed.sites["A"] = site
    fed.env[site.token_env] = site.token
    monkeypatch.setenv(site.token_env, site.token)
    try:
        yield fed
    finally:
        site.node.stop()


def snakemake_cmd(workdir: Path, registry: Path, *extra: str) -> list[str]:
    """The command line of a coordinator run with the fedgen executor."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--executor",
        "fedgen",
        "--fedgen-sites",
        str(registry),
        "--jobs",
        "20",
        "--latency-wait",
        "1",
        "--fedgen-poll-interval-max",
        "1",
        *extra,
    ]


def run_snakemake(
    workdir: Path, registry: Path, *extra: str, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run snakemake to completion (or timeout) and return the finished process."""
    return subprocess.run(
        snakemake_cmd(workdir, registry, *extra),
        env={**os.environ, **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def running_snakemake(
    workdir: Path, registry: Path, fed: Federation, *extra: str
) -> Iterator[subprocess.Popen]:
    """A coordinator run in its own process group (output in workdir/coordinator.log).

    Whatever is still running of it when the block exits is killed.
    """
    with open(workdir / "coordinator.log", "ab") as log:
        proc = subprocess.Popen(
            snakemake_cmd(workdir, registry, *extra),
            cwd=workdir,
            env={**os.environ, **fed.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Ctrl-C must reach it even when the test runner itself ignores SIGINT, as every
            # job a non-interactive shell starts with `&` does (and its children inherit).
            preexec_fn=_default_sigint,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
