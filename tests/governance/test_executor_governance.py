"""Governance through a real Snakemake run (--executor fedgen) against a real node.

Crypt4GH: the node's outbox holds ciphertext only and the coordinator ends with the plaintext.
DUO: a purpose the site's consent does not permit stops the run before any task is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml
from snakemake_executor_plugin_fedgen import crypt

from tests.executor.conftest import one_site, run_snakemake  # noqa: F401

pytestmark = pytest.mark.e2e

COUNTS = "step\tquantity\tcount\nqc\tsamples_in\t120\nqc\tsamples_out\t117\n"
SNAKEFILE = r"""
configfile: "config.yaml"


rule all:
    input:
        "results/sumstats/A/qc_counts.tsv",


rule counts:
    output:
        "results/sumstats/{site}/qc_counts.tsv",
    log:
        "logs/{site}/counts.log",
    shell:
        "printf 'step\\tquantity\\tcount\\nqc\\tsamples_in\\t120\\nqc\\tsamples_out\\t117\\n' "
        "> {output} 2> {log}"
"""


def _workdir(tmp_path, purpose):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "Snakefile").write_text(SNAKEFILE)
    (wd / "config.yaml").write_text(yaml.safe_dump({"purpose": purpose}))
    return wd


def test_snakemake_crypt4gh__outbox_ciphertext_coordinator_plaintext(one_site, tmp_path):  # noqa: F811
    sec, pub = crypt.generate_keypair(tmp_path / "coordinator")
    # Not next to the .pub, so the executor needs --fedgen-crypt4gh-key to find it.
    private = sec.rename(tmp_path / "private.c4gh")
    wd = _workdir(tmp_path, {"research_type": "HMB", "ethics_approval": True})
    registry = one_site.write_registry(
        tmp_path / "sites.yaml",
        A={
            "crypt4gh_recipient_key": str(pub),
            "datasets": {"genotypes": {"url": "file:///nowhere.vcf.gz", "duo": ["DUO:0000006"]}},
        },
    )
    proc = run_snakemake(wd, registry, "--fedgen-crypt4gh-key", str(private), env=one_site.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (wd / "results/sumstats/A/qc_counts.tsv").read_text() == COUNTS

    site = one_site.sites["A"]
    outbox = [p for p in site.egress.rglob("*") if p.is_file()]
    assert outbox, "nothing published"
    for path in outbox:
        assert path.read_bytes().startswith(crypt.MAGIC), path
        assert b"samples_in" not in path.read_bytes()
    sealed = [r for r in site.audit() if r.get("action") == "Encrypt"]
    assert [r["plaintext_sha256"] for r in sealed] == [hashlib.sha256(COUNTS.encode()).hexdigest()]
    assert "data use at site A: allowed" in proc.stderr

    # The run ends with its RO-Crate, built from the workdir (default run tag).
    crate_proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "provenance",
            "crate",
            "--sites",
            str(registry),
            "--purpose",
            "config.yaml",
            "--workflow",
            "Snakefile",
            "--output",
            "results/sumstats/A/qc_counts.tsv",
            "--out",
            "crate",
        ],
        cwd=wd,
        # Without FEDGEN_RUN_ID: an in-process Snakemake run of an earlier test (Snakemake's own
        # executor suite) may have left its run tag in this process's environment.
        env={**{k: v for k, v in os.environ.items() if k != "FEDGEN_RUN_ID"}, **one_site.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert crate_proc.returncode == 0, crate_proc.stderr
    graph = {
        e["@id"]: e for e in json.loads((wd / "crate/ro-crate-metadata.json").read_text())["@graph"]
    }
    tasks = [e for e in graph.values() if e["@id"].startswith("#task-")]
    ended = {r["task"] for r in site.audit() if r.get("action") == "TaskEnded"}
    assert {t["identifier"] for t in tasks} == ended
    results = [graph[r["@id"]] for t in tasks for r in t.get("result", [])]
    egress = [f for f in results if f.get("encodingFormat") == "application/crypt4gh"]
    assert [f["sha256"] for f in egress] == [hashlib.sha256(COUNTS.encode()).hexdigest()]
    assert graph["#duo-A"]["value"] == "allowed"


def test_snakemake_duo__refused_purpose_sends_no_task(one_site, tmp_path):  # noqa: F811
    wd = _workdir(tmp_path, {"research_type": "HMB"})
    registry = one_site.write_registry(
        tmp_path / "sites.yaml",
        A={"datasets": {"genotypes": {"url": "file:///nowhere.vcf.gz", "duo": ["DUO:0000011"]}}},
    )
    proc = run_snakemake(wd, registry, env=one_site.env)
    assert proc.returncode != 0
    assert "site A" in proc.stderr and "DUO:0000011" in proc.stderr
    actions = {r.get("action") for r in one_site.sites["A"].audit()}
    assert "CreateTask" not in actions
    assert not (wd / "results").exists()


PHENO_SNAKEFILE = r"""
import sys

FEDGEN = f"{sys.executable} -m snakemake_fedgen"

localrules: all, dataset_ref


rule all:
    input:
        "work/A/phenotypes.tsv",


