"""The append-only audit log (``STATE/audit.jsonl``): one JSON object per line.

Request records carry ``time, caller, action, task, outcome``; airlock records also carry
``file, kind, accepted, reason, sha256, size``. Tokens are never written.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends audit records with O_APPEND so concurrent writers never interleave lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        # Only the node reads its audit log (and the site's admins, as the node's user).
        os.fchmod(self._fd, 0o600)
        # Airlock/encryption records of running tasks, kept so the provenance record of a task
        # does not rescan a log that grows for the node's whole lifetime.
        self._per_task: dict[str, list[dict[str, Any]]] = {}

    def record(
        self, *, caller: str, action: str, task: str | None = None, outcome: str, **extra: Any
    ) -> None:
        """Append one record. ``extra`` adds fields (airlock: file, kind, accepted, ...)."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "caller": caller,
            "action": action,
            "task": task,
            "outcome": outcome,
            **extra,
        }
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            if task is not None and action in self.TASK_FILE_ACTIONS:
                self._per_task.setdefault(task, []).append(entry)

    #: Actions whose records the provenance of a task needs.
    TASK_FILE_ACTIONS = frozenset({"Airlock", "Encrypt"})

    def pop_task_entries(self, task: str) -> list[dict[str, Any]]:
        """The airlock/encryption records of ``task`` written since the node started."""
        with self._lock:
            return self._per_task.pop(task, [])

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
