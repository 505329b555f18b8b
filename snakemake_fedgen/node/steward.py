"""The steward's commands against a node's state directory (``fedgen node release|logs``).

``release: review``: the node holds a task's accepted egress files (PAUSED) and records them in the ``releases``
table of its task database; these functions read and decide that table from another process
(the steward's ``fedgen node release``); the node polls it and publishes or quarantines.
"""

from __future__ import annotations

import json
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.node.store import Release, TaskStore
from snakemake_fedgen.node.task import now_rfc3339


def _store(state_dir: Path) -> TaskStore:
    db = state_dir / "tasks.sqlite"
    if not db.is_file():
        raise ConfigError(
            f"{db} does not exist: --state-dir must be the state directory of a fedgen node."
        )
    return TaskStore(db)


def held(state_dir: Path, *, everything: bool = False) -> list[Release]:
    """Releases waiting for review (``everything``: all of them), oldest first."""
    store = _store(state_dir)
    try:
        return store.releases(None if everything else "pending")
    finally:
        store.close()


def decide(
    state_dir: Path, task: str, *, approve: bool, by: str, reason: str | None = None
) -> None:
    """Approve or deny the pending release of ``task``.

    Raises
    ------
    ConfigError
        No such release, or it is not pending (decided already, or the task ended).
    """
    store = _store(state_dir)
    try:
        state = "approved" if approve else "denied"
        if not store.decide_release(task, state=state, reason=reason, by=by, when=now_rfc3339()):
            found = store.release(task)
            if found is None:
                raise ConfigError(
                    f"no release of task {task} in {state_dir}; `fedgen node release list "
                    f"--state-dir {state_dir}` shows the held ones."
                )
            raise ConfigError(
                f"the release of task {task} is {found.state}, not pending; nothing changed."
            )
    finally:
        store.close()


def describe(releases: list[Release]) -> str:
    """A readable listing: one block per release, one line per file."""
    if not releases:
        return "no releases"
    blocks = []
    for r in releases:
        head = f"task {r.task}  caller {r.owner}  held since {r.created}  {r.state}"
        if r.decided:
            head += f" by {r.decided_by} at {r.decided}"
        if r.reason:
            head += f" ({r.reason})"
        lines = [head]
        for f in r.files:
            lines.append(
                f"  {f['kind']:<12} {f['size']:>12} bytes  {f['egress_path']}  sha256 "
                f"{f['sha256'][:16]}...  inspect: {f['copy']}"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def site_logs(state_dir: Path, task: str) -> str:
    """A task's state, executors and full logs as the site keeps them (unredacted)."""
    store = _store(state_dir)
    try:
        stored = store.get(task)
    finally:
        store.close()
    if stored is None:
        raise ConfigError(f"no task {task} in {state_dir}.")
    doc = stored.doc
    out = [f"task {task}  caller {stored.owner}  state {stored.state}  name {doc.get('name', '')}"]
    executors = doc.get("executors") or []
    for attempt in doc.get("logs") or []:
        out.append(
            f"started {attempt.get('start_time', '-')}  ended {attempt.get('end_time', '-')}"
        )
        for i, ex_log in enumerate(attempt.get("logs") or []):
            command = executors[i].get("command") if i < len(executors) else None
            out.append(
                f"--- executor {i}: exit {ex_log.get('exit_code')}  "
                f"{ex_log.get('start_time', '-')} .. {ex_log.get('end_time', '-')}"
            )
            if command:
                out.append(f"command: {json.dumps(command)}")
            for key in ("stdout", "stderr"):
                if ex_log.get(key):
                    out.append(f"{key}:\n{ex_log[key].rstrip()}")
        for line in attempt.get("system_logs") or []:
            out.append(f"system: {line}")
    return "\n".join(out)
