"""TES task documents: checking a CreateTask body, container paths, and the three views."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import InvalidTask

from snakemake_fedgen.node.images import image_allowed, parse_image

STATES = (
    "UNKNOWN",
    "QUEUED",
    "INITIALIZING",
    "RUNNING",
    "PAUSED",
    "COMPLETE",
    "EXECUTOR_ERROR",
    "SYSTEM_ERROR",
    "CANCELED",
    "PREEMPTED",
    "CANCELING",
)
FINAL_STATES = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})
VIEWS = ("MINIMAL", "BASIC", "FULL")
FILE_TYPES = ("FILE", "DIRECTORY")
# Container paths may not shadow the system the sandbox shows read-only.
SYSTEM_DIRS = frozenset(
    {"usr", "etc", "proc", "sys", "dev", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "run"}
    | {"boot", "var"}
)
_READ_ONLY_FIELDS = ("id", "state", "logs", "creation_time")
_WILDCARD = frozenset("*?[")


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 format with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_task_id() -> str:
    return str(uuid.uuid4())


def has_wildcard(path: str) -> bool:
    return any(c in _WILDCARD for c in path)


def check_container_path(path: Any, *, what: str, blocked: Sequence[str] = ()) -> str:
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
    if not isinstance(path, str) or not path.startswith("/"):
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
    body: Any,
    *,
    allowed_images: Sequence[str],
    max_content_bytes: int,
    blocked_paths: Sequence[str] = (),
) -> dict[str, Any]:
    """Check a CreateTask body and return the task document to store (without id/state).

    Raises
    ------
    InvalidTask
        With one message naming the field, the value and the fix.
    """
    if not isinstance(body, dict):
        raise InvalidTask("the task must be a JSON object.")
    doc = {k: v for k, v in body.items() if k not in _READ_ONLY_FIELDS}
    for key in ("name", "description"):
        if key in doc and not isinstance(doc[key], str):
            raise InvalidTask(f"{key} must be a string.")
    executors = doc.get("executors")
    if not isinstance(executors, list) or not executors:
        raise InvalidTask("executors must be a non-empty list.")
    for i, ex in enumerate(executors):
        _check_executor(ex, i, allowed_images=allowed_images, blocked=blocked_paths)
    inputs = doc.get("inputs") or []
    if not isinstance(inputs, list):
        raise InvalidTask("inputs must be a list.")
    for i, item in enumerate(inputs):
        _check_input(item, i, max_content_bytes=max_content_bytes, blocked=blocked_paths)
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidTask("outputs must be a list.")
    for i, item in enumerate(outputs):
        _check_output(item, i, blocked=blocked_paths)
    volumes = doc.get("volumes") or []
    if not isinstance(volumes, list):
        raise InvalidTask("volumes must be a list of absolute paths.")
    for i, vol in enumerate(volumes):
        check_container_path(vol, what=f"volumes[{i}]", blocked=blocked_paths)
    tags = doc.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidTask("tags must map strings to strings.")
    resources = doc.get("resources")
    if resources is not None:
        if not isinstance(resources, dict):
            raise InvalidTask("resources must be an object.")
        cores = resources.get("cpu_cores")
        if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool)):
            raise InvalidTask(f"resources.cpu_cores must be an integer, got {cores!r}.")
        if cores is not None and cores < 1:
            raise InvalidTask(f"resources.cpu_cores must be >= 1, got {cores}.")
        if resources.get("backend_parameters_strict") and resources.get("backend_parameters"):
            keys = ", ".join(sorted(resources["backend_parameters"]))
            raise InvalidTask(f"backend_parameters {keys} are not supported by this node.")
        # The spec says unsupported backend parameters are not stored or returned, and that
        # the backend logs a system warning: their names go to the task's system_logs.
        dropped = resources.pop("backend_parameters", None)
        if isinstance(dropped, dict) and dropped:
            keys = ", ".join(sorted(str(k)[:64] for k in dropped)[:20])
            warning = f"warning: backend_parameters not supported by this node, ignored: {keys}"
            doc["logs"] = [{"logs": [], "outputs": [], "system_logs": [warning]}]
    return doc


def _check_executor(ex: Any, i: int, *, allowed_images: Sequence[str], blocked) -> None:
    where = f"executors[{i}]"
    if not isinstance(ex, dict):
        raise InvalidTask(f"{where} must be an object.")
    image = ex.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidTask(f"{where}.image must be a non-empty string.")
    # An image reference and nothing else: under docker/podman it goes on the command line.
    ref = parse_image(image, what=f"{where}.image")
    if allowed_images and not image_allowed(ref, allowed_images):
        raise InvalidTask(
            f"{where}.image {image!r} is not on this site's image allow-list "
            f"({', '.join(allowed_images)}); ask the site to approve it or use an approved image."
        )
    command = ex.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise InvalidTask(f"{where}.command must be a non-empty list of strings.")
    for key in ("workdir", "stdin", "stdout", "stderr"):
        if ex.get(key) is not None:
            if key == "workdir" and ex[key] == "/":
                continue
            check_container_path(ex[key], what=f"{where}.{key}", blocked=blocked)
    env = ex.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise InvalidTask(f"{where}.env must map strings to strings.")
    if "ignore_error" in ex and not isinstance(ex["ignore_error"], bool):
        raise InvalidTask(f"{where}.ignore_error must be true or false.")


def _check_input(item: Any, i: int, *, max_content_bytes: int, blocked) -> None:
    where = f"inputs[{i}]"
    if not isinstance(item, dict):
        raise InvalidTask(f"{where} must be an object.")
    item["path"] = check_container_path(item.get("path"), what=f"{where}.path", blocked=blocked)
    kind = item.setdefault("type", "FILE")
    if kind not in FILE_TYPES:
        raise InvalidTask(f"{where}.type must be FILE or DIRECTORY, got {kind!r}.")
    content = item.get("content")
    if content:
        if not isinstance(content, str):
            raise InvalidTask(f"{where}.content must be a string.")
        if len(content.encode()) > max_content_bytes:
            raise InvalidTask(
                f"{where}.content is larger than this node's limit of {max_content_bytes} bytes; "
                "pass the file by URL instead."
            )
        if kind != "FILE":
            raise InvalidTask(f"{where}: content inputs must be of type FILE.")
        return
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidTask(f"{where} needs a url or a content.")


def _check_output(item: Any, i: int, *, blocked) -> None:
    where = f"outputs[{i}]"
    if not isinstance(item, dict):
        raise InvalidTask(f"{where} must be an object.")
    item["path"] = check_container_path(item.get("path"), what=f"{where}.path", blocked=blocked)
    if not isinstance(item.get("url"), str) or not item["url"]:
        raise InvalidTask(f"{where}.url must be a non-empty string.")
    kind = item.setdefault("type", "FILE")
    if kind not in FILE_TYPES:
        raise InvalidTask(f"{where}.type must be FILE or DIRECTORY, got {kind!r}.")
    if has_wildcard(item["path"]):
        prefix = item.get("path_prefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise InvalidTask(
                f"{where}.path {item['path']!r} has wildcards, so path_prefix (an absolute "
                "container path) is required."
            )
        if not item["path"].startswith(prefix):
            raise InvalidTask(f"{where}.path_prefix {prefix!r} is not a prefix of the path.")


def view_of(doc: Mapping[str, Any], view: str) -> dict[str, Any]:
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
