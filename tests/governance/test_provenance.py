"""Provenance records written by a real node, the run's RO-Crate, and the audit log agreeing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import ProvenanceError

from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.governance import provenance
from snakemake_fedgen.node.caller_view import public_reason
from snakemake_fedgen.node.process import NodeProcess

RUN = "fedgen-test-run-0001"
TOKEN = "coordinator-token-0123456789"
COUNTS = "step\\tquantity\\tcount\\nqc\\tsamples_in\\t120\\n"
COUNTS_TEXT = "step\tquantity\tcount\nqc\tsamples_in\t120\n"


def _task(name, command, *, inputs=(), outputs=()):
    return {
        "name": name,
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["bash", "-c", command],
                "workdir": "/fedgen/work",
            }
        ],
        "inputs": list(inputs),
        "outputs": list(outputs),
        "tags": {"fedgen_run": RUN, "fedgen_site": "A", "fedgen_rule": name},
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One node, three tasks of one run: success with egress, executor error, airlock refusal."""
    root = tmp_path_factory.mktemp("prov")
    data, work, egress = root / "data", root / "work", root / "work" / "egress"
    for d in (data, work, egress):
        d.mkdir(parents=True)
    (data / "genotypes.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\n")
    (root / "tokens.yaml").write_text(f"coordinator: {TOKEN}\n")
    node = NodeProcess(
        root / "state",
        config={
            "read_roots": [str(data)],
            "write_roots": [str(work)],
            "egress_root": str(egress),
            "runtime": "host",
            **({"task_user": "nobody"} if os.geteuid() == 0 else {}),
            "node_id": "node-A",
            "token_file": str(root / "tokens.yaml"),
        },
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    genotypes = {"path": "/fedgen/work/g.vcf", "url": (data / "genotypes.vcf").as_uri()}
    tasks = [
        _task(
            "qc",
            f"mkdir -p out && wc -l g.vcf > out/n.txt && printf '{COUNTS}' > out/qc_counts.tsv",
            inputs=[genotypes],
            outputs=[
                {"path": "/fedgen/work/out/n.txt", "url": (work / "n.txt").as_uri()},
                {
                    "path": "/fedgen/work/out/qc_counts.tsv",
                    "url": (egress / "A" / "qc_counts.tsv").as_uri(),
                },
            ],
        ),
        _task("fails", "echo nope >&2; exit 3", inputs=[genotypes]),
        _task(
            "leak",
            "cp g.vcf leak.vcf",
            inputs=[genotypes],
            outputs=[{"path": "/fedgen/work/leak.vcf", "url": (egress / "leak.vcf").as_uri()}],
        ),
    ]
    ids = []
    try:
        for t in tasks:
            resp = httpx.post(f"{node.url}/tasks", json=t, headers=headers)
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["id"])
        docs = []
        for task_id in ids:
            deadline = time.monotonic() + 120
            while True:
                doc = httpx.get(
                    f"{node.url}/tasks/{task_id}", params={"view": "FULL"}, headers=headers
                ).json()
                meta = (doc.get("logs") or [{}])[-1].get("metadata") or {}
                done = doc["state"] not in ("QUEUED", "INITIALIZING", "RUNNING")
                if (done and provenance.METADATA_KEY in meta) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            docs.append(doc)
        sites = root / "sites.yaml"
        sites.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "sites": {
                        "A": {
                            "tes_url": node.url,
                            "token_env": "FEDGEN_TOKEN_A",
                            "work_url": work.as_uri(),
                            "egress_url": egress.as_uri(),
                            "egress_read_url": node.egress_read_url,
                            "datasets": {
                                "genotypes": {
                                    "url": (data / "genotypes.vcf").as_uri(),
                                    "duo": ["DUO:0000006", "DUO:0000021"],
                                }
                            },
                        }
                    },
                }
            )
        )
        (root / "config.yaml").write_text(
            yaml.safe_dump({"purpose": {"research_type": "HMB", "ethics_approval": True}})
        )
        (root / "results").mkdir()
        (root / "results" / "meta.tsv").write_text("variant_id\tbeta\nrs1\t0.1\n")
        (root / "Snakefile").write_text("rule all:\n    input: 'results/meta.tsv'\n")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake_fedgen",
                "provenance",
                "crate",
                "--sites",
                str(sites),
                "--run-id",
                RUN,
                "--purpose",
                str(root / "config.yaml"),
                "--workflow",
                "Snakefile",
                "--output",
                "results/meta.tsv",
                "--out",
                str(root / "crate"),
            ],
            cwd=root,
            env=dict(os.environ, FEDGEN_TOKEN_A=TOKEN),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        # As the workflow's crate rule runs it: no --run-id (the fedgen executor exports its
        # tag as $FEDGEN_RUN_ID), the purpose inline as JSON, the analysed sites named.
        env_proc = subprocess.run(
            [
                *(sys.executable, "-m", "snakemake_fedgen", "provenance", "crate"),
                *("--sites", str(sites), "--workflow", "Snakefile", "--site", "A"),
                *("--purpose", json.dumps({"research_type": "HMB", "ethics_approval": True})),
                *("--output", "results/meta.tsv", "--out", str(root / "crate-env")),
            ],
            cwd=root,
            env=dict(os.environ, FEDGEN_TOKEN_A=TOKEN, FEDGEN_RUN_ID=RUN),
            capture_output=True,
            text=True,
            check=False,
        )
        assert env_proc.returncode == 0, env_proc.stderr
    finally:
        node.stop()
    audit = [json.loads(x) for x in (root / "state" / "audit.jsonl").read_text().splitlines()]
    crate = json.loads((root / "crate" / "ro-crate-metadata.json").read_text())
    return {
        "root": root,
        "env_stderr": env_proc.stderr,
        "docs": dict(zip(["qc", "fails", "leak"], docs, strict=True)),
        "audit": audit,
        "crate": crate,
    }


