"""Exhaustion by a caller with a valid token: disk, memory, a full state disk, the queue.

Each test drives a real bwrap node over HTTP. The full-disk test puts the node's state
directory on a real 48 MiB tmpfs (mounted by the test; needs root, as CI runs), so the disk
really fills up: no fault is faked.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import Site, executor, needs_bwrap, system_log, task

pytestmark = needs_bwrap

LONG = "sleep 30"


def _task_dirs(site: Site) -> list[str]:
    tasks = site.state / "tasks"
    return sorted(p.name for p in tasks.iterdir()) if tasks.is_dir() else []


def test_scratch_over_disk_quota__task_killed_and_scratch_removed(make_site) -> None:
    """A task writing past its disk quota (resources.disk_gb) is killed: SYSTEM_ERROR, scratch
    gone, and the node goes on answering and running tasks."""
    site = make_site().start(runtime="bwrap", disk_check_seconds=0.2)
    # 8 MB quota; the task writes 100 MB slowly enough for the watchdog to see it grow.
    doc = site.alice.run(
        task(
            executor("for i in $(seq 100); do head -c 1000000 /dev/zero > /tmp/f$i; done; sleep 5"),
            resources={"disk_gb": 0.008},
        )
    )
    assert doc["state"] == "SYSTEM_ERROR", doc
    assert "disk quota" in system_log(doc)
    assert "8000000 bytes" in system_log(doc)
    assert _task_dirs(site) == []
    assert site.alice.run(task(executor("echo ok")))["state"] == "COMPLETE"


def test_one_file_past_the_quota_in_one_write__stopped_by_the_file_size_limit(make_site) -> None:
    """A single write faster than the watchdog looks is stopped by RLIMIT_FSIZE at the quota."""
    site = make_site().start(runtime="bwrap", disk_check_seconds=5)
    doc = site.alice.run(
        task(
            executor("head -c 50000000 /dev/zero > /tmp/big; sleep 1"),
            resources={"disk_gb": 0.004},
        )
    )
    assert doc["state"] == "SYSTEM_ERROR", doc
    assert "disk quota" in system_log(doc)
    assert _task_dirs(site) == []


def test_requested_disk_above_the_node_cap__capped(make_site) -> None:
    """disk_gb above max_task_disk_gb gets the node's cap, not what the caller asked for."""
    site = make_site().start(runtime="bwrap", max_task_disk_gb=0.006, disk_check_seconds=0.2)
    doc = site.alice.run(
        task(
            executor("for i in $(seq 60); do head -c 1000000 /dev/zero > /tmp/f$i; done; sleep 5"),
            resources={"disk_gb": 1000},
        )
    )
    assert doc["state"] == "SYSTEM_ERROR", doc
    assert "6000000 bytes" in system_log(doc)


def test_memory_over_ram_gb__task_killed_with_the_reason(make_site) -> None:
    """A task allocating past resources.ram_gb is killed: SYSTEM_ERROR naming the limit."""
    site = make_site().start(runtime="bwrap")
    grab = "python3 -c 'x = bytearray(400 * 1024 * 1024); x[::4096] = b\"1\" * len(x[::4096])'"
    doc = site.alice.run(task(executor(grab), resources={"ram_gb": 0.1}))
    assert doc["state"] == "SYSTEM_ERROR", doc
    assert "memory limit" in system_log(doc)
    assert "100000000 bytes" in system_log(doc)
    assert site.alice.run(task(executor(grab), resources={"ram_gb": 1}))["state"] == "COMPLETE"


