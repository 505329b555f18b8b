"""A real ``fedgen node`` attacked over HTTP by hostile callers (tests/security).

The site lives in a fresh directory under the system temp dir whose every directory is
traversable by other users, so that "a task cannot reach X" is proven by the node and not by
a 0700 pytest temp dir above X. Two static-token callers (``alice``, ``bob``) share the node.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from snakemake_fedgen.node.process import NodeProcess
from tests.node.conftest import site, start_node  # noqa: F401  (podman tests)
from tests.security.podman import podman_image  # noqa: F401

ACTIVE = ("QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "CANCELING")
CALLERS = ("alice", "bob")
IMAGE = "fedgen/tools:0.1"

#: Tests that need bubblewrap (tests/conftest.py: they fail where it cannot run).
needs_bwrap = pytest.mark.needs_bwrap


@dataclass
class Client:
    """One caller of the node: its bearer token and the TES calls it makes."""

    name: str
    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, task: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/tasks", json=task, headers=self.headers, timeout=30)

    def create(self, task: dict[str, Any]) -> str:
        resp = self.post(task)
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    def get(self, task_id: str, view: str = "FULL") -> httpx.Response:
        return httpx.get(
            f"{self.url}/tasks/{task_id}", params={"view": view}, headers=self.headers, timeout=30
        )

    def cancel(self, task_id: str) -> None:
        resp = httpx.post(f"{self.url}/tasks/{task_id}:cancel", headers=self.headers, timeout=30)
        assert resp.status_code == 200, resp.text

    def wait(self, task_id: str, *, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.get(task_id).json()
            if doc["state"] not in ACTIVE:
                return doc
            assert time.monotonic() < deadline, f"task {task_id} still {doc['state']}"
            time.sleep(0.05)

    def run(self, task: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.wait(self.create(task), **kwargs)

    def egress(self, base_url: str, path: str) -> httpx.Response:
        return httpx.get(f"{base_url}/{path}", headers=self.headers, timeout=30)


@dataclass
class Site:
    """A site's directories (data read root; work write root with egress inside) and node."""

    base: Path
    data: Path
    work: Path
    egress: Path
    state: Path
    token_file: Path
    tokens: dict[str, str]
    node: NodeProcess | None = None
    clients: dict[str, Client] = field(default_factory=dict)

    def config(self, **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "node_id": "security-site",
            "read_roots": [str(self.data)],
            "write_roots": [str(self.work)],
            "egress_root": str(self.egress),
            "token_file": str(self.token_file),
            "allowed_images": ["fedgen/tools:*"],
            "max_task_seconds": 30,
            "cpu_cores": 2,
            # These tests read their tasks' logs; test_task_logs.py starts nodes without it.
            "caller_logs": list(CALLERS),
        }
        cfg.update(extra)
        return cfg

    def start(self, **extra: Any) -> Site:
        self.node = NodeProcess(self.state, config=self.config(**extra))
        self.clients = {n: Client(n, self.node.url, t) for n, t in self.tokens.items()}
        return self

    @property
    def alice(self) -> Client:
        return self.clients["alice"]

    @property
    def bob(self) -> Client:
        return self.clients["bob"]

    def audit_lines(self) -> list[str]:
        return (self.state / "audit.jsonl").read_text().splitlines()

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_lines() if line.strip()]


@pytest.fixture
def make_site() -> Iterator[Callable[..., Site]]:
    """Factory: a site directory tree (0755 all the way down), token file 0600, no node yet."""
    made: list[Site] = []

    def make() -> Site:
        base = Path(tempfile.mkdtemp(prefix="fedgen-sec-"))
        base.chmod(0o755)
        new_site = Site(
            base=base,
            data=base / "data",
            work=base / "work",
            egress=base / "work" / "egress",
            state=base / "state",
            token_file=base / "tokens.yaml",
            tokens={name: f"{name}-{secrets.token_hex(16)}" for name in CALLERS},
        )
        for d in (new_site.data, new_site.egress):
            d.mkdir(parents=True)
        new_site.token_file.write_text(yaml.safe_dump(new_site.tokens))
        new_site.token_file.chmod(0o600)
        made.append(new_site)
        return new_site

    yield make
    for made_site in made:
        if made_site.node is not None:
            made_site.node.stop()
        shutil.rmtree(made_site.base, ignore_errors=True)


@pytest.fixture
def bwrap_site(make_site) -> Site:
    """A started bwrap node."""
    return make_site().start(runtime="bwrap")


def executor(command: str, **extra: Any) -> dict[str, Any]:
    """One ``sh -c command`` executor in /fedgen/work."""
    ex = {"image": IMAGE, "command": ["sh", "-c", command], "workdir": "/fedgen/work"}
    ex.update(extra)
    return ex


def task(*executors: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": extra.pop("name", "security"), "executors": list(executors)}
    doc.update(extra)
    return doc


def logs_text(doc: dict[str, Any]) -> str:
    """Everything the caller gets back in a FULL task document, as one string."""
    return json.dumps(doc)


def system_log(doc: dict[str, Any]) -> str:
    return "\n".join((doc.get("logs") or [{}])[-1].get("system_logs") or [])


def stdouts(doc: dict[str, Any]) -> list[str]:
    return [e.get("stdout", "") for e in (doc.get("logs") or [{}])[-1].get("logs", [])]
