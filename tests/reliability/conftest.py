"""Fixtures for the reliability suite: a bwrap site node with tokens, and small TES helpers."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from snakemake_fedgen.node.process import NodeProcess

ACTIVE = ("QUEUED", "INITIALIZING", "RUNNING", "CANCELING")
CALLER = "analyst"


@dataclass
class HostileSite:
    """A node with data, work and egress roots; ``headers`` carry the caller's bearer token."""

    node: NodeProcess
    data: Path
    work: Path
    egress: Path
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, task: dict[str, Any]) -> str:
        resp = httpx.post(f"{self.node.url}/tasks", json=task, headers=self.headers, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    def wait(self, task_id: str, *, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = httpx.get(
                f"{self.node.url}/tasks/{task_id}",
                params={"view": "FULL"},
                headers=self.headers,
                timeout=30,
            ).json()
            if doc["state"] not in ACTIVE:
                return doc
            assert time.monotonic() < deadline, f"task {task_id} still {doc['state']}"
            time.sleep(0.1)

    def run(self, task: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.wait(self.post(task), **kwargs)

    def audit(self, task_id: str) -> list[dict[str, Any]]:
        lines = (self.node.state_dir / "audit.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("task") == task_id]

    def still_serves(self) -> None:
        """service-info answers and a normal task completes and publishes its output."""
        info = httpx.get(f"{self.node.url}/service-info", timeout=10)
        assert info.status_code == 200
        name = f"ok-{secrets.token_hex(4)}.txt"
        doc = self.run(
            shell_task(f"echo fine > {name}", outputs=[output(name, self.work / name)]),
            timeout=60,
        )
        assert doc["state"] == "COMPLETE", doc["logs"]
        # The node keeps the caller's files in its own area of the write root.
        assert (self.work / f"static-{CALLER}" / name).read_text() == "fine\n"


def shell_task(command: str, **extra: Any) -> dict[str, Any]:
    """A one-executor task running ``bash -c command`` in /fedgen/work (as the executor does)."""
    task = {
        "name": extra.pop("name", "reliability"),
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["bash", "-c", command],
                "workdir": "/fedgen/work",
            }
        ],
    }
    task.update(extra)
    return task


def output(name: str, dest: Path) -> dict[str, str]:
    return {"path": f"/fedgen/work/{name}", "url": dest.as_uri()}


def task_input(name: str, src: Path) -> dict[str, str]:
    return {"path": f"/fedgen/work/{name}", "url": src.as_uri()}


def system_log(doc: dict[str, Any]) -> str:
    return "\n".join(doc["logs"][-1].get("system_logs") or [])


def stdout_stderr(doc: dict[str, Any]) -> tuple[str, str]:
    ex = doc["logs"][-1]["logs"][-1]
    return ex.get("stdout", ""), ex.get("stderr", "")


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileSite]:
    """One bwrap node for a module of hostile tasks; 8 s task time limit."""
    base = tmp_path_factory.mktemp("hostile")
    data, work = base / "data", base / "work"
    egress = work / "egress"
    for d in (data, egress):
        d.mkdir(parents=True)
    token = secrets.token_urlsafe(24)
    token_file = base / "tokens.yaml"
    token_file.write_text(yaml.safe_dump({CALLER: token}))
    node = NodeProcess(
        base / "state",
        config={
            "node_id": "hostile-site",
            "read_roots": [str(data)],
            "write_roots": [str(work)],
            "egress_root": str(egress),
            "runtime": "bwrap",
            "token_file": str(token_file),
            "cpu_cores": 2,
            "max_task_seconds": 8,
            "allowed_images": ["fedgen/tools:*"],
            # The tests read the node's reasons and the tasks' output.
            "caller_logs": [CALLER],
        },
    )
    try:
        yield HostileSite(node, data, work, egress, token)
    finally:
        node.stop()
