"""A hostile site node against the coordinator: the executor's code trusts no node.

The node here is a FAKE (``http.server`` on a loopback port, started by each test): a real
``fedgen node`` cannot be made to page forever, repeat page tokens, send oversized or unhashed
egress files or plaintext where Crypt4GH was asked for. The coordinator side is the real
plugin code (``TesClient``, ``StatusPoller``, ``staging.fetch_egress``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from snakemake_executor_plugin_fedgen.errors import NodeProtocolError, StorageError, TesError
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.staging import OutputPlan, fetch_egress
from snakemake_executor_plugin_fedgen.status import StatusPoller
from snakemake_executor_plugin_fedgen.tes.client import TesClient

Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], str]]:
    """Start a fake node whose GET handler is the test's; returns its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(handle: Handler) -> str:
        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _json(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _site(url: str, **extra: Any) -> Site:
    return Site(
        name="hostile-site",
        tes_url=f"{url}/ga4gh/tes/v1",
        work_url="file:///srv/work",
        egress_read_url=f"{url}/egress",
        **extra,
    )


def test_endless_pages__listing_stops_with_an_error_naming_the_site(hostile) -> None:
    pages = {"n": 0}

    def handle(h: BaseHTTPRequestHandler) -> None:
        pages["n"] += 1
        _json(h, {"tasks": [], "next_page_token": f"p{pages['n']}"})

    client = TesClient(_site(hostile(handle)), max_pages=7)
    with pytest.raises(NodeProtocolError, match=r"site hostile-site: .*after 7"):
        client.list_tasks(tags={"fedgen_run": "r"})
    assert pages["n"] == 7


def test_repeated_page_token__an_error_at_once(hostile) -> None:
    pages = {"n": 0}

    def handle(h: BaseHTTPRequestHandler) -> None:
        pages["n"] += 1
        _json(h, {"tasks": [], "next_page_token": "again"})

    client = TesClient(_site(hostile(handle)))
    with pytest.raises(NodeProtocolError, match=r"site hostile-site: .*repeated page token"):
        client.list_tasks()
    assert pages["n"] == 2


def test_status_poll__a_broken_site_is_reported_not_waited_for(hostile) -> None:
    def handle(h: BaseHTTPRequestHandler) -> None:
        _json(h, {"tasks": [], "next_page_token": "again"})

    site = _site(hostile(handle))
    poller = StatusPoller("r", {site.name: TesClient(site)})
    try:
        answer = poller.poll({site.name: ["t1"]})[site.name]
    finally:
        poller.close()
    assert answer.broken
    assert "site hostile-site" in (answer.error or "")


def _file_handler(body: bytes, *, sha: str | None, length: bool = True) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if length:
            h.send_header("Content-Length", str(len(body)))
        if sha is not None:
            h.send_header("X-Fedgen-Sha256", sha)
        h.end_headers()
        # The coordinator hangs up once the file passes its limit.
        with contextlib.suppress(ConnectionError):
            h.wfile.write(body)

    return handle


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Outputs are paths relative to the workflow directory.
    monkeypatch.chdir(tmp_path)


def _plan(tmp_path: Path) -> OutputPlan:
    (tmp_path / "results" / "sumstats").mkdir(parents=True, exist_ok=True)
    return OutputPlan(
        path="results/sumstats/A.tsv", url="file:///srv/work/egress/A.tsv", egress=True
    )


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_oversized_egress__download_stopped_nothing_kept(hostile, tmp_path, announce) -> None:
    body = b"x" * (3 * 1024 * 1024)
    url = hostile(_file_handler(body, sha=hashlib.sha256(body).hexdigest(), length=announce))
    site = _site(url, max_egress_bytes=1024 * 1024)
    plan = _plan(tmp_path)
    with pytest.raises(StorageError, match=r"site hostile-site: .*max_egress_bytes"):
        fetch_egress(plan, site=site, client=TesClient(site), checksum=None)
    assert not Path(plan.path).exists()
    assert list(tmp_path.rglob("*.tsv*")) == []


def test_egress_without_any_hash__refused(hostile, tmp_path) -> None:
    site = _site(hostile(_file_handler(b"a\tb\n", sha=None)))
    plan = _plan(tmp_path)
    with pytest.raises(StorageError, match=r"site hostile-site: .*without any sha256"):
        fetch_egress(plan, site=site, client=TesClient(site), checksum=None)
    assert not Path(plan.path).exists()


def test_egress_not_matching_the_task_log__refused(hostile, tmp_path) -> None:
    body = b"a\tb\n"
    site = _site(hostile(_file_handler(body, sha=None)))
    plan = _plan(tmp_path)
    with pytest.raises(StorageError, match=r"site hostile-site: .*the task log says"):
        fetch_egress(
            plan, site=site, client=TesClient(site), checksum=None, published=(4, "0" * 64)
        )
    assert not Path(plan.path).exists()


def test_plaintext_where_crypt4gh_was_asked__refused(hostile, tmp_path) -> None:
    body = b"chromosome\tbase_pair_location\n1\t100\n"
    url = hostile(_file_handler(body, sha=hashlib.sha256(body).hexdigest()))
    site = _site(url, crypt4gh_recipient_key=str(tmp_path / "coordinator.pub"))
    plan = _plan(tmp_path)
    with pytest.raises(StorageError, match=r"site hostile-site: .*arrived as plaintext"):
        fetch_egress(plan, site=site, client=TesClient(site), checksum=None)
    assert not Path(plan.path).exists()


def test_honest_answer__still_landed(hostile, tmp_path) -> None:
    body = b"a\tb\n"
    site = _site(hostile(_file_handler(body, sha=hashlib.sha256(body).hexdigest())))
    plan = _plan(tmp_path)
    size, sha = fetch_egress(plan, site=site, client=TesClient(site), checksum=None)
    assert (size, sha) == (4, hashlib.sha256(body).hexdigest())
    assert Path(plan.path).read_bytes() == body


@pytest.mark.parametrize(
    "ingress_path", ["@127.0.0.1:{port}/steal", "//127.0.0.1:{port}/steal", "/x?@127.0.0.1"]
)
def test_ingress_path_naming_another_host__token_never_sent_there(
    hostile, tmp_path, ingress_path
) -> None:
    """A node's service-info must not make the coordinator upload (with its token) elsewhere."""
    seen: list[str | None] = []

    def thief(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        _json(handler, {})

    steal = hostile(thief)
    port = steal.rsplit(":", 1)[1]
    path = ingress_path.format(port=port)

    def node(handler: BaseHTTPRequestHandler) -> None:
        _json(
            handler,
            {
                "id": "x",
                "name": "x",
                "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
                "fedgen": {"ingress_path": path, "max_ingress_bytes": 1 << 20},
            },
        )

    url = hostile(node)
    client = TesClient(_site(url), max_attempts=1)
    assert client.ingress_limit() is None
    src = tmp_path / "coef.bin"
    src.write_bytes(b"\x00coefficients")
    with pytest.raises(TesError, match="no ingress endpoint"):
        client.upload(str(src), hashlib.sha256(src.read_bytes()).hexdigest(), 13)
    assert seen == []
