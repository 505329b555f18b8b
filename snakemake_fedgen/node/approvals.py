"""Workflow releases a site's steward approved, and the check of each task against them.

``fedgen node approve WORKFLOW`` reads a workflow release (a directory with ``Snakefile`` or
``workflow/Snakefile``, or a Workflow RO-Crate directory or zip whose ``mainEntity`` is the
Snakefile), shows every rule's ``shell:`` template as the shell text it is, and with ``--yes``
records the release in the node's state directory::

    approvals/<digest>.json   digest, source, approved (time, by), templates

The templates are read without running the workflow and whatever its config: each ``.smk`` file
and the Snakefile are translated by Snakemake's own parser and the ``@workflow.shellcmd``
argument of every rule is taken from the resulting Python (rules in both branches of an ``if``
are all found). The digest is the SHA-256 over the release's workflow files (relative path and
content, sorted).

With ``approved_code: required`` CreateTask accepts a task only if every executor is the
rendering of an approved template with safe values
(:mod:`snakemake_executor_plugin_fedgen.approval`).
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen import approval
from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic
from snakemake_executor_plugin_fedgen.staging import CHECKSUM_SCRIPT

__all__ = [
    "ApprovedRelease",
    "Template",
    "approve",
    "approved_releases",
    "approved_templates",
    "check_task_code",
    "describe",
    "read_release",
]

APPROVALS_DIR = "approvals"
_WORKFLOW_SUFFIXES = (".smk", ".py", ".yaml", ".yml", ".json", ".rst", ".R", ".sh")


@dataclass(frozen=True)
class Template:
    """One rule's shell template as approved."""

    rule: str
    file: str
    line: int
    text: str

    @property
    def id(self) -> str:
        return approval.template_id(self.text)


@dataclass(frozen=True)
class ApprovedRelease:
    """A workflow release: its digest, where it came from, its rules' templates."""

    digest: str
    source: str
    templates: tuple[Template, ...]
    unapprovable: tuple[str, ...] = ()  # rules whose shell: is not a constant string
    approved: str = ""
    by: str = ""


def _snakefile(path: Path, tmp: Path) -> Path:
    """The Snakefile of a workflow directory or Workflow RO-Crate (dir or zip)."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise ConfigError(f"{path}: member {member!r} escapes the crate; refused")
            zf.extractall(tmp)
        path = tmp
    crate = path / "ro-crate-metadata.json"
    if crate.is_file():
        graph = json.loads(crate.read_text(encoding="utf-8")).get("@graph", [])
        root: dict[str, Any] = next((e for e in graph if e.get("@id") == "./"), {})
        main = (root.get("mainEntity") or {}).get("@id")
        if isinstance(main, str) and (path / main).is_file():
            return path / main
        raise ConfigError(f"{crate}: no mainEntity Snakefile in the crate")
    for candidate in (path / "workflow" / "Snakefile", path / "Snakefile"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{path}: no Snakefile (looked for workflow/Snakefile, Snakefile and an RO-Crate's "
        "mainEntity); give the workflow's directory"
    )


def _workflow_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name == "Snakefile" or name.endswith(_WORKFLOW_SUFFIXES):
                yield Path(dirpath) / name


def _translate(path: Path) -> str:
    """Snakemake's own translation of a Snakefile/.smk into Python (no workflow is run)."""
    try:
        from snakemake import parser  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "fedgen node approve reads workflows with Snakemake's parser; install it "
            "(pip install 'snakemake-fedgen[coordinator]') on the steward's machine"
        ) from None

    class _Source:
        def __init__(self, p: Path) -> None:
            self.p = p

        def get_path_or_uri(self, secret_free: bool = True) -> str:
            return str(self.p)

    class _Cache:
        def open(self, source: _Source) -> Any:
            return open(source.p, encoding="utf-8")

    class _Workflow:
        sourcecache = _Cache()

    try:
        code, _ = parser.parse(_Source(path), _Workflow(), {})
    except Exception as exc:  # the parser raises its own syntax errors
        raise ConfigError(f"{path}: Snakemake cannot parse it ({exc})") from None
    return str(code)


def _templates(path: Path, rel: str) -> tuple[list[Template], list[str]]:
    tree = ast.parse(_translate(path))
    found: list[Template] = []
    bad: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("__rule_"):
            continue
        name, line, shell = node.name.removeprefix("__rule_"), node.lineno, None
        for deco in node.decorator_list:
            if not isinstance(deco, ast.Call) or not isinstance(deco.func, ast.Attribute):
                continue
            if deco.func.attr == "rule":
                for kw in deco.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        name = str(kw.value.value)
                    value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                    if kw.arg == "lineno" and isinstance(value, int):
                        line = value
            elif deco.func.attr == "shellcmd" and deco.args:
                shell = deco.args[0]
        if shell is None:
            continue
        if isinstance(shell, ast.Constant) and isinstance(shell.value, str):
            found.append(Template(name, rel, line, shell.value))
        else:
            bad.append(f"{name} ({rel}:{line})")
    return found, bad


def read_release(path: Path) -> ApprovedRelease:
    """Read a workflow release's templates and digest (nothing is recorded).

    Raises
    ------
    ConfigError
        No Snakefile, a file Snakemake cannot parse.
    """
    path = Path(path).absolute()
    with tempfile.TemporaryDirectory(prefix="fedgen-approve-") as tmp:
        snakefile = _snakefile(path, Path(tmp))
        root = snakefile.parent
        digest = hashlib.sha256()
        templates: list[Template] = []
        unapprovable: list[str] = []
        for f in _workflow_files(root):
            rel = f.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
            if f.name == "Snakefile" or f.suffix == ".smk":
                found, bad = _templates(f, rel)
                templates += found
                unapprovable += bad
    return ApprovedRelease(
        digest=digest.hexdigest(),
        source=str(path),
        templates=tuple(templates),
        unapprovable=tuple(unapprovable),
    )


