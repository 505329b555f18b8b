"""Ingress (issue 17): a coordinator hands a site a larger input, and a hostile caller attacks it.

A real bwrap node, two static-token callers (alice, bob). Alice uploads with
``PUT /fedgen/v1/ingress/<sha256>`` and names the file in a task as
``fedgen-ingress:sha256:<hex>``. The attacks: oversize and wrong-checksum uploads that must leave
nothing behind, a caller's quota, bob using or probing alice's upload, traversal and odd
spellings of the digest and the URL, a symlink in the ingress area, an upload used as a
program, and the audit log (never the content).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import Client, Site, executor, needs_bwrap, stdouts, system_log, task
from tests.security.test_approved_code import PANEL, VALUES, _task, approving  # noqa: F401

pytestmark = needs_bwrap

MIB = 1024 * 1024
MARKER = b"INGRESS-CONTENT-MARKER-7f3a"


def _payload(size: int) -> bytes:
    """Binary bytes (not UTF-8) with a marker to look for where content must never appear."""
    body = MARKER + b"\xff\xfe\x00" + secrets.token_bytes(size)
    return body[:size] if size >= len(MARKER) + 3 else body


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ingress(client: Client) -> str:
    return client.url.replace("/ga4gh/tes/v1", "/fedgen/v1/ingress")


def _put(client: Client, digest: str, body: bytes | Iterator[bytes]) -> httpx.Response:
    headers = {**client.headers, "Content-Type": "application/octet-stream"}
    return httpx.put(f"{_ingress(client)}/{digest}", content=body, headers=headers, timeout=60)


def _has(client: Client, digest: str) -> httpx.Response:
    return httpx.get(f"{_ingress(client)}/{digest}", headers=client.headers, timeout=30)


def _area(site: Site, caller: str) -> Path:
    return site.state / "ingress" / f"static-{caller}"


def _files(site: Site) -> list[str]:
    """Everything under the node's ingress directory (files of every area, temp files too)."""
    root = site.state / "ingress"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def _reading(url: str, path: str = "/fedgen/work/in/coef.bin") -> dict:
    """A task that prints the input's sha256, size and mode."""
    return task(
        executor(f"sha256sum {path} | cut -d' ' -f1; stat -c '%s %a' {path}"),
        inputs=[{"url": url, "path": path}],
    )


@pytest.fixture
def ingress_site(make_site) -> Site:
    return make_site().start(
        runtime="bwrap", max_ingress_bytes=4 * MIB, max_ingress_bytes_per_caller=6 * MIB
    )


def test_upload_then_task__the_task_reads_the_same_bytes(ingress_site: Site):
    site = ingress_site
    data = _payload(3 * MIB)
    digest = _sha(data)
    info = httpx.get(f"{site.node.url}/service-info", timeout=10).json()["fedgen"]
    assert info["ingress_path"] == "/fedgen/v1/ingress" and info["max_ingress_bytes"] == 4 * MIB
    assert "fedgen-ingress" in info["storage_schemes"]
    assert _has(site.alice, digest).status_code == 404
    put = _put(site.alice, digest, data)
    assert put.status_code == 201, put.text
    assert put.json() == {
        "sha256": digest,
        "size": len(data),
        "url": f"fedgen-ingress:sha256:{digest}",
    }
    assert _has(site.alice, digest).json() == {"sha256": digest, "size": len(data)}
    doc = site.alice.run(_reading(f"fedgen-ingress:sha256:{digest}"))
    assert doc["state"] == "COMPLETE", system_log(doc)
    # The task's own sha256sum, not the node's word: the bytes arrived unchanged, as data (0444).
    assert stdouts(doc)[0].split() == [digest, str(len(data)), "444"]
    # Node-private: the file sits in the state directory, readable by the node only.
    stored = _area(site, "alice") / digest
    assert stored.read_bytes() == data and stored.stat().st_mode & 0o777 == 0o600
    assert (site.state / "ingress").stat().st_mode & 0o777 == 0o700


def test_reupload__idempotent_200_one_file(ingress_site: Site):
    site = ingress_site
    data = _payload(100_000)
    digest = _sha(data)
    assert _put(site.alice, digest, data).status_code == 201
    again = _put(site.alice, digest, data)
    assert again.status_code == 200, again.text
    assert _files(site) == [f"static-alice/{digest}"]


def test_wrong_checksum__400_and_nothing_kept(ingress_site: Site):
    site = ingress_site
    data = _payload(2 * MIB)
    claimed = _sha(b"something else")
    resp = _put(site.alice, claimed, data)
    assert resp.status_code == 400, resp.text
    assert f"not {claimed} as the URL says" in resp.json()["message"]
    assert _files(site) == []
    assert _has(site.alice, claimed).status_code == 404