def test_node_record__every_task_has_a_valid_record(finished_run):
    for name, doc in finished_run["docs"].items():
        record = provenance.from_task_log(doc)
        assert record is not None, name
        assert record["generator"] == "node" and record["node_id"] == "node-A"
        assert record["task_id"] == doc["id"] and record["state"] == doc["state"]
        stored = json.loads(
            (finished_run["root"] / "state" / "provenance" / f"{doc['id']}.json").read_text()
        )
        # The caller's copy is the site's record with refusal reasons replaced by the fixed
        # sentence (they quote refused content; tests/security/test_task_logs.py).
        for out in stored["outputs"]:
            if "airlock" in out and not out["airlock"]["accepted"]:
                out["airlock"]["reason"] = public_reason("airlock refused")
        assert stored == record
    assert [d["state"] for d in finished_run["docs"].values()] == [
        "COMPLETE",
        "EXECUTOR_ERROR",
        "SYSTEM_ERROR",
    ]


def test_node_record__hashes_versions_and_airlock(finished_run):
    root = finished_run["root"]
    qc = provenance.from_task_log(finished_run["docs"]["qc"])
    data_sha = hashlib.sha256((root / "data" / "genotypes.vcf").read_bytes()).hexdigest()
    assert qc["inputs"][0]["sha256"] == data_sha
    outs = {o["path"]: o for o in qc["outputs"]}
    n_txt = outs["/fedgen/work/out/n.txt"]
    assert n_txt["egress"] is False
    held = root / "work" / "static-coordinator" / "n.txt"  # the coordinator's area
    assert n_txt["sha256"] == hashlib.sha256(held.read_bytes()).hexdigest()
    counts = outs["/fedgen/work/out/qc_counts.tsv"]
    assert counts["airlock"] == {
        "accepted": True,
        "kind": "counts",
        "reason": counts["airlock"]["reason"],
    }
    assert counts["sha256"] == hashlib.sha256(COUNTS_TEXT.encode()).hexdigest()
    assert qc["tool_versions"]["plink2"].startswith("PLINK v2")
    assert qc["tool_versions"]["bcftools"].startswith("bcftools")
    assert qc["commands"][0][:2] == ["bash", "-c"]
    leak = provenance.from_task_log(finished_run["docs"]["leak"])
    assert leak["outputs"][0]["airlock"]["accepted"] is False
    assert leak["outputs"][0]["airlock"]["kind"] == "vcf"


