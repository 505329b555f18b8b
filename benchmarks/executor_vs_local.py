"""300 trivial site jobs over 3 real `fedgen node`s vs the same workflow on Snakemake's local executor.

Measured in one run: total wall time (and the ratio), status requests per poll cycle (ListTasks
counted in each node's audit log, poll cycles counted from the coordinator's debug log), and
coordinator CPU seconds (getrusage of the snakemake process and its children).

Usage::

    .venv/bin/python benchmarks/executor_vs_local.py [--jobs-per-site 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from snakemake_fedgen.node.process import NodeProcess

SITES = ["A", "B", "C"]
SNAKEFILE = """
SITES = ["A", "B", "C"]
N = range(config["per_site"])


localrules: all


rule all:
    input:
        expand("out/{site}/{i}.txt", site=SITES, i=N),


rule trivial:
    output:
        "out/{site}/{i}.txt",
    shell:
        "echo {wildcards.site} {wildcards.i} > {output}"
"""


def run(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; return wall seconds, CPU seconds of it and its children, combined output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"command failed: {' '.join(cmd[:6])} ...")
    return wall, cpu, proc.stdout + proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-per-site", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="Work in DIR and keep it (default: temp dir).")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="fedgen-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    n = args.jobs_per_site
    nodes: dict[str, NodeProcess] = {}
    env = dict(os.environ)
    registry: dict = {"version": 1, "default_site": None, "sites": {}}
    try:
        for name in SITES:
            root = base / f"site{name}"
            for sub in ("work", "egress"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            token = secrets.token_urlsafe(24)
            (root / "tokens.yaml").write_text(yaml.safe_dump({"coordinator": token}))
            nodes[name] = NodeProcess(
                root / "state",
                config={
                    "node_id": f"bench-{name}",
                    "read_roots": [str(root / "work")],
                    "write_roots": [str(root / "work"), str(root / "egress")],
                    "egress_root": str(root / "egress"),
                    "runtime": "host",
                    # A node running as root runs host tasks only as an unprivileged user.
                    **({"task_user": "nobody"} if os.geteuid() == 0 else {}),
                    "token_file": str(root / "tokens.yaml"),
                    "allowed_images": ["fedgen/tools:*"],
                },
            )
            env[f"FEDGEN_BENCH_TOKEN_{name}"] = token
            registry["sites"][name] = {
                "tes_url": nodes[name].url,
                "token_env": f"FEDGEN_BENCH_TOKEN_{name}",
                "work_url": f"file://{root / 'work'}",
                "egress_url": f"file://{root / 'egress'}",
                "egress_read_url": nodes[name].egress_read_url,
                "default_image": "fedgen/tools:0.1",
                "max_parallel_tasks": n,
            }
        sites_yaml = base / "sites.yaml"
        sites_yaml.write_text(yaml.safe_dump(registry, sort_keys=False))

        common = [sys.executable, "-m", "snakemake", "--quiet", "rules"]
        config = ["--config", f"per_site={n}"]
        fed_dir, local_dir = base / "wf-fedgen", base / "wf-local"
        for d in (fed_dir, local_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            (d / "Snakefile").write_text(SNAKEFILE)

        fed_wall, fed_cpu, fed_log = run(
            [
                *common,
                "--executor",
                "fedgen",
                "--fedgen-sites",
                str(sites_yaml),
                "--jobs",
                str(3 * n),
                "--verbose",
                *config,
            ],
            cwd=fed_dir,
            env=env,
        )
        local_wall, local_cpu, _ = run(
            [*common, "--executor", "local", "--cores", str(os.cpu_count() or 1), *config],
            cwd=local_dir,
            env=env,
        )

        cycles = re.findall(r"fedgen: status poll \d+ sites ([A-Z,]+)", fed_log)
        per_site = {}
        for name, node in nodes.items():
            audit = [
                json.loads(line)
                for line in (node.state_dir / "audit.jsonl").read_text().splitlines()
                if line.strip()
            ]
            per_site[name] = {
                "ListTasks": sum(1 for r in audit if r["action"] == "ListTasks"),
                "CreateTask": sum(1 for r in audit if r["action"] == "CreateTask"),
                "GetTask": sum(1 for r in audit if r["action"] == "GetTask"),
                "polls": sum(1 for c in cycles if name in c.split(",")),
            }
        total_lists = sum(s["ListTasks"] for s in per_site.values())
        # Each site also gets one resume listing at its first submission.
        status_lists = total_lists - len(nodes)
        jobs = 3 * n
        print(f"{jobs} trivial site jobs over {len(nodes)} nodes (runtime host), one run")
        print(f"{'':28}{'fedgen':>12}{'local':>12}")
        print(f"{'wall time (s)':28}{fed_wall:12.1f}{local_wall:12.1f}")
        print(f"{'coordinator CPU (s)':28}{fed_cpu:12.1f}{local_cpu:12.1f}")
        print(f"wall-time ratio fedgen/local: {fed_wall / local_wall:.2f}")
        print(
            f"poll cycles: {len(cycles)}; status ListTasks: {status_lists}; "
            f"ListTasks per cycle: {status_lists / max(1, len(cycles)):.2f} "
            f"(sites polled per cycle: "
            f"{sum(len(c.split(',')) for c in cycles) / max(1, len(cycles)):.2f})"
        )
        for name, s in per_site.items():
            print(
                f"  site {name}: ListTasks {s['ListTasks']} (= {s['polls']} polls + 1 resume "
                f"listing), CreateTask {s['CreateTask']}, GetTask {s['GetTask']}"
            )
        print(f"local CPU includes the {jobs} job shells; fedgen CPU is the coordinator alone")
    finally:
        for node in nodes.values():
            node.stop()
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
