"""A fault-injecting HTTP reverse proxy on loopback, in front of one ``fedgen node``.

This is a deliberate fake: a real network cannot be made to drop a connection, lose a response
or go down on demand, so the reliability tests put this proxy between the executor and each
node (the registry's ``tes_url`` and ``egress_read_url`` point at it). Everything that reaches
the node is real; only the transport misbehaves.

Faults, drawn per request from a seeded random generator with probability ``rate``:

``drop_before``  connection closed before the request is forwarded (the node never sees it)
``drop_after``   request forwarded and answered by the node, the answer is lost (connection closed)
``503_before``   503 Service Unavailable without forwarding
``503_after``    request forwarded (the node acted on it), then 503 returned instead of its answer
``slow``         answer delayed by ``slow_seconds``
``truncate``     the node's answer cut after half its body (Content-Length kept), then closed

and, in ``forced`` queues only, an HTTP status (an ``int``): that status without forwarding.
:meth:`FaultProxy.down` closes the listening socket for a while (connection refused), like
a site that is down and comes back on the same address. With ``ignore_tag_filters`` the proxy
drops ListTasks' tag filters, like a TES server that does not implement them. Every request is
recorded (``seen``: ``"METHOD /path?query"``, ``bodies``).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from snakemake_fedgen.node.process import free_port

KINDS = ("drop_before", "drop_after", "503_before", "503_after", "slow", "truncate")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    """Forward ``http://127.0.0.1:PORT/...`` to ``upstream`` (host, port) with injected faults.

    Parameters
    ----------
    upstream
        (host, port) of the real node.
    rate
        Probability that a request gets a fault.
    kinds
        Fault kinds to draw from (see the module docstring).
    seed
        Seed of the fault generator, so a failing run can be replayed.
    slow_seconds
        Delay of a ``slow`` answer.
    forced
        Faults given first to requests whose ``"METHOD /path"`` starts with a key, in order,
        before random ones (e.g. ``{"GET /fedgen/v1/egress": ["truncate"]}``, or
        ``{"GET /ga4gh/tes/v1/service-info": [503, 503]}``), so a run certainly exercises a
        fault on a request that random draws might miss.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        rate: float = 0.2,
        kinds: tuple[str, ...] = KINDS,
        seed: int = 0,
        slow_seconds: float = 1.0,
        forced: dict[str, list[str | int]] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.forced = {k: list(v) for k, v in (forced or {}).items()}
        named = {f for v in self.forced.values() for f in v if not isinstance(f, int)}
        unknown = (set(kinds) | named) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        self.upstream = upstream
        self.rate = rate
        self.kinds = kinds
        self.slow_seconds = slow_seconds
        self.host = host
        self.port = free_port(host)
        self.injected: Counter[str] = Counter()
        self.hits: Counter[tuple[str, str]] = Counter()  # (kind, "METHOD /path" without ids)
        self.forwarded: Counter[str] = Counter()
        self.seen: list[str] = []
        self.bodies: list[bytes] = []
        self.ignore_tag_filters = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Listen (again) on the proxy's port."""
        if self._server is not None:
            return
        server = _Server((self.host, self.port), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: new connections are refused until :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_open_connections()

    def down(self, seconds: float) -> threading.Thread:
        """Refuse connections for ``seconds`` in the background (a site outage)."""

        def outage() -> None:
            self.stop()
            self.injected["down"] += 1
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=outage, daemon=True)
        thread.start()
        return thread

    def draw(self, request: str) -> str | int | None:
        """The fault for ``request`` (``"METHOD /path"``), or None."""
        with self._lock:
            kind = None
            for prefix, queue in self.forced.items():
                if request.startswith(prefix) and queue:
                    kind = queue.pop(0)
                    break
            if kind is None:
                if self._rng.random() >= self.rate:
                    return None
                kind = self._rng.choice(self.kinds)
            self.injected[kind] += 1
            self.hits[(kind, _endpoint(request))] += 1
            return kind

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _endpoint(request: str) -> str:
    """``"GET /ga4gh/tes/v1/tasks/ID"`` -> ``"GET /tasks/{id}"``; egress paths -> ``egress``."""
    method, path = request.split(" ", 1)
    if path.startswith("/fedgen/v1/egress/"):
        return f"{method} egress"
    path = path.removeprefix("/ga4gh/tes/v1")
    if path.startswith("/tasks/"):
        return f"{method} /tasks/{{id}}" + (":cancel" if path.endswith(":cancel") else "")
    return f"{method} {path}"


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    proxy: FaultProxy

    def __init__(self, *args, **kwargs) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client gone before its (held or cut) answer is part of the faults: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        """Reset kept-alive connections too: an outage ends them as well."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on counters, not on a request log."""

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy.seen.append(f"{self.command} {self.path}")
        proxy.bodies.append(body)
        fault = proxy.draw(f"{self.command} {self.path.split('?')[0]}")
        if isinstance(fault, int):
            self._send(fault, [("Content-Type", "text/plain")], f"injected {fault}\n".encode())
            return
        if fault == "drop_before":
            self._drop()
            return
        if fault == "503_before":
            self._send(503, [("Content-Type", "text/plain")], b"injected 503\n")
            return
        status, headers, payload = self._forward(body)
        proxy.forwarded[_endpoint(f"{self.command} {self.path.split('?')[0]}")] += 1
        if fault == "drop_after":
            self._drop()
        elif fault == "503_after":
            self._send(503, [("Content-Type", "text/plain")], b"injected 503\n")
        elif fault == "truncate" and len(payload) > 1:
            self._send(status, headers, payload, cut=len(payload) // 2)
        else:
            if fault == "slow":
                time.sleep(proxy.slow_seconds)
            self._send(status, headers, payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.server.proxy.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            path = self.path
            if self.server.proxy.ignore_tag_filters and "?" in path:
                base, query = path.split("?", 1)
                kept = [p for p in query.split("&") if not p.startswith(("tag_key", "tag_value"))]
                path = base + "?" + "&".join(kept)
            conn.request(self.command, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            kept = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
            ]
            return resp.status, kept, payload
        except OSError:
            # The node itself is unreachable (killed): answer like a gateway would.
            return 502, [("Content-Type", "text/plain")], b"upstream unreachable\n"
        finally:
            conn.close()

    def _send(
        self, status: int, headers: list[tuple[str, str]], payload: bytes, *, cut: int | None = None
    ) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()
        if cut is not None:
            self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
