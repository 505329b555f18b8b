"""TES task documents at the node: this node's rules for a CreateTask body, and the three views.

The body is parsed by :class:`~snakemake_executor_plugin_fedgen.tes.models.TesTask` (types,
required fields, enums, absolute paths: the TES 1.1 specification). :func:`check_task` adds
what this node requires on top: at least one executor with a non-empty command, images on the
allow-list, container paths that neither climb (``..``) nor cover system or tool directories,
inputs with a url or a (small enough) content, and at least one core. The stored document is the
model's JSON without the read-only fields and without ``backend_parameters`` (the specification:
unsupported keys are not stored or returned).
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.approval import APPROVAL_TAG, APPROVAL_TAG_MAX
from snakemake_executor_plugin_fedgen.errors import InvalidTask
from snakemake_executor_plugin_fedgen.tes.models import (
    TaskView,
    TesExecutor,
    TesFileType,
    TesInput,
    TesTask,
    has_wildcard,
)

from snakemake_fedgen.node.images import image_allowed, parse_image

__all__ = [
    "SYSTEM_DIRS",
    "check_container_path",
    "check_task",
    "has_wildcard",
    "new_task_id",
    "now_rfc3339",
    "view_of",
]

# Container paths may not shadow the system the sandbox shows read-only.
SYSTEM_DIRS = frozenset(
    {"usr", "etc", "proc", "sys", "dev", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "run"}
    | {"boot", "var"}
)
# Set by the node, never taken from a CreateTask body.
_READ_ONLY_FIELDS = frozenset({"id", "state", "logs", "creation_time"})


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 format with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_task_id() -> str:
    return str(uuid.uuid4())


def check_container_path(path: str, *, what: str, blocked: Sequence[str] = ()) -> str:
    """Return ``path`` normalised; InvalidTask unless it is a safe absolute container path.

    Parameters
    ----------
    path
        The container path from the task document.
    what
        Where it came from, for the message (e.g. ``inputs[2].path``).
    blocked
        Host paths that are shown read-only in the sandbox (tool installations); a container
        path may neither lie inside one nor contain one.
    """
    if not path.startswith("/"):
        raise InvalidTask(f"{what} must be an absolute container path, got {path!r}.")
    if "\x00" in path or ".." in path.split("/"):
        raise InvalidTask(f"{what} {path!r} contains '..'; use a plain absolute path.")
    norm = posixpath.normpath(path)
    top = norm.strip("/").split("/")[0]
    if norm == "/" or top in SYSTEM_DIRS or (top == "tmp" and norm == "/tmp"):
        raise InvalidTask(
            f"{what} {path!r} would cover a system directory; use a path under e.g. /fedgen/work."
        )
    for tool in blocked:
        if Path(norm).is_relative_to(tool) or Path(tool).is_relative_to(norm):
            raise InvalidTask(
                f"{what} {path!r} overlaps the node's tool directory {tool}; use another path."
            )
    return norm


def check_task(
    task: TesTask,
    *,
    allowed_images: Sequence[str],
    max_content_bytes: int,
    blocked_paths: Sequence[str] = (),
) -> dict[str, Any]:
    """Check a parsed CreateTask body against this node's rules; return the document to store.

    The document has no id, state, logs or creation time (the node sets them), container paths
    of inputs and outputs normalised, and input types filled in (``FILE`` by default).

    Raises
    ------
    InvalidTask
        With one message naming the field, the value and the fix.
    """
    if not task.executors:
        raise InvalidTask("executors must be a non-empty list.")
    check_sizes(task)
    for i, ex in enumerate(task.executors):
        _check_executor(ex, i, allowed_images=allowed_images, blocked=blocked_paths)
    for i, item in enumerate(task.inputs or []):
        _check_input(item, i, max_content_bytes=max_content_bytes, blocked=blocked_paths)
    for i, out in enumerate(task.outputs or []):
        out.path = check_container_path(out.path, what=f"outputs[{i}].path", blocked=blocked_paths)
        if not out.url:
            raise InvalidTask(f"outputs[{i}].url must be a non-empty string.")
    for i, vol in enumerate(task.volumes or []):
        check_container_path(vol, what=f"volumes[{i}]", blocked=blocked_paths)
    resources = task.resources
    dropped: dict[str, str] | None = None
    if resources is not None:
        cores = resources.cpu_cores
        if cores is not None and cores < 1:
            raise InvalidTask(f"resources.cpu_cores must be >= 1, got {cores}.")
        given = resources.backend_parameters or {}
        kept = {k: v for k, v in given.items() if k in SUPPORTED_BACKEND_PARAMETERS}
        unsupported = {k: v for k, v in given.items() if k not in kept}
        if resources.backend_parameters_strict and unsupported:
            keys = ", ".join(sorted(unsupported))
            raise InvalidTask(f"backend_parameters {keys} are not supported by this node.")
        # The spec says unsupported backend parameters are not stored or returned, and that
        # the backend logs a system warning: their names go to the task's system_logs.
        dropped = unsupported or None
        resources.backend_parameters = kept or None
    doc = task.model_dump(mode="json", exclude_none=True, exclude=set(_READ_ONLY_FIELDS))
    if dropped:
        keys = ", ".join(sorted(str(k)[:64] for k in dropped)[:20])
        warning = f"warning: backend_parameters not supported by this node, ignored: {keys}"
        doc["logs"] = [{"logs": [], "outputs": [], "system_logs": [warning]}]
    return doc


#: backend_parameters this node acts on (the node masks secure-aggregation uploads; runtime
#: slurm takes ``runtime``, minutes, as the job's time limit); every other one is dropped with
#: a warning, as TES asks.
MASK_BACKEND_PARAMETERS: tuple[str, ...] = (
    "fedgen_mask_round",
    "fedgen_mask_participants",
    "fedgen_mask_variants",
)
SUPPORTED_BACKEND_PARAMETERS: tuple[str, ...] = (*MASK_BACKEND_PARAMETERS, "runtime")


#: Caps on task document fields: (what, largest count or length). A task past one is refused
#: with the field and the cap; the request body itself is capped by max_request_bytes.
FIELD_CAPS: dict[str, int] = {
    "executors": 64,
    "inputs": 10_000,
    "outputs": 10_000,
    "volumes": 256,
    "command arguments": 10_000,
    "command argument characters": 256 * 1024,
    "env entries": 256,
    "env value characters": 64 * 1024,
    "tags": 64,
    "tag key characters": 256,
    "tag value characters": 4096,
    "name characters": 1024,
    "description characters": 16 * 1024,
    "path characters": 4096,
}


def check_sizes(task: TesTask) -> None:
    """Refuse a task document with more entries or longer strings than :data:`FIELD_CAPS`.

    Raises
    ------
    InvalidTask
        Naming the field, its size and the cap.
    """

    def cap(what: str, field: str, size: int) -> None:
        if size > FIELD_CAPS[what]:
            raise InvalidTask(
                f"{field} has {size} {what.split()[-1]}; this node accepts at most "
                f"{FIELD_CAPS[what]} (a cap on task documents)."
            )

    cap("executors", "executors", len(task.executors or []))
    cap("inputs", "inputs", len(task.inputs or []))
    cap("outputs", "outputs", len(task.outputs or []))
    cap("volumes", "volumes", len(task.volumes or []))
    cap("tags", "tags", len(task.tags or {}))
    cap("name characters", "name", len(task.name or ""))
    cap("description characters", "description", len(task.description or ""))
    for key, value in (task.tags or {}).items():
        cap("tag key characters", f"tags key {key[:40]!r}", len(key))
        if key == APPROVAL_TAG:
            # The approval facts of every executor (rule, template, values) can be long.
            if len(value or "") > APPROVAL_TAG_MAX:
                raise InvalidTask(
                    f"tags[{key!r}] has {len(value or '')} characters; this node accepts at most "
                    f"{APPROVAL_TAG_MAX} (a cap on task documents)."
                )
            continue
        cap("tag value characters", f"tags[{key[:40]!r}]", len(value or ""))
    for i, ex in enumerate(task.executors or []):
        cap("command arguments", f"executors[{i}].command", len(ex.command or []))
        for j, arg in enumerate(ex.command or []):
            cap("command argument characters", f"executors[{i}].command[{j}]", len(arg))
        cap("env entries", f"executors[{i}].env", len(ex.env or {}))
        for key, value in (ex.env or {}).items():
            cap("env value characters", f"executors[{i}].env[{key[:40]!r}]", len(value or ""))
        for attr in ("workdir", "stdin", "stdout", "stderr"):
            cap("path characters", f"executors[{i}].{attr}", len(getattr(ex, attr) or ""))
    files: list[tuple[str, str | None, str | None]] = [
        *((f"inputs[{i}]", x.path, x.url) for i, x in enumerate(task.inputs or [])),
        *((f"outputs[{i}]", x.path, x.url) for i, x in enumerate(task.outputs or [])),
    ]
    for where, path, url in files:
        cap("path characters", f"{where}.path", len(path or ""))
        cap("path characters", f"{where}.url", len(url or ""))


def _check_executor(
    ex: TesExecutor, i: int, *, allowed_images: Sequence[str], blocked: Sequence[str]
) -> None:
    where = f"executors[{i}]"
    if not ex.image:
        raise InvalidTask(f"{where}.image must be a non-empty string.")
    # An image reference and nothing else: under docker/podman it goes on the command line.
    ref = parse_image(ex.image, what=f"{where}.image")
    if allowed_images and not image_allowed(ref, allowed_images):
        raise InvalidTask(
            f"{where}.image {ex.image!r} is not on this site's image allow-list "
            f"({', '.join(allowed_images)}); ask the site to approve it or use an approved image."
        )
    if not ex.command:
        raise InvalidTask(f"{where}.command must be a non-empty list of strings.")
    for key, value in (
        ("workdir", ex.workdir),
        ("stdin", ex.stdin),
        ("stdout", ex.stdout),
        ("stderr", ex.stderr),
    ):
        if value is not None and not (key == "workdir" and value == "/"):
            check_container_path(value, what=f"{where}.{key}", blocked=blocked)


def _check_input(item: TesInput, i: int, *, max_content_bytes: int, blocked: Sequence[str]) -> None:
    where = f"inputs[{i}]"
    item.path = check_container_path(item.path, what=f"{where}.path", blocked=blocked)
    if item.content:
        if len(item.content.encode()) > max_content_bytes:
            raise InvalidTask(
                f"{where}.content is larger than this node's limit of {max_content_bytes} bytes; "
                "pass the file by URL instead."
            )
        if item.type != TesFileType.FILE:
            raise InvalidTask(f"{where}: content inputs must be of type FILE.")
        return
    if not item.url:
        raise InvalidTask(f"{where} needs a url or a content.")


def view_of(doc: Mapping[str, Any], view: TaskView) -> dict[str, Any]:
    """Return the task document as the TES ``view`` shows it (MINIMAL, BASIC or FULL)."""
    if view == "MINIMAL":
        return {"id": doc["id"], "state": doc["state"]}
    if view == "FULL":
        return dict(doc)
    out = dict(doc)
    if "inputs" in out:
        out["inputs"] = [{k: v for k, v in i.items() if k != "content"} for i in out["inputs"]]
    if "logs" in out:
        logs = []
        for log in out["logs"]:
            log = {k: v for k, v in log.items() if k != "system_logs"}
            log["logs"] = [
                {k: v for k, v in e.items() if k not in ("stdout", "stderr")} for e in log["logs"]
            ]
            logs.append(log)
        out["logs"] = logs
    return out
