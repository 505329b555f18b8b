"""Throughput of one ``fedgen node``: trivial tasks per second and ListTasks latency.

Run: ``.venv/bin/python benchmarks/node_throughput.py [--tasks 500] [--stored 10000]
[--podman-image localhost/fedgen-test-minbase@sha256:...]`` (an image built by
``images/build-debian-image.sh``; then podman is measured too, with ``--podman-tasks`` tasks)

1. For each runtime (bwrap where it works, and host): N trivial tasks (``true``) are created
   one after another by one client; reported are create latency p50/p95 and tasks/s from the
   first create until ListTasks (MINIMAL, filtered by a run tag) shows all of them COMPLETE.
2. A node holding ``--stored`` tasks (kept QUEUED behind a blocking task on one core, so they
   cost no execution): latency of ListTasks MINIMAL pages of 256 (first page, and every page
   of a full pagination).

Targets from issue 2: >= 50 trivial tasks/s on 2 cores; < 100 ms for a 256-task page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from snakemake_fedgen.node.process import NodeProcess
from snakemake_fedgen.node.runtime import bwrap_works

# A node running as root runs host tasks only as an unprivileged task user.
TASK_USER = {"task_user": "nobody"} if os.geteuid() == 0 else {}


def trivial(name: str, run: str, image: str = "fedgen/tools:0.1") -> dict:
    return {
        "name": name,
        "tags": {"fedgen_run": run},
        "executors": [{"image": image, "command": ["true"]}],
    }


REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process plus its reaped children (user + system), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def throughput(runtime: str, n: int, workdir: Path, *, image: str | None = None) -> None:
    config = {"runtime": runtime, "cpu_cores": 2, **TASK_USER}
    if runtime == "podman":
        config.update(
            allowed_images=[image], containers_conf=str(REPO / "images" / "containers.conf")
        )
    with NodeProcess(workdir / f"state-{runtime}", config=config) as node:
        run = f"bench-{runtime}"
        latencies = []
        cpu0 = cpu_seconds(node.proc.pid)
        with httpx.Client(base_url=node.url, timeout=30) as client:
            t0 = time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                resp = client.post(
                    "/tasks", json=trivial(f"t{i}", run, image or "fedgen/tools:0.1")
                )
                latencies.append(time.perf_counter() - t)
                resp.raise_for_status()
            created = time.perf_counter() - t0
            while True:
                done = 0
                token = None
                states: dict[str, int] = {}
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
                done = sum(
                    v for k, v in states.items() if k not in ("QUEUED", "INITIALIZING", "RUNNING")
                )
                if done == n:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(node.proc.pid) - cpu0
        print(
            f"runtime={runtime:5s} tasks={n} all finished in {elapsed:.2f} s -> "
            f"{n / elapsed:.1f} tasks/s; creates took {created:.2f} s; create latency "
            f"p50={1000 * statistics.median(latencies):.1f} ms "
            f"p95={1000 * pct(latencies, 0.95):.1f} ms; node CPU (incl. tasks) "
            f"{1000 * cpu / n:.1f} ms/task -> at most {n / cpu:.0f} tasks/s per free core; "
            f"load average {load_average()}; final states {states}"
        )


def list_latency(stored: int, workdir: Path) -> None:
    # One caller keeps them all waiting: raise its queue limit (default 1000) above them.
    config = {"runtime": "host", "cpu_cores": 1, "max_queued_per_caller": stored + 1, **TASK_USER}
    with NodeProcess(workdir / "state-list", config=config) as node:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            client.post("/tasks", json={
                "name": "blocker",
                "executors": [{"image": "fedgen/tools:0.1", "command": ["sleep", "3600"]}],
            }).raise_for_status()  # fmt: skip
            t0 = time.perf_counter()
            for i in range(stored - 1):
                client.post("/tasks", json=trivial(f"s{i}", "stored")).raise_for_status()
            fill = time.perf_counter() - t0
            first = []
            for _ in range(20):
                t = time.perf_counter()
                body = client.get("/tasks", params={"view": "MINIMAL", "page_size": 256}).json()
                first.append(time.perf_counter() - t)
                assert len(body["tasks"]) == 256
            pages = []
            seen = 0
            token = None
            while True:
                params = {"view": "MINIMAL", "page_size": 256}
                if token:
                    params["page_token"] = token
                t = time.perf_counter()
                body = client.get("/tasks", params=params).json()
                pages.append(time.perf_counter() - t)
                seen += len(body["tasks"])
                token = body.get("next_page_token")
                if not token:
                    break
            tagged = []
            for _ in range(10):
                t = time.perf_counter()
                client.get(
                    "/tasks",
                    params={"page_size": 256, "tag_key": "fedgen_run", "tag_value": "stored"},
                ).json()
                tagged.append(time.perf_counter() - t)
        print(
            f"stored tasks={stored} (created at {stored / fill:.0f}/s); ListTasks MINIMAL "
            f"page_size=256: first page p50={1000 * statistics.median(first):.1f} ms "
            f"max={1000 * max(first):.1f} ms; full pagination {len(pages)} pages / {seen} tasks "
            f"p50={1000 * statistics.median(pages):.1f} ms max={1000 * max(pages):.1f} ms; "
            f"with tag filter p50={1000 * statistics.median(tagged):.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--stored", type=int, default=10_000)
    parser.add_argument("--podman-image", default=None, help="digest reference to run under podman")
    parser.add_argument("--podman-tasks", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
        workdir = Path(tmp)
        runtimes = (["bwrap"] if bwrap_works() else []) + ["host"]
        for runtime in runtimes:
            throughput(runtime, args.tasks, workdir)
        if args.podman_image:
            throughput("podman", args.podman_tasks, workdir, image=args.podman_image)
        list_latency(args.stored, workdir)


if __name__ == "__main__":
    main()
