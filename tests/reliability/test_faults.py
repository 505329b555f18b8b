"""Faults between the coordinator and the sites, node crashes and coordinator crashes.

The three-site workflow must finish with results identical to a clean run, and each node must
hold exactly one (completed) task per job key.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from snakemake_fedgen.node.caller_view import public_reason
from snakemake_fedgen.node.scheduler import RESTART_REASON
from tests.executor.conftest import Federation, run_snakemake, running_snakemake, wait_for
from tests.reliability.faultproxy import KINDS, FaultProxy
from tests.reliability.federation import (
    SITE_TASKS,
    expected_total,
    results,
    start_federation,
    stop_federation,
    tasks_at,
    tasks_per_key,
    write_workflow,
)
from tests.reliability.scenarios import observed

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Results of the workflow run with no faults (its own federation)."""
    base = tmp_path_factory.mktemp("clean")
    fed = start_federation(base / "sites")
    try:
        workdir = base / "wf"
        registry, args = write_workflow(workdir, fed)
        proc = run_snakemake(workdir, registry, *args, env=fed.env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = results(workdir)
    finally:
        stop_federation(fed)
    assert (workdir / "results/total.tsv").read_text() == expected_total()
    assert len([k for k in out if k.startswith("work/")]) == 9
    return out


@pytest.fixture
def federation3(tmp_path: Path):
    fed = start_federation(tmp_path / "sites")
    try:
        yield fed
    finally:
        stop_federation(fed)


def _one_task_per_key(fed: Federation) -> None:
    for name, site in fed.sites.items():
        per_key = tasks_per_key(site)
        assert len(per_key) == SITE_TASKS // 3, (name, per_key)
        assert set(per_key.values()) == {1}, (name, per_key)
        assert {t["state"] for t in tasks_at(site)} == {"COMPLETE"}


def test_fedgen_executor__flaky_network_and_site_outage_give_clean_results(
    tmp_path, federation3, clean_run
):
    fed = federation3
    proxies = {
        name: FaultProxy(
            ("127.0.0.1", site.node.port),
            rate=0.25,
            seed=7 + i,
            slow_seconds=1.0,
            # The requests that matter most get a fault for certain: a lost answer to a task
            # creation (the task exists, the executor does not know) and a cut download.
            # Status reads get the remaining kinds for certain, so every kind is exercised
            # whatever the random draws give.
            forced={
                "POST /ga4gh/tes/v1/tasks": ["drop_after", "503_after"],
                "GET /fedgen/v1/egress": ["truncate"],
                "GET /ga4gh/tes/v1/tasks": ["503_before", "drop_before", "slow"],
            },
        )
        for i, (name, site) in enumerate(fed.sites.items())
    }
    try:
        workdir = tmp_path / "wf"
        registry, args = write_workflow(
            workdir, fed, sleep=1, urls={n: p.base_url for n, p in proxies.items()}
        )
        with running_snakemake(
            workdir, registry, fed, *args, "--fedgen-max-attempts", "10"
        ) as proc:
            # Site B goes down for 6 s once its first tasks exist.
            wait_for(lambda: len(tasks_at(fed.sites["B"])) >= 1, timeout=120, what="B tasks")
            proxies["B"].down(6).join()
            rc = proc.wait(300)
        log = (workdir / "coordinator.log").read_text()
        assert rc == 0, log[-4000:]
    finally:
        for proxy in proxies.values():
            proxy.stop()
    injected = sum((p.injected for p in proxies.values()), Counter())
    # Every kind of fault really happened during the run (else the test proves nothing).
    assert set(injected) == {*KINDS, "down"}, injected
    hits = sum((p.hits for p in proxies.values()), Counter())
    assert hits[("drop_after", "POST /tasks")] >= 3 and hits[("truncate", "GET egress")] >= 3
    assert results(workdir) == clean_run
    _one_task_per_key(fed)
    for site in fed.sites.values():
        token = site.token.encode()
        for path in [*workdir.rglob("*"), site.node.log_path, site.node.state_dir / "audit.jsonl"]:
            assert not (path.is_file() and token in path.read_bytes()), path
    observed("network_faults", log)


def test_fedgen_executor__node_sigkill_and_restart_mid_run(tmp_path, federation3, clean_run):
    fed = federation3
    workdir = tmp_path / "wf"
    registry, args = write_workflow(workdir, fed, sleep=3)
    site = fed.sites["A"]
    with running_snakemake(workdir, registry, fed, *args, "--retries", "1") as proc:
        wait_for(
            lambda: any(t["state"] == "RUNNING" for t in tasks_at(site)),
            timeout=120,
            what="a running task at A",
        )
        site.node.kill()
        time.sleep(3)
        site.node.start()
        rc = proc.wait(300)
    log = (workdir / "coordinator.log").read_text()
    assert rc == 0, log[-4000:]
    assert results(workdir) == clean_run
    for name, s in fed.sites.items():
        # Exactly one completed task per job key; the only others are the ones the crash ended.
        assert set(tasks_per_key(s, state="COMPLETE").values()) == {1}, name
        assert len(tasks_per_key(s, state="COMPLETE")) == SITE_TASKS // 3
    interrupted = [t for t in tasks_at(site) if t["state"] != "COMPLETE"]
    assert interrupted, "the kill hit a running task"
    assert {t["state"] for t in interrupted} == {"SYSTEM_ERROR"}
    for t in interrupted:
        doc = httpx.get(
            f"{site.node.url}/tasks/{t['id']}",
            params={"view": "FULL"},
            headers={"Authorization": f"Bearer {site.token}"},
        ).json()
        # The caller gets the node's fixed sentence for the restart.
        assert public_reason(RESTART_REASON) in doc["logs"][-1]["system_logs"]
    observed("node_sigkill", log)


def test_fedgen_executor__coordinator_sigkill_then_rerun(tmp_path, federation3, clean_run):
    fed = federation3
    workdir = tmp_path / "wf"
    registry, args = write_workflow(workdir, fed, sleep=3)
    with running_snakemake(workdir, registry, fed, *args) as proc:
        wait_for(
            lambda: (
                any(t["state"] == "COMPLETE" for t in tasks_at(fed.sites["C"]))
                and any(t["state"] == "RUNNING" for s in fed.sites.values() for t in tasks_at(s))
            ),
            timeout=120,
            what="finished and running tasks",
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not (workdir / "results/total.tsv").exists()
    unlock = run_snakemake(workdir, registry, *args, "--unlock", env=fed.env)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = run_snakemake(workdir, registry, *args, "--rerun-incomplete", env=fed.env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert results(workdir) == clean_run
    _one_task_per_key(fed)
    observed("coordinator_sigkill", rerun.stderr)
