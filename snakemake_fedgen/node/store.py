"""Task persistence in SQLite (WAL): one row per task with its TES document as JSON.

The columns the list filters need (owner, state, name, tags) are indexed so that a MINIMAL
page never parses task documents.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    pgid INTEGER,
    pstart INTEGER,
    slurm_job TEXT,
    slurm_executor INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_owner_seq ON tasks(owner, seq);
CREATE INDEX IF NOT EXISTS tasks_owner_state_seq ON tasks(owner, state, seq);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (seq, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_key_value ON tags(key, value, seq);
CREATE TABLE IF NOT EXISTS published (
    path TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    task TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    task TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created TEXT NOT NULL,
    files TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    decided_by TEXT,
    decided TEXT
);
CREATE TABLE IF NOT EXISTS secure_rounds (
    round_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    task TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lineage (
    path TEXT PRIMARY KEY,
    sample_sets TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    sample_set TEXT NOT NULL,
    members TEXT NOT NULL,
    task TEXT NOT NULL,
    released TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_dataset ON ledger(dataset);
CREATE TABLE IF NOT EXISTS privacy_spent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    task TEXT NOT NULL,
    released TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Release:
    """An egress release held for the steward's review (``release: review``).

    ``state`` is ``pending``, ``approved``, ``denied`` or ``ended`` (the task ended otherwise:
    canceled, node stopped); ``files`` lists what would be published.
    """

    task: str
    owner: str
    created: str
    files: list[dict[str, Any]]
    state: str
    reason: str | None
    decided_by: str | None
    decided: str | None


RELEASE_STATES = ("pending", "approved", "denied", "ended")


@dataclass(frozen=True)
class StoredTask:
    """A task row: its owner (caller name) and TES document."""

    id: str
    owner: str
    state: str
    doc: dict[str, Any]


class TaskStore:
    """SQLite-backed task table. Safe to call from several threads (one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Every caller's task documents are in this file: only the node may read it. SQLite
        # creates the -wal and -shm files with the mode of the database.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (SIGKILL); only power loss may lose
        # the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Databases of nodes before runtime slurm lack its columns.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        for column, kind in (("slurm_job", "TEXT"), ("slurm_executor", "INTEGER")):
            if column not in columns:
                self._db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, doc: Mapping[str, Any], *, owner: str) -> None:
        """Insert a new task document (it carries ``id`` and ``state``)."""
        tags = doc.get("tags") or {}
        with self._lock:
            self._db.execute("BEGIN")
            try:
                cur = self._db.execute(
                    "INSERT INTO tasks (id, owner, name, state, doc) VALUES (?, ?, ?, ?, ?)",
                    (doc["id"], owner, doc.get("name") or "", doc["state"], _dump(doc)),
                )
                seq = cur.lastrowid
                self._db.executemany(
                    "INSERT INTO tags (seq, key, value) VALUES (?, ?, ?)",
                    [(seq, k, v) for k, v in tags.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save(self, doc: Mapping[str, Any]) -> None:
        """Write back a changed task document (state, logs)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET state = ?, doc = ? WHERE id = ?",
                (doc["state"], _dump(doc), doc["id"]),
            )

    def set_process(self, task_id: str, *, pgid: int | None, pstart: int | None) -> None:
        """Remember the process group of a running executor (to reap it after a crash)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET pgid = ?, pstart = ? WHERE id = ?", (pgid, pstart, task_id)
            )

    def processes(self) -> list[tuple[str, int, int | None]]:
        """Task id, process group and start tick of every recorded executor process."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, pgid, pstart FROM tasks WHERE pgid IS NOT NULL"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def set_job(self, task_id: str, *, job: str | None, executor: int | None) -> None:
        """Remember the Slurm job running ``executors[executor]`` (runtime slurm; None: none)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET slurm_job = ?, slurm_executor = ? WHERE id = ?",
                (job, executor, task_id),
            )

    def jobs(self) -> dict[str, tuple[str, int]]:
        """Task id -> (Slurm job id, executor index) of every recorded job."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, slurm_job, slurm_executor FROM tasks WHERE slurm_job IS NOT NULL"
            ).fetchall()
        return {r[0]: (r[1], int(r[2])) for r in rows}

    def add_published(self, path: str, *, owner: str, task: str, sha256: str, size: int) -> None:
        """Record a file the airlock published (``path`` relative to the egress root)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO published (path, owner, task, sha256, size) "
                "VALUES (?, ?, ?, ?, ?)",
                (path, owner, task, sha256, size),
            )

    def published(self, path: str) -> tuple[str, str, str, int] | None:
        """Owner, task, sha256 and size of a published egress file, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT owner, task, sha256, size FROM published WHERE path = ?", (path,)
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def secure_round(self, round_id: str) -> tuple[str, str] | None:
        """sha256 and task of the masked upload this site published for ``round_id``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, task FROM secure_rounds WHERE round_id = ?", (round_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def add_secure_round(self, round_id: str, *, sha256: str, task: str) -> None:
        """Record the masked upload published for ``round_id`` (first one wins)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO secure_rounds (round_id, sha256, task) VALUES (?, ?, ?)",
                (round_id, sha256, task),
            )

    def set_lineage(self, paths: Iterable[str], sample_sets: Iterable[str]) -> None:
        """Record that the files at ``paths`` (host paths) were written from ``sample_sets``."""
        value = _dump(sorted(set(sample_sets)))
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO lineage (path, sample_sets) VALUES (?, ?)",
                [(p, value) for p in paths],
            )

    def lineage(self, path: str) -> list[str]:
        """The sample sets the file at ``path`` was written from (empty if unknown)."""
        with self._lock:
            row = self._db.execute(
                "SELECT sample_sets FROM lineage WHERE path = ?", (path,)
            ).fetchone()
        return list(json.loads(row[0])) if row else []

    def ledger(self, dataset: str) -> list[tuple[str, list[str], str, str]]:
        """Released sample sets of ``dataset``: (set name, members, task, released), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sample_set, members, task, released FROM ledger WHERE dataset = ? "
                "ORDER BY seq",
                (dataset,),
            ).fetchall()
        return [(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def add_ledger(
        self, dataset: str, sample_set: str, members: Iterable[str], *, task: str, released: str
    ) -> None:
        """Record a release from ``sample_set`` of ``dataset``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO ledger (dataset, sample_set, members, task, released) "
                "VALUES (?, ?, ?, ?, ?)",
                (dataset, sample_set, _dump(sorted(members)), task, released),
            )

    def privacy_spent(self, dataset: str) -> list[tuple[float, float]]:
        """(epsilon, delta) of every differentially private release of ``dataset``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT epsilon, delta FROM privacy_spent WHERE dataset = ? ORDER BY seq",
                (dataset,),
            ).fetchall()
        return [(float(e), float(d)) for e, d in rows]

    def spend_privacy(
        self, dataset: str, epsilon: float, delta: float, *, task: str, released: str
    ) -> None:
        """Charge one release to ``dataset``'s privacy budget."""
        with self._lock:
            self._db.execute(
                "INSERT INTO privacy_spent (dataset, epsilon, delta, task, released) "
                "VALUES (?, ?, ?, ?, ?)",
                (dataset, epsilon, delta, task, released),
            )

    def add_release(
        self, task: str, *, owner: str, created: str, files: list[dict[str, Any]]
    ) -> None:
        """Hold a task's egress for review (state ``pending``)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO releases (task, owner, created, files, state) "
                "VALUES (?, ?, ?, ?, 'pending')",
                (task, owner, created, _dump(files)),
            )

    def release(self, task: str) -> Release | None:
        """The release record of ``task``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT task, owner, created, files, state, reason, decided_by, decided "
                "FROM releases WHERE task = ?",
                (task,),
            ).fetchone()
        return None if row is None else _release(row)

    def releases(self, state: str | None = None) -> list[Release]:
        """Every release record (``state``: only those), oldest first."""
        sql = "SELECT task, owner, created, files, state, reason, decided_by, decided FROM releases"
        args: tuple[str, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created", args).fetchall()
        return [_release(r) for r in rows]

    def decide_release(
        self, task: str, *, state: str, reason: str | None, by: str | None, when: str
    ) -> bool:
        """Move a pending release to ``state``; False if it is not pending (any more)."""
        if state not in RELEASE_STATES[1:]:
            raise ValueError(f"release state {state!r}")
        with self._lock:
            cur = self._db.execute(
                "UPDATE releases SET state = ?, reason = ?, decided_by = ?, decided = ? "
                "WHERE task = ? AND state = 'pending'",
                (state, reason, by, when, task),
            )
        return cur.rowcount == 1

    def get(self, task_id: str) -> StoredTask | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, owner, state, doc FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredTask(row[0], row[1], row[2], json.loads(row[3]))

    def in_states(self, states: Iterable[str]) -> list[StoredTask]:
        """Every task in one of ``states``, oldest first."""
        states = list(states)
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, owner, state, doc FROM tasks WHERE state IN ({marks}) ORDER BY seq",
                states,
            ).fetchall()
        return [StoredTask(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def list(
        self,
        *,
        owner: str,
        name_prefix: str | None = None,
        state: str | None = None,
        tags: Mapping[str, str] | None = None,
        page_size: int = 256,
        page_token: int | None = None,
        minimal: bool = True,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the caller's tasks, newest first.

        Returns the tasks (``{"id", "state"}`` only when ``minimal``, else full documents) and
        the ``seq`` to continue from, or ``None`` on the last page. A tag filter value of ``""``
        matches any value of that key (TES 1.1 ``tag_key``/``tag_value`` semantics).
        """
        tags = dict(tags or {})
        # With a tag value to match (the executor's run tag), walk the tags index in seq order:
        # the cost then follows the matching tasks, not every task the node ever ran.
        driver = next(((k, v) for k, v in tags.items() if v != ""), None)
        where = ["t.owner = ?"]
        args: list[Any] = [owner]
        if driver is not None:
            del tags[driver[0]]
            source = "tags d CROSS JOIN tasks t ON t.seq = d.seq"
            where = ["d.key = ?", "d.value = ?", *where]
            args = [*driver, *args]
            order = "d.seq"
        else:
            source = "tasks t"
            order = "t.seq"
        if page_token is not None:
            where.append(f"{order} < ?")
            args.append(page_token)
        if state:
            where.append("t.state = ?")
            args.append(state)
        if name_prefix:
            where.append("substr(t.name, 1, ?) = ?")
            args.extend([len(name_prefix), name_prefix])
        for key, value in tags.items():
            if value == "":
                where.append("EXISTS (SELECT 1 FROM tags g WHERE g.seq = t.seq AND g.key = ?)")
                args.append(key)
            else:
                where.append(
                    "EXISTS (SELECT 1 FROM tags g WHERE g.seq = t.seq AND g.key = ? AND g.value = ?)"
                )
                args.extend([key, value])
        columns = "t.seq, t.id, t.state" if minimal else "t.seq, t.doc"
        sql = (
            f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} "
            f"ORDER BY {order} DESC LIMIT ?"
        )
        args.append(page_size + 1)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        more = len(rows) > page_size
        rows = rows[:page_size]
        if minimal:
            tasks = [{"id": r[1], "state": r[2]} for r in rows]
        else:
            tasks = [json.loads(r[1]) for r in rows]
        next_token = rows[-1][0] if more and rows else None
        return tasks, next_token


def _release(row: tuple[Any, ...]) -> Release:
    return Release(row[0], row[1], row[2], json.loads(row[3]), *row[4:])


def _dump(doc: Mapping[str, Any] | list[Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))