def test_crate__agrees_with_the_node_audit_log(finished_run):
    graph = {e["@id"]: e for e in finished_run["crate"]["@graph"]}
    audit = finished_run["audit"]
    ended = {r["task"]: r["outcome"] for r in audit if r.get("action") == "TaskEnded"}
    actions = {
        e["identifier"]: e
        for e in graph.values()
        if e.get("@type") == "CreateAction" and e["@id"].startswith("#task-")
    }
    assert set(actions) == set(ended)
    for task_id, outcome in ended.items():
        status = actions[task_id]["actionStatus"]
        assert status.endswith("CompletedActionStatus") == (outcome == "COMPLETE")
        assert actions[task_id]["agent"] == {"@id": "#site-A"}
    # Every airlock decision in the audit is in the crate, with the same file hash and verdict.
    for rec in (r for r in audit if r.get("action") == "Airlock"):
        results = [graph[r["@id"]] for r in actions[rec["task"]]["result"]]
        match = [f for f in results if f["name"] == rec["file"]]
        assert len(match) == 1
        assert match[0]["sha256"] == rec["sha256"]
        verdict = graph[match[0]["subjectOf"]["@id"]]
        assert verdict["value"] == ("accepted" if rec["accepted"] else "refused")
    duo_a = graph["#duo-A"]
    assert duo_a["value"] == "allowed" and "IRB/ERB" in duo_a["description"]
    profiles = {p["@id"] for p in graph["./"]["conformsTo"]}
    assert "https://w3id.org/ro/wfrun/workflow/0.5" in profiles
    assert graph["./"]["mainEntity"] == {"@id": "Snakefile"}
    assert (finished_run["root"] / "crate" / "results" / "meta.tsv").is_file()
    assert graph["#run"]["identifier"] == RUN


def test_crate__holds_no_site_data(finished_run):
    text = (finished_run["root"] / "crate" / "ro-crate-metadata.json").read_text()
    assert "samples_in\\t120" not in text and "#CHROM" not in text


def test_crate_cli__run_tag_from_the_executor_env_and_inline_purpose(finished_run):
    root = finished_run["root"]
    assert f"run tag {RUN} (from $FEDGEN_RUN_ID" in finished_run["env_stderr"]
    env_graph = {
        e["@id"]: e
        for e in json.loads((root / "crate-env" / "ro-crate-metadata.json").read_text())["@graph"]
    }
    first = {e["@id"] for e in finished_run["crate"]["@graph"] if e["@id"].startswith("#task-")}
    assert {i for i in env_graph if i.startswith("#task-")} == first
    assert env_graph["#duo-A"]["value"] == "allowed"
    assert json.loads(env_graph["#purpose"]["value"]) == {
        "research_type": "HMB",
        "ethics_approval": True,
    }
    meta = env_graph["results/meta.tsv"]
    assert (
        meta["sha256"] == hashlib.sha256((root / "results" / "meta.tsv").read_bytes()).hexdigest()
    )
    # One run with one failed task of its own: the run is failed (every job key's last attempt
    # must complete).
    assert env_graph["#run"]["actionStatus"].endswith("FailedActionStatus")


def _crate_cli(root, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "provenance", "crate", *args],
        cwd=root,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        check=False,
    )