@contextlib.contextmanager
def _small_disk(size_mb: int) -> Iterator[Path]:
    mount = Path(tempfile.mkdtemp(prefix="fedgen-smalldisk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mount)],
        check=True,
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
        mount.rmdir()


@pytest.fixture
def small_state_disk() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the state directory needs root (CI runs as root)")
    with _small_disk(48) as mount:
        yield mount / "state"


def test_task_fills_the_state_disk__task_fails_scratch_removed_node_answers(
    make_site, small_state_disk: Path
) -> None:
    """A task that fills the disk under the state directory (within its own quota) fails with
    the reason; its scratch is removed and the node accepts and runs the next task."""
    site = make_site()
    site.state = small_state_disk
    site.start(runtime="bwrap", max_task_disk_gb=1, disk_check_seconds=0.2, min_free_disk_mb=4)
    doc = site.alice.run(task(executor("cat /dev/zero > /tmp/fill; sleep 3")))
    assert doc["state"] == "SYSTEM_ERROR", doc
    assert "disk" in system_log(doc)
    assert _task_dirs(site) == []
    after = site.alice.run(task(executor("echo still-here")))
    assert after["state"] == "COMPLETE", after


def test_state_disk_full_at_create__507_then_recovers(make_site, small_state_disk: Path) -> None:
    """With the state disk full (by something else), CreateTask answers 507 naming the disk;
    once space is freed the node works again without a restart."""
    site = make_site()
    site.state = small_state_disk
    site.start(runtime="bwrap", min_free_disk_mb=4)
    filler = small_state_disk.parent / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
    try:
        resp = site.alice.post(task(executor("echo x")))
        assert resp.status_code == 507, resp.text
        assert "disk" in resp.json()["message"]
        assert str(small_state_disk) in resp.json()["message"]
    finally:
        filler.unlink()
    assert site.alice.run(task(executor("echo ok")))["state"] == "COMPLETE"


def test_queue_limit_per_caller__429_for_that_caller_only(make_site) -> None:
    """A caller with max_queued_per_caller tasks waiting gets 429 (Retry-After); another caller
    is still served."""
    site = make_site().start(runtime="bwrap", cpu_cores=1, max_queued_per_caller=2)
    ids = [site.alice.create(task(executor(LONG))) for _ in range(3)]  # 1 running + 2 queued
    resp = site.alice.post(task(executor(LONG)))
    assert resp.status_code == 429, resp.text
    assert resp.headers["Retry-After"].isdigit()
    assert "max_queued_per_caller" in resp.json()["message"]
    bob_id = site.bob.create(task(executor("echo bob")))
    for task_id in ids:
        site.alice.cancel(task_id)
    assert site.bob.wait(bob_id)["state"] == "COMPLETE"


def _start(doc: dict) -> str:
    return doc["logs"][0]["start_time"]


def test_fair_ordering__second_caller_not_starved_by_a_long_queue(make_site) -> None:
    """One core: alice queues five tasks, then bob one; bob's runs second, not sixth."""
    site = make_site().start(runtime="bwrap", cpu_cores=1)
    alice_ids = [site.alice.create(task(executor("sleep 0.5"))) for _ in range(5)]
    time.sleep(0.1)
    bob_id = site.bob.create(task(executor("sleep 0.5")))
    bob = site.bob.wait(bob_id, timeout=60)
    alice = [site.alice.wait(i, timeout=60) for i in alice_ids]
    order = sorted([(_start(d), "alice") for d in alice] + [(_start(bob), "bob")])
    assert [who for _t, who in order] == ["alice", "bob", "alice", "alice", "alice", "alice"]


def test_running_limit_per_caller__a_free_core_goes_to_another_caller(make_site) -> None:
    """max_running_per_caller: 1 on a 2-core node: alice's second task waits, bob's runs."""
    site = make_site().start(runtime="bwrap", cpu_cores=2, max_running_per_caller=1)
    first = site.alice.create(task(executor(LONG)))
    second = site.alice.create(task(executor(LONG)))
    bob = site.bob.create(task(executor("echo bob")))
    assert site.bob.wait(bob, timeout=20)["state"] == "COMPLETE"
    assert site.alice.get(first, "MINIMAL").json()["state"] == "RUNNING"
    assert site.alice.get(second, "MINIMAL").json()["state"] == "QUEUED"
    for task_id in (first, second):
        site.alice.cancel(task_id)
