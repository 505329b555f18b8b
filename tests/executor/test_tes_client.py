"""The TES client against a real node, with faults injected by a small proxy.

The proxy is a fake only in the sense the brief allows: it injects faults a real node does not
produce on demand (HTTP 503, a response lost after the node created the task) and otherwise
forwards every request to the real node.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from snakemake_executor_plugin_fedgen.errors import TesError
from snakemake_executor_plugin_fedgen.resume import ResumeIndex
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.status import StatusPoller
from snakemake_executor_plugin_fedgen.tes.client import TesClient
from snakemake_executor_plugin_fedgen.tes.models import TesTask
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RUN_TAG

from .conftest import start_site


class FaultProxy:
    """Forward to ``upstream``; ``faults`` is a list of (method, path prefix, fault) consumed in order.

    fault: an HTTP status to answer instead of forwarding, or "drop-after-forward" to forward the
    request and then close the connection without an answer.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[tuple[str, str, int | str]] = []
        self.ignore_tag_filters = False
        self.seen: list[str] = []
        self.bodies: list[bytes] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.seen.append(f"{self.command} {self.path}")
                proxy.bodies.append(body or b"")
                fault = proxy._take(self.command, self.path)
                if isinstance(fault, int):
                    self.send_response(fault)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                path = self.path
                if proxy.ignore_tag_filters and "?" in path:
                    # Behave like a TES server that does not implement tag filtering.
                    base, query = path.split("?", 1)
                    kept = [
                        p for p in query.split("&") if not p.startswith(("tag_key", "tag_value"))
                    ]
                    path = base + "?" + "&".join(kept)
                resp = httpx.request(
                    self.command, proxy.upstream + path, content=body, headers=headers
                )
                if fault == "drop-after-forward":
                    self.close_connection = True
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take(self, method: str, path: str) -> int | str | None:
        for i, (m, prefix, fault) in enumerate(self.faults):
            if m == method and path.startswith(prefix):
                del self.faults[i]
                return fault
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxied(tmp_path: Path, monkeypatch):
    site_node = start_site(tmp_path, "A")
    monkeypatch.setenv(site_node.token_env, site_node.token)
    proxy = FaultProxy(site_node.node.base_url)
    site = Site(
        name="A",
        tes_url=proxy.url + "/ga4gh/tes/v1",
        work_url=f"file://{site_node.work}",
        token_env=site_node.token_env,
    )
    client = TesClient(site, timeout=10, max_attempts=3, backoff_base=0.05)
    try:
        yield proxy, client, site_node
    finally:
        client.close()
        proxy.close()
        site_node.node.stop()


def _task(key: str, run: str = "test-run") -> TesTask:
    return TesTask.model_validate(
        {
            "name": "probe",
            "executors": [
                {"image": "fedgen/tools:0.1", "command": ["true"], "workdir": "/fedgen/work"}
            ],
            "tags": {JOB_KEY_TAG: key, RUN_TAG: run},
        }
    )


def test_request__retries_5xx_then_succeeds(proxied):
    proxy, client, _ = proxied
    proxy.faults = [("GET", "/ga4gh/tes/v1/service-info", 503)] * 2
    info = client.service_info()
    assert info.type.artifact == "tes"
    assert proxy.seen.count("GET /ga4gh/tes/v1/service-info") == 3


def test_request__gives_up_after_bounded_attempts_without_leaking_token(proxied):
    proxy, client, site_node = proxied
    proxy.faults = [("GET", "/ga4gh/tes/v1/service-info", 502)] * 3
    with pytest.raises(TesError) as err:
        client.service_info()
    msg = str(err.value)
    assert "site A" in msg and "3 attempts" in msg and "HTTP 502" in msg
    assert site_node.token not in msg


def test_create_task_once__lost_response_does_not_create_a_second_task(proxied):
    proxy, client, _ = proxied
    # The node creates the task, but the answer never reaches the client.
    proxy.faults = [("POST", "/ga4gh/tes/v1/tasks", "drop-after-forward")]
    task_id = client.create_task_once(_task("key-1"), job_key="key-1")
    tasks = client.list_tasks(tags={JOB_KEY_TAG: "key-1"}, view="BASIC")
    assert [t.id for t in tasks] == [task_id]
    assert proxy.seen.count("POST /ga4gh/tes/v1/tasks") == 1


def test_create_task_once__5xx_before_creation_retries_and_creates_once(proxied):
    proxy, client, _ = proxied
    proxy.faults = [("POST", "/ga4gh/tes/v1/tasks", 503)]
    task_id = client.create_task_once(_task("key-2"), job_key="key-2")
    tasks = client.list_tasks(tags={JOB_KEY_TAG: "key-2"}, view="BASIC")
    assert [t.id for t in tasks] == [task_id]
    assert proxy.seen.count("POST /ga4gh/tes/v1/tasks") == 2


def test_list_tasks__follows_every_page(proxied, monkeypatch):
    _, client, _ = proxied
    ids = {client.create_task(_task(f"page-{i}")) for i in range(5)}
    monkeypatch.setattr("snakemake_executor_plugin_fedgen.tes.client.LIST_PAGE_SIZE", 2)
    listed = client.list_tasks(tags={RUN_TAG: "test-run"})
    assert {t.id for t in listed} == ids
    assert client.counts["GET /tasks"] >= 3


@pytest.mark.parametrize("server_filters_tags", [True, False])
def test_status_poll__one_list_per_site_or_per_task_gets_when_tags_are_ignored(
    proxied, server_filters_tags
):
    proxy, client, _ = proxied
    client.create_task(_task("foreign", run="another-run"))
    ours = [client.create_task(_task(f"ours-{i}", run="our-run")) for i in range(4)]
    proxy.ignore_tag_filters = not server_filters_tags
    index = ResumeIndex("our-run")
    index.load("A", client)
    assert index.ignores_tag_filter["A"] is (not server_filters_tags)
    assert index.find("A", "ours-2").id == ours[2]
    poller = StatusPoller("our-run", {"A": client})
    poller.per_task_fallback["A"] = index.ignores_tag_filter["A"]
    proxy.seen.clear()
    answer = poller.poll({"A": ours})["A"]
    poller.close()
    assert answer.error is None and set(answer.states) == set(ours)
    if server_filters_tags:
        assert len(proxy.seen) == 1 and proxy.seen[0].startswith("GET /ga4gh/tes/v1/tasks?")
    else:
        assert sorted(proxy.seen) == sorted(
            f"GET /ga4gh/tes/v1/tasks/{i}?view=MINIMAL" for i in ours
        )