def _offline_registry(root):
    """A registry whose node is not running (nothing listens on the port)."""
    from snakemake_fedgen.node.process import free_port

    port = free_port()
    (root / "results").mkdir()
    (root / "results" / "meta.tsv").write_text("variant_id\tbeta\nrs1\t0.1\n")
    (root / "Snakefile").write_text("rule all:\n    input: 'results/meta.tsv'\n")
    sites = root / "sites.yaml"
    sites.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "sites": {
                    name: {
                        "tes_url": f"http://127.0.0.1:{port}/ga4gh/tes/v1",
                        "token_env": f"FEDGEN_TOKEN_{name}",
                        "work_url": (root / name).as_uri(),
                        "datasets": {"genotypes": {"url": (root / "g.vcf").as_uri(), "duo": [duo]}},
                    }
                    for name, duo in (("A", "DUO:0000042"), ("B", "DUO:0000011"))
                },
            }
        )
    )
    return sites


def test_crate_cli__local_run_lists_no_tasks_and_says_why(tmp_path):
    sites = _offline_registry(tmp_path)
    proc = _crate_cli(
        tmp_path,
        *("--sites", str(sites), "--workflow", "Snakefile", "--no-site-tasks"),
        *("--purpose", '{"research_type": "HMB"}', "--output", "results/meta.tsv"),
        *("--out", "provenance/ro-crate"),
    )
    assert proc.returncode == 0, proc.stderr
    graph = {
        e["@id"]: e
        for e in json.loads((tmp_path / "provenance/ro-crate/ro-crate-metadata.json").read_text())[
            "@graph"
        ]
    }
    assert not [i for i in graph if i.startswith("#task-")]
    assert "dataset_access: local" in graph["#run"]["description"]
    assert graph["#duo-A"]["value"] == "allowed"
    assert graph["#duo-B"]["value"] == "refused" and "DUO:0000011" in graph["#duo-B"]["description"]
    assert (
        graph["results/meta.tsv"]["sha256"]
        == hashlib.sha256((tmp_path / "results/meta.tsv").read_bytes()).hexdigest()
    )


def test_crate_cli__unreachable_site_leaves_no_partial_crate(tmp_path):
    sites = _offline_registry(tmp_path)
    out = tmp_path / "provenance" / "ro-crate"
    out.parent.mkdir()
    proc = _crate_cli(
        tmp_path,
        *("--sites", str(sites), "--run-id", RUN, "--site", "A", "--out", str(out)),
        env={"FEDGEN_TOKEN_A": TOKEN},
    )
    assert proc.returncode != 0
    assert f"cannot list the tasks of run {RUN}" in proc.stderr
    assert TOKEN not in proc.stderr
    assert not out.exists() and list(out.parent.iterdir()) == []
    unknown = _crate_cli(tmp_path, "--sites", str(sites), "--site", "Z", "--out", str(out))
    assert unknown.returncode != 0 and "no site Z" in unknown.stderr
    missing = _crate_cli(
        tmp_path,
        *("--sites", str(sites), "--no-site-tasks", "--output", "results/nope.tsv"),
        *("--out", str(out)),
    )
    assert missing.returncode != 0 and "results/nope.tsv: no such file" in missing.stderr
    assert not out.exists()


def test_record_cli__task_record_passes_the_airlock_and_tampering_does_not(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "out.tsv").write_text("y\n")
    out = tmp_path / "results" / "A" / "gwas.prov.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "provenance",
            "record",
            "--out",
            str(out),
            "--input",
            "in.txt",
            "--output",
            "out.tsv",
            "--command",
            "plink2 --glm",
            "--image",
            "fedgen/tools:0.1",
            "--site",
            "A",
            "--tool",
            "plink2",
        ],
        cwd=tmp_path,
        check=True,
    )
    record = json.loads(out.read_text())
    assert record["inputs"][0]["sha256"] == hashlib.sha256(b"x\n").hexdigest()
    assert set(record["tool_versions"]) == {"plink2"}
    decision = inspect(out, AirlockPolicy(task_provenance=True))
    assert decision.accepted and decision.kind == "provenance", decision.reason
    record["outputs"][0]["samples"] = ["S1", "S2"]  # smuggling sample ids
    out.write_text(json.dumps(record))
    assert not inspect(out, AirlockPolicy(task_provenance=True)).accepted
    with pytest.raises(ProvenanceError, match="outputs/0"):
        provenance.validate(record)
