"""Callers' areas: another caller on the same node against a victim's files and tasks.

Both callers name the same site URLs (the executor builds them from the registry's work_url and
egress_url, which every coordinator of a site shares). The node keeps each caller's files in
its own area of the write roots, so the same URL means a different file for each caller.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
import yaml

from tests.governance.issuer import AUDIENCE, ISSUER, Issuer
from tests.security.conftest import executor, logs_text, needs_bwrap, stdouts, system_log, task

pytestmark = needs_bwrap

SUMSTATS = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\n"
    "20\t1000\tA\tG\t{beta}\t0.05\t0.3\t0.04\t500\n"
)
OTHER_ISSUER = "https://other-aai.test.invalid/"


def _write(client, url: str, text: str) -> dict:
    doc = client.run(
        task(
            executor(f"printf '{text}' > f.txt"),
            outputs=[{"path": "/fedgen/work/f.txt", "url": url}],
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    return doc


def _read(client, url: str):
    """(status of CreateTask, stdout of `cat` of the input, or None)."""
    resp = client.post(
        task(executor("cat in.txt"), inputs=[{"path": "/fedgen/work/in.txt", "url": url}])
    )
    if resp.status_code != 200:
        return resp.status_code, None
    doc = client.wait(resp.json()["id"])
    return 200, (stdouts(doc) or [None])[0]


def test_intermediate_file__other_caller_can_neither_overwrite_nor_read_it(bwrap_site):
    site = bwrap_site
    url = (site.work / "results" / "step1.txt").as_uri()
    _write(site.alice, url, "alice data\\n")
    # Bob names the very same URL: he writes his own file, not alice's.
    _write(site.bob, url, "poison\\n")
    assert _read(site.alice, url) == (200, "alice data\n"), "alice's next step read bob's file"
    assert _read(site.bob, url) == (200, "poison\n")
    # A file only alice has: bob cannot read it under any URL.
    secret = (site.work / "private" / "a.txt").as_uri()
    _write(site.alice, secret, "alice-secret\\n")
    status, out = _read(site.bob, secret)
    assert status == 400 and out is None, (status, out)
    for path in site.work.rglob("a.txt"):
        rel = path.relative_to(site.work).as_posix()
        status, out = _read(site.bob, path.as_uri())
        assert (status, out) == (400, None), f"bob read alice's file as {rel}"


def test_egress_path__other_caller_cannot_take_it_over_or_read_it(bwrap_site):
    site = bwrap_site
    url = (site.egress / "A" / "gwas.tsv").as_uri()
    alice_bytes = SUMSTATS.format(beta="0.1")
    bob_bytes = SUMSTATS.format(beta="-9.9")
    _write(site.alice, url, alice_bytes)
    _write(site.bob, url, bob_bytes)
    read = site.node.egress_read_url
    got = site.alice.egress(read, "A/gwas.tsv")
    assert got.status_code == 200, "bob took over alice's egress path"
    assert got.text == alice_bytes
    assert got.headers["x-fedgen-sha256"] == hashlib.sha256(alice_bytes.encode()).hexdigest()
    assert site.bob.egress(read, "A/gwas.tsv").text == bob_bytes
    # Bob's own task cannot read alice's published file either.
    for path in site.egress.rglob("gwas.tsv"):
        _status, out = _read(site.bob, path.as_uri())
        assert out != alice_bytes, f"bob read alice's published file at {path}"
    assert _read(site.bob, url) == (200, bob_bytes)


def test_areas_on_disk__per_caller_directories_egress_and_quarantine(bwrap_site):
    site = bwrap_site
    _write(site.alice, (site.work / "x.txt").as_uri(), "a\\n")
    _write(site.bob, (site.work / "x.txt").as_uri(), "b\\n")
    assert (site.work / "static-alice" / "x.txt").read_text() == "a\n"
    assert (site.work / "static-bob" / "x.txt").read_text() == "b\n"
    assert not (site.work / "x.txt").exists()
    _write(site.alice, (site.egress / "A" / "gwas.tsv").as_uri(), SUMSTATS.format(beta="0.1"))
    assert (site.egress / "static-alice" / "A" / "gwas.tsv").is_file()
    refused = site.bob.run(
        task(
            executor("printf 'IID\\tqt\\nP1\\t1\\n' > ids.tsv"),
            outputs=[
                {"path": "/fedgen/work/ids.tsv", "url": (site.egress / "B" / "ids.tsv").as_uri()}
            ],
        )
    )
    assert refused["state"] == "SYSTEM_ERROR"
    quarantined = site.state / "quarantine" / "static-bob" / refused["id"] / "fedgen/work/ids.tsv"
    assert quarantined.is_file()
    for area in (site.work / "static-alice", site.egress / "static-alice"):
        assert area.stat().st_mode & 0o077 == 0, f"{area} is open to other users"


def test_task_listing_and_logs_name_only_the_callers_own_urls(bwrap_site):
    site = bwrap_site
    url = (site.work / "y.txt").as_uri()
    doc = _write(site.alice, url, "y\\n")
    assert doc["logs"][-1]["outputs"][0]["url"] == url, "the caller sees the URL it asked for"
    assert str(site.work / "static-alice") not in logs_text(doc), "no host path of the area"


@pytest.fixture
def jwt_site(make_site, tmp_path):
    issuer = Issuer()
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    site = make_site()
    site.start(
        runtime="bwrap",
        jwt={"jwks": str(jwks), "issuer": [ISSUER, OTHER_ISSUER], "audience": AUDIENCE},
    )
    return site, issuer


def test_jwt_subject__is_not_the_static_caller_of_that_name_nor_of_another_issuer(jwt_site):
    site, issuer = jwt_site
    url = site.node.url
    static = site.alice.headers
    jwt_alice = {"Authorization": f"Bearer {issuer.token('alice')}"}
    other_alice = {"Authorization": f"Bearer {issuer.token('alice', iss=OTHER_ISSUER)}"}
    task_id = site.alice.create(task(executor("true")))
    for headers in (jwt_alice, other_alice):
        assert httpx.get(f"{url}/tasks/{task_id}", headers=headers).status_code == 404
        assert httpx.post(f"{url}/tasks/{task_id}:cancel", headers=headers).status_code == 404
        assert httpx.get(f"{url}/tasks", headers=headers).json()["tasks"] == []
    assert httpx.get(f"{url}/tasks/{task_id}", headers=static).status_code == 200
    # The two JWT callers named alice are two callers as well.
    jwt_task = httpx.post(f"{url}/tasks", json=task(executor("true")), headers=jwt_alice)
    assert jwt_task.status_code == 200
    jwt_id = jwt_task.json()["id"]
    assert httpx.get(f"{url}/tasks/{jwt_id}", headers=jwt_alice).status_code == 200
    assert httpx.get(f"{url}/tasks/{jwt_id}", headers=other_alice).status_code == 404
    assert httpx.get(f"{url}/tasks/{jwt_id}", headers=static).status_code == 404


def test_jwt_subject__files_of_the_static_caller_of_that_name_are_out_of_reach(jwt_site):
    site, issuer = jwt_site
    url = (site.work / "z.txt").as_uri()
    _write(site.alice, url, "static alice\\n")
    jwt_alice = {"Authorization": f"Bearer {issuer.token('alice')}"}
    resp = httpx.post(
        f"{site.node.url}/tasks",
        json=task(executor("cat in.txt"), inputs=[{"path": "/fedgen/work/in.txt", "url": url}]),
        headers=jwt_alice,
    )
    assert resp.status_code == 400, resp.text


def test_token_file_names_cannot_escape_the_write_root(make_site):
    site = make_site()
    tokens = {"../../evil": "evil-token-0123456789", "a/b": "slash-token-0123456789"}
    site.tokens = tokens
    site.token_file.write_text(yaml.safe_dump(tokens))
    site.start(runtime="bwrap")
    for name in tokens:
        _write(site.clients[name], (site.work / "e.txt").as_uri(), "e\\n")
    written = sorted(p.relative_to(site.base).as_posix() for p in site.base.rglob("e.txt"))
    assert len(written) == 2
    assert all(p.startswith("work/static") for p in written), written
