"""Coordinator crash and interrupt: rerun reattaches (no duplicate tasks); Ctrl-C cancels all."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.reliability.faultproxy import FaultProxy

from .conftest import (
    Federation,
    SiteNode,
    run_snakemake,
    running_snakemake,
    start_site,
    wait_for,
)

SNAKEFILE = """
N = range(6)


rule all:
    input:
        "total.txt",


rule part:
    output:
        "parts/{i}.txt",
    resources:
        site="A",
    shell:
        "sleep {config[sleep]}; echo {wildcards.i} > {output}"


rule total:
    input:
        expand("parts/{i}.txt", i=N),
    output:
        "total.txt",
    resources:
        site="A",
    shell:
        "cat {input} > {output}"
"""


def tasks_at(site: SiteNode) -> list[dict]:
    resp = httpx.get(
        site.node.url + "/tasks",
        params={"view": "BASIC", "page_size": 1000},
        headers={"Authorization": f"Bearer {site.token}"},
    )
    resp.raise_for_status()
    return resp.json().get("tasks", [])


def setup(tmp_path: Path, fed: Federation) -> tuple[Path, Path]:
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    return workdir, fed.write_registry(tmp_path / "sites.yaml")


@pytest.mark.e2e
def test_fedgen_executor__sigkill_of_coordinator_then_rerun_gives_no_duplicates(tmp_path, one_site):
    site = one_site.sites["A"]
    workdir, registry = setup(tmp_path, one_site)
    with running_snakemake(workdir, registry, one_site, "--config", "sleep=3") as proc:
        # Kill once tasks are in flight and at least one has already finished at the site.
        wait_for(
            lambda: (
                len(tasks_at(site)) >= 4 and any(t["state"] == "COMPLETE" for t in tasks_at(site))
            ),
            timeout=90,
            what="tasks in flight",
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    before = len(tasks_at(site))
    assert not (workdir / "total.txt").exists(), "the run finished before the kill"

    unlock = run_snakemake(workdir, registry, "--unlock", env=one_site.env)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = run_snakemake(
        workdir, registry, "--config", "sleep=3", "--rerun-incomplete", env=one_site.env
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    tasks = tasks_at(site)
    # Every task of the killed run was reattached or reused: the rerun added only the rest.
    assert len(tasks) == 7
    assert before >= 4
    per_key = Counter(t["tags"]["fedgen_job_key"] for t in tasks)
    assert len(per_key) == 7  # six parts and the total
    assert set(per_key.values()) == {1}, per_key
    assert all(t["state"] == "COMPLETE" for t in tasks)


@pytest.mark.e2e
def test_fedgen_executor__sigint_cancels_every_live_task(tmp_path, one_site):
    site = one_site.sites["A"]
    workdir, registry = setup(tmp_path, one_site)
    with running_snakemake(workdir, registry, one_site, "--config", "sleep=120") as proc:
        wait_for(lambda: len(tasks_at(site)) >= 6, timeout=90, what="six submitted tasks")
        wait_for(
            lambda: any(t["state"] == "RUNNING" for t in tasks_at(site)),
            timeout=60,
            what="a running task",
        )
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert proc.returncode != 0
    wait_for(
        lambda: all(t["state"] == "CANCELED" for t in tasks_at(site)),
        timeout=30,
        what="every task CANCELED",
    )
    assert len(tasks_at(site)) == 6
    assert "canceled 6 live task(s)" in (workdir / "coordinator.log").read_text()


@pytest.mark.e2e
def test_fedgen_executor__sigint_cancels_a_task_whose_creation_answer_was_lost(tmp_path, one_site):
    # Ctrl-C between a site creating a task and the executor reading the POST's answer: the
    # task runs at the site, tagged with the run, but the executor never learnt its id. The
    # fault proxy (tests/reliability/faultproxy.py: a deliberate fake of the network) holds
    # the answer to the first task creation for 20 s; the interrupt comes inside that window.
    site = one_site.sites["A"]
    workdir, _ = setup(tmp_path, one_site)
    with FaultProxy(
        ("127.0.0.1", site.node.port),
        rate=0.0,
        slow_seconds=20.0,
        forced={"POST /ga4gh/tes/v1/tasks": ["slow"]},
    ) as proxy:
        registry = one_site.write_registry(
            tmp_path / "sites.yaml", A={"tes_url": proxy.base_url + "/ga4gh/tes/v1"}
        )
        with running_snakemake(workdir, registry, one_site, "--config", "sleep=120") as proc:
            wait_for(lambda: len(tasks_at(site)) == 1, timeout=90, what="the first task")
            assert proxy.injected["slow"] == 1
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(60)
        assert proc.returncode != 0
        [task] = tasks_at(site)
        wait_for(
            lambda: tasks_at(site)[0]["state"] == "CANCELED",
            timeout=30,
            what=f"task {task['id']} (its creation's answer never reached the executor) CANCELED",
        )
    assert "canceled 1 live task(s)" in (workdir / "coordinator.log").read_text()


@pytest.mark.slow
def test_fedgen_executor__sigint_scancels_the_jobs_of_a_site_on_slurm(
    tmp_path, monkeypatch, slurm_cluster
):
    # The whole chain: Ctrl-C at the coordinator -> CancelTask at the site -> scancel.
    from tests.slurm_cluster import PARTITION

    task_root = tmp_path / "shared-tasks"
    task_root.mkdir()
    site = start_site(
        tmp_path / "sites",
        "A",
        runtime="slurm",
        cpu_cores=slurm_cluster.cpus,
        slurm={
            "task_root": str(task_root),
            "partition": PARTITION,
            "poll_seconds": 0.5,
            "conf": str(slurm_cluster.conf),
        },
    )
    fed = Federation()
    fed.sites["A"] = site
    fed.env[site.token_env] = site.token
    monkeypatch.setenv(site.token_env, site.token)
    try:
        workdir, registry = setup(tmp_path, fed)
        with running_snakemake(workdir, registry, fed, "--config", "sleep=120") as proc:
            wait_for(
                lambda: any(t["state"] == "RUNNING" for t in tasks_at(site)),
                timeout=120,
                what="a running task",
            )
            # A task is RUNNING from before its sbatch returns: wait for the job id.
            wait_for(
                lambda: bool(re.findall(r"Slurm job (\d+) submitted", site.node.log_tail(10**7))),
                timeout=60,
                what="a submitted Slurm job",
            )
            jobs = re.findall(r"Slurm job (\d+) submitted", site.node.log_tail(10**7))
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(60)
        assert proc.returncode != 0
        try:
            wait_for(
                lambda: all(t["state"] == "CANCELED" for t in tasks_at(site)),
                timeout=90,
                what="every task CANCELED",
            )
        except AssertionError:
            states = Counter(t["state"] for t in tasks_at(site))
            squeue = slurm_cluster.run("squeue", "-h", "-o", "%i %T")
            raise AssertionError(
                f"tasks {dict(states)}; squeue:\n{squeue}\nnode log:\n" + site.node.log_tail(6000)
            ) from None
        wait_for(
            lambda: not slurm_cluster.run("squeue", "-h", "-o", "%i").split(),
            timeout=60,
            what="no job left in squeue",
        )
        for job in jobs:
            out = slurm_cluster.run("scontrol", "-o", "show", "job", job)
            state = dict(w.partition("=")[::2] for w in out.split() if "=" in w)["JobState"]
            # The mkdir executor of a task may have ended before the cancel.
            assert state in ("CANCELLED", "COMPLETED"), (job, state)
        assert any(
            "CANCELLED" in slurm_cluster.run("scontrol", "-o", "show", "job", j) for j in jobs
        )
    finally:
        site.node.stop()
