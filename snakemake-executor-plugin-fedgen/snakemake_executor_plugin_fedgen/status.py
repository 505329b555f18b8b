"""Batched task status: one ListTasks per site per poll, and an interval that adapts.

Each poll cycle asks every site with live tasks once for all tasks tagged with the run id
(MINIMAL view, following every page), whatever the number of jobs. Servers that ignore tag
filters (detected when the resume listing returned foreign tasks) get one GET per task instead.
A site that does not answer keeps its jobs waiting until ``deadline`` seconds have passed since
its last answer; then its jobs fail with a message naming the site.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from snakemake_executor_plugin_fedgen.errors import FedgenError, NodeProtocolError, TesError
from snakemake_executor_plugin_fedgen.tes.client import TesClient
from snakemake_executor_plugin_fedgen.tes.states import TesState
from snakemake_executor_plugin_fedgen.tes.tags import RUN_TAG


@dataclass
class SiteAnswer:
    """A site's answer in one poll: task states, or the error and how long it has been silent."""

    states: dict[str, TesState] = field(default_factory=dict)
    error: str | None = None
    silent_for: float = 0.0
    # The site answered as no honest TES server does: its jobs fail now, not at the deadline.
    broken: bool = False


class AdaptiveInterval:
    """Poll quickly while jobs are finishing; back off geometrically to ``maximum`` when idle."""

    def __init__(
        self, *, minimum: float = 0.25, maximum: float = 10.0, factor: float = 1.5
    ) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.factor = factor
        self.current = minimum

    def update(self, *, changed: bool) -> float:
        """Return the next interval after a cycle in which something did or did not change."""
        self.current = self.minimum if changed else min(self.maximum, self.current * self.factor)
        return self.current


class StatusPoller:
    """Poll task states at many sites, one request per site per cycle.

    Parameters
    ----------
    run_id
        Value of the run tag every task of this run carries.
    clients
        TES clients by site name.
    """

    def __init__(self, run_id: str, clients: dict[str, TesClient]) -> None:
        self.run_id = run_id
        self.clients = clients
        self.per_task_fallback: dict[str, bool] = {}
        self._last_answer: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(clients))))

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def poll(self, wanted: Mapping[str, Iterable[str]]) -> dict[str, SiteAnswer]:
        """Return the states of the ``wanted`` task ids per site (sites queried in parallel)."""
        futures = {
            site: self._pool.submit(self._poll_site, site, set(ids))
            for site, ids in wanted.items()
            if ids
        }
        return {site: f.result() for site, f in futures.items()}

    def _poll_site(self, site: str, ids: set[str]) -> SiteAnswer:
        client = self.clients[site]
        now = time.monotonic()
        self._last_answer.setdefault(site, now)
        try:
            if self.per_task_fallback.get(site):
                states = {i: _state_of(client, i) for i in ids}
            else:
                states = {
                    t.id: t.state
                    for t in client.iter_tasks(tags={RUN_TAG: self.run_id}, view="MINIMAL")
                }
                # Tasks reattached from a run with another run id are not in the listing.
                for missing in ids - states.keys():
                    states[missing] = _state_of(client, missing)
        except FedgenError as exc:
            return SiteAnswer(
                error=str(exc),
                silent_for=time.monotonic() - self._last_answer[site],
                broken=isinstance(exc, NodeProtocolError),
            )
        self._last_answer[site] = time.monotonic()
        return SiteAnswer(states={i: states[i] for i in ids if i in states})


def _state_of(client: TesClient, task_id: str) -> TesState:
    """Return a task's state; a task the site no longer knows counts as a SYSTEM_ERROR."""
    try:
        return client.get_task(task_id, view="MINIMAL").state
    except TesError as exc:
        if exc.status == 404:
            return TesState.SYSTEM_ERROR
        raise


#: Columns of the per-site progress line, in order.
PROGRESS_COLUMNS: tuple[str, ...] = ("done", "failed", "running", "queued", "waiting")


class SiteProgress:
    """Jobs per site by phase, for one line in the log: ``done`` and ``failed`` (ended in this
    run, reused results count as done), ``running``, ``queued`` at the site (QUEUED,
    INITIALIZING, PAUSED) and ``waiting`` at the coordinator (held back by the site's
    ``max_parallel_tasks`` or a busy node)."""

    def __init__(self, sites: Iterable[str]) -> None:
        self.sites = list(sites)
        self.ended: dict[str, dict[str, int]] = {s: {"done": 0, "failed": 0} for s in self.sites}

    def ended_one(self, site: str, *, ok: bool) -> None:
        self.ended[site]["done" if ok else "failed"] += 1

    def line(self, states: Mapping[str, tuple[str, TesState]], waiting: Mapping[str, int]) -> str:
        """``A 12 done, 2 running, 3 queued | B ...`` for ``states`` (task id -> (site,
        state)) of live tasks and ``waiting`` jobs per site; zero columns are left out."""
        counts = {s: {**self.ended[s], "running": 0, "queued": 0} for s in self.sites}
        for site, state in states.values():
            if site in counts:
                key = "running" if state == TesState.RUNNING else "queued"
                counts[site][key] += 1
        parts = []
        for site in self.sites:
            row = {**counts[site], "waiting": waiting.get(site, 0)}
            shown = [f"{row[c]} {c}" for c in PROGRESS_COLUMNS if row[c]]
            if shown:
                parts.append(f"{site} {', '.join(shown)}")
        return " | ".join(parts)
