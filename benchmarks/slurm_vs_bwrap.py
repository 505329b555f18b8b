"""What going through Slurm costs a task: trivial tasks through one node, bwrap vs slurm.

Run (as root: it starts a private one-machine Slurm cluster, tests/slurm_cluster.py):
``.venv/bin/python benchmarks/slurm_vs_bwrap.py [--tasks 200] [--poll-seconds 0.5]``

The same N trivial tasks (``true``) are created one after another by one client, first at a
node with runtime bwrap, then at a node with runtime slurm (each executor one Slurm job on the
same machine, the same bwrap sandbox inside the job); both nodes keep 2 cores busy. Reported:
tasks/s from the first create until ListTasks shows all of them ended, the node's CPU per task,
the squeue queries the slurm node made, and the per-task cost of Slurm (the difference of the
wall time per task, and of the node's CPU per task).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from snakemake_fedgen.node.process import NodeProcess  # noqa: E402
from tests.slurm_cluster import PARTITION, SlurmCluster  # noqa: E402


def trivial(name: str, run: str) -> dict:
    return {
        "name": name,
        "tags": {"fedgen_run": run},
        "executors": [{"image": "fedgen/tools:0.1", "command": ["true"]}],
    }


def cpu_seconds(pid: int) -> float:
    """CPU time of a process plus its reaped children (user + system), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def run_tasks(node: NodeProcess, n: int, run: str) -> tuple[float, float, dict[str, int]]:
    """(seconds until all N ended, node CPU seconds, final states)."""
    assert node.proc is not None
    cpu0 = cpu_seconds(node.proc.pid)
    with httpx.Client(base_url=node.url, timeout=30) as client:
        t0 = time.perf_counter()
        for i in range(n):
            client.post("/tasks", json=trivial(f"t{i}", run)).raise_for_status()
        while True:
            states: dict[str, int] = {}
            token = None
            while True:
                params = {"tag_key": "fedgen_run", "tag_value": run, "page_size": 2048}
                if token:
                    params["page_token"] = token
                body = client.get("/tasks", params=params).json()
                for task in body["tasks"]:
                    states[task["state"]] = states.get(task["state"], 0) + 1
                token = body.get("next_page_token")
                if not token:
                    break
            active = sum(states.get(s, 0) for s in ("QUEUED", "INITIALIZING", "RUNNING"))
            if active == 0 and sum(states.values()) == n:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
    return elapsed, cpu_seconds(node.proc.pid) - cpu0, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory(prefix="fedgen-slurm-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # munged (user munge) reaches its socket below it
        cluster = SlurmCluster.start(work / "cluster")
        try:
            results = {}
            with NodeProcess(work / "bwrap", config={"runtime": "bwrap", "cpu_cores": 2}) as node:
                results["bwrap"] = run_tasks(node, n, "bench-bwrap")
            task_root = work / "shared-tasks"
            task_root.mkdir()
            config = {
                "runtime": "slurm",
                "cpu_cores": cluster.cpus,
                "slurm": {
                    "task_root": str(task_root),
                    "partition": PARTITION,
                    "poll_seconds": args.poll_seconds,
                    "conf": str(cluster.conf),
                },
            }
            with NodeProcess(work / "slurm", config=config) as node:
                results["slurm"] = run_tasks(node, n, "bench-slurm")
                totals = re.findall(r"\((\d+) so far\)", node.log_tail(10**8))
            queries = max((int(t) for t in totals), default=0)
        finally:
            cluster.stop()
    for name, (elapsed, cpu, states) in results.items():
        print(
            f"runtime={name:5s} tasks={n} all ended in {elapsed:.2f} s -> {n / elapsed:.1f} "
            f"tasks/s; node CPU (incl. tasks, not slurmd) {1000 * cpu / n:.1f} ms/task; "
            f"final states {states}"
        )
    (tb, cb, _), (ts, cs, _) = results["bwrap"], results["slurm"]
    print(
        f"slurm: {queries} squeue queries for {n} jobs (poll_seconds={args.poll_seconds:g}, "
        f"{cluster.cpus} CPU(s) in the cluster)"
    )
    print(
        f"per-task cost of going through Slurm: {1000 * (ts - tb) / n:.0f} ms wall time per "
        f"task at this concurrency ({1000 * ts / n:.0f} vs {1000 * tb / n:.0f} ms), "
        f"{1000 * (cs - cb) / n:+.1f} ms node CPU per task"
    )


if __name__ == "__main__":
    main()
