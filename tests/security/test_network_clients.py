"""Unauthenticated and hostile network clients against a real node on a loopback port.

Raw sockets send what a browser, a slowloris client or a DNS-rebinding page would send.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx

from tests.security.conftest import Site, executor, needs_bwrap, task

pytestmark = needs_bwrap

TASK = task(executor("echo hi"))


def _addr(site: Site) -> tuple[str, int]:
    assert site.node is not None
    url = httpx.URL(site.node.url)
    return url.host, int(url.port or 80)


def _raw(site: Site, request: bytes, *, timeout: float = 10) -> bytes:
    """Send ``request`` on a fresh connection; everything the node answers until it closes."""
    with socket.create_connection(_addr(site), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> dict[str, Any]:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _post(site: Site, body: bytes, *, headers: dict[str, str]) -> bytes:
    host, port = _addr(site)
    lines = ["POST /ga4gh/tes/v1/tasks HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return _raw(site, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def _tasks(site: Site) -> list[dict[str, Any]]:
    resp = httpx.get(f"{site.node.url}/tasks", headers=site.alice.headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["tasks"]


def test_slowloris__unfinished_headers_are_cut_off_and_the_node_keeps_answering(make_site):
    site = make_site().start(runtime="bwrap", header_timeout_seconds=1)
    host, port = _addr(site)
    slow = []
    for _ in range(30):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(f"GET /ga4gh/tes/v1/service-info HTTP/1.1\r\nHost: {host}\r\nX-a: ".encode())
        slow.append(sock)
    try:
        info = httpx.get(f"{site.node.url}/service-info", timeout=5)
        assert info.status_code == 200
        time.sleep(2.5)
        for sock in slow:
            sock.settimeout(5)
            assert sock.recv(1024) == b"", "the node still holds a connection whose headers stalled"
    finally:
        for sock in slow:
            sock.close()


def test_slow_body__answered_408(make_site):
    site = make_site().start(runtime="bwrap", body_timeout_seconds=1)
    host, port = _addr(site)
    head = (
        f"POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {site.alice.token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{"
    ).encode()
    t0 = time.monotonic()
    answer = _raw(site, head, timeout=10)
    assert _status(answer) == 408, answer
    assert "body_timeout_seconds" in _body(answer)["message"]
    assert time.monotonic() - t0 < 8
    assert _tasks(site) == []


def test_huge_body__413_before_it_is_read_and_nothing_stored(make_site):
    site = make_site().start(runtime="bwrap", max_request_bytes=1024 * 1024)
    host, port = _addr(site)
    head = (
        f"POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {site.alice.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {80 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = _raw(site, head)  # the 80 MiB are never sent: the node answers on the headers
    assert _status(answer) == 413, answer
    assert "max_request_bytes" in _body(answer)["message"]
    assert _tasks(site) == []


def test_huge_chunked_body__413_while_streaming(make_site):
    site = make_site().start(runtime="bwrap", max_request_bytes=1024 * 1024)

    def chunks():
        yield b'{"name": "x", "description": "'
        for _ in range(40):
            yield b"a" * (256 * 1024)
        yield b'", "executors": [{"image": "fedgen/tools:0.1", "command": ["true"]}]}'

    resp = httpx.post(
        f"{site.node.url}/tasks",
        content=chunks(),
        headers={**site.alice.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 413, resp.text
    assert _tasks(site) == []


def test_oversized_fields__400_naming_the_field_and_cap(make_site):
    site = make_site().start(runtime="bwrap")
    many = {"image": "fedgen/tools:0.1", "command": ["true", *["x"] * 20_000]}
    resp = site.alice.post(task(many))
    assert resp.status_code == 400, resp.text
    assert (
        "executors[0].command has 20001 arguments; this node accepts at most 10000"
        in (resp.json()["message"])
    )
    resp = site.alice.post(task(*[executor("true")] * 65))
    assert resp.status_code == 400
    assert "at most 64" in resp.json()["message"]


def test_cross_origin_text_plain_post__refused_on_a_tokenless_node(make_site):
    """A web page's "simple" POST (no CORS preflight) to a node without tokens."""
    site = make_site().start(runtime="bwrap", token_file=None)
    body = json.dumps(TASK).encode()
    page = _post(
        site, body, headers={"Origin": "https://evil.example", "Content-Type": "text/plain"}
    )
    assert _status(page) == 403, page
    plain = _post(site, body, headers={"Content-Type": "text/plain"})
    assert _status(plain) == 415, plain
    listed = httpx.get(f"{site.node.url}/tasks", timeout=10)
    assert listed.status_code == 200 and listed.json()["tasks"] == []


def test_origin_header__refused_even_with_a_token(make_site):
    site = make_site().start(runtime="bwrap")
    resp = httpx.get(
        f"{site.node.url}/tasks",
        headers={**site.alice.headers, "Origin": "http://localhost:3000"},
        timeout=10,
    )
    assert resp.status_code == 403
    assert "Origin" in resp.json()["message"]


def test_dns_rebinding__foreign_host_header_refused(make_site):
    """A page at evil.example whose name now resolves to 127.0.0.1 reads nothing."""
    site = make_site().start(runtime="bwrap", token_file=None)
    _host, port = _addr(site)
    resp = httpx.get(f"{site.node.url}/tasks", headers={"Host": f"evil.example:{port}"}, timeout=10)
    assert resp.status_code == 400
    assert "allowed_hosts" in resp.json()["message"]


def test_allowed_hosts__a_proxy_name_is_accepted(make_site):
    site = make_site().start(runtime="bwrap", allowed_hosts=["tes.site-a.example"])
    resp = httpx.get(
        f"{site.node.url}/service-info", headers={"Host": "tes.site-a.example"}, timeout=10
    )
    assert resp.status_code == 200
