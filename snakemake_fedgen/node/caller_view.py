"""What a caller sees of its task: logs stay at the site unless the steward allows them.

A task's stdout/stderr tails and the node's ``system_logs`` can carry anything the task's code
printed or the node quoted (genotypes, a refused file's content, sample IDs in any spelling).
The node keeps them whole (``fedgen node logs TASK`` shows them to the steward) and serves
callers a view of the task document:

* default (``none``): state, times, exit codes, the declared outputs with their size and
  sha256, and each ``system_logs`` line mapped to a fixed sentence (:func:`public_reason`);
  no stdout or stderr.
* ``redacted`` (the steward lists the caller under ``caller_logs``): the stdout/stderr tails,
  ``system_logs`` and every output found by a wildcard too, after the site's sample-ID
  redaction.

By default outputs found by a wildcard are not listed one by one: their names are written by
the task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from snakemake_executor_plugin_fedgen.tes.tags import OUTPUT_SHA256_KEY

from snakemake_fedgen.governance.provenance import METADATA_KEY as PROVENANCE_KEY
from snakemake_fedgen.node.redact import IdRedactor

LogAccess = Literal["none", "redacted"]

SITE_DETAILS = "details stay at the site: ask its steward (fedgen node logs TASK)"

# (pattern over the node's own message, the sentence a caller gets). First match wins; the
# sentences are fixed: nothing of the message itself is passed on, except the steward's own
# reason for a denial.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), sentence)
    for pattern, sentence in (
        (r"^canceled by the caller", "canceled by the caller"),
        (r"exceeded max_task_seconds", "the task ran longer than the node's max_task_seconds"),
        (r"disk quota", "the task's scratch reached its disk quota (resources.disk_gb)"),
        (r"memory limit", "the task exceeded its memory limit (resources.ram_gb)"),
        (
            r"node's (state directory|disk)|disk is full",
            "the node's disk is (nearly) full; the task was stopped",
        ),
        (r"^airlock refused", "the airlock refused egress output(s); nothing was published"),
        (r"^egress held for review", "egress held for review by the site's steward"),
        (r"^node restarted", "the node restarted while the task was running"),
        (r"^node stopped", "the node stopped while the task was running"),
        (r"backend_parameters", "some backend_parameters are not supported and were ignored"),
        (r"max_output_bytes", "outputs are larger than the node's max_output_bytes"),
        (r"^executors\[\d+\]", "an executor could not be run"),
    )
)
_DENIED = re.compile(r"^release denied by the site's steward: (.*?)(; nothing was published.*)?$")


def public_reason(message: str) -> str:
    """The fixed sentence a caller gets for one of the node's ``system_logs`` lines."""
    denied = _DENIED.match(message)
    if denied:
        # The steward wrote this reason for the caller.
        return f"release denied by the site's steward: {denied.group(1)}"
    for pattern, sentence in _REASONS:
        if pattern.search(message):
            return f"{sentence}; {SITE_DETAILS}"
    return f"the node could not complete the task; {SITE_DETAILS}"


def caller_view(
    doc: Mapping[str, Any], *, access: LogAccess, redactor: IdRedactor
) -> dict[str, Any]:
    """The task document as ``access`` lets its caller see it (before the TES view)."""
    out = dict(doc)
    if not out.get("logs"):
        return out
    declared = {o.get("path") for o in doc.get("outputs") or []}
    logs = []
    for attempt in out["logs"]:
        attempt = dict(attempt)
        if access == "redacted":
            logs.append(_redacted(attempt, redactor))
            continue
        attempt["outputs"] = [o for o in attempt.get("outputs") or [] if o.get("path") in declared]
        metadata = dict(attempt.get("metadata") or {})
        if OUTPUT_SHA256_KEY in metadata:
            hashes = json.loads(metadata[OUTPUT_SHA256_KEY])
            kept = {p: h for p, h in hashes.items() if p in declared}
            metadata[OUTPUT_SHA256_KEY] = json.dumps(kept, sort_keys=True)
        if PROVENANCE_KEY in metadata:
            metadata[PROVENANCE_KEY] = _public_provenance(metadata[PROVENANCE_KEY], declared)
        attempt["metadata"] = metadata
        attempt["logs"] = [
            {k: v for k, v in entry.items() if k not in ("stdout", "stderr")}
            for entry in attempt.get("logs") or []
        ]
        system = attempt.get("system_logs") or []
        attempt["system_logs"] = list(dict.fromkeys(public_reason(line) for line in system))
        logs.append(attempt)
    out["logs"] = logs
    return out


def _public_provenance(raw: str, declared: set[Any]) -> str:
    """The provenance record without what the task chose: outputs found by a wildcard and the
    airlock's reasons for refusals (they quote refused content); the site keeps the full
    record."""
    record = json.loads(raw)
    outputs = []
    for out in record.get("outputs") or []:
        if out.get("path") not in declared:
            continue
        airlock = out.get("airlock")
        if isinstance(airlock, dict) and not airlock.get("accepted"):
            out = {**out, "airlock": {**airlock, "reason": public_reason("airlock refused")}}
        outputs.append(out)
    record["outputs"] = outputs
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def _redacted(attempt: dict[str, Any], redactor: IdRedactor) -> dict[str, Any]:
    """A caller the steward trusts with logs: everything, after the sample-ID redaction."""
    executors = []
    for entry in attempt.get("logs") or []:
        entry = dict(entry)
        for key in ("stdout", "stderr"):
            if key in entry:
                entry[key] = redactor.redact(entry[key])
        executors.append(entry)
    attempt["logs"] = executors
    attempt["system_logs"] = [
        redactor.redact(unquoted(line)) for line in attempt.get("system_logs") or []
    ]
    metadata = dict(attempt.get("metadata") or {})
    if PROVENANCE_KEY in metadata:
        record = json.loads(metadata[PROVENANCE_KEY])
        for out in record.get("outputs") or []:
            airlock = out.get("airlock")
            if isinstance(airlock, dict) and isinstance(airlock.get("reason"), str):
                airlock["reason"] = unquoted(airlock["reason"])
        raw = json.dumps(record, separators=(",", ":"), sort_keys=True)
        metadata[PROVENANCE_KEY] = redactor.redact(raw)
    attempt["metadata"] = metadata
    return attempt


# A value the airlock quotes from a refused file: Python's repr of a str.
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


def unquoted(message: str) -> str:
    """``message`` with every quoted value replaced by ``[value]``: the airlock names the file,
    line and column of a refused value and the rule, and quotes the value for the steward; no
    caller gets the value."""
    if not message.startswith("airlock refused") and "refused:" not in message:
        return message
    return _QUOTED.sub("[value]", message)


__all__ = ["LogAccess", "caller_view", "public_reason"]
