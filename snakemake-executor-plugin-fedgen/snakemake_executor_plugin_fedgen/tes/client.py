"""A small GA4GH TES 1.1 client for one site: bounded retries, bearer token, no secret leaks.

Requests that fail with HTTP 5xx, a connection reset or a timeout are retried with exponential
backoff (bounded attempts and delay). A POST is only retried blindly when the request cannot have
reached the server (connection refused); otherwise :meth:`TesClient.create_task_once` first asks
the server for a task with the same job-key tag, so a retry never creates a second task.
The token is read from the site at each request and only ever placed in the Authorization
header; error messages carry the site, method, path and status, never headers.

Answers are parsed with the models of :mod:`.models` (types strict, fields other servers add
ignored); an answer that does not parse is a :class:`TesError` naming the site and the field.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Literal, Protocol, TypeVar, overload
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from snakemake_executor_plugin_fedgen.errors import NodeProtocolError, StorageError, TesError
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.tes.ingress import INGRESS_PREFIX
from snakemake_executor_plugin_fedgen.tes.models import (
    MinimalListTasksResponse,
    MinimalTask,
    Service,
    TaskView,
    TesCreateTaskResponse,
    TesListTasksResponse,
    TesServiceInfo,
    TesTask,
    describe_errors,
)
from snakemake_executor_plugin_fedgen.tes.states import ENDED_BADLY
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG

# Large pages keep "one ListTasks per site per poll" true for thousands of tasks; servers may
# cap it lower, and then the client follows next_page_token.
#: CreateTask answers that say "not now, nothing stored": the caller's queue is full (429) or
#: the node's disk is (507). The executor holds the job back and tries again.
BUSY_STATUSES = frozenset({429, 507})
#: Default of --fedgen-max-list-pages.
DEFAULT_MAX_PAGES = 100
LIST_PAGE_SIZE = 2048

_Model = TypeVar("_Model", bound=BaseModel)
_UNKNOWN = object()
_PLAIN_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")
_Page = TypeVar("_Page", MinimalListTasksResponse, TesListTasksResponse)


class _Uncertain(Exception):
    """A POST may or may not have reached the server."""


class BinarySink(Protocol):
    """Where :meth:`TesClient.download` writes (a binary file, or a wrapper with ``restart``)."""

    def write(self, block: bytes, /) -> int: ...


class TesClient:
    """TES client bound to one registry site.

    Parameters
    ----------
    site
        The registry site (URL and token source).
    timeout
        Seconds per HTTP request.
    max_attempts
        Attempts per request for retryable failures (5xx, resets, timeouts).
    backoff_base, backoff_cap
        First retry delay and the largest delay, in seconds.
    max_pages
        Most ListTasks pages followed for one listing (a node that never stops paging is an
        error naming the site, not a hang).
    """

    def __init__(
        self,
        site: Site,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        self.site = site
        self.max_pages = max(1, max_pages)
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._http = httpx.Client(
            timeout=timeout, limits=httpx.Limits(max_connections=8, max_keepalive_connections=4)
        )
        self._counts_lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._ingress: object = _UNKNOWN
        self._ingress_path = INGRESS_PREFIX

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- public API ---------------------------------------------------------------------------

    def service_info(self) -> TesServiceInfo:
        """GET /service-info."""
        return self._parse(
            TesServiceInfo, self._request("GET", "/service-info"), "GET /service-info"
        )

    def ingress_limit(self) -> int | None:
        """The largest upload the site's ingress takes (its service-info's
        ``fedgen.max_ingress_bytes``), or None: no ingress (Funnel, TESK, a node without it).

        Asked once per client; the answer is kept.
        """
        with self._counts_lock:
            if self._ingress is not _UNKNOWN:
                return self._ingress  # type: ignore[return-value]
        try:
            doc = self._request("GET", "/service-info").json()
        except ValueError:
            doc = {}
        except TesError as exc:
            if exc.status is None:
                raise
            doc = {}
        block = doc.get("fedgen") if isinstance(doc, dict) else None
        limit = None
        path = block.get("ingress_path") if isinstance(block, dict) else None
        # A plain absolute path on the node's own origin: a path that would change the host
        # ("@evil", "//evil") must never receive the coordinator's token.
        if isinstance(block, dict) and isinstance(path, str) and _PLAIN_PATH.fullmatch(path):
            given = block.get("max_ingress_bytes")
            limit = given if isinstance(given, int) and given > 0 else None
            self._ingress_path = block["ingress_path"]
        with self._counts_lock:
            self._ingress = limit
        return limit

    def upload(self, path: str, sha256: str, size: int) -> bool:
        """Make sure the site's ingress holds the coordinator file ``path`` (digest ``sha256``).

        Asks first (``GET`` answers 200 or 404, never the content) and uploads only a missing
        file, streamed from disk; a cut upload is retried from the start. Returns True if it
        uploaded. The node checks the digest before it keeps anything.

        Raises
        ------
        TesError
            The node refused the upload (too large, over the caller's quota, wrong digest) or
            could not be reached; the message names the site and the file.
        """
        if self.ingress_limit() is None:
            raise TesError(f"site {self.site.name}: the node has no ingress endpoint.")
        url = _origin(self.site.tes_url) + f"{self._ingress_path}/{sha256}"
        headers = self._auth_headers()
        self._count("GET ingress")
        try:
            probe = self._http.get(url, headers=headers)
        except httpx.TransportError:
            probe = None  # the upload below is idempotent: just send it
        if probe is not None and probe.status_code == 200:
            return False
        if probe is not None and probe.status_code not in (404,) and probe.status_code < 500:
            raise TesError(
                f"site {self.site.name}: GET {_strip(url)} answered {probe.status_code}: "
                f"{_short(probe.text)}",
                status=probe.status_code,
            )
        put_headers = {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        problem = ""
        for attempt in range(self.max_attempts):
            self._count("PUT ingress")
            try:
                with open(path, "rb") as fh:
                    resp = self._http.put(url, content=_chunks(fh), headers=put_headers)
            except httpx.TransportError as exc:
                problem = exc.__class__.__name__
            else:
                if resp.status_code in (200, 201):
                    return True
                if resp.status_code < 500:
                    raise TesError(
                        f"site {self.site.name}: uploading {path} to the ingress answered "
                        f"{resp.status_code}: {_short(resp.text)}",
                        status=resp.status_code,
                    )
                problem = f"HTTP {resp.status_code}"
            if attempt + 1 < self.max_attempts:
                self._sleep(attempt)
        raise TesError(
            f"site {self.site.name}: uploading {path} to {_strip(url)} failed after "
            f"{self.max_attempts} attempts ({problem})."
        )

    @overload
    def get_task(self, task_id: str, *, view: Literal["MINIMAL"]) -> MinimalTask: ...

    @overload
    def get_task(self, task_id: str, *, view: Literal["BASIC", "FULL"] = ...) -> TesTask: ...

    def get_task(self, task_id: str, *, view: TaskView = "FULL") -> TesTask | MinimalTask:
        """GET /tasks/{id} in the given view (MINIMAL, BASIC or FULL)."""
        resp = self._request("GET", f"/tasks/{task_id}", params={"view": view})
        if view == "MINIMAL":
            return self._parse(MinimalTask, resp, "GET /tasks/{id}")
        return self._parse(TesTask, resp, "GET /tasks/{id}")

    def cancel_task(self, task_id: str) -> None:
        """POST /tasks/{id}:cancel."""
        self._request("POST", f"/tasks/{task_id}:cancel", json={})

    @overload
    def list_tasks(
        self, *, tags: Mapping[str, str] | None = ..., view: Literal["MINIMAL"] = ...
    ) -> list[MinimalTask]: ...

    @overload
    def list_tasks(
        self, *, tags: Mapping[str, str] | None = ..., view: Literal["BASIC", "FULL"]
    ) -> list[TesTask]: ...

    def list_tasks(
        self, *, tags: Mapping[str, str] | None = None, view: TaskView = "MINIMAL"
    ) -> list[MinimalTask] | list[TesTask]:
        """Return every task matching ``tags`` (all pages) in the given view."""
        if view == "MINIMAL":
            return list(self.iter_tasks(tags=tags, view="MINIMAL"))
        return list(self.iter_tasks(tags=tags, view=view))

    @overload
    def iter_tasks(
        self, *, tags: Mapping[str, str] | None = ..., view: Literal["MINIMAL"] = ...
    ) -> Iterator[MinimalTask]: ...

    @overload
    def iter_tasks(
        self, *, tags: Mapping[str, str] | None = ..., view: Literal["BASIC", "FULL"]
    ) -> Iterator[TesTask]: ...

    def iter_tasks(
        self, *, tags: Mapping[str, str] | None = None, view: TaskView = "MINIMAL"
    ) -> Iterator[MinimalTask] | Iterator[TesTask]:
        """Yield tasks matching ``tags`` page by page (one GET /tasks per page)."""
        if view == "MINIMAL":
            return (
                t for page in self._pages(MinimalListTasksResponse, tags, view) for t in page.tasks
            )
        return (t for page in self._pages(TesListTasksResponse, tags, view) for t in page.tasks)

    def create_task(self, task: TesTask) -> str:
        """POST /tasks; retried only while the request cannot have reached the server."""
        return self._post_task(task)

    def create_task_once(self, task: TesTask, *, job_key: str) -> str:
        """Create ``task`` unless a task with the same job-key tag already exists.

        When a POST may have reached the server (timeout, reset, 5xx), the server is asked for
        tasks tagged with ``job_key`` before trying again, so at most one task exists per key.
        """
        last: _Uncertain | None = None
        for attempt in range(self.max_attempts):
            try:
                return self._post_task(task)
            except _Uncertain as exc:
                last = exc
                self._sleep(attempt)
                existing = [
                    t
                    for t in self.list_tasks(tags={JOB_KEY_TAG: job_key}, view="BASIC")
                    if (t.tags or {}).get(JOB_KEY_TAG) == job_key
                    # An earlier failed attempt of the same job (Snakemake --retries) is not it.
                    and t.state not in ENDED_BADLY
                ]
                if existing and existing[0].id:
                    return existing[0].id
        raise TesError(
            f"site {self.site.name}: creating a task at {self.site.tes_url} failed "
            f"{self.max_attempts} times ({last}); the site may be down."
        )

    def download(
        self, url: str, sink: BinarySink, *, max_bytes: int | None = None, chunk: int = 1 << 20
    ) -> httpx.Headers:
        """Stream ``url`` (an http(s) egress URL of this site) into the binary file ``sink``.

        A cut or lost connection or an HTTP 5xx is retried from the start when ``sink`` has a
        ``restart()`` method (that empties it); otherwise the first failure is final. More than
        ``max_bytes`` (announced or received) is a StorageError naming the site.
        """
        problem, status = "", None
        for attempt in range(self.max_attempts):
            try:
                with self._http.stream("GET", url, headers=self._auth_headers()) as resp:
                    if resp.status_code == 200:
                        announced = resp.headers.get("content-length", "")
                        too_big = announced.isdigit() and int(announced) > (max_bytes or 0)
                        if max_bytes is not None and too_big:
                            raise egress_too_large(self.site.name, url, max_bytes)
                        received = 0
                        for block in resp.iter_bytes(chunk):
                            received += len(block)
                            if max_bytes is not None and received > max_bytes:
                                raise egress_too_large(self.site.name, url, max_bytes)
                            sink.write(block)
                        return resp.headers
                    resp.read()
                    if resp.status_code < 500:
                        raise TesError(
                            f"site {self.site.name}: GET {_strip(url)} answered "
                            f"{resp.status_code}: {_short(resp.text)}",
                            status=resp.status_code,
                        )
                    problem, status = f"HTTP {resp.status_code}", resp.status_code
            except httpx.HTTPError as exc:
                problem, status = exc.__class__.__name__, None
            restart = getattr(sink, "restart", None)
            if restart is None or attempt + 1 == self.max_attempts:
                break
            restart()
            self._sleep(attempt)
        raise TesError(
            f"site {self.site.name}: GET {_strip(url)} failed after {attempt + 1} attempt(s) "
            f"({problem}).",
            status=status,
        )

    # -- internals ----------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        token = self.site.token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def _pages(
        self, model: type[_Page], tags: Mapping[str, str] | None, view: TaskView
    ) -> Iterator[_Page]:
        params: list[tuple[str, str]] = [("view", view), ("page_size", str(LIST_PAGE_SIZE))]
        for key, value in (tags or {}).items():
            params += [("tag_key", key), ("tag_value", value)]
        token: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page = params + ([("page_token", token)] if token else [])
            body = self._parse(model, self._request("GET", "/tasks", params=page), "GET /tasks")
            yield body
            token = body.next_page_token
            if not token:
                return
            if token in seen:
                raise NodeProtocolError(
                    f"site {self.site.name}: GET /tasks at {self.site.tes_url} repeated "
                    f"page token {token[:40]!r}; a TES server never does that, so the listing "
                    "was stopped. Ask the site's admin to check the node."
                )
            seen.add(token)
        raise NodeProtocolError(
            f"site {self.site.name}: GET /tasks at {self.site.tes_url} still had more pages "
            f"after {self.max_pages} (--fedgen-max-list-pages); the listing was stopped. Raise "
            "the limit if the site really holds that many tasks of this run."
        )

    def _parse(self, model: type[_Model], resp: httpx.Response, label: str) -> _Model:
        """Validate an answer; fields other servers add are ignored, types are checked."""
        try:
            if issubclass(model, Service):
                return model.model_validate_json(resp.content)
            return model.model_validate_json(resp.content, extra="ignore")
        except ValidationError as exc:
            raise TesError(
                f"site {self.site.name}: {label} answered a document that is not a TES 1.1 "
                f"{model.__name__}: {describe_errors(exc)}"
            ) from None

    def _post_task(self, task: TesTask) -> str:
        url = self.site.tes_url + "/tasks"
        body = task.document()
        for attempt in range(self.max_attempts):
            self._count("POST /tasks")
            try:
                resp = self._http.post(url, json=body, headers=self._auth_headers())
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt + 1 == self.max_attempts:
                    raise TesError(
                        f"site {self.site.name}: cannot connect to {self.site.tes_url} "
                        f"({exc.__class__.__name__})."
                    ) from None
                self._sleep(attempt)
                continue
            except httpx.TransportError as exc:
                raise _Uncertain(exc.__class__.__name__) from None
            if resp.status_code in BUSY_STATUSES:
                # The node stored nothing: its queue for this caller or its disk is full.
                raise TesError(
                    f"site {self.site.name}: POST /tasks answered {resp.status_code}: "
                    f"{_short(resp.text)}",
                    status=resp.status_code,
                )
            if resp.status_code >= 500:
                raise _Uncertain(f"HTTP {resp.status_code}")
            if resp.status_code >= 300:
                raise TesError(
                    f"site {self.site.name}: POST /tasks answered {resp.status_code}: "
                    f"{_short(resp.text)}",
                    status=resp.status_code,
                )
            return self._parse(TesCreateTaskResponse, resp, "POST /tasks").id
        raise AssertionError("unreachable")

    def _request(
        self, method: str, path: str, *, params: Any = None, json: Any = None
    ) -> httpx.Response:
        url = self.site.tes_url + path
        label = f"{method} {path.split('?')[0]}"
        self._count(_endpoint(method, path))
        problem = ""
        for attempt in range(self.max_attempts):
            try:
                resp = self._http.request(
                    method, url, params=params, json=json, headers=self._auth_headers()
                )
            except httpx.TransportError as exc:
                problem = exc.__class__.__name__
            else:
                if resp.status_code < 300:
                    return resp
                if resp.status_code < 500:
                    raise TesError(
                        f"site {self.site.name}: {label} answered {resp.status_code}: "
                        f"{_short(resp.text)}",
                        status=resp.status_code,
                    )
                problem = f"HTTP {resp.status_code}"
            if attempt + 1 < self.max_attempts:
                self._sleep(attempt)
        raise TesError(
            f"site {self.site.name}: {label} at {self.site.tes_url} failed after "
            f"{self.max_attempts} attempts ({problem})."
        )

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.backoff_cap, self.backoff_base * 2**attempt))


def egress_too_large(site: str, url: str, max_bytes: int) -> StorageError:
    """The error for an egress download past the site's ``max_egress_bytes``."""
    return StorageError(
        f"site {site}: GET {_strip(url)} is larger than {max_bytes} bytes (the site's "
        "max_egress_bytes in the registry); the download was stopped and nothing was kept."
    )


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL (the node's fedgen endpoints hang off its root)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _chunks(fh: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while block := fh.read(size):
        yield block


def _endpoint(method: str, path: str) -> str:
    """Return the endpoint label used in request counts (ids replaced by a placeholder)."""
    if path.startswith("/tasks/"):
        return f"{method} /tasks/{{id}}" + (":cancel" if path.endswith(":cancel") else "")
    return f"{method} {path}"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _strip(url: str) -> str:
    """Drop any query string (never expected to carry secrets, but never worth logging)."""
    return url.split("?", 1)[0]
