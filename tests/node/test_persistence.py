"""A node killed with SIGKILL and started again: nothing lost, nothing stuck."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.node.conftest import simple_task, wait_state, wait_task


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_restart_after_sigkill__tasks_kept_running_ended_queued_run(site, start_node, shared_dir):
    # Host runtime on purpose: its executors outlive a killed node, so the restart must find
    # and end them (under bwrap --die-with-parent the kernel already does).
    node = start_node(site.state, config=site.config(runtime="host", cpu_cores=1))
    done = httpx.post(f"{node.url}/tasks", json=simple_task("echo finished")).json()["id"]
    assert wait_task(node.url, done)["state"] == "COMPLETE"
    pidfile = shared_dir / "sleeper.pid"
    running = httpx.post(
        f"{node.url}/tasks", json=simple_task(f"echo $$ > {pidfile}; exec sleep 300")
    ).json()["id"]
    marker = shared_dir / "queued-ran"
    queued = httpx.post(f"{node.url}/tasks", json=simple_task(f"touch {marker}")).json()["id"]
    assert wait_state(node.url, running, ("RUNNING",)) == "RUNNING"
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(pidfile.read_text())
    assert httpx.get(f"{node.url}/tasks/{queued}").json()["state"] == "QUEUED"

    node.kill()
    assert _alive(sleeper)  # the orphan survived the crash
    node.start()

    doc = wait_task(node.url, running)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "node restarted while task was running" in doc["logs"][0]["system_logs"]
    assert not _alive(sleeper)
    assert wait_task(node.url, queued)["state"] == "COMPLETE"
    assert marker.exists()
    kept = wait_task(node.url, done)
    assert kept["state"] == "COMPLETE"
    assert kept["logs"][0]["logs"][0]["stdout"] == "finished\n"
    listed = httpx.get(f"{node.url}/tasks").json()["tasks"]
    assert {t["id"] for t in listed} == {done, running, queued}
    assert all(t["state"] in ("COMPLETE", "SYSTEM_ERROR") for t in listed)


def test_restart_after_sigkill__bwrap_task_ends_system_error(site, start_node):
    node = start_node(site.state, config=site.config())
    running = httpx.post(f"{node.url}/tasks", json=simple_task("sleep 300")).json()["id"]
    assert wait_state(node.url, running, ("RUNNING",)) == "RUNNING"
    node.kill()
    node.start()
    doc = wait_task(node.url, running)
    assert doc["state"] == "SYSTEM_ERROR"
    assert doc["logs"][0]["system_logs"] == ["node restarted while task was running"]
    assert "end_time" in doc["logs"][0]


def test_stop_with_sigterm__running_task_ends_with_reason_queued_task_kept(site, start_node):
    node = start_node(site.state, config=site.config(runtime="host", cpu_cores=1))
    running = httpx.post(f"{node.url}/tasks", json=simple_task("sleep 300")).json()["id"]
    assert wait_state(node.url, running, ("RUNNING",)) == "RUNNING"
    queued = httpx.post(f"{node.url}/tasks", json=simple_task("echo later")).json()["id"]
    node.stop()
    node.start()
    doc = wait_task(node.url, running)
    assert doc["state"] == "SYSTEM_ERROR"
    assert doc["logs"][0]["system_logs"] == ["node stopped while task was running"]
    later = wait_task(node.url, queued)
    assert later["state"] == "COMPLETE"
    assert later["logs"][0]["logs"][0]["stdout"] == "later\n"