rule dataset_ref:
    output:
        directory("sites/{site}/datasets/phenopackets"),
    shell:
        "{FEDGEN} sites ref --sites {config[sites]} --site {wildcards.site} "
        "--dataset phenopackets --output {output}"


rule phenotypes:
    input:
        packets="sites/{site}/datasets/phenopackets",
    output:
        "work/{site}/phenotypes.tsv",
    log:
        "logs/{site}/phenotypes.log",
    shell:
        "{FEDGEN} phenopackets to-table {input.packets} --out {output} "
        "--qt LOINC:2089-1 --bt HP:0000822 2> {log}"
"""


def test_snakemake_phenopackets__table_made_at_the_site_stays_there(one_site, tmp_path):  # noqa: F811
    from google.protobuf import json_format
    from snakemake_executor_plugin_fedgen.reference import read_reference

    from .test_phenopackets import PEOPLE, _packet

    site = one_site.sites["A"]
    packets = site.root / "data" / "phenopackets"
    packets.mkdir()
    for person in PEOPLE:
        (packets / f"{person[0]}.json").write_text(json_format.MessageToJson(_packet(*person)))
    registry = one_site.write_registry(
        tmp_path / "sites.yaml",
        A={"datasets": {"phenopackets": {"url": packets.as_uri() + "/"}}},
    )
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "Snakefile").write_text(PHENO_SNAKEFILE)
    proc = run_snakemake(wd, registry, "--config", f"sites={registry}", env=one_site.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = read_reference(wd / "work/A/phenotypes.tsv")
    assert ref is not None and ref.site == "A"  # the coordinator holds only a reference
    table = (site.area / "work/A/phenotypes.tsv").read_text().splitlines()
    assert table[0] == "#FID\tIID\tsex\tage\tqt\tbt"
    assert table[1] == "S1\tS1\t1\t45.5\t130.5\t2"
    assert len(table) == 1 + len(PEOPLE)


VISA_SNAKEFILE = r"""
import sys

FEDGEN = f"{sys.executable} -m snakemake_fedgen"

localrules: all, dataset_ref


rule all:
    input:
        "results/sumstats/A/qc_counts.tsv",


rule dataset_ref:
    output:
        "sites/{site}/datasets/samples.txt",
    shell:
        "{FEDGEN} sites ref --sites {config[sites]} --site {wildcards.site} "
        "--dataset samples --output {output}"


rule count:
    input:
        "sites/{site}/datasets/samples.txt",
    output:
        "results/sumstats/{site}/qc_counts.tsv",
    log:
        "logs/{site}/count.log",
    shell:
        "printf 'step\\tquantity\\tcount\\nqc\\tsamples\\t%s\\n' $(wc -l < {input}) "
        "> {output} 2> {log}"
"""


def test_snakemake_passport__token_command_jwt_needs_a_visa(tmp_path):
    from snakemake_fedgen.node.process import NodeProcess

    from .issuer import AUDIENCE, ISSUER, Issuer

    dataset = "https://ega.test.invalid/datasets/EGAD0009"
    issuer = Issuer()
    root = tmp_path / "siteA"
    data, work, egress = root / "data", root / "work", root / "egress"
    for d in (data, work, egress):
        d.mkdir(parents=True)
    (data / "samples.txt").write_text("".join(f"IND{i}\n" for i in range(12)))
    node = NodeProcess(
        root / "state",
        config={
            "read_roots": [str(data), str(work), str(egress)],
            "write_roots": [str(work), str(egress)],
            "egress_root": str(egress),
            "runtime": "host",
            **({"task_user": "nobody"} if os.geteuid() == 0 else {}),
            "airlock": {"min_cell": 5},
            "jwt": {
                "jwks": str(issuer.write_jwks(tmp_path / "jwks.json")),
                "issuer": ISSUER,
                "audience": AUDIENCE,
            },
            "datasets_requiring_visa": {data.as_uri() + "/": dataset},
        },
    )
    try:
        token_file = tmp_path / "token.jwt"
        registry = tmp_path / "sites.yaml"
        registry.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "sites": {
                        "A": {
                            "tes_url": node.url,
                            "token_command": ["cat", str(token_file)],
                            "work_url": work.as_uri(),
                            "egress_url": egress.as_uri(),
                            "egress_read_url": node.egress_read_url,
                            "default_image": "fedgen/tools:0.1",
                            "datasets": {"samples": {"url": (data / "samples.txt").as_uri()}},
                        }
                    },
                }
            )
        )
        wd = tmp_path / "wd"
        wd.mkdir()
        (wd / "Snakefile").write_text(VISA_SNAKEFILE)
        args = ("--config", f"sites={registry}")

        token_file.write_text(issuer.token("alice", visas=[]))
        refused = run_snakemake(wd, registry, *args, env={})
        assert refused.returncode != 0
        assert "EGAD0009" in refused.stderr
        audit = [json.loads(x) for x in (root / "state/audit.jsonl").read_text().splitlines()]
        assert ("alice", "403") in {(r.get("caller"), r.get("outcome")) for r in audit}

        token_file.write_text(issuer.token("alice", visas=[issuer.visa("alice", dataset)]))
        ok = run_snakemake(wd, registry, *args, env={})
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert (wd / "results/sumstats/A/qc_counts.tsv").read_text().endswith("qc\tsamples\t12\n")
    finally:
        node.stop()