def test_over_size__413_and_nothing_kept_announced_or_streamed(ingress_site: Site):
    site = ingress_site
    data = _payload(5 * MIB)
    digest = _sha(data)
    # Announced (Content-Length): refused before a byte is read.
    resp = _put(site.alice, digest, data)
    assert resp.status_code == 413, resp.text
    assert "max_ingress_bytes" in resp.json()["message"]

    # Chunked, no length: stopped while streaming. The node may close the connection before
    # the client has sent everything; either way nothing stays and the audit log says 413.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    try:
        streamed = _put(site.alice, digest, chunks())
        assert streamed.status_code == 413, streamed.text
    except httpx.TransportError:
        pass
    assert _files(site) == []
    outcomes = [r["outcome"] for r in site.audit() if r["action"] == "PutIngress"]
    assert outcomes == ["413", "413"], outcomes


def test_per_caller_quota__413_for_that_caller_only(ingress_site: Site):
    site = ingress_site
    first, second = _payload(4 * MIB), _payload(3 * MIB)
    assert _put(site.alice, _sha(first), first).status_code == 201
    over = _put(site.alice, _sha(second), second)
    assert over.status_code == 413, over.text
    assert "max_ingress_bytes_per_caller" in over.json()["message"]
    assert _files(site) == [f"static-alice/{_sha(first)}"]
    # Bob's quota is his own.
    assert _put(site.bob, _sha(second), second).status_code == 201


def test_other_caller__can_neither_use_nor_probe_an_upload(ingress_site: Site):
    site = ingress_site
    data = _payload(200_000)
    digest = _sha(data)
    assert _put(site.alice, digest, data).status_code == 201
    # Probing: bob's view of the digest is "not uploaded", the same as for any unknown digest.
    assert _has(site.bob, digest).status_code == 404
    assert httpx.head(f"{_ingress(site.bob)}/{digest}", headers=site.bob.headers).status_code == 404
    # Using: refused at submission, nothing runs.
    resp = site.bob.post(_reading(f"fedgen-ingress:sha256:{digest}"))
    assert resp.status_code == 400, resp.text
    assert "you have uploaded no file with this sha256" in resp.json()["message"]
    # Unauthenticated: nothing at all.
    assert httpx.get(f"{_ingress(site.bob)}/{digest}").status_code == 401
    put = httpx.put(
        f"{_ingress(site.bob)}/{digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 401
    assert _files(site) == [f"static-alice/{digest}"]


def test_no_content_leaves__no_endpoint_returns_it_and_the_audit_log_holds_none(ingress_site):
    site = ingress_site
    data = _payload(300_000)
    digest = _sha(data)
    assert _put(site.alice, digest, data).status_code == 201
    got = _has(site.alice, digest)
    assert MARKER not in got.content and len(got.content) < 200
    head = httpx.head(f"{_ingress(site.alice)}/{digest}", headers=site.alice.headers)
    assert head.status_code == 200 and head.content == b""
    doc = site.alice.run(_reading(f"fedgen-ingress:sha256:{digest}"))
    assert doc["state"] == "COMPLETE", system_log(doc)
    records = [r for r in site.audit() if r["action"] in ("PutIngress", "IngressInput")]
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("PutIngress", "201"),
        ("IngressInput", "staged"),
    ]
    put, staged = records
    assert (put["caller"], put["sha256"], put["bytes"]) == ("alice", digest, len(data))
    assert put["time"].endswith("Z")
    assert (staged["task"], staged["sha256"], staged["bytes"]) == (doc["id"], digest, len(data))
    raw = (site.state / "audit.jsonl").read_bytes()
    assert MARKER not in raw and MARKER.decode() not in raw.decode()


@pytest.mark.parametrize(
    "path",
    [
        "../../tokens.yaml",
        "..%2F..%2Ftokens.yaml",
        "%2e%2e/%2e%2e/node.yaml",
        "ABCDEF" + "0" * 58,  # upper case: one spelling only
        "0" * 63,
        "0" * 64 + "/x",
    ],
)
def test_put_with_a_path_instead_of_a_digest__refused_nothing_written(ingress_site, path):
    site = ingress_site
    resp = _put(site.alice, path, b"data")
    # 415: a client that normalises ``..`` sends the PUT elsewhere, where JSON is expected.
    assert resp.status_code in (400, 404, 405, 415), resp.text
    assert _files(site) == []
    assert (site.state / "node.yaml").exists() and site.token_file.exists()


def test_odd_ingress_urls__refused_at_submission(ingress_site: Site):
    site = ingress_site
    data = _payload(50_000)
    digest = _sha(data)
    assert _put(site.alice, digest, data).status_code == 201
    for url in [
        f"fedgen-ingress:sha256:{digest.upper()}",
        f"FEDGEN-INGRESS:sha256:{digest}",
        f"fedgen-ingress:sha256:{digest}/../{digest}",
        f"fedgen-ingress:sha256:../static-bob/{digest}",
        f"fedgen-ingress://static-alice/{digest}",
        f"fedgen-ingress:md5:{digest[:32]}",
    ]:
        resp = site.alice.post(_reading(url))
        assert resp.status_code == 400, (url, resp.text)
    directory = {
        "url": f"fedgen-ingress:sha256:{digest}",
        "path": "/fedgen/work/d",
        "type": "DIRECTORY",
    }
    resp = site.alice.post(task(executor("ls d"), inputs=[directory]))
    assert resp.status_code == 400 and "must be of type FILE" in resp.text


