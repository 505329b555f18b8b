"""Per-task provenance records (versioned JSON schema), written by the site node.

Design: the *node* writes the record for every task it ends, not a command inside the task. A
site trusts what its own node measured (input and output SHA-256, images, commands, exit codes,
times, airlock decisions, tool versions of the site's toolset) more than what the analyst's code
reports about itself, and the record then agrees with the node's audit log by construction (the
airlock and encryption facts are read from it). The record is stored at the site
(``STATE/provenance/<task>.json``) and returned to the coordinator in the TES task log
(``logs[-1].metadata.fedgen_provenance``, a JSON string) with the task's egress.

``fedgen provenance record`` writes the same kind of record from inside a task
(``generator: task``) for sites whose TES server is not a fedgen node; the airlock
(``snakemake_fedgen.egress.airlock``, kind ``provenance``) publishes such a ``*.prov.json`` file
only if it validates against the schema.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from snakemake_executor_plugin_fedgen.errors import FedgenError, ProvenanceError
from snakemake_executor_plugin_fedgen.fileio import atomic_write
from snakemake_executor_plugin_fedgen.tes.ingress import is_ingress_url
from snakemake_executor_plugin_fedgen.tes.tags import SITE_TAG

SCHEMA_ID = "https://github.com/snakemake-fedgen/snakemake-fedgen/schemas/provenance/v1"
METADATA_KEY = "fedgen_provenance"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "provenance.schema.json"

#: The site toolset whose versions every record names (tool -> argv printing the version).
TOOLS: dict[str, list[str]] = {
    "plink2": ["plink2", "--version"],
    "plink1.9": ["plink1.9", "--version"],
    "bcftools": ["bcftools", "--version"],
    "beagle": ["beagle"],
    "minimac4": ["minimac4", "--version"],
    "GWAMA": ["GWAMA", "--version"],
}


@cache
def schema() -> dict[str, Any]:
    """The provenance JSON schema (v1)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate(record: Any, *, source: str = "provenance record") -> None:
    """Raise ProvenanceError naming the first violation (JSON path and message)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ProvenanceError(
            f"{source}: does not match {SCHEMA_ID} at {where}: {err.message[:300]}"
        )


_versions_lock = threading.Lock()
_versions: dict[str, str] | None = None


def tool_versions(tools: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """First line mentioning a version for each installed tool (cached per process)."""
    global _versions
    with _versions_lock:
        if _versions is not None and tools is None:
            return dict(_versions)
        found: dict[str, str] = {}
        for name, argv in (tools or TOOLS).items():
            try:
                proc = subprocess.run(
                    list(argv), capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            lines = [ln.strip() for ln in (proc.stdout + "\n" + proc.stderr).splitlines()]
            lines = [ln for ln in lines if ln]
            line = next((ln for ln in lines if "version" in ln.lower() or " v" in ln), None)
            if line or lines:
                found[name] = (line or lines[0])[:500]
        if tools is None:
            _versions = found
        return dict(found)


_hash_lock = threading.Lock()
_hash_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, cached by (real path, size, mtime) for large site inputs."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


def _file_path(url: str | None) -> Path | None:
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def _located(locate: Callable[[str], Path | None]) -> Callable[[str | None], Path | None]:
    def file_path(url: str | None) -> Path | None:
        if not url:
            return None
        try:
            return locate(url)
        except FedgenError:
            return None

    return file_path


def _hash_or_none(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


def audit_entries(audit_path: Path, task_id: str) -> list[dict[str, Any]]:
    """Entries of the node's audit log (JSON lines) that concern ``task_id``."""
    out = []
    try:
        with audit_path.open(encoding="utf-8") as f:
            for line in f:
                if task_id not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("task") == task_id:
                    out.append(rec)
    except FileNotFoundError:
        pass
    return out


