"""The HTTP API: GA4GH TES 1.1 under ``/ga4gh/tes/v1`` and published egress files."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from snakemake_executor_plugin_fedgen.errors import AuthError, InvalidTask, StorageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from snakemake_fedgen import __version__
from snakemake_fedgen.governance.node import check_task_visas
from snakemake_fedgen.node.audit import AuditLog
from snakemake_fedgen.node.auth import Authenticator, Caller
from snakemake_fedgen.node.config import NodeConfig
from snakemake_fedgen.node.runtime import Runtime
from snakemake_fedgen.node.scheduler import Scheduler
from snakemake_fedgen.node.storage import check_input_url, check_output_url, url_scheme
from snakemake_fedgen.node.store import TaskStore
from snakemake_fedgen.node.task import (
    STATES,
    VIEWS,
    check_task,
    new_task_id,
    now_rfc3339,
    view_of,
)

log = logging.getLogger("snakemake_fedgen.node")

TES_PREFIX = "/ga4gh/tes/v1"
EGRESS_PREFIX = "/fedgen/v1/egress"
MAX_PAGE_SIZE = 2048
DEFAULT_PAGE_SIZE = 256


class ApiError(Exception):
    """An error answered as JSON ``{"message": ..., "status": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(cfg: NodeConfig, *, runtime: Runtime, authenticator: Authenticator) -> FastAPI:
    """Build the node's FastAPI application (the scheduler starts with the app's lifespan)."""
    store = TaskStore(cfg.db_path)
    audit = AuditLog(cfg.audit_path)
    scheduler = Scheduler(cfg, store=store, audit=audit, runtime=runtime)
    blocked = list(cfg.tool_paths)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.recover()
        audit.record(caller="node", action="Start", outcome="ok", runtime=runtime.name)
        yield
        await scheduler.stop()
        audit.record(caller="node", action="Stop", outcome="ok")
        store.close()
        audit.close()

    app = FastAPI(
        title="fedgen node",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.scheduler = scheduler
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"message": exc.message, "status": exc.status}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}")
        message = "invalid request: " + "; ".join(parts)
        return JSONResponse({"message": message, "status": 400}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": str(exc.detail), "status": exc.status_code}, status_code=exc.status_code
        )

    def caller_of(request: Request, action: str, task: str | None = None) -> Caller:
        try:
            return authenticator.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            audit.record(caller="unauthenticated", action=action, task=task, outcome="401")
            raise ApiError(401, str(exc)) from None

    def own_task(caller: Caller, task_id: str, action: str):
        stored = store.get(task_id)
        # Another caller's task answers exactly like a missing one: ids reveal nothing.
        if stored is None or stored.owner != caller.name:
            audit.record(caller=caller.name, action=action, task=task_id, outcome="404")
            raise ApiError(404, f"task {task_id} not found.")
        return stored

    def check_view(view: str) -> str:
        if view not in VIEWS:
            raise ApiError(400, f"view must be one of {', '.join(VIEWS)}, got {view!r}.")
        return view

    @app.get(f"{TES_PREFIX}/service-info")
    async def service_info() -> dict[str, Any]:
        allow = cfg.allowed_images
        schemes = ["file", "content"] + (["http", "https"] if cfg.allowed_input_hosts else [])
        return {
            "id": f"org.fedgen.node.{cfg.node_id}",
            "name": f"fedgen node {cfg.node_id}",
            "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
            "description": (
                f"snakemake-fedgen site node; runtime {runtime.name}; "
                + (
                    f"image allow-list active ({len(allow)} pattern(s))"
                    if allow
                    else "no image allow-list: every image is accepted"
                )
                + f"; storage: {', '.join(schemes)} only (outputs: file:// under the write "
                "roots); s3://, gs://, ftp://, drs:// and every other scheme are refused"
            ),
            "organization": {
                "name": "snakemake-fedgen",
                "url": "https://github.com/snakemake-fedgen",
            },
            "documentationUrl": "https://github.com/snakemake-fedgen/snakemake-fedgen/blob/main/docs/site-admin.md",
            "environment": "production",
            "version": __version__,
            # Write roots only: read roots would tell anonymous callers where site data lives.
            "storage": [r.as_uri() for r in cfg.write_roots]
            + (["http://", "https://"] if cfg.allowed_input_hosts else []),
            "tesResources_backend_parameters": [],
            "fedgen": {
                "node_id": cfg.node_id,
                "runtime": runtime.name,
                "image_allow_list": bool(allow),
                "allowed_images": list(allow),
                "storage_schemes": schemes,
                "storage_refused": "every other scheme (s3, gs, ftp, drs, ...), deliberately",
                "cpu_cores": cfg.node_cores,
                "egress_root": cfg.egress_root.as_uri() if cfg.egress_root else None,
                "egress_read_path": EGRESS_PREFIX,
                "auth": ("jwt" if cfg.jwt else "bearer")
                if (cfg.jwt or cfg.token_file)
                else "none (loopback only)",
            },
        }

    @app.post(f"{TES_PREFIX}/tasks")
    async def create_task(request: Request) -> dict[str, str]:
        caller = caller_of(request, "CreateTask")
        try:
            body = await request.json()
        except ValueError:
            audit.record(caller=caller.name, action="CreateTask", outcome="400")
            raise ApiError(400, "the request body is not valid JSON.") from None
        try:
            doc = check_task(
                body,
                allowed_images=cfg.allowed_images,
                max_content_bytes=cfg.max_content_bytes,
                blocked_paths=blocked,
            )
            _check_urls(cfg, doc)
        except (InvalidTask, StorageError) as exc:
            audit.record(caller=caller.name, action="CreateTask", outcome="400", reason=str(exc))
            raise ApiError(400, f"invalid task: {exc}") from None
        try:
            check_task_visas(caller, doc, cfg)
        except AuthError as exc:
            audit.record(caller=caller.name, action="CreateTask", outcome="403", reason=str(exc))
            raise ApiError(403, str(exc)) from None
        doc = {"id": new_task_id(), "state": "QUEUED", **doc, "creation_time": now_rfc3339()}
        store.create(doc, owner=caller.name)
        audit.record(caller=caller.name, action="CreateTask", task=doc["id"], outcome="QUEUED")
        scheduler.submit(doc)
        return {"id": doc["id"]}

    @app.get(f"{TES_PREFIX}/tasks")
    async def list_tasks(
        request: Request,
        name_prefix: str | None = None,
        state: str | None = None,
        tag_key: Annotated[list[str] | None, Query()] = None,
        tag_value: Annotated[list[str] | None, Query()] = None,
        page_size: int | None = None,
        page_token: str | None = None,
        view: str = "MINIMAL",
    ) -> dict[str, Any]:
        caller = caller_of(request, "ListTasks")
        check_view(view)
        if state is not None and state not in STATES:
            raise ApiError(400, f"state must be one of {', '.join(STATES)}, got {state!r}.")
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if size < 1:
            raise ApiError(400, f"page_size must be >= 1, got {page_size}.")
        # FULL documents carry up to 2 x log_tail_bytes per executor: keep such pages bounded.
        size = min(size, MAX_PAGE_SIZE if view != "FULL" else DEFAULT_PAGE_SIZE)
        token = None
        if page_token:
            try:
                token = int(page_token)
            except ValueError:
                raise ApiError(
                    400, f"page_token {page_token!r} is not one this node issued."
                ) from None
        keys = tag_key or []
        values = tag_value or []
        if len(values) > len(keys):
            raise ApiError(400, "more tag_value than tag_key parameters.")
        tags = {k: (values[i] if i < len(values) else "") for i, k in enumerate(keys)}
        tasks, next_token = store.list(
            owner=caller.name,
            name_prefix=name_prefix,
            state=state,
            tags=tags,
            page_size=size,
            page_token=token,
            minimal=view == "MINIMAL",
        )
        if view == "BASIC":
            tasks = [view_of(t, "BASIC") for t in tasks]
        audit.record(caller=caller.name, action="ListTasks", outcome=f"{len(tasks)} tasks")
        out: dict[str, Any] = {"tasks": tasks}
        if next_token is not None:
            out["next_page_token"] = str(next_token)
        return out

    @app.get(TES_PREFIX + "/tasks/{task_id}")
    async def get_task(request: Request, task_id: str, view: str = "MINIMAL") -> dict[str, Any]:
        caller = caller_of(request, "GetTask", task_id)
        check_view(view)
        stored = own_task(caller, task_id, "GetTask")
        audit.record(caller=caller.name, action="GetTask", task=task_id, outcome=stored.state)
        return view_of(stored.doc, view)

    @app.post(TES_PREFIX + "/tasks/{task_id}:cancel")
    async def cancel_task(request: Request, task_id: str) -> dict[str, Any]:
        caller = caller_of(request, "CancelTask", task_id)
        own_task(caller, task_id, "CancelTask")
        state = scheduler.cancel(task_id)
        audit.record(caller=caller.name, action="CancelTask", task=task_id, outcome=state)
        return {}

    @app.get(EGRESS_PREFIX + "/{path:path}")
    async def egress_file(request: Request, path: str):
        caller = caller_of(request, "GetEgress")
        if cfg.egress_root is None:
            raise ApiError(404, "this node has no egress_root.")
        parts = path.split("/")
        if not path or ".." in parts or "" in parts or "\x00" in path:
            audit.record(caller=caller.name, action="GetEgress", outcome="400", file=path)
            raise ApiError(400, f"egress path {path!r} is not a plain relative path.")
        record = store.published(path)
        target = cfg.egress_root / path
        real = Path(os.path.realpath(target))
        if (
            record is None
            or record[0] != caller.name
            or not real.is_relative_to(cfg.egress_root)
            or not real.is_file()
            or real.stat().st_size != record[3]
        ):
            audit.record(caller=caller.name, action="GetEgress", outcome="404", file=path)
            raise ApiError(404, f"egress file {path} not found (not published for you).")
        audit.record(
            caller=caller.name, action="GetEgress", task=record[1], outcome="200", file=path
        )
        return FileResponse(real, headers={"X-Fedgen-Sha256": record[2]})

    return app


def _check_urls(cfg: NodeConfig, doc: dict[str, Any]) -> None:
    """Refuse, at submission, inputs and outputs outside the site's roots."""
    readable = [*cfg.read_roots, *cfg.write_roots]
    for i, item in enumerate(doc.get("inputs") or []):
        if not item.get("content"):
            check_input_url(
                item["url"],
                kind=item.get("type", "FILE"),
                read_roots=readable,
                what=f"inputs[{i}]",
                allowed_hosts=cfg.allowed_input_hosts,
            )
    for i, item in enumerate(doc.get("outputs") or []):
        if url_scheme(item["url"]) != "file":
            raise StorageError(f"outputs[{i}].url {item['url']!r}: outputs must be file:// URLs.")
        check_output_url(item["url"], write_roots=cfg.write_roots, what=f"outputs[{i}].url")
