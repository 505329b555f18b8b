"""The steward's side of ``release: review``: list held releases, approve or deny them.

The node holds a task's accepted egress files (PAUSED) and records them in the ``releases``
table of its task database; these functions read and decide that table from another process
(the steward's ``fedgen release``); the node polls it and publishes or quarantines.
"""

from __future__ import annotations

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
                    f"no release of task {task} in {state_dir}; `fedgen release list "
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
