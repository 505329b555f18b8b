"""Typed models of the GA4GH TES 1.1 objects, written from the official 1.1 specification.

Source: ``task_execution_service.openapi.yaml`` of ga4gh/task-execution-schemas at tag ``v1.1``
(commit 117cd927) and, for ``tesServiceInfo``, GA4GH service-info 1.0.0 (``Service``,
``ServiceType``). Field names, required fields and enums are the specification's.

Why not ``pydantic-tes`` (PyPI, used by Galaxy's Pulsar for its TES client)
-------------------------------------------------------------------------------
We looked at it (0.4.0) and leave it:

* it is datamodel-codegen output of the 2022 *develop* branch, not of the 1.1 release: it has
  no ``tesExecutor.ignore_error``, ``tesInput.streamable`` or ``tesOutput.path_prefix``, its
  ``TesState`` lacks ``PREEMPTED`` and ``CANCELING`` (so it cannot even parse every state a 1.1
  server returns), and it makes ``tesInput.type``/``tesOutput.type`` required where the
  specification defaults them to ``FILE``;
* it is not strict: unknown fields are silently dropped (a misspelt ``ignore_errors`` would be
  accepted and ignored), values are coerced (``"4"`` becomes 4 cores), paths the specification
  requires to be absolute are not checked;
* it pulls ``requests`` for its client; this distribution allows only pydantic, httpx and small
  libraries, and has its own client (:mod:`.client`);
* Pulsar imports it optionally (``try: from pydantictes.models import ...``) for its own TES
  client; nothing there we would share.

Owning about 300 lines of models that follow the released specification costs less than
patching around a generated package that follows another revision of it.

Strictness
----------
* Required fields are required; ``tesState`` and ``tesFileType`` are enums, the task views a
  ``Literal``; integers, strings and booleans are not coerced (pydantic strict mode; enums accept
  their names).
* Unknown fields are refused (``extra="forbid"``) in the TES objects: the node answers a task
  with a misspelt field with 400 rather than running something else than asked. Clients that
  read documents from other servers validate with ``extra="ignore"``
  (``TesTask.model_validate(data, extra="ignore")``): types stay strict, foreign extensions are
  dropped. ``Service``/``tesServiceInfo`` allow extra fields: service-info is designed to be
  extended (TES itself extends it; the fedgen node adds a ``fedgen`` block).
* Container paths the specification says "must be an absolute path" are checked: ``tesInput.path``,
  ``tesOutput.path``, ``tesOutputFileLog.path`` and ``tesExecutor.stdin/stdout/stderr``; a
  ``tesOutput.path`` with wildcards needs an absolute ``path_prefix`` that prefixes it.
  ``size_bytes`` (an int64 coded as a string) must be decimal digits; int32 fields stay in range.
* Rules a particular server adds (non-empty executors, image allow-lists, system directories)
  are not here: the fedgen node checks them in ``snakemake_fedgen.node.task``.

The MINIMAL view (``id`` and ``state`` only) contradicts ``tesTask.required: [executors]``;
:class:`MinimalTask` and :class:`MinimalListTasksResponse` are its models. The BASIC view omits
fields that are optional anyway, so :class:`TesTask` parses it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from snakemake_executor_plugin_fedgen.tes.states import TesState

__all__ = [
    "VIEWS",
    "AbsolutePath",
    "MinimalListTasksResponse",
    "MinimalTask",
    "Service",
    "ServiceOrganization",
    "ServiceType",
    "TaskView",
    "TesCancelTaskResponse",
    "TesCreateTaskResponse",
    "TesExecutor",
    "TesExecutorLog",
    "TesFileType",
    "TesInput",
    "TesListTasksResponse",
    "TesOutput",
    "TesOutputFileLog",
    "TesResources",
    "TesServiceInfo",
    "TesServiceType",
    "TesState",
    "TesTask",
    "TesTaskLog",
    "describe_errors",
    "has_wildcard",
]

#: ``view`` of GetTask and ListTasks.
TaskView = Literal["MINIMAL", "BASIC", "FULL"]
VIEWS: Final[tuple[str, ...]] = get_args(TaskView)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
Int32 = Annotated[int, Field(ge=_INT32_MIN, le=_INT32_MAX)]
_WILDCARD = frozenset("*?[")


def has_wildcard(path: str) -> bool:
    """True if ``path`` contains a POSIX pattern-matching character (``*``, ``?``, ``[``)."""
    return any(c in _WILDCARD for c in path)


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise PydanticCustomError(
            "absolute_path", "must be an absolute path, got {path}", {"path": repr(path)}
        )
    return path


#: A container path the specification requires to be absolute.
AbsolutePath = Annotated[str, AfterValidator(_absolute)]
#: An int64 coded as a string ("because official JSON doesn't support int64 numbers").
Int64String = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]


class _TesModel(BaseModel):
    """Base of the TES objects: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def document(self) -> dict[str, Any]:
        """The JSON document (unset optional fields left out, as TES servers expect)."""
        return self.model_dump(mode="json", exclude_none=True)


class TesFileType(StrEnum):
    """``tesFileType``: whether an input or output is a file or a directory."""

    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


class TesExecutor(_TesModel):
    """``tesExecutor``: a command to run in a container image."""

    image: str = Field(description="Name of the container image.")
    command: list[str] = Field(description="Program and arguments (argv).")
    workdir: str | None = Field(None, description="Working directory of the command.")
    stdin: AbsolutePath | None = Field(None, description="Container file piped to stdin.")
    stdout: AbsolutePath | None = Field(None, description="Container file stdout is written to.")
    stderr: AbsolutePath | None = Field(None, description="Container file stderr is written to.")
    env: dict[str, str] | None = Field(None, description="Environment variables.")
    ignore_error: bool | None = Field(
        None, description="Record a non-zero exit code and go on with the next executor."
    )


class TesInput(_TesModel):
    """``tesInput``: a file or directory placed in the container before the executors run."""

    name: str | None = None
    description: str | None = None
    url: str | None = Field(None, description='Source URL; required unless "content" is set.')
    path: AbsolutePath = Field(description="Path inside the container.")
    type: TesFileType = Field(TesFileType.FILE, strict=False)
    content: str | None = Field(None, description="File content literal (UTF-8).")
    streamable: bool | None = Field(
        None, description="The input may be read through a streaming interface."
    )


class TesOutput(_TesModel):
    """``tesOutput``: a container file or directory (or pattern) copied out after the task."""

    name: str | None = None
    description: str | None = None
    url: str = Field(description="Where the output is written.")
    path: AbsolutePath = Field(description="Path inside the container; may hold wildcards.")
    path_prefix: str | None = Field(
        None, description="Removed from matches of a wildcard path to form output URLs."
    )
    type: TesFileType = Field(TesFileType.FILE, strict=False)

    @model_validator(mode="after")
    def _prefix_for_wildcards(self) -> TesOutput:
        if has_wildcard(self.path):
            prefix = self.path_prefix
            if not prefix or not prefix.startswith("/"):
                raise PydanticCustomError(
                    "path_prefix_missing",
                    "path {path} has wildcards, so path_prefix (an absolute container path) "
                    "is required",
                    {"path": repr(self.path)},
                )
            if not self.path.startswith(prefix):
                raise PydanticCustomError(
                    "path_prefix_mismatch",
                    "path_prefix {prefix} is not a prefix of the path {path}",
                    {"prefix": repr(prefix), "path": repr(self.path)},
                )
        return self


class TesResources(_TesModel):
    """``tesResources``: what a task asks for."""

    cpu_cores: Int32 | None = Field(None, description="Requested number of CPUs.")
    preemptible: bool | None = Field(None, description="May run on preemptible instances.")
    ram_gb: float | None = Field(None, description="Requested RAM in GB.")
    disk_gb: float | None = Field(None, description="Requested disk in GB.")
    zones: list[str] | None = Field(None, description="Compute zones to run in.")
    backend_parameters: dict[str, str] | None = Field(
        None, description="Backend key/values not mapped to other resources."
    )
    backend_parameters_strict: bool | None = Field(
        None, description="Fail the task if a backend parameter is unsupported (default false)."
    )


class TesExecutorLog(_TesModel):
    """``tesExecutorLog``: what happened to one executor."""

    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: Int32


class TesOutputFileLog(_TesModel):
    """``tesOutputFileLog``: one output file after the task completed."""

    url: str
    path: AbsolutePath
    size_bytes: Int64String


class TesTaskLog(_TesModel):
    """``tesTaskLog``: one attempt of a task."""

    logs: list[TesExecutorLog] = Field(description="Logs of each executor.")
    metadata: dict[str, str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    outputs: list[TesOutputFileLog] = Field(description="Every output file (directories flat).")
    system_logs: list[str] | None = None


class TesTask(_TesModel):
    """``tesTask``: a task document (CreateTask body; GetTask/ListTasks BASIC and FULL views)."""

    id: str | None = Field(None, description="Assigned by the server (read-only).")
    state: TesState | None = Field(None, strict=False, description="Set by the server.")
    name: str | None = None
    description: str | None = None
    inputs: list[TesInput] | None = None
    outputs: list[TesOutput] | None = None
    resources: TesResources | None = None
    executors: list[TesExecutor] = Field(description="Run one after the other.")
    volumes: list[str] | None = None
    tags: dict[str, str] | None = None
    logs: list[TesTaskLog] | None = Field(None, description="Set by the server (read-only).")
    creation_time: str | None = Field(None, description="RFC 3339, set by the server.")


class MinimalTask(_TesModel):
    """A task in the MINIMAL view: ONLY ``id`` and ``state``."""

    id: str
    state: TesState = Field(TesState.UNKNOWN, strict=False)


class TesListTasksResponse(_TesModel):
    """``tesListTasksResponse`` (BASIC and FULL views)."""

    tasks: list[TesTask]
    next_page_token: str | None = None


class MinimalListTasksResponse(_TesModel):
    """``tesListTasksResponse`` in the MINIMAL view."""

    tasks: list[MinimalTask]
    next_page_token: str | None = None


class TesCreateTaskResponse(_TesModel):
    """``tesCreateTaskResponse``: the id of the new task."""

    id: str


class TesCancelTaskResponse(_TesModel):
    """``tesCancelTaskResponse``: an empty object."""


# -- service-info (GA4GH service-info 1.0.0, extended by TES) -------------------------------


class ServiceType(BaseModel):
    """``ServiceType`` of GA4GH service-info."""

    model_config = ConfigDict(extra="allow", strict=True)

    group: str = Field(description="Namespace in reverse domain name format, e.g. org.ga4gh.")
    artifact: str = Field(description="Name of the API or specification implemented.")
    version: str = Field(description="Version of the API or specification.")


class TesServiceType(ServiceType):
    """``tesServiceType``: a service type whose artifact is ``tes``."""

    artifact: Literal["tes"]


class ServiceOrganization(BaseModel):
    """The organization providing a service."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    url: str


class Service(BaseModel):
    """``Service`` of GA4GH service-info 1.0.0 (extensible: extra fields are kept)."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str
    name: str
    type: ServiceType
    description: str | None = None
    organization: ServiceOrganization
    contactUrl: str | None = None
    documentationUrl: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    environment: str | None = None
    version: str

    def document(self) -> dict[str, Any]:
        """The JSON document (unset optional fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class TesServiceInfo(Service):
    """``tesServiceInfo``: service-info of a TES server."""

    type: TesServiceType
    storage: list[str] | None = Field(None, description="Some storage locations supported.")
    tesResources_backend_parameters: list[str] | None = Field(
        None, description="Every backend_parameters key supported."
    )


# -- messages -----------------------------------------------------------------------------


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_errors(exc: ValidationError, *, limit: int = 5) -> str:
    """One line naming each problem of a TES document: ``field.path: what is wrong, got value``.

    Example: ``executors[0].command: Input should be a valid list, got 'ls'``.
    """
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = _location(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            what = "unknown field (not part of TES 1.1)"
        elif err["type"] == "model_type" and not where:
            what = "must be a JSON object"
        else:
            what = err["msg"]
            given = err.get("input")
            if err["type"] not in ("missing",) and isinstance(given, str | int | float | bool):
                shown = repr(given)
                if len(shown) <= 80 and shown not in what:
                    what += f", got {shown}"
        parts.append(f"{where}: {what}" if where else what)
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "; ".join(parts)
