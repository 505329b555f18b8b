"""The egress airlock inside the node: refused files are quarantined, approved ones served."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.node.conftest import simple_task, wait_task

SUMSTATS = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\n"
    "20\t1000\tA\tG\t0.1\t0.05\t0.3\t0.04\t500\n"
    "20\t2000\tC\tT\t-0.2\t0.06\t0.2\t0.001\t500\n"
)
VCF = (
    "##fileformat=VCFv4.2\n##contig=<ID=20>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\n"
    "20\t100\tv1\tA\tG\t.\tPASS\t.\tGT\t0/1\t1/1\t0/0\n"
    "20\t200\tv2\tC\tT\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\n"
)


def _egress_task(site, command: str, names: list[str], **extra):
    outputs = [
        {"path": f"/fedgen/work/{name}", "url": (site.egress / "A" / name).as_uri()}
        for name in names
    ]
    return simple_task(command, outputs=outputs, **extra)


def test_airlock__per_sample_files_refused_and_quarantined(site, start_node):
    node = start_node(site.state, config=site.config(airlock={"min_n": 50}))
    vcf_input = [{"path": "/fedgen/work/in.vcf", "content": VCF}]
    cases = {
        # A VCF copied to egress, even renamed as a table.
        "geno.tsv": _egress_task(site, "cp in.vcf geno.tsv", ["geno.tsv"], inputs=vcf_input),
        # A real PLINK 2 genotype file made by plink2 inside the task.
        "g.pgen": _egress_task(
            site,
            "plink2 --vcf in.vcf --make-pgen --out g --silent",
            ["g.pgen"],
            inputs=vcf_input,
        ),
        "pheno.tsv": _egress_task(
            site, "printf 'IID\\tqt\\ns1\\t0.5\\ns2\\t1.5\\n' > pheno.tsv", ["pheno.tsv"]
        ),
    }
    ids = {name: httpx.post(f"{node.url}/tasks", json=t).json()["id"] for name, t in cases.items()}
    for name, task_id in ids.items():
        doc = wait_task(node.url, task_id)
        assert doc["state"] == "SYSTEM_ERROR", (name, doc["logs"])
        reason = doc["logs"][0]["system_logs"][-1]
        assert "airlock refused" in reason and name in reason
        assert not (site.egress_area() / "A" / name).exists()
        quarantined = site.state / "quarantine" / "anonymous" / task_id / "fedgen/work" / name
        assert quarantined.is_file(), name
    records = [json.loads(line) for line in (site.state / "audit.jsonl").read_text().splitlines()]
    airlock = {r["task"]: r for r in records if r["action"] == "Airlock"}
    assert {airlock[ids[n]]["kind"] for n in ids} == {"vcf", "pgen", "sample-table"}
    for name, task_id in ids.items():
        rec = airlock[task_id]
        assert rec["accepted"] is False
        quarantined = site.state / "quarantine" / "anonymous" / task_id / "fedgen/work" / name
        assert rec["sha256"] == hashlib.sha256(quarantined.read_bytes()).hexdigest()
    assert list(site.egress.rglob("*.*")) == []


def test_airlock__valid_sumstats_published_and_served(site, start_node, tmp_path):
    import yaml

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump({"centre": "centre-token-123456", "other": "other-token-654321"})
    )
    node = start_node(site.state, config=site.config(token_file=str(tokens)))
    centre = {"Authorization": "Bearer centre-token-123456"}
    other = {"Authorization": "Bearer other-token-654321"}
    task = _egress_task(
        site,
        "cp in.tsv gwas.tsv",
        ["gwas.tsv"],
        inputs=[{"path": "/fedgen/work/in.tsv", "content": SUMSTATS}],
    )
    task_id = httpx.post(f"{node.url}/tasks", json=task, headers=centre).json()["id"]
    doc = wait_task(node.url, task_id, headers=centre)
    assert doc["state"] == "COMPLETE", doc["logs"]
    assert (site.egress_area("centre") / "A" / "gwas.tsv").read_text() == SUMSTATS
    resp = httpx.get(f"{node.egress_read_url}/A/gwas.tsv", headers=centre)
    assert resp.status_code == 200
    assert resp.text == SUMSTATS
    assert resp.headers["x-fedgen-sha256"] == hashlib.sha256(SUMSTATS.encode()).hexdigest()
    assert httpx.get(f"{node.egress_read_url}/A/gwas.tsv").status_code == 401
    assert httpx.get(f"{node.egress_read_url}/A/gwas.tsv", headers=other).status_code == 404
    # A file that is in the egress root but was not published by the airlock is not served.
    (site.egress_area("centre") / "A" / "planted.tsv").write_text(SUMSTATS)
    assert httpx.get(f"{node.egress_read_url}/A/planted.tsv", headers=centre).status_code == 404
    resp = httpx.get(f"{node.egress_read_url}/A/%2E%2E/%2E%2E/data", headers=centre)
    assert resp.status_code in (400, 404)
    records = [json.loads(line) for line in (site.state / "audit.jsonl").read_text().splitlines()]
    decision = next(r for r in records if r["action"] == "Airlock")
    assert decision["accepted"] is True and decision["kind"] == "sumstats"


def test_airlock__one_refused_file_blocks_the_whole_task(site, start_node):
    node = start_node(site.state, config=site.config())
    task = _egress_task(
        site,
        "cp in.tsv gwas.tsv && cp in.vcf geno.vcf",
        ["gwas.tsv", "geno.vcf"],
        inputs=[
            {"path": "/fedgen/work/in.tsv", "content": SUMSTATS},
            {"path": "/fedgen/work/in.vcf", "content": VCF},
        ],
    )
    task_id = httpx.post(f"{node.url}/tasks", json=task).json()["id"]
    doc = wait_task(node.url, task_id)
    assert doc["state"] == "SYSTEM_ERROR"
    assert not (site.egress_area() / "A" / "gwas.tsv").exists()
    assert not (site.egress_area() / "A" / "geno.vcf").exists()
    quarantine = site.state / "quarantine" / "anonymous" / task_id
    assert (quarantine / "fedgen" / "work" / "geno.vcf").is_file()


def test_airlock__low_n_rows_refused(site, start_node):
    node = start_node(site.state, config=site.config(airlock={"min_n": 1000}))
    task = _egress_task(
        site,
        "cp in.tsv gwas.tsv",
        ["gwas.tsv"],
        inputs=[{"path": "/fedgen/work/in.tsv", "content": SUMSTATS}],
    )
    doc = wait_task(node.url, httpx.post(f"{node.url}/tasks", json=task).json()["id"])
    assert doc["state"] == "SYSTEM_ERROR"
    assert "min_n" in doc["logs"][0]["system_logs"][-1]
