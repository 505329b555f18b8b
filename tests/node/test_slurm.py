"""Runtime slurm on a real private cluster (tests/slurm_cluster.py): each executor is a job."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from snakemake_executor_plugin_fedgen.errors import FedgenError

from snakemake_fedgen.node.process import NodeProcess
from tests.node.conftest import Site, simple_task, wait_state, wait_task
from tests.slurm_cluster import PARTITION, SlurmCluster

pytestmark = pytest.mark.needs_bwrap


def slurm_config(site: Site, cluster: SlurmCluster, tmp_path: Path, **extra) -> dict:
    """A node.yaml for runtime slurm against ``cluster`` (task directories under tmp_path)."""
    task_root = tmp_path / "shared-tasks"
    task_root.mkdir(exist_ok=True)
    block = {
        "task_root": str(task_root),
        "partition": PARTITION,
        "poll_seconds": 0.5,
        "conf": str(cluster.conf),
    }
    block.update(extra.pop("slurm", {}))
    return site.config(runtime="slurm", slurm=block, **extra)


def _post(node: NodeProcess, task: dict) -> str:
    resp = httpx.post(f"{node.url}/tasks", json=task)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def job_ids(node: NodeProcess, task_id: str) -> list[str]:
    """The Slurm jobs the node submitted for a task, from its log."""
    return re.findall(
        rf"task {task_id} executors\[\d+\]: Slurm job (\d+) submitted", node.log_tail(10**7)
    )


def show_job(cluster: SlurmCluster, job: str) -> dict[str, str]:
    out = cluster.run("scontrol", "-o", "show", "job", job)
    return dict(w.partition("=")[::2] for w in out.split() if "=" in w)


def stdout(doc: dict, index: int = 0) -> str:
    return str(doc["logs"][0]["logs"][index].get("stdout", ""))


def test_slurm__task_runs_as_a_job_and_its_outputs_come_back(
    site, start_node, tmp_path, slurm_cluster
):
    (site.data / "in.txt").write_text("input line\n")
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    info = httpx.get(f"{node.url}/service-info").json()
    assert info["fedgen"]["runtime"] == "slurm"
    out_url = (site.work / "result.txt").as_uri()
    task = simple_task(
        "tr a-z A-Z < in.txt > result.txt; cat in.txt; echo to-stderr >&2",
        inputs=[{"path": "/fedgen/work/in.txt", "url": (site.data / "in.txt").as_uri()}],
        outputs=[{"path": "/fedgen/work/result.txt", "url": out_url}],
    )
    task["executors"].append(
        {
            "image": "fedgen/tools:0.1",
            "command": ["sh", "-c", "cat; wc -c < result.txt"],
            "workdir": "/fedgen/work",
            "stdin": "/fedgen/work/result.txt",
            "stdout": "/fedgen/work/copy.txt",
        }
    )
    task["outputs"].append(
        {"path": "/fedgen/work/copy.txt", "url": (site.work / "copy.txt").as_uri()}
    )
    task_id = _post(node, task)
    doc = wait_task(node.url, task_id, timeout=120)
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert stdout(doc) == "input line\n"
    assert doc["logs"][0]["logs"][0]["stderr"] == "to-stderr\n"
    assert (site.area() / "result.txt").read_text() == "INPUT LINE\n"
    assert (site.area() / "copy.txt").read_text() == "INPUT LINE\n11\n"
    jobs = job_ids(node, task_id)
    assert len(jobs) == 2
    assert show_job(slurm_cluster, jobs[0])["JobState"] == "COMPLETED"
    # The task directory lived on the shared task root and is gone.
    assert not (tmp_path / "shared-tasks" / task_id).exists()


def test_slurm__resources_reach_sbatch(site, start_node, tmp_path, slurm_cluster):
    node = start_node(
        site.state, config=slurm_config(site, slurm_cluster, tmp_path, max_task_ram_gb=2)
    )
    task = simple_task(
        "nproc",
        resources={"cpu_cores": 2, "ram_gb": 0.5, "backend_parameters": {"runtime": "3"}},
    )
    task_id = _post(node, task)
    doc = wait_task(node.url, task_id, timeout=120)
    assert doc["state"] == "COMPLETE", doc["logs"]
    (job,) = job_ids(node, task_id)
    shown = show_job(slurm_cluster, job)
    assert shown["NumCPUs"] == "2"
    assert shown["MinMemoryNode"] == f"{-(-500_000_000 // 2**20)}M"
    assert shown["TimeLimit"] == "00:03:00"
    assert shown["Partition"] == PARTITION


def test_slurm__node_caps_memory_and_time(site, start_node, tmp_path, slurm_cluster):
    config = slurm_config(site, slurm_cluster, tmp_path, max_task_ram_gb=0.25, max_task_seconds=90)
    node = start_node(site.state, config=config)
    task = simple_task("true", resources={"ram_gb": 8, "backend_parameters": {"runtime": "600"}})
    task_id = _post(node, task)
    assert wait_task(node.url, task_id, timeout=120)["state"] == "COMPLETE"
    shown = show_job(slurm_cluster, job_ids(node, task_id)[0])
    assert shown["MinMemoryNode"] == f"{-(-250_000_000 // 2**20)}M"
    assert shown["TimeLimit"] == "00:02:00"  # 90 s, whole minutes


def test_slurm__sandbox_holds_inside_the_job(site, start_node, tmp_path, slurm_cluster):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    other = site.data / "other.txt"
    other.write_text("other data\n")
    (site.data / "in.txt").write_text("input\n")
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        task = simple_task(
            f"cat in.txt; cat {secret} || echo NO-SECRET; cat {other} || echo NO-OTHER; "
            f"ls {site.state} || echo NO-STATE; ls {tmp_path / 'shared-tasks'} || echo NO-TASKS; "
            "echo x >> in.txt || echo READ-ONLY; id -u; "
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3)\" "
            "2>/dev/null && echo CONNECTED || echo BLOCKED",
            inputs=[{"path": "/fedgen/work/in.txt", "url": (site.data / "in.txt").as_uri()}],
        )
        doc = wait_task(node.url, _post(node, task), timeout=120)
    assert doc["state"] == "COMPLETE", doc["logs"]
    out = stdout(doc).split()
    assert out == [
        "input",
        "NO-SECRET",
        "NO-OTHER",
        "NO-STATE",
        "NO-TASKS",
        "READ-ONLY",
        "65534",  # the job runs as root; inside the sandbox the task is nobody
        "BLOCKED",
    ]
    assert (site.data / "in.txt").read_text() == "input\n"


def test_slurm__stdio_symlinks_planted_by_a_task_are_not_followed(
    site, start_node, tmp_path, slurm_cluster
):
    host_file = tmp_path / "host-file.txt"
    host_file.write_text("untouched\n")
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    task = simple_task(f"ln -s {host_file} out.txt && ln -s {host_file} in.txt")
    task["executors"].append(
        {
            "image": "fedgen/tools:0.1",
            "command": ["echo", "forged"],
            "workdir": "/fedgen/work",
            "stdout": "/fedgen/work/out.txt",
        }
    )
    task["executors"].append(
        {
            "image": "fedgen/tools:0.1",
            "command": ["cat", "out.txt"],
            "workdir": "/fedgen/work",
        }
    )
    doc = wait_task(node.url, _post(node, task), timeout=120)
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert stdout(doc, 2) == "forged\n"  # the task's own file, not the link's target
    assert host_file.read_text() == "untouched\n"
    task = simple_task(f"ln -s {host_file} in.txt")
    task["executors"].append(
        {
            "image": "fedgen/tools:0.1",
            "command": ["cat"],
            "workdir": "/fedgen/work",
            "stdin": "/fedgen/work/in.txt",
        }
    )
    doc = wait_task(node.url, _post(node, task), timeout=120)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "untouched" not in str(doc["logs"])


def test_slurm__non_zero_exit_is_executor_error(site, start_node, tmp_path, slurm_cluster):
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    doc = wait_task(node.url, _post(node, simple_task("echo bad >&2; exit 3")), timeout=120)
    assert doc["state"] == "EXECUTOR_ERROR"
    assert doc["logs"][0]["logs"][0]["exit_code"] == 3
    assert doc["logs"][0]["logs"][0]["stderr"] == "bad\n"


def test_slurm__cancel_scancels_the_job(site, start_node, tmp_path, slurm_cluster):
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    task_id = _post(node, simple_task("sleep 300"))
    deadline = time.monotonic() + 60
    while not job_ids(node, task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    (job,) = job_ids(node, task_id)
    assert wait_state(node.url, task_id, ("RUNNING",)) == "RUNNING"
    httpx.post(f"{node.url}/tasks/{task_id}:cancel")
    doc = wait_task(node.url, task_id, timeout=60)
    assert doc["state"] == "CANCELED"
    assert show_job(slurm_cluster, job)["JobState"] == "CANCELLED"
    active = slurm_cluster.run("squeue", "-h", "-j", job, "-t", "PENDING,RUNNING,COMPLETING")
    assert active.strip() == ""


def test_slurm__job_cancelled_outside_the_node_is_system_error_naming_the_state(
    site, start_node, tmp_path, slurm_cluster
):
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    task_id = _post(node, simple_task("sleep 300"))
    deadline = time.monotonic() + 60
    while not job_ids(node, task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    slurm_cluster.run("scancel", job_ids(node, task_id)[0])
    doc = wait_task(node.url, task_id, timeout=60)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "CANCELLED" in doc["logs"][0]["system_logs"][-1]


@pytest.mark.slow
def test_slurm__node_killed_while_a_job_runs__restart_reattaches_and_completes(
    site, start_node, tmp_path, slurm_cluster
):
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    task = simple_task(
        "sleep 6; echo done > result.txt",
        outputs=[{"path": "/fedgen/work/result.txt", "url": (site.work / "r.txt").as_uri()}],
    )
    task["executors"].append(
        {"image": "fedgen/tools:0.1", "command": ["cat", "result.txt"], "workdir": "/fedgen/work"}
    )
    task_id = _post(node, task)
    deadline = time.monotonic() + 60
    while not job_ids(node, task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    (job,) = job_ids(node, task_id)
    node.kill()
    assert show_job(slurm_cluster, job)["JobState"] in ("PENDING", "RUNNING")
    time.sleep(1)
    node.start()
    doc = wait_task(node.url, task_id, timeout=120)
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert (site.area() / "r.txt").read_text() == "done\n"
    assert stdout(doc, 1) == "done\n"
    assert job_ids(node, task_id)[0] == job  # the same job, not a second run
    assert f"task {task_id}: reattached to Slurm job {job}" in node.log_tail(10**7)
    assert show_job(slurm_cluster, job)["JobState"] == "COMPLETED"


@pytest.mark.slow
def test_slurm__node_stop_leaves_the_job_running_and_restart_picks_it_up(
    site, start_node, tmp_path, slurm_cluster
):
    node = start_node(site.state, config=slurm_config(site, slurm_cluster, tmp_path))
    task_id = _post(node, simple_task("sleep 4; echo finished"))
    deadline = time.monotonic() + 60
    while not job_ids(node, task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    (job,) = job_ids(node, task_id)
    node.stop()
    assert show_job(slurm_cluster, job)["JobState"] in ("PENDING", "RUNNING")
    time.sleep(6)  # the job ends while the node is down
    node.start()
    doc = wait_task(node.url, task_id, timeout=60)
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert stdout(doc) == "finished\n"


def test_slurm__status_is_one_squeue_query_for_all_jobs(site, start_node, tmp_path, slurm_cluster):
    config = slurm_config(site, slurm_cluster, tmp_path, cpu_cores=4)
    node = start_node(site.state, config=config)
    ids = [_post(node, simple_task(f"sleep 3; echo {i}")) for i in range(4)]
    for task_id in ids:
        assert wait_task(node.url, task_id, timeout=120)["state"] == "COMPLETE"
    ends = re.findall(
        r"Slurm job \d+ ended \w+ \(exit 0\): seen in (\d+) of the node's squeue queries "
        r"\((\d+) so far\)",
        node.log_tail(10**7),
    )
    assert len(ends) == 4
    per_job = sum(int(seen) for seen, _ in ends)
    queries = max(int(total) for _, total in ends)
    # One query per poll served every job: per-job polling would need per_job queries.
    assert queries < per_job, (queries, per_job)


def test_slurm__config_errors_name_the_key_and_the_fix(site, tmp_path, slurm_cluster):
    config = site.config(runtime="slurm", slurm={"partition": PARTITION})
    with pytest.raises(FedgenError, match=r"slurm\.task_root is not set"):
        NodeProcess(tmp_path / "n1", config=config)
    config = site.config(runtime="slurm", slurm={"task_root": str(tmp_path / "missing")})
    with pytest.raises(FedgenError, match=r"slurm\.task_root .* is not an existing directory"):
        NodeProcess(tmp_path / "n2", config=config)
    dead = tmp_path / "dead-slurm.conf"
    text = slurm_cluster.conf.read_text()
    dead.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=9", text))
    config = slurm_config(site, slurm_cluster, tmp_path, slurm={"conf": str(dead)})
    with pytest.raises(FedgenError, match=r"'sinfo' failed, the Slurm controller is not reachable"):
        NodeProcess(tmp_path / "n3", config=config, startup_timeout=120)
    config = slurm_config(site, slurm_cluster, tmp_path, slurm={"partition": "nosuch"})
    with pytest.raises(FedgenError, match=r"no partition 'nosuch'"):
        NodeProcess(tmp_path / "n4", config=config)


def test_slurm__client_commands_see_the_cluster(slurm_cluster):
    res = subprocess.run(
        ["sinfo", "-h", "-o", "%P %T"],
        env=slurm_cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.split() == [f"{PARTITION}*", "idle"]
