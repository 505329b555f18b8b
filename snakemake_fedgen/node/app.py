"""The HTTP API: GA4GH TES 1.1 under ``/ga4gh/tes/v1`` and published egress files.

Every endpoint but service-info depends on :func:`create_app`'s one ``authenticated``
dependency (FastAPI ``Depends``): it turns the ``Authorization`` header into a
:class:`~snakemake_fedgen.node.auth.Caller` or answers 401 (audited with the endpoint's action
name and task id). CreateTask's typed body (:class:`~snakemake_executor_plugin_fedgen.tes.models.TesTask`)
is read by a dependency that itself depends on ``authenticated``: FastAPI would read a declared
body before solving any dependency, so an unauthenticated caller could make the node buffer a
body of any size; this way nothing of the body is read before the caller is known.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and the
# dependency aliases (CallerDep, OwnTask) are local to create_app.
import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from snakemake_executor_plugin_fedgen.approval import UnapprovedCommand
from snakemake_executor_plugin_fedgen.errors import (
    AuthError,
    DiskFull,
    InvalidTask,
    NodeBusy,
    QueueFull,
    StorageError,
)
from snakemake_executor_plugin_fedgen.tes.models import (
    ServiceOrganization,
    TaskView,
    TesCancelTaskResponse,
    TesCreateTaskResponse,
    TesServiceInfo,
    TesServiceType,
    TesTask,
    describe_errors,
)
from snakemake_executor_plugin_fedgen.tes.states import TesState
from snakemake_executor_plugin_fedgen.tes.tags import CODE_TAG
from starlette.exceptions import HTTPException as StarletteHTTPException

from snakemake_fedgen import __version__
from snakemake_fedgen.beacon.api import beacon_router, open_budget
from snakemake_fedgen.governance.node import check_task_visas
from snakemake_fedgen.node.approvals import (
    approved_releases,
    approved_templates,
    check_task_code,
)
from snakemake_fedgen.node.areas import area_of
from snakemake_fedgen.node.audit import AuditLog
from snakemake_fedgen.node.auth import Authenticator, Caller
from snakemake_fedgen.node.caller_view import LogAccess, caller_view
from snakemake_fedgen.node.config import NodeConfig, beacon_config
from snakemake_fedgen.node.guard import RequestGuard
from snakemake_fedgen.node.ingress import (
    INGRESS_PREFIX,
    INGRESS_SCHEME,
    IngressRefused,
    IngressStore,
    is_digest,
)
from snakemake_fedgen.node.runtime import Runtime
from snakemake_fedgen.node.scheduler import Scheduler, is_disk_full
from snakemake_fedgen.node.storage import check_task_urls
from snakemake_fedgen.node.store import StoredTask, TaskStore
from snakemake_fedgen.node.task import (
    MASK_BACKEND_PARAMETERS,
    check_task,
    new_task_id,
    now_rfc3339,
    view_of,
)

log = logging.getLogger("snakemake_fedgen.node")

TES_PREFIX = "/ga4gh/tes/v1"
EGRESS_PREFIX = "/fedgen/v1/egress"
MAX_PAGE_SIZE = 2048
RETRY_AFTER_SECONDS = 10
DEFAULT_PAGE_SIZE = 256


class ApiError(Exception):
    """An error answered as JSON ``{"message": ..., "status": ...}``."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class FedgenNodeInfo(BaseModel):
    """The ``fedgen`` block of this node's service-info (what the executor and stewards see)."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    runtime: str
    image_allow_list: bool
    allowed_images: list[str]
    storage_schemes: list[str]
    storage_refused: str
    cpu_cores: int
    egress_root: str | None
    egress_read_path: str
    auth: str
    approved_code: str
    approved_releases: list[str] | None = None
    ingress_path: str | None = None
    max_ingress_bytes: int | None = None


class NodeServiceInfo(TesServiceInfo):
    """``tesServiceInfo`` of a fedgen node: the TES fields plus the ``fedgen`` block."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fedgen: FedgenNodeInfo


