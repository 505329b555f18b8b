"""Governance on a real ``fedgen node``: JWT/Passport auth, visas, Crypt4GH-encrypted egress."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest
from snakemake_executor_plugin_fedgen import crypt

from snakemake_fedgen.node.areas import area_of
from snakemake_fedgen.node.auth import Caller
from tests.node.conftest import simple_task, site, start_node, wait_task  # noqa: F401

from .issuer import AUDIENCE, ISSUER, Issuer

DATASET = "https://ega.test.invalid/datasets/EGAD0001"
COUNTS = "step\tquantity\tcount\nqc\tsamples_in\t120\nqc\tsamples_out\t117\n"


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture
def jwt_node(site, start_node, issuer, tmp_path):  # noqa: F811
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    (site.data / "genotypes.txt").write_text("individual-level data\n")
    config = site.config(
        runtime="host",
        jwt={"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE},
        datasets_requiring_visa={site.data.as_uri() + "/": DATASET},
    )
    return start_node(site.state, config=config)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_node_jwt__401_for_expired_wrong_audience_and_forged(jwt_node, issuer):
    from cryptography.hazmat.primitives.asymmetric import rsa

    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "expired": issuer.token("alice", exp_in=-300),
        "audience": issuer.token("alice", aud="fedgen-node-B"),
        "signature": issuer.token("alice", key=forger),
        "static": "not-a-configured-token",
    }
    for what, token in bad.items():
        resp = httpx.get(f"{jwt_node.url}/tasks", headers=_auth(token))
        assert resp.status_code == 401, what
        assert token not in resp.text
    ok = httpx.get(f"{jwt_node.url}/tasks", headers=_auth(issuer.token("alice")))
    assert ok.status_code == 200
    info = httpx.get(f"{jwt_node.url}/service-info").json()
    assert info["fedgen"]["auth"] == "jwt"


def test_node_visa__403_without_visa_and_runs_with_one(jwt_node, issuer, site):  # noqa: F811
    task = simple_task(
        "wc -l < genotypes.txt > n.txt",
        inputs=[
            {
                "path": "/fedgen/work/genotypes.txt",
                "url": (site.data / "genotypes.txt").as_uri(),
            }
        ],
        outputs=[{"path": "/fedgen/work/n.txt", "url": (site.work / "n.txt").as_uri()}],
    )
    no_visa = issuer.token("alice", visas=[issuer.visa("alice", "EGAD-other")])
    resp = httpx.post(f"{jwt_node.url}/tasks", json=task, headers=_auth(no_visa))
    assert resp.status_code == 403
    assert "EGAD0001" in resp.json()["message"]

    token = issuer.token("alice", visas=[issuer.visa("alice", DATASET)])
    resp = httpx.post(f"{jwt_node.url}/tasks", json=task, headers=_auth(token))
    assert resp.status_code == 200, resp.text
    doc = wait_task(jwt_node.url, resp.json()["id"], headers=_auth(token))
    assert doc["state"] == "COMPLETE", doc
    # A JWT caller's files are in the area of its (issuer, subject).
    area = area_of(Caller("alice", {"iss": ISSUER}, kind="jwt"))
    assert (site.work / area / "n.txt").read_text().strip() == "1"

    audit = [json.loads(line) for line in (site.state / "audit.jsonl").read_text().splitlines()]
    outcomes = [(r.get("caller"), r.get("action"), r.get("outcome")) for r in audit]
    assert ("alice", "CreateTask", "403") in outcomes
    assert ("alice", "CreateTask", "QUEUED") in outcomes


def test_node_crypt4gh__outbox_holds_ciphertext_and_decrypts_identically(
    site,  # noqa: F811
    start_node,  # noqa: F811
    tmp_path,
):
    sec, pub = crypt.generate_keypair(tmp_path / "coordinator")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("coordinator: static-token-0123456789\n")
    node = start_node(
        site.state,
        config=site.config(runtime="host", token_file=str(tokens), egress_recipient_key=str(pub)),
    )
    headers = _auth("static-token-0123456789")
    task = simple_task(
        f"mkdir -p results && printf '{COUNTS}' > results/qc_counts.tsv",
        outputs=[
            {
                "path": "/fedgen/work/results/qc_counts.tsv",
                "url": (site.egress / "A" / "qc_counts.tsv").as_uri(),
            }
        ],
    )
    resp = httpx.post(f"{node.url}/tasks", json=task, headers=headers)
    doc = wait_task(node.url, resp.json()["id"], headers=headers)
    assert doc["state"] == "COMPLETE", doc

    published = site.egress_area("coordinator") / "A" / "qc_counts.tsv"
    outbox = [p for p in site.egress.rglob("*") if p.is_file()]
    assert outbox == [published]
    assert published.read_bytes().startswith(crypt.MAGIC)
    assert b"samples_in" not in published.read_bytes()

    got = httpx.get(f"{node.egress_read_url}/A/qc_counts.tsv", headers=headers)
    assert got.status_code == 200
    assert got.headers["X-Fedgen-Sha256"] == hashlib.sha256(got.content).hexdigest()
    download = tmp_path / "qc_counts.tsv"
    download.write_bytes(got.content)
    crypt.decrypt_file(download, download, private_key=sec)
    assert download.read_text() == COUNTS

    audit = [json.loads(line) for line in (site.state / "audit.jsonl").read_text().splitlines()]
    airlock = next(r for r in audit if r.get("action") == "Airlock")
    sealed = next(r for r in audit if r.get("action") == "Encrypt")
    assert airlock["accepted"] is True
    assert (
        sealed["plaintext_sha256"]
        == airlock["sha256"]
        == hashlib.sha256(COUNTS.encode()).hexdigest()
    )
    assert sealed["sha256"] == hashlib.sha256(got.content).hexdigest()


def test_node_crypt4gh__recipient_from_task_tag(site, start_node, tmp_path):  # noqa: F811
    from snakemake_fedgen.governance.node import RECIPIENT_TAG

    sec, pub = crypt.generate_keypair(tmp_path / "coordinator")
    node = start_node(site.state, config=site.config(runtime="host"))
    task = simple_task(
        f"printf '{COUNTS}' > qc_counts.tsv",
        outputs=[
            {
                "path": "/fedgen/work/qc_counts.tsv",
                "url": (site.egress / "qc_counts.tsv").as_uri(),
            }
        ],
        tags={RECIPIENT_TAG: base64.b64encode(crypt.load_public_key(pub)).decode()},
    )
    doc = wait_task(node.url, httpx.post(f"{node.url}/tasks", json=task).json()["id"])
    assert doc["state"] == "COMPLETE", doc
    published = site.egress_area() / "qc_counts.tsv"
    assert crypt.is_encrypted(published)
    crypt.decrypt_file(published, tmp_path / "plain.tsv", private_key=sec)
    assert (tmp_path / "plain.tsv").read_text() == COUNTS
