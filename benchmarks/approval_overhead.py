"""What approved code costs at CreateTask: a node with ``approved_code: required`` against one
without, on the same task document (the workflow's ``gwas_glm`` template, as the executor sends
it), measured in one run with the two nodes interleaved.

Run by hand::

    .venv/bin/python benchmarks/approval_overhead.py --tasks 300
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from snakemake_executor_plugin_fedgen import approval

from snakemake_fedgen.demo import SNAKEFILE
from snakemake_fedgen.node.approvals import read_release
from snakemake_fedgen.node.process import NodeProcess

WORKFLOW = SNAKEFILE.parent.parent
RULE = "gwas_glm"


def _node(base: Path, mode: str) -> tuple[NodeProcess, str]:
    for d in ("data", "work"):
        (base / d).mkdir(parents=True)
    token = secrets.token_hex(16)
    (base / "tokens.yaml").write_text(yaml.safe_dump({"bench": token}))
    (base / "tokens.yaml").chmod(0o600)
    if mode == "required":
        subprocess.run(
            [sys.executable, "-m", "snakemake_fedgen", "node", "approve", str(WORKFLOW),
             "--yes", "--state-dir", str(base / "state")],
            check=True, capture_output=True,
        )  # fmt: skip
    node = NodeProcess(
        base / "state",
        config={
            "read_roots": [str(base / "data")],
            "write_roots": [str(base / "work")],
            "token_file": str(base / "tokens.yaml"),
            "approved_code": mode,
            "allowed_images": ["fedgen/tools:*"],
            "cpu_cores": 1,
            "max_queued_per_caller": 1_000_000,
        },
    )
    return node, token


def _task() -> dict[str, Any]:
    [template] = {t.text for t in read_release(WORKFLOW).templates if t.rule == RULE}
    values = {key: "sites/A/gwas/x" for key in approval.fields(template)}
    values.update({"threads": "2", "resources.mem_mb": "2000", "wildcards.trait": "qt"})
    cmd = approval.render(template, values).strip()
    logs = ["logs/A/gwas_glm.qt.log"]
    entry = {
        "kind": "rule",
        "rule": RULE,
        "template": approval.template_id(template),
        "values": values,
        "logs": logs,
    }
    return {
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": approval.rule_command(cmd, logs),
                "workdir": "/fedgen/work",
            }
        ],
        "tags": {approval.APPROVAL_TAG: approval.approval_tag([entry])},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=300, help="CreateTask calls per node")
    args = ap.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    doc = _task()
    root = Path(tempfile.mkdtemp(prefix="fedgen-approval-bench-"))
    nodes = {mode: _node(root / mode, mode) for mode in ("off", "required")}
    clients = {
        m: httpx.Client(base_url=n.url, headers={"Authorization": f"Bearer {t}"})
        for m, (n, t) in nodes.items()
    }
    latency: dict[str, list[float]] = {m: [] for m in nodes}
    try:
        for _ in range(args.tasks):
            for mode, client in clients.items():
                t0 = time.perf_counter()
                resp = client.post("/tasks", json=doc)
                latency[mode].append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    raise SystemExit(f"{mode}: CreateTask answered {resp.status_code}: {resp.text}")
    finally:
        for node, _ in nodes.values():
            node.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'approved_code':<14}{'p50 ms':>8}{'p95 ms':>8}  ({args.tasks} CreateTask each)")
    for mode, values in latency.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{mode:<14}{statistics.median(values):>8.2f}{p95:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
