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

from snakemake_fedgen.egress import crypt
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
    # The executor finds the private key next to the registry's .pub (coordinator.sec).
    _sec, pub = crypt.generate_keypair(tmp_path / "coordinator")
    wd = _workdir(tmp_path, {"research_type": "HMB", "ethics_approval": True})
    registry = one_site.write_registry(
        tmp_path / "sites.yaml",
        A={
            "crypt4gh_recipient_key": str(pub),
            "datasets": {"genotypes": {"url": "file:///nowhere.vcf.gz", "duo": ["DUO:0000006"]}},
        },
    )
    proc = run_snakemake(wd, registry, env=one_site.env)
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
        env={**os.environ, **one_site.env},
        capture_output=True,
        text=True,
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

    from snakemake_fedgen.reference import read_reference

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
    table = (site.work / "work/A/phenotypes.tsv").read_text().splitlines()
    assert table[0] == "#FID\tIID\tsex\tage\tqt\tbt"
    assert table[1] == "S1\tS1\t1\t45.5\t130.5\t2"
    assert len(table) == 1 + len(PEOPLE)
