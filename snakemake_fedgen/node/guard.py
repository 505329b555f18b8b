"""What every request must be before the API sees it: no browser, the node's own host name, JSON,
a bounded body that arrives in time.

An ASGI middleware in front of the FastAPI app (:class:`RequestGuard`):

* a request carrying an ``Origin`` header comes from a web page (browsers add it to
  cross-origin requests and to every POST): 403. No client of a node is a browser, so a page in
  the steward's browser cannot drive a node on the same machine;
* the ``Host`` header must name a loopback address, the address the node is bound to, or one
  of ``allowed_hosts`` (a node behind a reverse proxy): 400 otherwise, so DNS rebinding (a
  hostile name that resolves to 127.0.0.1) reads nothing;
* a request with a body must say ``Content-Type: application/json``: 415 otherwise (a page's
  "simple" ``text/plain`` POST needs no CORS preflight);
* the body is at most ``max_request_bytes`` (413, from ``Content-Length`` before reading, or
  while reading a chunked body) and must arrive within ``body_timeout_seconds`` (408).

The one exception is an ingress upload (``PUT /fedgen/v1/ingress/<sha256>``,
:mod:`snakemake_fedgen.node.ingress`): its body is ``application/octet-stream`` (still no
browser's "simple" type), at most ``max_ingress_bytes``, within ``ingress_timeout_seconds``.

The header timeout (a connection that never finishes its headers) is the HTTP protocol's
concern: :mod:`snakemake_fedgen.node.protocol`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from snakemake_fedgen.node.config import NodeConfig
from snakemake_fedgen.node.ingress import INGRESS_PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def host_name(header: str) -> str:
    """The host part of a ``Host`` header (port removed, IPv6 brackets kept), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_host_names(cfg: NodeConfig) -> frozenset[str]:
    """Names the ``Host`` header may carry: loopback, the bind address, ``allowed_hosts``."""
    names = set(LOOPBACK_NAMES)
    if cfg.host not in ("0.0.0.0", "::", ""):
        names.add(cfg.host.lower())
        if ":" in cfg.host:
            names.add(f"[{cfg.host.lower()}]")
    names.update(h.lower() for h in cfg.allowed_hosts)
    return frozenset(names)


class RequestGuard:
    """ASGI middleware with the checks of this module (``app.add_middleware(RequestGuard,
    cfg=cfg)``). Body limits are raised as HTTP errors from ``receive``, so the app's own error
    handler answers them."""

    def __init__(self, app: ASGIApp, *, cfg: NodeConfig) -> None:
        self.app = app
        self.hosts = allowed_host_names(cfg)
        self.limit = cfg.max_request_bytes
        self.body_timeout = cfg.body_timeout_seconds
        self.ingress_limit = cfg.max_ingress_bytes
        self.ingress_timeout = cfg.ingress_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        ingress = scope["method"] == "PUT" and scope["path"].startswith(INGRESS_PREFIX + "/")
        limit = self.ingress_limit if ingress else self.limit
        body_timeout = self.ingress_timeout if ingress else self.body_timeout
        media = "application/octet-stream" if ingress else "application/json"
        try:
            # An ingress upload's announced length is checked by the endpoint, after the
            # caller is known, so the refusal is audited under its name.
            _check_headers(
                scope["method"],
                headers,
                hosts=self.hosts,
                limit=None if ingress else limit,
                media=media,
            )
        except _Refused as exc:
            await _answer(send, exc.status, exc.message)
            return
        more = scope["method"] in _BODY_METHODS
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + body_timeout

        async def receive_guarded() -> Message:
            nonlocal more, received
            if not more:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {body_timeout:g} s (the node's "
                    + ("ingress_timeout_seconds)" if ingress else "body_timeout_seconds)"),
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more = bool(message.get("more_body"))
                if received > limit:
                    raise HTTPException(413, _too_large(limit, ingress=ingress))
            else:
                more = False
            return message

        await self.app(scope, receive_guarded, send)


def _check_headers(
    method: str,
    headers: dict[str, str],
    *,
    hosts: frozenset[str],
    limit: int | None,
    media: str = "application/json",
) -> None:
    if "origin" in headers:
        raise _Refused(
            403,
            "requests from web pages are refused (the request has an Origin header); a fedgen "
            "node is driven by the executor or a TES client, never by a browser",
        )
    host = host_name(headers.get("host", ""))
    if host not in hosts:
        raise _Refused(
            400,
            f"Host {host or '(none)'!r} is not a name of this node; a node behind a proxy lists "
            "its public names under allowed_hosts",
        )
    length = headers.get("content-length")
    has_body = (length not in (None, "0")) or "transfer-encoding" in headers
    if method in _BODY_METHODS and has_body:
        given = headers.get("content-type", "").split(";")[0].strip().lower()
        if given != media:
            raise _Refused(415, f"request bodies here must be {media}, not {given or 'unset'!r}")
    if limit is not None and length is not None and length.isdigit() and int(length) > limit:
        raise _Refused(413, _too_large(limit))


def _too_large(limit: int, *, ingress: bool = False) -> str:
    if ingress:
        return (
            f"the upload is larger than {limit} bytes (the node's max_ingress_bytes); nothing "
            "was kept. Make it a site dataset (fedgen sites ref) or split it."
        )
    return (
        f"the request body is larger than {limit} bytes (the node's max_request_bytes); "
        "large inputs go to the site's storage, not into the task document"
    )


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"message": message, "status": status}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["RequestGuard", "allowed_host_names", "host_name"]
