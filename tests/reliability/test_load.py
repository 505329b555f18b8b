"""Load: 2,000 small tasks across 3 real nodes complete with none lost; node memory stays flat."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.executor.conftest import SiteNode, start_site
from tests.reliability.scenarios import observed

pytestmark = pytest.mark.slow

TOTAL = 2000
FIRST = 500


def _rss_kib(site: SiteNode) -> int:
    for line in Path(f"/proc/{site.node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _submit(client: httpx.Client, site: SiteNode, i: int) -> str:
    task = {
        "name": f"load-{i}",
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["sh", "-c", f"echo {i} > out.txt"],
                "workdir": "/fedgen/work",
            }
        ],
        "outputs": [
            {"path": "/fedgen/work/out.txt", "url": (site.work / f"load/{i}.txt").as_uri()}
        ],
        "tags": {"load_run": "r1", "load_index": str(i)},
    }
    resp = client.post(
        f"{site.node.url}/tasks", json=task, headers={"Authorization": f"Bearer {site.token}"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def _states(client: httpx.Client, site: SiteNode) -> dict[str, str]:
    """Every load task at the node, by id, following pages."""
    states: dict[str, str] = {}
    token = None
    while True:
        params = {"view": "MINIMAL", "page_size": 256, "tag_key": "load_run", "tag_value": "r1"}
        if token:
            params["page_token"] = token
        body = client.get(
            f"{site.node.url}/tasks",
            params=params,
            headers={"Authorization": f"Bearer {site.token}"},
        ).json()
        for t in body.get("tasks") or []:
            assert t["id"] not in states, "a task listed twice"
            states[t["id"]] = t["state"]
        token = body.get("next_page_token")
        if not token:
            return states


def _wait_done(client, sites, expected: dict[str, set[str]], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pending = 0
        for name, site in sites.items():
            states = _states(client, site)
            assert set(states) == expected[name], "a task was lost or appeared"
            pending += sum(1 for s in states.values() if s != "COMPLETE")
            failed = [
                s
                for s in states.values()
                if s not in ("QUEUED", "INITIALIZING", "RUNNING", "COMPLETE")
            ]
            assert not failed, failed
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} tasks still pending"
        time.sleep(1)


def test_nodes__2000_tasks_none_lost_memory_flat(tmp_path):
    sites = {n: start_site(tmp_path / "sites", n, runtime="host", cpu_cores=2) for n in "ABC"}
    try:
        expected: dict[str, set[str]] = {n: set() for n in sites}
        names = list(sites)
        with httpx.Client(timeout=60) as client:
            for i in range(FIRST):
                name = names[i % 3]
                expected[name].add(_submit(client, sites[name], i))
            _wait_done(client, sites, expected, timeout=600)
            rss_first = {n: _rss_kib(s) for n, s in sites.items()}
            for i in range(FIRST, TOTAL):
                name = names[i % 3]
                expected[name].add(_submit(client, sites[name], i))
            _wait_done(client, sites, expected, timeout=900)
            rss_all = {n: _rss_kib(s) for n, s in sites.items()}
            # What the nodes report now, not what the test expects.
            complete = sum(
                1 for s in sites.values() for st in _states(client, s).values() if st == "COMPLETE"
            )
        assert sum(len(v) for v in expected.values()) == TOTAL
        for i in range(TOTAL):
            site = sites[names[i % 3]]
            assert (site.area / f"load/{i}.txt").read_text() == f"{i}\n"
        # Four times the tasks may not cost more than a quarter more memory (plus 16 MiB slack).
        for name in sites:
            assert rss_all[name] <= rss_first[name] * 1.25 + 16 * 1024, (rss_first, rss_all)
        summary = ", ".join(
            f"{n}: {rss_first[n] // 1024} -> {rss_all[n] // 1024} MiB" for n in sites
        )
        observed(
            "load", f"{complete} of {TOTAL} tasks COMPLETE; node RSS after 500 -> 2000: {summary}"
        )
    finally:
        for site in sites.values():
            site.node.stop()