def test_symlink_in_the_ingress_area__never_followed(ingress_site: Site):
    """A link named like a digest (planted by anything but the node) does not lead a task to
    the token file: it is not an upload at submission, nor when the task is staged."""
    site = ingress_site
    secret = site.token_file.read_bytes()
    digest = _sha(secret)
    area = _area(site, "bob")
    area.mkdir(parents=True, exist_ok=True)
    os.symlink(site.token_file, area / digest)
    assert _has(site.bob, digest).status_code == 404
    resp = site.bob.post(_reading(f"fedgen-ingress:sha256:{digest}"))
    assert resp.status_code == 400, resp.text
    # Planted after submission, before staging: the task fails and reads nothing.
    data = _payload(10_000)
    ok = _sha(data)
    assert _put(site.bob, ok, data).status_code == 201
    task_id = site.bob.create(
        task(
            executor("sleep 1"),
            executor("cat /fedgen/work/in/coef.bin"),
            inputs=[{"url": f"fedgen-ingress:sha256:{ok}", "path": "/fedgen/work/in/coef.bin"}],
        )
    )
    (area / ok).unlink()
    os.symlink(site.token_file, area / ok)
    doc = site.bob.wait(task_id)
    if doc["state"] == "COMPLETE":  # staged before the swap: it read the upload, not the link
        assert secret.decode() not in str(stdouts(doc))
    else:
        assert doc["state"] == "SYSTEM_ERROR", doc["state"]
        assert secret.decode() not in str(doc)


def test_upload_is_data__not_executable_in_the_task(ingress_site: Site):
    site = ingress_site
    script = b"#!/bin/sh\necho RAN-THE-UPLOAD\n"
    digest = _sha(script)
    assert _put(site.alice, digest, script).status_code == 201
    doc = site.alice.run(
        task(
            executor("./tool.sh"),
            inputs=[{"url": f"fedgen-ingress:sha256:{digest}", "path": "/fedgen/work/tool.sh"}],
        )
    )
    assert doc["state"] == "EXECUTOR_ERROR", system_log(doc)
    assert doc["logs"][-1]["logs"][0]["exit_code"] == 126
    assert "RAN-THE-UPLOAD" not in str(doc)


def test_node_without_ingress__no_endpoint_and_the_scheme_refused(make_site):
    site = make_site().start(runtime="bwrap", max_ingress_bytes=0)
    info = httpx.get(f"{site.node.url}/service-info", timeout=10).json()["fedgen"]
    assert info.get("ingress_path") is None and "fedgen-ingress" not in info["storage_schemes"]
    digest = _sha(b"x")
    assert _put(site.alice, digest, b"x").status_code in (404, 405, 413)
    resp = site.alice.post(_reading(f"fedgen-ingress:sha256:{digest}"))
    assert resp.status_code == 400 and "no ingress endpoint" in resp.text
    assert not (site.state / "ingress").exists()


def test_approved_code__an_upload_is_data_for_approved_templates_never_a_command(request):
    """With ``approved_code: required`` an ingress input is an input like any other: the
    approved rule reads it; a command that would run it is refused at submission."""
    site = request.getfixturevalue("approving")
    data = PANEL.encode()
    digest = _sha(data)
    assert _put(site.alice, digest, data).status_code == 201
    honest = _task(site)
    honest["inputs"][0]["url"] = f"fedgen-ingress:sha256:{digest}"
    done = site.alice.run(honest)
    assert done["state"] == "COMPLETE", system_log(done)
    assert done["tags"]["fedgen_code"].startswith("approved:")
    [out] = list(site.work.rglob("variants.tsv"))
    assert out.read_text().splitlines()[1:] == ["20\t100\trs1\tA\tG", "20\t200\trs2\tC\tT"]
    # The same upload as a script: running it is not an approved template.
    script = b"#!/bin/sh\necho RAN-THE-UPLOAD\n"
    assert _put(site.alice, _sha(script), script).status_code == 201
    hostile = _task(site)
    path = f"/fedgen/work/{VALUES['input.panel']}"
    hostile["inputs"][0]["url"] = f"fedgen-ingress:sha256:{_sha(script)}"
    hostile["executors"][1]["command"] = ["sh", path]
    resp = site.alice.post(hostile)
    assert resp.status_code == 400 and resp.json()["message"].startswith("unapproved code: ")
    # Its path as a value where the template runs a tool is refused as well (rendering differs).
    hostile = _task(site)
    hostile["inputs"][0]["url"] = f"fedgen-ingress:sha256:{_sha(script)}"
    hostile["executors"][1]["command"][2] = path + " " + hostile["executors"][1]["command"][2]
    resp = site.alice.post(hostile)
    assert resp.status_code == 400 and resp.json()["message"].startswith("unapproved code: ")
