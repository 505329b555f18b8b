"""Approved code: the command a site task runs is an approved rule template with safe values.

A steward approves a workflow release at the site (``fedgen node approve``); the node records
each rule's ``shell:`` template. The executor sends, in the task tag :data:`APPROVAL_TAG`, what
the node needs to check every executor of the task: for a rule, its name, the template id and
the value each replacement field was rendered to; for the executor's own wrappers (output
directories, checksums) nothing but their kind. The node rebuilds each command from the
approved template and the values and refuses the task, naming the rule and the first
differing character, unless the result is the command the task carries. A value is safe when
every space-separated token is a number, a path inside the task or a name from a fixed
alphabet: no shell syntax, no quotes, no option injection (a leading ``-``).

Both sides build commands from the functions here, so the forms cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from typing import Any

from snakemake_executor_plugin_fedgen.errors import FedgenError

__all__ = [
    "APPROVAL_TAG",
    "UnapprovedCommand",
    "approval_tag",
    "expected_commands",
    "field_key",
    "fields",
    "first_difference",
    "log_tail_prefix",
    "render",
    "rule_command",
    "template_id",
    "unsafe_token",
    "unsafe_value",
]

#: TES tag carrying the approval facts of a task (JSON; see :func:`approval_tag`).
APPROVAL_TAG = "fedgen_approval"
#: Largest value of :data:`APPROVAL_TAG` a node accepts.
APPROVAL_TAG_MAX = 256 * 1024
#: The executor's working directory in every task.
WORKDIR = "/fedgen/work"

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.,:=+/-]*\Z")


class UnapprovedCommand(FedgenError):
    """A task's command is not an approved template rendered with safe values."""


def template_id(template: str) -> str:
    """The id of a rule's shell template: its SHA-256 (hex, first 32 digits)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:32]


def field_key(name: str, conversion: str | None, spec: str | None) -> str:
    """The text of a replacement field without braces (``input.pgen``, ``params.x:q``)."""
    return name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")


def fields(template: str) -> list[str]:
    """Keys (:func:`field_key`) of the template's replacement fields, in order, once each.

    Raises
    ------
    UnapprovedCommand
        The template nests fields in a format spec or is not a valid format string.
    """
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UnapprovedCommand(f"not a valid shell template ({exc})") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec and "{" in spec:
            raise UnapprovedCommand(f"field {{{name}:{spec}}} nests a field; not approvable")
        key = field_key(name, conversion, spec)
        if key not in out:
            out.append(key)
    return out


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with each replacement field replaced by its rendered value.

    Raises
    ------
    UnapprovedCommand
        A field has no value.
    """
    parts: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        key = field_key(name, conversion, spec)
        if key not in values:
            raise UnapprovedCommand(f"no value for field {{{key}}}")
        parts.append(values[key])
    return "".join(parts)


def unsafe_token(value: str) -> str | None:
    """The first token of a rendered value that is not a number, task path or plain name."""
    if value == "":
        return None
    for token in value.split(" "):
        if _NUMBER.match(token):
            continue
        path = token.removeprefix(WORKDIR + "/")
        if not _NAME.match(path) or ".." in path.split("/") or path.startswith("/"):
            return token
    return None


def unsafe_value(key: str, value: str) -> str | None:
    """Why a field's rendered value is not safe, or None.

    Safe: tokens of :func:`unsafe_token`; for a field the template quotes (``{x:q}``) also one
    shell-quoted text (Snakemake's ``shlex.quote``), which the shell passes on as one inert
    argument, as long as it does not start with ``-`` and holds no control characters.
    """
    bad = unsafe_token(value)
    if bad is None:
        return None
    if key.endswith("q") and ":" in key:
        try:
            words = shlex.split(value)
        except ValueError:
            return bad
        if (
            len(words) == 1
            and shlex.quote(words[0]) == value
            and not words[0].startswith("-")
            and words[0].isprintable()
        ):
            return None
    return bad


def log_tail_prefix(logs: Sequence[str]) -> str:
    """Shell prefix printing the tail of the rule's log files to stderr if the command fails.

    Rules send tool output to ``log:`` files, which stay at the site; the steward reads the
    tail in the task's stderr (``fedgen node logs``).
    """
    if not logs:
        return ""
    files = " ".join(shlex.quote(f) for f in logs)
    return (
        f"fedgen_logs=({files}); trap 'rc=$?; if [ $rc -ne 0 ]; then "
        'for f in "${fedgen_logs[@]}"; do if [ -s "$f" ]; then '
        'echo "--- last lines of $f:"; tail -n 15 "$f"; fi; done >&2; fi\' EXIT; '
    )


