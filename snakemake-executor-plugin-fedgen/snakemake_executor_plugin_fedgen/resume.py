"""Job keys and the resume index: find, after a coordinator crash, the tasks already sent.

A job key is a hash of what determines a job's result: rule names, wildcards, commands, images,
input fingerprints (reference URL + checksum or task, or the content hash of a coordinator
file) and output locations. It is a tag on every task. Before submitting, the executor looks the
key up in an index built from one listing per site (the run's tasks, BASIC view): a live task is
reattached, a COMPLETE one reused, anything else (failed, canceled) is replaced by a new task.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_fedgen.tes.client import TesClient
from snakemake_executor_plugin_fedgen.tes.models import TesTask
from snakemake_executor_plugin_fedgen.tes.states import LIVE_STATES, TesState
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RUN_TAG


def job_key(
    *,
    rules: list[str],
    wildcards: list[dict[str, Any]],
    commands: list[str],
    images: list[str],
    inputs: list[str],
    outputs: list[tuple[str, str]],
) -> str:
    """Return the job key (sha256 hex, 32 characters) of a job's defining parts."""
    doc = {
        "rules": rules,
        "wildcards": [{k: str(v) for k, v in sorted(w.items())} for w in wildcards],
        "commands": commands,
        "images": images,
        "inputs": sorted(inputs),
        "outputs": sorted(outputs),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class KnownTask:
    """A task found at a site for a job key."""

    id: str
    state: TesState


class ResumeIndex:
    """Job key -> task, per site, built lazily from one listing of the run's tasks."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._by_site: dict[str, dict[str, list[KnownTask]]] = {}
        self.ignores_tag_filter: dict[str, bool] = {}
        self._lock = threading.Lock()

    def load(self, site_name: str, client: TesClient) -> None:
        """List the run's tasks at a site once (BASIC view) and index them by job key.

        Also notes whether the server ignored the tag filter (some TES servers do), so status
        polling can fall back to per-task requests there.
        """
        with self._lock:
            if site_name in self._by_site:
                return
        tasks, ignored = self._run_tasks(client)
        index: dict[str, list[KnownTask]] = {}
        for t in tasks:
            key = (t.tags or {}).get(JOB_KEY_TAG)
            if key and t.id:
                index.setdefault(key, []).append(KnownTask(t.id, t.state or TesState.UNKNOWN))
        with self._lock:
            self._by_site[site_name] = index
            self.ignores_tag_filter[site_name] = ignored

    def _run_tasks(self, client: TesClient) -> tuple[list[TesTask], bool]:
        """The run's tasks at a site (BASIC view), and whether the server ignored the tag
        filter (the tag is checked here too)."""
        listed = client.list_tasks(tags={RUN_TAG: self.run_id}, view="BASIC")
        ours = [t for t in listed if (t.tags or {}).get(RUN_TAG) == self.run_id]
        return ours, len(ours) < len(listed)

    def live_task_ids(self, client: TesClient) -> list[str]:
        """The ids of the run's live tasks at a site, listed now (not from the index: a task
        whose creation was never answered is in no index)."""
        return [t.id for t in self._run_tasks(client)[0] if t.id and t.state in LIVE_STATES]

    def sites(self) -> list[str]:
        """The sites whose tasks of the run were listed (every site the run submitted to)."""
        with self._lock:
            return sorted(self._by_site)

    def find(self, site_name: str, key: str) -> KnownTask | None:
        """Return a live task for ``key`` (preferred) or a COMPLETE one, else None."""
        with self._lock:
            known = self._by_site.get(site_name, {}).get(key, [])
        live = [t for t in known if t.state in LIVE_STATES]
        if live:
            return live[-1]
        complete = [t for t in known if t.state == TesState.COMPLETE]
        return complete[-1] if complete else None

    def forget(self, site_name: str, key: str, task_id: str) -> None:
        """Drop a task from the index (e.g. a reused task whose outputs are gone)."""
        with self._lock:
            entries = self._by_site.get(site_name, {}).get(key, [])
            self._by_site.get(site_name, {})[key] = [t for t in entries if t.id != task_id]

    def add(
        self, site_name: str, key: str, task_id: str, state: TesState = TesState.QUEUED
    ) -> None:
        """Record a task just created, so a second job with the same key reuses it."""
        with self._lock:
            self._by_site.setdefault(site_name, {}).setdefault(key, []).append(
                KnownTask(task_id, state)
            )