def node_record(
    doc: Mapping[str, Any],
    *,
    node_id: str,
    owner: str,
    audit_path: Path,
    host_tools: bool = True,
    entries: list[dict[str, Any]] | None = None,
    locate: Callable[[str], Path | None] | None = None,
) -> dict[str, Any]:
    """Build the provenance record of a finished task from its TES document and the audit log.

    ``host_tools``: tasks ran the host's tools (bwrap/host runtimes), so their versions are
    recorded; under docker/podman the image defines the tools and only the image is recorded.
    ``locate``: the host file a task URL names (the node maps URLs under its write roots to
    the caller's area); default: the URL's own path.
    """
    file_path = _file_path if locate is None else _located(locate)
    if entries is None:
        entries = audit_entries(audit_path, doc["id"])
    airlock = {e.get("file"): e for e in entries if e.get("action") == "Airlock"}
    sealed = {e.get("file"): e for e in entries if e.get("action") == "Encrypt"}
    task_log = (doc.get("logs") or [{}])[-1]

    inputs = []
    for item in doc.get("inputs") or []:
        if item.get("content") is not None:
            sha = hashlib.sha256(item["content"].encode()).hexdigest()
            size = len(item["content"].encode())
            url = None
        elif is_ingress_url(item.get("url") or ""):
            # The caller's upload: the node checked this digest when it copied the file in.
            url = item["url"]
            sha = url.rsplit(":", 1)[-1]
            size = None
        else:
            url = item.get("url")
            path = file_path(url)
            sha = _hash_or_none(path)
            size = path.stat().st_size if sha and path else None
        inputs.append({"path": item.get("path", ""), "url": url, "sha256": sha, "size": size})

    outputs = []
    for item in task_log.get("outputs") or []:
        path = file_path(item.get("url"))
        entry: dict[str, Any] = {"path": item.get("path", ""), "url": item.get("url")}
        decision = airlock.get(item.get("path"))
        published = _hash_or_none(path)
        if decision is not None:
            entry["egress"] = True
            entry["airlock"] = {
                "accepted": bool(decision.get("accepted")),
                "kind": str(decision.get("kind") or "unknown"),
                "reason": str(decision.get("reason") or "")[:4000],
            }
            entry["sha256"] = decision.get("sha256") or published
            entry["size"] = decision.get("size")
            if item.get("path") in sealed and published:
                entry["published_sha256"] = published
                entry["encryption"] = "crypt4gh"
        else:
            entry["egress"] = False
            entry["sha256"] = published
            entry["size"] = path.stat().st_size if published and path else None
        outputs.append(entry)
    # Refused egress files never reach the task log's outputs: name them from the audit.
    listed = {o["path"] for o in outputs}
    for file, decision in airlock.items():
        if file not in listed and not decision.get("accepted"):
            outputs.append(
                {
                    "path": str(file),
                    "sha256": decision.get("sha256") or None,
                    "size": decision.get("size"),
                    "egress": True,
                    "airlock": {
                        "accepted": False,
                        "kind": str(decision.get("kind") or "unknown"),
                        "reason": str(decision.get("reason") or "")[:4000],
                    },
                }
            )

    tags = {str(k): str(v) for k, v in (doc.get("tags") or {}).items()}
    now = _now()
    record = {
        "schema": SCHEMA_ID,
        "generator": "node",
        "node_id": node_id,
        "site": tags.get(SITE_TAG),
        "task_id": doc["id"],
        "task_name": doc.get("name"),
        "caller": owner,
        "state": doc.get("state"),
        "tags": tags,
        "commands": [list(map(str, e.get("command") or [])) for e in doc.get("executors") or []],
        "images": [str(e.get("image", "")) for e in doc.get("executors") or []],
        "exit_codes": [int(e.get("exit_code", -1)) for e in task_log.get("logs") or []],
        "tool_versions": tool_versions() if host_tools else {},
        "inputs": inputs,
        "outputs": outputs,
        "start_time": task_log.get("start_time") or doc.get("creation_time") or now,
        "end_time": task_log.get("end_time") or now,
    }
    validate(record, source=f"provenance of task {doc['id']}")
    return record


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file in the same directory, then rename)."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def task_provenance(
    cfg: Any,
    doc: dict[str, Any],
    *,
    owner: str,
    entries: list[dict[str, Any]] | None = None,
    locate: Callable[[str], Path | None] | None = None,
) -> None:
    """The node hook: record provenance of an ended task at the site and in its TES log.

    ``doc`` carries its final state; the caller stores it (and so makes that state visible)
    afterwards. Failures to hash or validate never fail the task: they are logged and the
    record is skipped.
    """
    import logging

    try:
        record = node_record(
            doc,
            node_id=cfg.node_id,
            owner=owner,
            audit_path=cfg.audit_path,
            host_tools=getattr(cfg, "runtime", "auto") not in ("docker", "podman"),
            entries=entries,
            locate=locate,
        )
    except (OSError, ProvenanceError) as exc:
        logging.getLogger("snakemake_fedgen.node").warning(
            "task %s: no provenance record (%s)", doc.get("id"), exc
        )
        return
    write_json(cfg.state_dir / "provenance" / f"{doc['id']}.json", record)
    if not doc.get("logs"):
        doc["logs"] = [{"logs": [], "outputs": [], "system_logs": []}]
    metadata = doc["logs"][-1].setdefault("metadata", {})
    metadata[METADATA_KEY] = json.dumps(record, separators=(",", ":"), sort_keys=True)


def from_task_log(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The node's provenance record carried in a TES task (FULL view), validated; or None."""
    for task_log in reversed(doc.get("logs") or []):
        raw = (task_log.get("metadata") or {}).get(METADATA_KEY)
        if raw:
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise ProvenanceError(
                    f"task {doc.get('id')}: {METADATA_KEY} is not JSON ({exc})."
                ) from exc
            validate(record, source=f"provenance of task {doc.get('id')}")
            return record
    return None


def task_record(
    *,
    inputs: Iterable[str],
    outputs: Iterable[str],
    command: str | None,
    image: str | None,
    site: str | None,
    task_id: str | None,
    start_time: str | None,
    tools: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A ``generator: task`` record for files in the current directory (run inside a task)."""

    def entry(p: str) -> dict[str, Any]:
        path = Path(p)
        if not path.is_file():
            raise ProvenanceError(f"{p}: no such file in the task; list files the rule has.")
        return {"path": p, "sha256": sha256_file(path), "size": path.stat().st_size}

    wanted = {k: v for k, v in TOOLS.items() if tools is None or k in set(tools)}
    record = {
        "schema": SCHEMA_ID,
        "generator": "task",
        "site": site,
        "task_id": task_id or "unknown",
        "commands": [["bash", "-c", command]] if command else [],
        "images": [image] if image else [],
        "tool_versions": tool_versions(wanted),
        "inputs": [entry(p) for p in inputs],
        "outputs": [entry(p) for p in outputs],
        "start_time": start_time or _now(),
        "end_time": _now(),
    }
    validate(record)
    return record