def rule_command(cmd: str, logs: Sequence[str]) -> list[str]:
    """The argv of a rule's executor: its rendered shell command under ``bash -c``."""
    return ["bash", "-c", f"set -euo pipefail; {log_tail_prefix(logs)}{cmd}"]


def approval_tag(entries: Sequence[Mapping[str, Any]]) -> str:
    """The :data:`APPROVAL_TAG` value: one entry per executor, in order.

    Entries are ``{"kind": "mkdir"}``, ``{"kind": "checksum"}`` or ``{"kind": "rule", "rule":
    NAME, "template": ID, "values": {FIELD: TEXT}, "logs": [PATH, ...]}``.
    """
    return json.dumps({"version": 1, "executors": list(entries)}, separators=(",", ":"))


def first_difference(expected: str, actual: str) -> str:
    """Where two commands first differ: index and a short context of each."""
    i = next(
        (k for k, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
        min(len(expected), len(actual)),
    )
    return (
        f"first difference at character {i}: approved {expected[max(0, i - 20) : i + 20]!r}, "
        f"task {actual[max(0, i - 20) : i + 20]!r}"
    )


def expected_commands(
    tag: str, templates: Mapping[str, Mapping[str, str]], *, checksum_script: str
) -> list[tuple[str, list[str] | None, str]]:
    """Check the approval entries and build each executor's expected argv.

    Parameters
    ----------
    tag : str
        The task's :data:`APPROVAL_TAG` value.
    templates : mapping
        Approved templates: ``RULE/ID`` -> {"text": template, "release": digest}.
    checksum_script : str
        The checksum executor's script.

    Returns
    -------
    list of (kind, argv or None, release)
        ``argv`` None for ``mkdir``/``checksum``: their arguments are checked as safe tokens
        by :func:`check_wrapper`; ``release`` the approved release a rule's template came from.

    Raises
    ------
    UnapprovedCommand
        Malformed entries, an unknown template or one of another rule, unsafe values.
    """
    try:
        doc = json.loads(tag)
        entries = doc["executors"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise UnapprovedCommand(f"tag {APPROVAL_TAG} is not the executor's JSON") from None
    out: list[tuple[str, list[str] | None, str]] = []
    for i, e in enumerate(entries):
        kind = e.get("kind") if isinstance(e, dict) else None
        if kind in ("mkdir", "checksum"):
            out.append((kind, None, ""))
            continue
        if kind != "rule":
            raise UnapprovedCommand(f"executors[{i}]: unknown kind {kind!r}")
        rule, tid = str(e.get("rule")), str(e.get("template"))
        approved = templates.get(f"{rule}/{tid}")
        if approved is None:
            raise UnapprovedCommand(
                f"executors[{i}]: rule {rule}: template {tid} is not approved at this site "
                "for this rule (fedgen node approve)"
            )
        values = e.get("values")
        logs = e.get("logs") or []
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise UnapprovedCommand(f"executors[{i}]: rule {rule}: values must map fields to text")
        for key, value in values.items():
            bad = unsafe_value(key, value)
            if bad is not None:
                raise UnapprovedCommand(
                    f"executors[{i}]: rule {rule}: field {{{key}}} has {bad[:60]!r}, which is "
                    "not a number, a path inside the task or a plain name"
                )
        for path in logs:
            if not isinstance(path, str) or unsafe_token(path) is not None or " " in path:
                raise UnapprovedCommand(f"executors[{i}]: rule {rule}: log path {path!r}")
        cmd = render(approved["text"], values).strip()
        out.append(("rule", rule_command(cmd, logs), approved["release"]))
    return out


def check_wrapper(kind: str, argv: Sequence[str], *, checksum_script: str) -> str | None:
    """Why a ``mkdir``/``checksum`` executor is not the executor's own form, or None."""
    if kind == "mkdir":
        head, rest = list(argv[:3]), list(argv[3:])
        if head != ["mkdir", "-p", "--"]:
            return "not `mkdir -p -- DIR...`"
    else:
        head, rest = list(argv[:4]), list(argv[4:])
        if head != ["bash", "-c", checksum_script, "fedgen-checksum"]:
            return "not the executor's checksum script"
    bad = next((a for a in rest if " " in a or unsafe_token(a) is not None), None)
    return None if bad is None else f"argument {bad[:60]!r} is not a path inside the task"