def describe(release: ApprovedRelease) -> str:
    """The release as the steward reviews it: every template as readable shell."""
    lines = [f"workflow release {release.digest}", f"  from {release.source}"]
    for t in sorted(release.templates, key=lambda t: (t.file, t.line)):
        lines.append(f"\nrule {t.rule}  ({t.file}:{t.line}, template {t.id})")
        lines += [f"    {line}" for line in t.text.strip().splitlines() or [""]]
    if release.unapprovable:
        lines.append(
            "\nnot approvable (shell: is not a constant string): " + ", ".join(release.unapprovable)
        )
    return "\n".join(lines)


def approve(state_dir: Path, path: Path, *, by: str) -> ApprovedRelease:
    """Record a workflow release as approved at this node (its templates and digest)."""
    release = read_release(path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "digest": release.digest,
        "source": release.source,
        "approved": stamp,
        "by": by,
        "templates": [
            {"rule": t.rule, "file": t.file, "line": t.line, "text": t.text, "id": t.id}
            for t in release.templates
        ],
        "unapprovable": list(release.unapprovable),
    }
    folder = Path(state_dir) / APPROVALS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_text_atomic(folder / f"{release.digest}.json", json.dumps(doc, indent=1), perms=0o600)
    return ApprovedRelease(
        release.digest,
        release.source,
        release.templates,
        release.unapprovable,
        approved=stamp,
        by=by,
    )


def approved_releases(state_dir: Path) -> list[ApprovedRelease]:
    """Every release approved at this node, oldest first."""
    folder = Path(state_dir) / APPROVALS_DIR
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            templates = tuple(
                Template(t["rule"], t["file"], int(t["line"]), t["text"]) for t in doc["templates"]
            )
            out.append(
                ApprovedRelease(
                    doc["digest"],
                    doc["source"],
                    templates,
                    tuple(doc.get("unapprovable") or ()),
                    approved=doc.get("approved", ""),
                    by=doc.get("by", ""),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{f}: unreadable approval ({exc}); approve the release again"
            ) from None
    return sorted(out, key=lambda r: r.approved)


_CACHE: dict[Path, tuple[int, dict[str, dict[str, str]]]] = {}


def approved_templates(state_dir: Path) -> dict[str, dict[str, str]]:
    """``RULE/ID`` -> {text, release} over every approved release (rules may share a text).

    Read again only when the approvals folder changed (a release approved while the node runs
    counts from the next task on).
    """
    folder = Path(state_dir) / APPROVALS_DIR
    try:
        stamp = folder.stat().st_mtime_ns
    except OSError:
        stamp = -1
    cached = _CACHE.get(folder)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    templates = {
        f"{t.rule}/{t.id}": {"text": t.text, "release": r.digest}
        for r in approved_releases(state_dir)
        for t in r.templates
    }
    _CACHE[folder] = (stamp, templates)
    return templates


def check_task_code(doc: Mapping[str, Any], templates: Mapping[str, Mapping[str, str]]) -> str:
    """Check every executor of a task against the approved templates.

    Returns
    -------
    str
        The approved releases the task's templates come from (comma-separated digests).

    Raises
    ------
    UnapprovedCommand
        Naming the executor, the rule and the first differing character.
    """
    tag = (doc.get("tags") or {}).get(approval.APPROVAL_TAG)
    if not tag:
        raise approval.UnapprovedCommand(
            f"this site runs approved workflows only, and the task has no {approval.APPROVAL_TAG} "
            "tag (the fedgen executor sends it)"
        )
    executors = doc.get("executors") or []
    expected = approval.expected_commands(tag, templates, checksum_script=CHECKSUM_SCRIPT)
    if len(expected) != len(executors):
        raise approval.UnapprovedCommand(
            f"the task has {len(executors)} executors but its {approval.APPROVAL_TAG} tag "
            f"describes {len(expected)}"
        )
    releases: list[str] = []
    for i, ((kind, argv, release), ex) in enumerate(zip(expected, executors, strict=True)):
        if ex.get("env") or ex.get("stdin") or ex.get("stdout") or ex.get("stderr"):
            raise approval.UnapprovedCommand(
                f"executors[{i}]: env, stdin, stdout and stderr are not part of approved commands"
            )
        if ex.get("workdir", approval.WORKDIR) != approval.WORKDIR:
            raise approval.UnapprovedCommand(f"executors[{i}]: workdir must be {approval.WORKDIR}")
        actual = list(ex.get("command") or [])
        if argv is None:
            problem = approval.check_wrapper(kind, actual, checksum_script=CHECKSUM_SCRIPT)
            if problem:
                raise approval.UnapprovedCommand(f"executors[{i}] ({kind}): {problem}")
            continue
        if actual != argv:
            rule = json.loads(tag)["executors"][i]["rule"]
            shown_expected = argv[2] if len(argv) == 3 else " ".join(argv)
            shown_actual = actual[2] if len(actual) == 3 and actual[:2] == argv[:2] else str(actual)
            raise approval.UnapprovedCommand(
                f"executors[{i}]: rule {rule}: the command is not the approved template with "
                f"these values; {approval.first_difference(shown_expected, shown_actual)}"
            )
        if release not in releases:
            releases.append(release)
    return ",".join(releases)