def _busy(exc: Exception, cfg: NodeConfig) -> ApiError:
    """The answer to a CreateTask the node cannot take now: 429 (queue) or 507 (disk)."""
    if isinstance(exc, QueueFull):
        return ApiError(429, str(exc), retry_after=RETRY_AFTER_SECONDS)
    if isinstance(exc, DiskFull):
        return ApiError(507, str(exc), retry_after=RETRY_AFTER_SECONDS)
    if isinstance(exc, OSError | sqlite3.OperationalError) and is_disk_full(exc):
        return ApiError(
            507,
            f"the disk under the node's state directory {cfg.state_dir} is full ({exc}); "
            "the site must free space",
            retry_after=RETRY_AFTER_SECONDS,
        )
    raise exc


def create_app(cfg: NodeConfig, *, runtime: Runtime, authenticator: Authenticator) -> FastAPI:
    """Build the node's FastAPI application (the scheduler starts with the app's lifespan)."""
    store = TaskStore(cfg.db_path)
    audit = AuditLog(cfg.audit_path)
    ingress = IngressStore.of(cfg) if cfg.max_ingress_bytes > 0 else None
    scheduler = Scheduler(cfg, store=store, audit=audit, runtime=runtime, ingress=ingress)
    blocked = list(cfg.tool_paths)
    beacon = beacon_config(cfg)
    # The Beacon's query budget (snakemake_fedgen/beacon/budget.py) persists under STATE.
    budget = open_budget(cfg.state_dir, beacon.budget) if beacon is not None else None
    log_callers = set(cfg.caller_logs)

    def shown(caller: Caller, doc: dict[str, Any]) -> dict[str, Any]:
        """The task as this caller may see it: logs stay at the site unless allowed."""
        allowed = caller.name in log_callers and caller.kind == "static"
        allowed = allowed or area_of(caller) in log_callers
        access: LogAccess = "redacted" if allowed else "none"
        return caller_view(doc, access=access, redactor=scheduler.redactor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.recover()
        audit.record(caller="node", action="Start", outcome="ok", runtime=runtime.name)
        if ingress is not None:
            # No upload is in flight yet: temporary files are a crash's leftovers.
            collect_ingress_garbage(stale_parts=True)
        yield
        await scheduler.stop()
        if budget is not None:
            budget.close()
        audit.record(caller="node", action="Stop", outcome="ok")
        store.close()
        audit.close()

    def collect_ingress_garbage(*, stale_parts: bool = False) -> None:
        assert ingress is not None
        for name in ingress.collect_garbage(stale_parts=stale_parts):
            area, _, file = name.partition("/")
            audit.record(
                caller="node", action="IngressExpired", outcome="removed", area=area, file=file
            )

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
    # No browser, the node's own Host, JSON bodies of bounded size arriving in time.
    app.add_middleware(RequestGuard, cfg=cfg)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(
            {"message": exc.message, "status": exc.status}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            given = err.get("input")
            shown = f", got {given!r}" if isinstance(given, str) and len(given) < 80 else ""
            parts.append(f"{loc}: {err.get('msg')}{shown}")
        message = "invalid request: " + "; ".join(parts)
        return JSONResponse({"message": message, "status": 400}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": str(exc.detail), "status": exc.status_code}, status_code=exc.status_code
        )

    # -- dependencies -------------------------------------------------------------------------

    async def authenticated(request: Request) -> Caller:
        """The caller of this request, or 401 (audited under the route's action name)."""
        try:
            return authenticator.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            route = request.scope.get("route")
            audit.record(
                caller="unauthenticated",
                action=getattr(route, "name", request.url.path),
                task=request.path_params.get("task_id"),
                outcome="401",
            )
            raise ApiError(401, str(exc)) from None

    CallerDep = Annotated[Caller, Depends(authenticated)]

    async def task_body(request: Request, caller: CallerDep) -> TesTask:
        """The CreateTask body as a :class:`TesTask`, read only once the caller is known."""
        raw = await request.body()
        try:
            return TesTask.model_validate_json(raw)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                message = "the request body is not valid JSON."
            else:
                message = f"invalid task: {describe_errors(exc)}."
            audit.record(caller=caller.name, action="CreateTask", outcome="400", reason=message)
            raise ApiError(400, message) from None

    async def own_task(request: Request, task_id: str, caller: CallerDep) -> StoredTask:
        """The caller's task ``task_id``; another caller's task answers exactly like a missing
        one (404), so task ids reveal nothing."""
        stored = store.get(task_id)
        # Another caller's task answers exactly like a missing one: ids reveal nothing.
        if stored is None or stored.owner != area_of(caller):
            route = request.scope.get("route")
            action = getattr(route, "name", request.url.path)
            audit.record(caller=caller.name, action=action, task=task_id, outcome="404")
            raise ApiError(404, f"task {task_id} not found.")
        return stored

    OwnTask = Annotated[StoredTask, Depends(own_task)]

    # -- Beacon v2 (/api) ----------------------------------------------------------------------

    if beacon is not None:
        app.include_router(
            beacon_router(
                beacon,
                authenticate=authenticator.authenticate,
                requester_of=area_of,
                audit=audit,
                budget=budget,
            )
        )

    # -- TES ----------------------------------------------------------------------------------

    allow = cfg.allowed_images
    schemes = ["file", "content"] + (["http", "https"] if cfg.allowed_input_hosts else [])
    schemes += [INGRESS_SCHEME] if ingress is not None else []
    info = NodeServiceInfo(
        id=f"org.fedgen.node.{cfg.node_id}",
        name=f"fedgen node {cfg.node_id}",
        type=TesServiceType(group="org.ga4gh", artifact="tes", version="1.1.0"),
        description=(
            f"snakemake-fedgen site node; runtime {runtime.name}; "
            + (
                f"image allow-list active ({len(allow)} pattern(s))"
                if allow
                else "no image allow-list: every image is accepted"
            )
            + f"; storage: {', '.join(schemes)} only (outputs: file:// under the write roots); "
            "s3://, gs://, ftp://, drs:// and every other scheme are refused"
        ),
        organization=ServiceOrganization(
            name="snakemake-fedgen", url="https://github.com/snakemake-fedgen"
        ),
        documentationUrl="https://github.com/snakemake-fedgen/snakemake-fedgen/blob/main/docs/site-admin.md",
        environment="production",
        version=__version__,
        # Write roots only: read roots would tell anonymous callers where site data lives.
        storage=[r.as_uri() for r in cfg.write_roots]
        + (["http://", "https://"] if cfg.allowed_input_hosts else []),
        tesResources_backend_parameters=(
            list(MASK_BACKEND_PARAMETERS) if cfg.secure_aggregation_key else []
        )
        + (["runtime"] if runtime.name == "slurm" else []),
        fedgen=FedgenNodeInfo(
            node_id=cfg.node_id,
            runtime=runtime.name,
            image_allow_list=bool(allow),
            allowed_images=list(allow),
            storage_schemes=schemes,
            storage_refused="every other scheme (s3, gs, ftp, drs, ...), deliberately",
            cpu_cores=cfg.node_cores,
            egress_root=cfg.egress_root.as_uri() if cfg.egress_root else None,
            egress_read_path=EGRESS_PREFIX,
            auth=("jwt" if cfg.jwt else "bearer")
            if (cfg.jwt or cfg.token_file)
            else "none (loopback only)",
            approved_code="required"
            if cfg.approved_code == "required"
            else "off: tasks may run any command (not approved code)",
            ingress_path=INGRESS_PREFIX if ingress is not None else None,
            max_ingress_bytes=cfg.max_ingress_bytes if ingress is not None else None,
        ),
    )

    @app.get(f"{TES_PREFIX}/service-info", name="GetServiceInfo", response_model_exclude_unset=True)
    async def service_info() -> NodeServiceInfo:
        # Public: clients discover the node before they authenticate.
        if cfg.approved_code == "required":
            info.fedgen.approved_releases = [r.digest for r in approved_releases(cfg.state_dir)]
        return info

    @app.post(f"{TES_PREFIX}/tasks", name="CreateTask")
    async def create_task(
        caller: CallerDep, task: Annotated[TesTask, Depends(task_body)]
    ) -> TesCreateTaskResponse:
        try:
            doc = check_task(
                task,
                allowed_images=cfg.allowed_images,
                max_content_bytes=cfg.max_content_bytes,
                blocked_paths=blocked,
            )
            check_task_urls(cfg, doc, area=area_of(caller), ingress=ingress)
        except (InvalidTask, StorageError) as exc:
            audit.record(caller=caller.name, action="CreateTask", outcome="400", reason=str(exc))
            raise ApiError(400, f"invalid task: {exc}") from None
        try:
            check_task_visas(caller, doc, cfg)
        except AuthError as exc:
            audit.record(caller=caller.name, action="CreateTask", outcome="403", reason=str(exc))
            raise ApiError(403, str(exc)) from None
        tags = doc.setdefault("tags", {})
        if cfg.approved_code == "required":
            try:
                releases = check_task_code(doc, approved_templates(cfg.state_dir))
            except UnapprovedCommand as exc:
                audit.record(
                    caller=caller.name, action="CreateTask", outcome="400", reason=str(exc)
                )
                raise ApiError(400, f"unapproved code: {exc}") from None
            tags[CODE_TAG] = f"approved:{releases}"
        else:
            # Set by the node, whatever the caller sent: egress records name it.
            tags[CODE_TAG] = "unapproved"
        doc = {
            "id": new_task_id(),
            "state": TesState.QUEUED.value,
            **doc,
            "creation_time": now_rfc3339(),
        }
        owner = area_of(caller)
        try:
            scheduler.admit(owner)
            store.create(doc, owner=owner)
        except (NodeBusy, OSError, sqlite3.Error) as exc:
            busy = _busy(exc, cfg)
            with contextlib.suppress(OSError):
                audit.record(
                    caller=caller.name,
                    action="CreateTask",
                    outcome=str(busy.status),
                    reason=busy.message,
                )
            raise busy from None
        audit.record(caller=caller.name, action="CreateTask", task=doc["id"], outcome="QUEUED")
        scheduler.submit(doc, owner=owner)
        return TesCreateTaskResponse(id=doc["id"])

    @app.get(f"{TES_PREFIX}/tasks", name="ListTasks")
    async def list_tasks(
        caller: CallerDep,
        name_prefix: str | None = None,
        state: TesState | None = None,
        tag_key: Annotated[list[str] | None, Query()] = None,
        tag_value: Annotated[list[str] | None, Query()] = None,
        page_size: int | None = None,
        page_token: str | None = None,
        view: TaskView = "MINIMAL",
    ) -> dict[str, Any]:
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
            owner=area_of(caller),
            name_prefix=name_prefix,
            state=state.value if state is not None else None,
            tags=tags,
            page_size=size,
            page_token=token,
            minimal=view == "MINIMAL",
        )
        if view != "MINIMAL":
            tasks = [view_of(shown(caller, t), view) for t in tasks]
        audit.record(caller=caller.name, action="ListTasks", outcome=f"{len(tasks)} tasks")
        # Task documents are returned as stored (checked by TesTask when they were created;
        # tests/tes/test_models.py parses what the node serves), not validated again per page.
        out: dict[str, Any] = {"tasks": tasks}
        if next_token is not None:
            out["next_page_token"] = str(next_token)
        return out

    @app.get(TES_PREFIX + "/tasks/{task_id}", name="GetTask")
    async def get_task(
        caller: CallerDep, stored: OwnTask, view: TaskView = "MINIMAL"
    ) -> dict[str, Any]:
        audit.record(caller=caller.name, action="GetTask", task=stored.id, outcome=stored.state)
        return view_of(shown(caller, stored.doc), view)

    @app.post(TES_PREFIX + "/tasks/{task_id}:cancel", name="CancelTask")
    async def cancel_task(caller: CallerDep, stored: OwnTask) -> TesCancelTaskResponse:
        state = scheduler.cancel(stored.id)
        audit.record(caller=caller.name, action="CancelTask", task=stored.id, outcome=state)
        return TesCancelTaskResponse()

    # -- ingress ------------------------------------------------------------------------------

    if ingress is not None:

        @app.put(INGRESS_PREFIX + "/{digest}", name="PutIngress", response_model=None)
        async def put_ingress(request: Request, caller: CallerDep, digest: str) -> JSONResponse:
            """Store the body as the caller's ingress file ``digest`` (streamed, checked)."""
            area = area_of(caller)
            length_header = request.headers.get("content-length", "")
            length = int(length_header) if length_header.isdigit() else None
            upload = None
            try:
                upload = await asyncio.to_thread(ingress.begin, area, digest, length=length)
                pending: list[bytes] = []
                buffered = 0
                async for block in request.stream():
                    pending.append(block)
                    buffered += len(block)
                    if buffered >= 4 << 20:
                        await asyncio.to_thread(upload.write, b"".join(pending))
                        pending, buffered = [], 0
                if pending:
                    await asyncio.to_thread(upload.write, b"".join(pending))
                created = await asyncio.to_thread(upload.commit)
            except IngressRefused as exc:
                audit.record(
                    caller=caller.name,
                    action="PutIngress",
                    outcome=str(exc.status),
                    sha256=digest[:64],
                    bytes=upload.received if upload else length,
                    reason=str(exc),
                )
                raise ApiError(exc.status, str(exc)) from None
            except StarletteHTTPException as exc:
                # The guard's 413 (past max_ingress_bytes) or 408 (too slow), mid-body.
                audit.record(
                    caller=caller.name,
                    action="PutIngress",
                    outcome=str(exc.status_code),
                    sha256=digest[:64],
                    bytes=upload.received if upload else length,
                    reason=str(exc.detail),
                )
                raise
            finally:
                if upload is not None:
                    await asyncio.to_thread(upload.close)
            audit.record(
                caller=caller.name,
                action="PutIngress",
                outcome="201" if created else "200",
                sha256=digest,
                bytes=upload.received,
            )
            await asyncio.to_thread(collect_ingress_garbage)
            body = {
                "sha256": digest,
                "size": upload.received,
                "url": f"{INGRESS_SCHEME}:sha256:{digest}",
            }
            return JSONResponse(body, status_code=201 if created else 200)

        @app.api_route(
            INGRESS_PREFIX + "/{digest}",
            methods=["GET", "HEAD"],
            name="HasIngress",
            response_model=None,
        )
        async def has_ingress(request: Request, caller: CallerDep, digest: str) -> Response:
            """Whether the caller's own area holds ``digest`` (and its size); never content."""
            if not is_digest(digest):
                raise ApiError(400, f"{digest[:80]!r} is not a sha256 (64 lower-case hex digits).")
            size = ingress.size_of(area_of(caller), digest)
            audit.record(
                caller=caller.name,
                action="HasIngress",
                outcome="404" if size is None else "200",
                sha256=digest,
            )
            if size is None:
                raise ApiError(404, f"you have uploaded no file with sha256 {digest} here.")
            return JSONResponse({"sha256": digest, "size": size})

    # -- egress -------------------------------------------------------------------------------

    @app.get(EGRESS_PREFIX + "/{path:path}", name="GetEgress", response_model=None)
    async def egress_file(caller: CallerDep, path: str) -> FileResponse:
        if cfg.egress_root is None:
            raise ApiError(404, "this node has no egress_root.")
        parts = path.split("/")
        if not path or ".." in parts or "" in parts or "\x00" in path:
            audit.record(caller=caller.name, action="GetEgress", outcome="400", file=path)
            raise ApiError(400, f"egress path {path!r} is not a plain relative path.")
        # Published files are per caller: the same path names each caller's own file.
        key = f"{area_of(caller)}/{path}"
        record = store.published(key)
        target = cfg.egress_root / key
        real = Path(os.path.realpath(target))
        if (
            record is None
            or record[0] != area_of(caller)
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
