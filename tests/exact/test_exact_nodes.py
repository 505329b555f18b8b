"""Exact mode through real ``fedgen node`` sites: TES tasks, airlock, egress reads.

Three nodes on loopback, each with its own data directory. Each site runs one TES task
(``fedgen exact aggregate`` then ``fedgen exact mask``); only the masked upload is an egress
output, the plain aggregates go to site-private storage. The coordinator reads the three
uploads through the nodes' egress endpoints and solves; the result equals the plain solve of
the same sites (computed here from the test's own copy of the data).
"""

from __future__ import annotations

import hashlib
import shutil
import time

import httpx
import numpy as np
import pytest
import yaml

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.solve import solve, sum_aggregates
from snakemake_fedgen.node.process import NodeProcess
from snakemake_fedgen.node.steward import site_logs

from .conftest import site_aggregates
from .exact_study import make_study, readable_by_task_user

TOKEN = "centre-token-0123456789"
INPUTS = (
    "geno.pgen", "geno.pvar", "geno.psam", "pheno.tsv", "x25519.key", "sites.yaml", "panel.pvar",
)  # fmt: skip
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wait(url: str, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = httpx.get(f"{url}/tasks/{task_id}", params={"view": "FULL"}, headers=AUTH).json()
        if doc["state"] not in ("QUEUED", "INITIALIZING", "RUNNING") or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def _site_task(site: str, data, work, egress, *, round_id: str, participants: str) -> dict:
    def inp(name):
        return {"path": f"/fedgen/work/{name}", "url": (data / name).as_uri()}

    command = (
        "fedgen exact aggregate --pfile geno --pheno pheno.tsv --pheno-name qt "
        f"--covar-name age,sex --site {site} --registry sites.yaml --out agg.tsv && "
        "fedgen exact mask --aggregates agg.tsv --key x25519.key --registry sites.yaml "
        f"--round {round_id} --participants {participants} --variants panel.pvar "
        "--ledger rounds.txt --out masked.tsv"
    )
    return {
        "name": f"exact-{site}",
        "inputs": [inp(n) for n in INPUTS],
        "outputs": [
            {"path": "/fedgen/work/agg.tsv", "url": (work / "qt.aggregates.tsv").as_uri()},
            {
                "path": "/fedgen/work/masked.tsv",
                "url": (egress / "qt.aggregates.masked.tsv").as_uri(),
            },
        ],
        "executors": [
            {
                "image": "fedgen/tools:0.1",
                "command": ["sh", "-c", command],
                "workdir": "/fedgen/work",
            }
        ],
    }


@pytest.mark.e2e
def test_nodes__secure_round_over_three_sites(tmp_path):
    study = make_study(tmp_path / "study", sizes=(120, 200, 90), m=60, seed=33)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"centre": TOKEN}))
    registry = {"version": 1, "sites": {}}
    dirs = {}
    for s in study.sites:
        root = tmp_path / "sites" / s
        data, work = root / "data", root / "work"
        egress = work / "egress"
        for d in (data, egress):
            d.mkdir(parents=True)
        for ext in (".pgen", ".pvar", ".psam"):
            shutil.copy(str(study.site_pfiles[s]) + ext, data / f"geno{ext}")
        shutil.copy(study.site_pheno[s], data / "pheno.tsv")
        shutil.copy(study.pooled.with_suffix(".pvar"), data / "panel.pvar")
        public = secure.generate_key(data / "x25519.key")
        readable_by_task_user(data / "x25519.key")
        dirs[s] = (root, data, work, egress)
        registry["sites"][s] = {
            "tes_url": "http://127.0.0.1:1/ga4gh/tes/v1",
            "work_url": work.as_uri(),
            "public_key_x25519": public,
        }
    for s in study.sites:
        (dirs[s][1] / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))

    nodes: dict[str, NodeProcess] = {}
    try:
        for s in study.sites:
            root, data, work, egress = dirs[s]
            nodes[s] = NodeProcess(
                root / "state",
                config={
                    "read_roots": [str(data)],
                    "write_roots": [str(work)],
                    "egress_root": str(egress),
                    "token_file": str(tokens),
                    "node_id": f"site-{s}",
                    # Site C has not enabled secure aggregation: its airlock refuses the upload.
                    "airlock": {"min_n": 50, "min_mac": 10, "secure_aggregation": s != "C"},
                },
            )
        ids = {
            s: httpx.post(
                f"{nodes[s].url}/tasks",
                json=_site_task(s, *dirs[s][1:], round_id="r1", participants="A,B,C"),
                headers=AUTH,
            ).json()["id"]
            for s in study.sites
        }
        docs = {s: _wait(nodes[s].url, ids[s]) for s in study.sites}
        assert docs["A"]["state"] == docs["B"]["state"] == "COMPLETE", docs["A"]["logs"]
        assert docs["C"]["state"] == "SYSTEM_ERROR"
        # The caller gets the fixed sentence; the reason with the fix is for C's steward.
        assert docs["C"]["logs"][0]["system_logs"][-1].startswith("the airlock refused")
        assert "secure_aggregation: true" in site_logs(dirs["C"][0] / "state", ids["C"])
        assert not list(dirs["C"][3].rglob("qt.aggregates.masked.tsv"))

        # Site C turns secure aggregation on; the round is rerun under a new id by all three.
        nodes["C"].stop()
        root, data, work, egress = dirs["C"]
        nodes["C"] = NodeProcess(
            root / "state",
            config={
                "read_roots": [str(data)],
                "write_roots": [str(work)],
                "egress_root": str(egress),
                "token_file": str(tokens),
                "node_id": "site-C",
                "airlock": {"min_n": 50, "min_mac": 10, "secure_aggregation": True},
            },
        )
        uploads = []
        for s in study.sites:
            task = _site_task(s, *dirs[s][1:], round_id="r2", participants="A,B,C")
            task_id = httpx.post(f"{nodes[s].url}/tasks", json=task, headers=AUTH).json()["id"]
            doc = _wait(nodes[s].url, task_id)
            assert doc["state"] == "COMPLETE", doc["logs"]
            resp = httpx.get(f"{nodes[s].egress_read_url}/qt.aggregates.masked.tsv", headers=AUTH)
            assert resp.status_code == 200
            assert resp.headers["x-fedgen-sha256"] == hashlib.sha256(resp.content).hexdigest()
            path = tmp_path / "centre" / f"{s}.masked.tsv"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(resp.content)
            uploads.append(secure.read_masked(path))
            # The plain aggregates stayed at the site and are not served.
            assert (dirs[s][2] / "static-centre" / "qt.aggregates.tsv").is_file()
            private = httpx.get(f"{nodes[s].egress_read_url}/../qt.aggregates.tsv", headers=AUTH)
            assert private.status_code in (400, 404)

        def run_a(round_id: str) -> dict:
            task = _site_task("A", *dirs["A"][1:], round_id=round_id, participants="A,B,C")
            task_id = httpx.post(f"{nodes['A'].url}/tasks", json=task, headers=AUTH).json()["id"]
            return _wait(nodes["A"].url, task_id)

        # The same round with the same data again (a retried job) masks to the same bytes.
        assert run_a("r2")["state"] == "COMPLETE"
        # The same round id with different data: the two uploads' difference carries no mask,
        # so the centre would learn how A's aggregates changed. Each task's own ledger starts
        # empty (a TES task keeps no state at the site); the node refuses it.
        pheno = dirs["A"][1] / "pheno.tsv"
        lines = pheno.read_text().splitlines()
        col = lines[0].split("\t").index("qt")
        row = lines[1].split("\t")
        row[col] = str(float(row[col]) + 1.0)
        pheno.write_text("\n".join([lines[0], "\t".join(row), *lines[2:]]) + "\n")
        refused = run_a("r2")
        assert refused["state"] == "SYSTEM_ERROR"
        assert "round 'r2' was already published by this site" in site_logs(
            dirs["A"][0] / "state", refused["id"]
        )
        assert run_a("r3")["state"] == "COMPLETE"  # a new round id is fine
    finally:
        for node in nodes.values():
            node.stop()
    got = solve(secure.unmask_sum(uploads))
    want = solve(sum_aggregates(site_aggregates(study)))
    assert got.n == want.n == 410
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-8)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-8)
