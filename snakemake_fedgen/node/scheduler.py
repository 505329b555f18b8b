"""The task life cycle: a core budget, QUEUED -> INITIALIZING -> RUNNING -> final state.

Everything runs on the server's asyncio loop: executors are asyncio subprocesses (no thread
per task polling), blocking file work (staging, uploads, the airlock) goes to worker threads.
Each executor runs in its own process group so cancel and timeouts kill all it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import itertools
import json
import logging
import math
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    DiskFull,
    EgressRefused,
    FedgenError,
    QueueFull,
    StorageError,
)
from snakemake_executor_plugin_fedgen.tes.models import has_wildcard
from snakemake_executor_plugin_fedgen.tes.states import TesState
from snakemake_executor_plugin_fedgen.tes.tags import CODE_TAG, OUTPUT_SHA256_KEY

from snakemake_fedgen.egress.airlock import AirlockDecision, AirlockPolicy, inspect
from snakemake_fedgen.egress.facts import facts_stamp, load_facts, sample_sets, set_difference
from snakemake_fedgen.egress.release import Rounded, privatise_sumstats, round_sumstats
from snakemake_fedgen.governance.node import seal_egress
from snakemake_fedgen.governance.provenance import sha256_file, task_provenance
from snakemake_fedgen.node import paths
from snakemake_fedgen.node.areas import SiteRoots, Target
from snakemake_fedgen.node.audit import AuditLog
from snakemake_fedgen.node.config import NodeConfig, privacy_settings
from snakemake_fedgen.node.ingress import IngressStore, ingress_digest, is_ingress_url
from snakemake_fedgen.node.redact import IdRedactor
from snakemake_fedgen.node.runtime import (
    Runtime,
    TaskLayout,
    TaskUser,
    reachable_by,
    task_user_for,
)
from snakemake_fedgen.node.slurm import JobFiles, SlurmRuntime, job_minutes
from snakemake_fedgen.node.storage import (
    OutputFile,
    collect_outputs,
    fetch_http,
    host_path,
    open_output,
    publish,
    publish_fd,
    url_scheme,
)
from snakemake_fedgen.node.store import TaskStore
from snakemake_fedgen.node.task import now_rfc3339

if TYPE_CHECKING:
    from snakemake_fedgen.egress.privacy import DpRelease
    from snakemake_fedgen.exact.site_masking import MaskRequest, SiteMasker

log = logging.getLogger("snakemake_fedgen.node")

RESTART_REASON = "node restarted while task was running"
STOP_REASON = "node stopped while task was running"
REVIEW_REASON = (
    "egress held for review by the site's steward (release: review); the task waits until "
    "the steward approves or denies it"
)


HOST_TMP_RECORD = "host-tmp"
# The task's read-only input binds (host path, container path), for a reattached task.
BINDS_RECORD = "binds.json"


@dataclass(frozen=True)
class _Staged:
    """An egress file copied out of the task into the node's private outbox."""

    source: Path  # the node's copy: the airlock, sealing and publication read only this
    dest: Path
    container_path: str
    target: Target


@dataclass(frozen=True)
class _Release:
    """A task's checked outputs, ready to publish (or to hold for review)."""

    files: list[OutputFile]
    staged: dict[Path, _Staged]
    decisions: dict[Path, AirlockDecision]
    rounds: dict[Path, str]


@dataclass
class _Active:
    doc: dict[str, Any]
    owner: str
    cores: int
    proc: asyncio.subprocess.Process | None = None
    job: str | None = None  # the Slurm job running an executor (runtime slurm)
    # The node stopped and left the task's Slurm job running: the next start reattaches.
    detached: bool = False
    cancel: bool = False
    stopping: bool = False
    timed_out: bool = False
    # Why the node stopped the task for a resource (disk quota, memory, full disk), or why
    # Slurm ended its job (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...), if it did.
    resource_error: str | None = None
    # Registered sample sets the task's inputs trace back to (names; see _sample_sets).
    sample_sets: frozenset[str] = frozenset()
    runner: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Queued:
    seq: int  # submission order (FIFO within a caller)
    task_id: str
    cores: int


class Scheduler:
    """Runs queued tasks within the node's core budget."""

    def __init__(
        self,
        cfg: NodeConfig,
        *,
        store: TaskStore,
        audit: AuditLog,
        runtime: Runtime,
        ingress: IngressStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.ingress = ingress
        self.store = store
        self.audit = audit
        self.runtime = runtime
        self.cores_free = cfg.node_cores
        # Waiting tasks, FIFO per caller; callers take turns (see _pump).
        self._queues: dict[str, deque[_Queued]] = {}
        self._seq = itertools.count()
        self._last_served: dict[str, int] = {}
        self._active: dict[str, _Active] = {}
        self._unsaved: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self.policy = AirlockPolicy.from_mapping(cfg.airlock)
        self._facts_stamp: float | None = None
        self.privacy = privacy_settings(cfg)
        self.masker: SiteMasker | None = None  # set below when the node masks
        if cfg.secure_aggregation_key is not None:
            from snakemake_fedgen.exact.site_masking import SiteMasker  # numpy: only here

            self.masker = SiteMasker(
                cfg.secure_aggregation_key,
                cfg.secure_aggregation_peers,
                ledger=cfg.state_dir / "secure-aggregation.rounds",
            )
        # Tasks never run as root (ConfigError if this node cannot make sure of it).
        self.task_user: TaskUser | None = task_user_for(
            getattr(cfg, "task_user", None), runtime=runtime.name
        )
        self.roots = SiteRoots.of(cfg)
        _harden(cfg, self.task_user)
        if (
            self.task_user is not None
            and not runtime.binds_inputs
            and not reachable_by(Path(sys.executable), self.task_user)
        ):
            log.warning(
                "task_user %s cannot reach this node's Python (%s): host tasks cannot run "
                "fedgen tools; install Python where other users can read it, or use bwrap",
                self.task_user.name or self.task_user.uid,
                os.path.realpath(sys.executable),
            )
        self.redactor = IdRedactor(cfg.redact_ids_from)
        if cfg.redact_ids_from:
            log.info(
                "task logs: %d sample ID(s) from %d file(s) are redacted",
                len(self.redactor.ids()),
                len(cfg.redact_ids_from),
            )

    # -- life cycle of the node -------------------------------------------------------------

    def recover(self) -> None:
        """After a crash: reap orphaned executors, end interrupted tasks, re-queue QUEUED ones.

        Under runtime slurm a task whose Slurm job is recorded is not ended: the node
        reattaches to the job (queued, running or ended meanwhile) and carries on.
        """
        jobs = self.store.jobs()
        for task_id, pgid, pstart in self.store.processes():
            if pstart is not None and _process_start(pgid) == pstart:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            self.store.set_process(task_id, pgid=None, pstart=None)
        for stored in self.store.in_states(
            [TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED]
        ):
            doc = stored.doc
            if stored.id in jobs and stored.state == TesState.RUNNING:
                if isinstance(self.runtime, SlurmRuntime):
                    self._reattach(stored.id, stored.owner, doc, *jobs[stored.id])
                    continue
                log.warning(
                    "task %s: its Slurm job %s is not watched by runtime %s; scancel it if it "
                    "still runs",
                    stored.id,
                    jobs[stored.id][0],
                    self.runtime.name,
                )
            self.store.set_job(stored.id, job=None, executor=None)
            self._end(doc, TesState.SYSTEM_ERROR, reason=RESTART_REASON)
            self.audit.record(
                caller="node", action="Recover", task=doc["id"], outcome=TesState.SYSTEM_ERROR
            )
            # Whatever survived the crash in the task's pids cgroup dies with it here.
            self.runtime.release(doc["id"])
            self._remove_task_dir(doc["id"])
        for stored in self.store.in_states([TesState.CANCELING]):
            if stored.id in jobs and isinstance(self.runtime, SlurmRuntime):
                self.runtime.cancel(jobs[stored.id][0])
                self.store.set_job(stored.id, job=None, executor=None)
            self._end(stored.doc, TesState.CANCELED)
            self._remove_task_dir(stored.doc["id"])
        for stored in self.store.in_states([TesState.QUEUED]):
            self._enqueue(stored.id, stored.owner, self._cores(stored.doc))
        self._pump()

    def _reattach(
        self, task_id: str, owner: str, doc: dict[str, Any], job: str, index: int
    ) -> None:
        """Watch a task's Slurm job again after a restart and go on from ``executors[index]``."""
        cores = self._cores(doc)
        self.cores_free -= cores
        active = _Active(doc, owner, cores, job=job)
        self._active[task_id] = active
        log.info("task %s: reattached to Slurm job %s (executors[%d])", task_id, job, index)
        self.audit.record(
            caller="node", action="Reattach", task=task_id, outcome=TesState.RUNNING, job=job
        )
        active.runner = asyncio.get_running_loop().create_task(
            self._run(active, resume=(job, index))
        )

    async def stop(self) -> None:
        """Kill running executors and record why; queued tasks stay queued for the next start.

        A task waiting for its Slurm job is left running: the job goes on without the node,
        and the next start reattaches to it (:meth:`recover`).
        """
        self._stopping = True
        for active in list(self._active.values()):
            if active.job is not None and active.runner is not None:
                active.detached = True
                active.runner.cancel()
                continue
            active.stopping = True
            self._kill(active)
        runners = [a.runner for a in self._active.values() if a.runner is not None]
        if runners:
            await asyncio.wait(runners, timeout=10)

    # -- requests -----------------------------------------------------------------------------

    def admit(self, owner: str) -> None:
        """Raise if ``owner`` may not queue another task now.

        Raises
        ------
        QueueFull
            The caller has ``max_queued_per_caller`` tasks waiting (HTTP 429).
        DiskFull
            Less than ``min_free_disk_mb`` is free under the state directory (HTTP 507).
        """
        waiting = len(self._queues.get(owner, ()))
        limit = self.cfg.max_queued_per_caller
        if waiting >= limit:
            raise QueueFull(
                f"this caller already has {waiting} tasks waiting, the node's "
                f"max_queued_per_caller is {limit}; retry when some have started."
            )
        problem = self._free_disk_problem()
        if problem is not None:
            raise DiskFull(problem)

    def submit(self, doc: dict[str, Any], *, owner: str) -> None:
        """Queue a freshly stored task of ``owner`` (its caller area)."""
        self._enqueue(doc["id"], owner, self._cores(doc))
        self._pump()

    def cancel(self, task_id: str) -> str:
        """Cancel a task; returns its state afterwards."""
        for queue in self._queues.values():
            for i, queued in enumerate(queue):
                if queued.task_id == task_id:
                    del queue[i]
                    stored = self.store.get(task_id)
                    if stored is not None:
                        self._end(stored.doc, TesState.CANCELED)
                    return TesState.CANCELED
        active = self._active.get(task_id)
        if active is not None:
            if not active.cancel:
                active.cancel = True
                active.doc["state"] = TesState.CANCELING
                self.store.save(active.doc)
                self._kill(active)
            return str(active.doc["state"])
        stored = self.store.get(task_id)
        return stored.state if stored else TesState.UNKNOWN

    @property
    def running_count(self) -> int:
        return len(self._active)

    # -- internals -----------------------------------------------------------------------------

    def _cores(self, doc: dict[str, Any]) -> int:
        wanted = (doc.get("resources") or {}).get("cpu_cores") or 1
        return max(1, min(int(wanted), self.cfg.node_cores))

    def _enqueue(self, task_id: str, owner: str, cores: int) -> None:
        self._queues.setdefault(owner, deque()).append(_Queued(next(self._seq), task_id, cores))

    def _next_owner(self) -> str | None:
        """The caller whose turn it is: the least recently served among those with a waiting
        task and below ``max_running_per_caller`` (ties: the earliest waiting task)."""
        limit = self.cfg.max_running_per_caller
        running = Counter(a.owner for a in self._active.values())
        eligible = [
            (self._last_served.get(owner, -1), queue[0].seq, owner)
            for owner, queue in self._queues.items()
            if queue and (limit is None or running[owner] < limit)
        ]
        return min(eligible)[2] if eligible else None

    def _pump(self) -> None:
        # Callers take turns; within a caller, FIFO. The task whose turn it is waits for its
        # cores (nothing overtakes it), so a large task is not starved by smaller ones.
        while not self._stopping:
            owner = self._next_owner()
            if owner is None:
                return
            queue = self._queues[owner]
            if queue[0].cores > self.cores_free:
                return
            queued = queue.popleft()
            if not queue:
                del self._queues[owner]
            stored = self.store.get(queued.task_id)
            if stored is None or stored.state != TesState.QUEUED:
                continue
            self._last_served[owner] = next(self._seq)
            self.cores_free -= queued.cores
            active = _Active(stored.doc, stored.owner, queued.cores)
            self._active[queued.task_id] = active
            active.runner = asyncio.get_running_loop().create_task(self._run(active))

    async def _run(self, active: _Active, resume: tuple[str, int] | None = None) -> None:
        doc = active.doc
        try:
            await self._execute(active, resume)
        except asyncio.CancelledError:
            if not active.detached:
                raise
        except Exception as exc:
            # Any unexpected failure still ends the task with a reason instead of leaving it.
            if is_disk_full(exc):
                reason = f"the node's disk is full ({exc}); the task was stopped"
                log.error("task %s: %s", doc["id"], reason)
            else:
                log.exception("task %s failed inside the node", doc["id"])
                reason = f"node error: {type(exc).__name__}: {exc}"
            self._end(doc, TesState.SYSTEM_ERROR, reason=reason, save=False)
        finally:
            if active.detached:
                # The node stops; the task stays RUNNING with its job for the next start.
                self._active.pop(doc["id"], None)
            else:
                await self._finish(active)

    async def _finish(self, active: _Active) -> None:
        """Remove the task's scratch, record its end and make its final state visible."""
        doc = active.doc
        try:
            # Scratch goes first: on a full disk it is what frees the space for the rest.
            await asyncio.to_thread(self._remove_task_dir, doc["id"])
            # The reason (timeout, size cap, airlock...) goes into the audit trail too.
            reasons = (doc.get("logs") or [{}])[-1].get("system_logs") or [None]
            self.audit.record(
                caller=active.owner,
                action="TaskEnded",
                task=doc["id"],
                outcome=doc["state"],
                reason=reasons[-1],
            )
            # Provenance (issue 6) is in the task log before the final state is visible.
            await asyncio.to_thread(
                task_provenance,
                self.cfg,
                doc,
                owner=active.owner,
                entries=self.audit.pop_task_entries(doc["id"]),
                locate=functools.partial(self._locate, owner=active.owner),
            )
        except OSError as exc:
            # A full disk must not leave the task RUNNING: record what we can, go on.
            log.error("task %s: audit/provenance not written: %s", doc["id"], exc)
        finally:
            self.cores_free += active.cores
            self._active.pop(doc["id"], None)
            # The final state becomes visible only now: a caller that sees it finds the
            # scratch directory gone and the task's cores free.
            self._save_final(doc)
            self._pump()

    def _save_final(self, doc: dict[str, Any]) -> None:
        """Store a task's final state; on a full disk keep retrying until it is stored."""
        try:
            self.store.save(doc)
        except (OSError, sqlite3.Error) as exc:
            log.error("task %s: final state not stored yet (%s); retrying", doc["id"], exc)
            first = doc["id"] not in self._unsaved
            self._unsaved[doc["id"]] = doc
            if first:
                asyncio.get_running_loop().call_later(1.0, self._retry_save, doc["id"])
        else:
            self._unsaved.pop(doc["id"], None)

    def _retry_save(self, task_id: str) -> None:
        doc = self._unsaved.pop(task_id, None)
        if doc is not None and not self._stopping:
            self._save_final(doc)

    async def _execute(self, active: _Active, resume: tuple[str, int] | None = None) -> None:
        """Stage, run the executors, check and publish the outputs.

        ``resume``: (Slurm job, executor index) of a task reattached after a restart; its
        directory is staged already and that executor's job is running or has ended.
        """
        doc = active.doc
        if resume is None:
            # Warnings recorded at submission (unsupported backend_parameters) stay in the log.
            warnings = [w for log in doc.get("logs") or [] for w in log.get("system_logs") or []]
            task_log: dict[str, Any] = {
                "logs": [],
                "outputs": [],
                "start_time": now_rfc3339(),
                "metadata": {"node_id": self.cfg.node_id, "runtime": self.runtime.name},
                "system_logs": warnings,
            }
            doc["logs"] = [task_log]
            doc["state"] = TesState.INITIALIZING
            self.store.save(doc)
        else:
            task_log = doc["logs"][-1]
        try:
            if resume is None:
                layout = await asyncio.to_thread(self._prepare, doc, active.owner)
            else:
                layout = await asyncio.to_thread(self._staged_layout, doc)
            active.sample_sets = await asyncio.to_thread(self._sample_sets, doc, active.owner)
        except (FedgenError, OSError, ValueError) as exc:
            if resume is not None and active.job is not None:
                self._kill(active)  # the job cannot be followed up: do not leave it running
            self._end(doc, TesState.SYSTEM_ERROR, reason=str(exc), save=False)
            return
        if self._interrupted(active):
            return
        # What the task was granted: cores (container engines), memory (a memory cgroup or
        # the engine) and scratch disk (RLIMIT_FSIZE per file, the watchdog for the total).
        layout = dataclasses.replace(
            layout,
            cpus=active.cores,
            memory_bytes=_limit_bytes(doc, "ram_gb", self.cfg.max_task_ram_gb, floor=64 * 2**20),
            disk_bytes=_limit_bytes(doc, "disk_gb", self.cfg.max_task_disk_gb, floor=10**6),
        )
        doc["state"] = TesState.RUNNING
        self.store.save(doc)
        loop = asyncio.get_running_loop()
        deadline = None
        if self.cfg.max_task_seconds:
            # A reattached task keeps the deadline it started with.
            elapsed = _seconds_since(task_log.get("start_time"))
            deadline = loop.time() + self.cfg.max_task_seconds - elapsed
        watchdog = loop.create_task(self._watch_disk(active, layout))
        try:
            for index, executor in enumerate(doc["executors"]):
                job = None
                if resume is not None:
                    if index < resume[1]:
                        continue
                    job = resume[0] if index == resume[1] else None
                try:
                    exit_code = await self._run_executor(
                        active, index, executor, layout, deadline, job=job
                    )
                except FedgenError as exc:
                    self._end(
                        doc, TesState.SYSTEM_ERROR, reason=f"executors[{index}]: {exc}", save=False
                    )
                    return
                if active.resource_error is None:
                    # A file stopped at the size limit ends the executor before the watchdog
                    # looks again: check now.
                    active.resource_error = await asyncio.to_thread(self._disk_problem, layout)
                if self._interrupted(active):
                    return
                if exit_code != 0 and not executor.get("ignore_error", False):
                    self._end(doc, TesState.EXECUTOR_ERROR, save=False)
                    return
        finally:
            watchdog.cancel()
        try:
            release = await asyncio.to_thread(self._check_outputs, active, layout)
            review = bool(release.staged) and self.cfg.release == "review"
            if review and not await self._await_review(active, release):
                return
            task_log["outputs"], hashes = await asyncio.to_thread(
                self._upload, active, layout, release
            )
            if hashes:
                # sha256 of every published file by container path (TES has no field for it):
                # the coordinator checks downloads and records references with them.
                task_log["metadata"][OUTPUT_SHA256_KEY] = json.dumps(hashes, sort_keys=True)
        except FedgenError as exc:
            self._end(doc, TesState.SYSTEM_ERROR, reason=str(exc), save=False)
            return
        if self._interrupted(active):
            return
        self._end(doc, TesState.COMPLETE, save=False)

    async def _await_review(self, active: _Active, release: _Release) -> bool:
        """Hold the task's egress until the steward decides (``fedgen node release``).

        The task is PAUSED and gives its cores back meanwhile. True: approved, publish. False:
        the task ended here (denied: SYSTEM_ERROR with the steward's reason, the files go to
        quarantine; canceled; node stopped).
        """
        doc = active.doc
        egress_root = self.cfg.egress_root
        assert egress_root is not None  # egress is empty without an egress root
        files = [
            {
                "file": st.container_path,
                "egress_path": str(st.dest.relative_to(egress_root)),
                "kind": release.decisions[st.dest].kind,
                "size": release.decisions[st.dest].size,
                "sha256": release.decisions[st.dest].sha256,
                "copy": str(st.source),
            }
            for st in release.staged.values()
        ]
        self.store.add_release(doc["id"], owner=active.owner, created=now_rfc3339(), files=files)
        self.audit.record(
            caller=active.owner, action="ReleaseHeld", task=doc["id"], outcome="pending"
        )
        doc["state"] = TesState.PAUSED
        doc["logs"][-1].setdefault("system_logs", []).append(REVIEW_REASON)
        self.store.save(doc)
        self.cores_free += active.cores
        active.cores = 0
        self._pump()
        try:
            while True:
                if self._interrupted(active):
                    return False
                held = self.store.release(doc["id"])
                if held is not None and held.state in ("approved", "denied"):
                    self.audit.record(
                        caller=active.owner,
                        action="ReleaseDecided",
                        task=doc["id"],
                        outcome=held.state,
                        by=held.decided_by,
                        reason=held.reason,
                    )
                if held is not None and held.state == "approved":
                    doc["state"] = TesState.RUNNING
                    self.store.save(doc)
                    return True
                if held is not None and held.state == "denied":
                    qdir = self._quarantine(active, list(release.staged.values()))
                    self._end(
                        doc,
                        TesState.SYSTEM_ERROR,
                        reason=f"release denied by the site's steward: {held.reason or 'no reason'}"
                        f"; nothing was published (files kept in quarantine at {qdir})",
                        save=False,
                    )
                    return False
                await asyncio.sleep(self.cfg.review_poll_seconds)
        finally:
            self.store.decide_release(
                doc["id"], state="ended", reason=None, by=None, when=now_rfc3339()
            )

    def _interrupted(self, active: _Active) -> bool:
        """End the task if it was canceled, stopped, timed out or over a limit; True if so."""
        if active.cancel:
            self._end(active.doc, TesState.CANCELED, reason="canceled by the caller", save=False)
        elif active.resource_error is not None:
            self._end(active.doc, TesState.SYSTEM_ERROR, reason=active.resource_error, save=False)
        elif active.stopping:
            self._end(active.doc, TesState.SYSTEM_ERROR, reason=STOP_REASON, save=False)
        elif active.timed_out:
            self._end(
                active.doc,
                TesState.SYSTEM_ERROR,
                reason=f"task exceeded max_task_seconds={self.cfg.max_task_seconds:g} "
                "and was killed",
                save=False,
            )
        else:
            return False
        return True

    def _end(
        self, doc: dict[str, Any], state: TesState, *, reason: str | None = None, save: bool = True
    ) -> None:
        """Put ``doc`` in its final state; ``save=False`` leaves storing it to the caller."""
        doc["state"] = state
        if not doc.get("logs"):
            doc["logs"] = [{"logs": [], "outputs": [], "system_logs": []}]
        task_log = doc["logs"][-1]
        task_log["end_time"] = now_rfc3339()
        if reason:
            task_log.setdefault("system_logs", []).append(reason)
        if save:
            self.store.save(doc)

    async def _run_executor(
        self,
        active: _Active,
        index: int,
        executor: dict[str, Any],
        layout: TaskLayout,
        deadline: float | None,
        *,
        job: str | None = None,
    ) -> int:
        if isinstance(self.runtime, SlurmRuntime):
            return await self._run_job(active, index, executor, layout, deadline, job=job)
        doc = active.doc
        task_dir = self.cfg.tasks_dir / doc["id"]
        launch = self.runtime.launch(executor, layout, task_id=doc["id"])
        # The executor's log entry is visible from its start (exit_code -1 until it ends).
        exec_log: dict[str, Any] = {"start_time": now_rfc3339(), "exit_code": -1}
        doc["logs"][-1]["logs"].append(exec_log)
        self.store.save(doc)
        fds: list[int] = []
        try:
            try:
                fin, fout, ferr = self._stdio(executor, index, layout, task_dir, fds)
            except paths.MissingTaskPath as exc:
                # Like a shell's "cmd < missing": the executor fails (ignore_error may go on).
                return self._failed_to_start(doc, exec_log, 1, str(exc))
            try:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=launch.cwd,
                    env=launch.env,
                    start_new_session=True,
                )
            except OSError as exc:
                # A missing or non-executable command (runtime host) fails the executor with
                # the shell's exit code, as it does inside bwrap or a container.
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                return self._failed_to_start(
                    doc, exec_log, code, f"{launch.argv[0]}: {exc.strerror or exc}"
                )
            os.close(fin)
            fds.remove(fin)
            active.proc = proc
            self.store.set_process(doc["id"], pgid=proc.pid, pstart=_process_start(proc.pid))
            if active.cancel or active.stopping:
                self._kill(active)
            try:
                timeout = (
                    None
                    if deadline is None
                    else max(0.0, deadline - asyncio.get_running_loop().time())
                )
                try:
                    rc = await asyncio.wait_for(proc.wait(), timeout)
                except TimeoutError:
                    active.timed_out = True
                    self._kill(active)
                    rc = await proc.wait()
            finally:
                # Reap anything the command left behind in its process group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if active.resource_error is None and self.runtime.memory_exceeded(doc["id"]):
                    active.resource_error = (
                        f"executors[{index}] exceeded the task's memory limit of "
                        f"{layout.memory_bytes} bytes (resources.ram_gb, at most the node's "
                        "max_task_ram_gb) and was killed by the kernel; ask for more ram_gb"
                    )
                await asyncio.to_thread(self.runtime.release, doc["id"])
                active.proc = None
                self.store.set_process(doc["id"], pgid=None, pstart=None)
            exec_log["end_time"] = now_rfc3339()
            exec_log["exit_code"] = rc if rc >= 0 else 128 - rc
            # The tails come from the node's own descriptors, never from re-opening a path the
            # task may have replaced meanwhile. Task logs go back to the caller: no sample ID
            # of this site may be in them.
            limit = self.cfg.log_tail_bytes
            exec_log["stdout"] = self.redactor.redact(paths.tail(fout, limit))
            exec_log["stderr"] = self.redactor.redact(paths.tail(ferr, limit))
        finally:
            for fd in fds:
                os.close(fd)
        self.store.save(doc)
        return int(exec_log["exit_code"])

    async def _run_job(
        self,
        active: _Active,
        index: int,
        executor: dict[str, Any],
        layout: TaskLayout,
        deadline: float | None,
        *,
        job: str | None,
    ) -> int:
        """Run one executor as a Slurm job (``job``: one submitted before a restart)."""
        assert isinstance(self.runtime, SlurmRuntime)
        doc = active.doc
        task_dir = self.cfg.tasks_dir / doc["id"]
        shared = bool(executor.get("stdout")) and executor.get("stdout") == executor.get("stderr")
        files = JobFiles.of(task_dir, index, shared_output=shared)
        if job is None:
            exec_log: dict[str, Any] = {"start_time": now_rfc3339(), "exit_code": -1}
            doc["logs"][-1]["logs"].append(exec_log)
            self.store.save(doc)
            try:
                await asyncio.to_thread(self._copy_stdin, executor, layout, files)
            except paths.MissingTaskPath as exc:
                return self._failed_to_start(doc, exec_log, 1, str(exc))
            # The task's stdout/stderr files exist from the start, as for a local executor.
            await asyncio.to_thread(self._deliver_stdio, executor, layout, None)
            job = await asyncio.to_thread(
                self.runtime.submit,
                executor,
                layout,
                task_id=doc["id"],
                index=index,
                files=files,
                minutes=job_minutes(doc, self.cfg.max_task_seconds),
            )
            active.job = job
            self.store.set_job(doc["id"], job=job, executor=index)
            if active.cancel or active.stopping or active.resource_error:
                self._kill(active)
        else:
            exec_log = doc["logs"][-1]["logs"][index]
        loop = asyncio.get_running_loop()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            end = await asyncio.wait_for(self.runtime.wait(job, files), timeout)
        except TimeoutError:
            active.timed_out = True
            self._kill(active)
            end = await self.runtime.wait(job, files)
        active.job = None
        self.store.set_job(doc["id"], job=None, executor=None)
        stopped = active.cancel or active.timed_out or active.resource_error is not None
        if end.exit_code is None and not stopped:
            active.resource_error = f"executors[{index}]: {end.reason}"
        exec_log["end_time"] = now_rfc3339()
        exec_log["exit_code"] = end.exit_code if end.exit_code is not None else 128 + 9
        await asyncio.to_thread(self._deliver_stdio, executor, layout, files)
        limit = self.cfg.log_tail_bytes
        for key, path in (("stdout", files.stdout), ("stderr", files.stderr)):
            exec_log[key] = self.redactor.redact(_private_tail(path, limit))
        self.store.save(doc)
        return int(exec_log["exit_code"])

    def _copy_stdin(self, executor: dict[str, Any], layout: TaskLayout, files: JobFiles) -> None:
        """Copy the executor's stdin (opened safely in the task) to the job's private file."""
        fd = os.open(
            files.stdin, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with os.fdopen(fd, "wb") as sink:
            if not executor.get("stdin"):
                return
            src = self._open_stdin(executor, layout)
            with os.fdopen(src, "rb") as source:
                shutil.copyfileobj(source, sink)

    def _deliver_stdio(
        self, executor: dict[str, Any], layout: TaskLayout, files: JobFiles | None
    ) -> None:
        """Copy the job's private stdout/stderr to the executor's paths in the task, created
        beneath its root without following symlinks (StorageError if the task planted one);
        ``files`` None: create them empty."""
        user = self.task_user
        owner = (user.uid, user.gid) if user is not None else None
        delivered: set[str] = set()
        for key in ("stdout", "stderr"):
            path = executor.get(key)
            if not path or path in delivered:
                continue
            delivered.add(path)
            fd = paths.create_file(layout.root, path, owner=owner, what=f"{key} {path}:")
            with os.fdopen(fd, "wb") as sink:
                if files is None:
                    continue
                private = files.stdout if key == "stdout" else files.stderr
                with contextlib.suppress(FileNotFoundError):
                    src = os.open(private, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(src, "rb") as source:
                        shutil.copyfileobj(source, sink)

    def _open_stdin(self, executor: dict[str, Any], layout: TaskLayout) -> int:
        """An fd of the executor's stdin as the task sees it: a file input bound read-only at
        that path (or inside a bound folder) is read from the input itself, which the node
        checked against its storage roots when it staged the task; any other path beneath the
        task root, without following symlinks."""
        wanted = "/" + str(executor["stdin"]).strip("/")
        what = f"stdin {executor['stdin']}:"
        for host, container in layout.binds:
            mount = "/" + container.strip("/")
            if wanted == mount and host.is_file():
                return os.open(host, os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
            if wanted.startswith(mount + "/") and host.is_dir():
                return paths.open_file(host, wanted[len(mount) + 1 :], what=what)
        user = self.task_user
        return paths.open_file(
            layout.root,
            executor["stdin"],
            owner_uid=user.uid if user is not None else None,
            what=what,
        )

    def _stdio(
        self,
        executor: dict[str, Any],
        index: int,
        layout: TaskLayout,
        task_dir: Path,
        fds: list[int],
    ) -> tuple[int, int, int]:
        """Open stdin/stdout/stderr of an executor (appended to ``fds``).

        Paths in the task are opened beneath its root without following symlinks (see
        :mod:`snakemake_fedgen.node.paths`); without a path, stdout/stderr go to the node's own
        files next to the task root, which no task can reach.
        """
        user = self.task_user
        owner = (user.uid, user.gid) if user is not None else None
        if executor.get("stdin"):
            fin = self._open_stdin(executor, layout)
        else:
            fin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        fds.append(fin)
        opened: dict[str, int] = {}
        out = []
        for key in ("stdout", "stderr"):
            path = executor.get(key)
            if path and path in opened:
                fd = os.dup(opened[path])
            elif path:
                fd = paths.create_file(layout.root, path, owner=owner, what=f"{key} {path}:")
                opened[path] = fd
            else:
                fd = os.open(
                    task_dir / f"executor-{index}.{key}",
                    os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
            fds.append(fd)
            out.append(fd)
        return fin, out[0], out[1]

    def _failed_to_start(
        self, doc: dict[str, Any], exec_log: dict[str, Any], code: int, message: str
    ) -> int:
        """Record an executor that could not start as ended with ``code`` and ``message``."""
        exec_log["end_time"] = now_rfc3339()
        exec_log["exit_code"] = code
        exec_log["stdout"] = ""
        exec_log["stderr"] = self.redactor.redact(message + "\n")
        self.store.save(doc)
        return code

    def _kill(self, active: _Active) -> None:
        if active.job is not None and isinstance(self.runtime, SlurmRuntime):
            self.runtime.cancel(active.job)
        if active.proc is not None and active.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(active.proc.pid, signal.SIGKILL)
            argv = self.runtime.kill_argv(active.doc["id"])
            if argv:
                with contextlib.suppress(OSError):
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )

    async def _watch_disk(self, active: _Active, layout: TaskLayout) -> None:
        """Stop the task when its scratch passes its quota or the node's disk runs low."""
        while active.resource_error is None:
            await asyncio.sleep(self.cfg.disk_check_seconds)
            problem = await asyncio.to_thread(self._disk_problem, layout)
            if problem is not None and active.resource_error is None:
                active.resource_error = problem
                self._kill(active)

    def _free_disk_problem(self) -> str | None:
        """Why the disk under the state directory is too full for tasks, or None."""
        floor = self.cfg.min_free_disk_mb * 1024**2
        try:
            st = os.statvfs(self.cfg.state_dir)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free >= floor:
            return None
        return (
            f"the disk under the node's state directory {self.cfg.state_dir} has {free} bytes "
            f"free, below min_free_disk_mb={self.cfg.min_free_disk_mb}; the site must free space"
        )

    def _disk_problem(self, layout: TaskLayout) -> str | None:
        """Why the task must stop for disk (quota passed, node disk low), or None."""
        low = self._free_disk_problem()
        if low is not None:
            return f"{low}; the task was stopped to keep the node working"
        quota = layout.disk_bytes
        if quota is None:
            return None
        used, largest = _disk_usage(layout.root.parent)
        if used <= quota and largest < quota:
            return None
        return (
            f"the task's scratch reached its disk quota of {quota} bytes (resources.disk_gb, "
            f"at most the node's max_task_disk_gb; {used} bytes in use) and the task was "
            "stopped; ask for more disk_gb"
        )

    # -- blocking file work (worker threads) ------------------------------------------------------

    def _prepare(self, doc: dict[str, Any], owner: str) -> TaskLayout:
        task_dir = self.cfg.tasks_dir / doc["id"]
        task_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        user = self.task_user
        if user is not None and not self.runtime.binds_inputs:
            # A host task runs as the task user, who must reach its directory by absolute
            # path, but not the state directory: its root and tmp live in a private directory
            # of the system temp dir (0711, the node's: the task cannot swap its root).
            scratch = Path(tempfile.mkdtemp(prefix=f"fedgen-task-{doc['id'][:8]}-"))
            (task_dir / HOST_TMP_RECORD).write_text(str(scratch))
            scratch.chmod(0o711)
        else:
            scratch = task_dir
        root = scratch / "root"
        tmp = scratch / "tmp"
        root.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        binds: list[tuple[Path, str]] = []
        for i, item in enumerate(doc.get("inputs") or []):
            dest = host_path(root, item["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            if item.get("content"):
                dest.write_text(item["content"])
                continue
            url = item["url"]
            if is_ingress_url(url):
                # A copy of the caller's own upload, hashed again, mode 0444: data only.
                if self.ingress is None:
                    raise StorageError(f"inputs[{i}] {url!r}: this node has no ingress.")
                digest = ingress_digest(url, what=f"inputs[{i}]")
                size = self.ingress.stage(owner, digest, dest)
                self.audit.record(
                    caller=owner,
                    action="IngressInput",
                    task=doc["id"],
                    outcome="staged",
                    sha256=digest,
                    bytes=size,
                    file=item["path"],
                )
                continue
            if url_scheme(url) in ("http", "https"):
                fetch_http(
                    url,
                    dest,
                    max_bytes=self.cfg.max_output_bytes,
                    allowed_hosts=self.cfg.allowed_input_hosts,
                )
                continue
            real = self.roots.input_path(
                url, kind=item.get("type", "FILE"), area=owner, what=f"inputs[{i}]"
            )
            if self.runtime.binds_inputs:
                # Bound read-only at its container path; the placeholder is the mount point.
                if real.is_dir():
                    dest.mkdir(exist_ok=True)
                else:
                    dest.touch()
                binds.append((real, item["path"]))
            elif real.is_dir():
                shutil.copytree(real, dest, dirs_exist_ok=True)
            else:
                shutil.copyfile(real, dest)
        for vol in doc.get("volumes") or []:
            host_path(root, vol).mkdir(parents=True, exist_ok=True)
        for ex in doc["executors"]:
            if ex.get("workdir") and ex["workdir"] != "/":
                host_path(root, ex["workdir"]).mkdir(parents=True, exist_ok=True)
            for key in ("stdout", "stderr"):
                if ex.get(key):
                    host_path(root, ex[key]).parent.mkdir(parents=True, exist_ok=True)
        for out in doc.get("outputs") or []:
            if has_wildcard(out["path"]):
                host_path(root, out["path_prefix"]).mkdir(parents=True, exist_ok=True)
            else:
                host_path(root, out["path"]).parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            # Nothing of the task has run yet: the tree holds only what the node made.
            paths.chown_tree(root, user.uid, user.gid)
            paths.chown_tree(tmp, user.uid, user.gid)
        if isinstance(self.runtime, SlurmRuntime):
            (task_dir / BINDS_RECORD).write_text(json.dumps([[str(h), c] for h, c in binds]))
        return TaskLayout(root=root, tmp=tmp, binds=tuple(binds), user=user)

    def _staged_layout(self, doc: dict[str, Any]) -> TaskLayout:
        """The layout of a task staged before a restart (runtime slurm; nothing is staged)."""
        task_dir = self.cfg.tasks_dir / doc["id"]
        record = task_dir / BINDS_RECORD
        if record.is_symlink() or not record.is_file():
            raise StorageError(f"the task directory {task_dir} was lost while the node was down")
        binds = tuple((Path(h), str(c)) for h, c in json.loads(record.read_text()))
        return TaskLayout(
            root=task_dir / "root", tmp=task_dir / "tmp", binds=binds, user=self.task_user
        )

    def _locate(self, url: str, *, owner: str) -> Path | None:
        """The host file a task URL names for ``owner`` (provenance hashes it)."""
        if url_scheme(url) != "file":
            return None
        return self.roots.physical(url, owner)

    def _check_outputs(self, active: _Active, layout: TaskLayout) -> _Release:
        """List the outputs, copy egress into the outbox, run the airlock, seal (Crypt4GH)."""
        doc = active.doc
        files = collect_outputs(
            doc.get("outputs") or [], task_root=layout.root, roots=self.roots, area=active.owner
        )
        limit = self.cfg.max_output_bytes
        total = sum(f.size for f in files)
        if total > limit:
            raise StorageError(
                f"outputs total {total} bytes, above the node's max_output_bytes {limit}."
            )
        staged = self._stage_egress(active, layout, [f for f in files if f.target.root.egress])
        decisions: dict[Path, AirlockDecision] = {}
        rounds: dict[Path, str] = {}
        if staged:
            decisions, rounds = self._airlock(active, list(staged.values()), layout)
            # Crypt4GH: accepted plaintext is encrypted for the coordinator before publication.
            decisions = seal_egress(
                list(staged.values()),
                decisions,
                cfg=self.cfg,
                doc=doc,
                record=functools.partial(self.audit.record, caller=active.owner, task=doc["id"]),
            )
        return _Release(files, staged, decisions, rounds)

    def _upload(
        self, active: _Active, layout: TaskLayout, release: _Release
    ) -> tuple[list[dict[str, str]], dict[str, str]]:
        """Publish checked outputs: egress from the outbox copies, the rest from the task.

        Returns the TES output logs and the sha256 of each published file by container path.
        """
        doc = active.doc
        files, staged, decisions, rounds = (
            release.files,
            release.staged,
            release.decisions,
            release.rounds,
        )
        limit = self.cfg.max_output_bytes
        owner_uid = self.task_user.uid if self.task_user is not None else None
        egress_root = self.cfg.egress_root
        sizes: list[int] = []
        hashes: dict[str, str] = {}
        copied = 0
        for f in files:
            if f.dest in staged:
                # Egress bytes must be exactly the bytes the airlock (and sealing) saw.
                publish(staged[f.dest].source, f.target, expect_sha256=decisions[f.dest].sha256)
                size, sha = decisions[f.dest].size, decisions[f.dest].sha256
            else:
                fd = open_output(layout.root, f, owner_uid=owner_uid)
                try:
                    sha, size = publish_fd(fd, f.target, max_bytes=limit - copied)
                finally:
                    os.close(fd)
            copied += size
            sizes.append(size)
            hashes[f.container_path] = sha
        kept = [str(f.dest) for f in files if f.dest not in staged]
        if kept:
            # What later tasks read from these files traces back to this task's sample sets.
            self.store.set_lineage(kept, active.sample_sets)
        for st in staged.values():
            d = decisions[st.dest]
            assert egress_root is not None  # egress is empty without an egress root
            self.store.add_published(
                str(st.dest.relative_to(egress_root)),
                owner=active.owner,
                task=doc["id"],
                sha256=d.sha256,
                size=d.size,
            )
            round_id = rounds.get(st.dest)
            if round_id is not None:
                self.store.add_secure_round(round_id, sha256=d.sha256, task=doc["id"])
        outputs = [
            {"url": f.url, "path": f.container_path, "size_bytes": str(size)}
            for f, size in zip(files, sizes, strict=True)
        ]
        return outputs, hashes

    def _stage_egress(
        self, active: _Active, layout: TaskLayout, files: list[OutputFile]
    ) -> dict[Path, _Staged]:
        """Copy egress files out of the task into the node's private outbox (by destination).

        The airlock, the encryption and the publication then work on bytes no task process
        can change or swap for a link any more.
        """
        if not files:
            return {}
        outbox = self.cfg.tasks_dir / active.doc["id"] / "outbox"
        outbox.mkdir(mode=0o700, exist_ok=True)
        owner_uid = self.task_user.uid if self.task_user is not None else None
        staged: dict[Path, _Staged] = {}
        budget = self.cfg.max_output_bytes
        for n, f in enumerate(files):
            copy = outbox / str(n)
            fd = open_output(layout.root, f, owner_uid=owner_uid)
            try:
                with open(copy, "xb") as sink:
                    os.lseek(fd, 0, os.SEEK_SET)
                    while chunk := os.read(fd, 1 << 20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise StorageError(
                                f"egress outputs grew above max_output_bytes "
                                f"{self.cfg.max_output_bytes} while they were copied."
                            )
                        sink.write(chunk)
            finally:
                os.close(fd)
            staged[f.dest] = _Staged(copy, f.dest, f.container_path, f.target)
        return staged

    def _airlock(
        self, active: _Active, egress: list[_Staged], layout: TaskLayout
    ) -> tuple[dict[Path, AirlockDecision], dict[Path, str]]:
        """Inspect every egress file; quarantine and raise if any is refused.

        Returns the decisions and, for masked secure-aggregation uploads, their round ids.
        """
        doc = active.doc
        decisions: dict[Path, AirlockDecision] = {}
        rounds: dict[Path, str] = {}
        refused = []
        policy = self._release_policy()
        for f in egress:
            noisy = self._add_noise(active, f, policy)
            rounded = self._round(active, f, policy)
            decision = inspect(f.source, self._plain_policy(active, f, policy), name=f.dest.name)
            if rounded is not None and decision.accepted:
                decision = dataclasses.replace(
                    decision,
                    reason=f"{decision.reason}; {rounded.changed} of the values in "
                    f"{rounded.rows} rows rounded to {rounded.digits} significant digits",
                )
            if noisy is not None and decision.accepted:
                assert self.privacy is not None
                decision = dataclasses.replace(
                    decision,
                    reason=f"{decision.reason}; differential privacy: epsilon "
                    f"{self.privacy.epsilon:g}, delta {self.privacy.delta:g}, {noisy.released} "
                    f"of {noisy.rows} rows released ({noisy.withheld_maf} withheld: noisy minor "
                    "allele frequency under min_maf or count under min_mac)",
                )
            round_id = None
            if decision.kind in ("aggregates", "sums"):
                round_id = _masked_round(f.source, decision.kind)
                if decision.accepted:
                    decision, round_id = self._secure_aggregation(
                        active, layout, f, decision, round_id, policy
                    )
            if decision.accepted and round_id is not None:
                rounds[f.dest] = round_id
                earlier = self.store.secure_round(round_id)
                if earlier is not None and earlier[0] != decision.sha256:
                    # Two different masked uploads under one round id: their difference has no
                    # mask left in it, so the coordinator would learn the change in this site's
                    # aggregates. The masking site's own ledger cannot see across workflow
                    # runs; the node can.
                    decision = dataclasses.replace(
                        decision,
                        accepted=False,
                        reason=(
                            f"{f.dest.name}: refused: secure-aggregation round {round_id!r} was "
                            f"already published by this site (task {earlier[1]}) with different "
                            "content; masks of one round must never be used twice. Rerun with a "
                            "new round id (exact.round)"
                        ),
                    )
            decisions[f.dest] = decision
            self.audit.record(
                caller=active.owner,
                action="Airlock",
                task=doc["id"],
                outcome="accepted" if decision.accepted else "refused",
                file=f.container_path,
                code=(doc.get("tags") or {}).get(CODE_TAG, "unapproved"),
                kind=decision.kind,
                accepted=decision.accepted,
                reason=decision.reason,
                sha256=decision.sha256,
                size=decision.size,
            )
            if not decision.accepted:
                refused.append((f, decision.reason))
        if not refused and egress:
            problem = self._ledger_problem(active)
            if problem is not None:
                self.audit.record(
                    caller=active.owner,
                    action="Ledger",
                    task=doc["id"],
                    outcome="refused",
                    reason=problem,
                )
                refused = [(f, problem) for f in egress]
        if refused:
            qdir = self._quarantine(active, [f for f, _reason in refused])
            detail = "; ".join(f"{f.container_path}: {reason}" for f, reason in refused)
            raise EgressRefused(
                f"airlock refused {len(refused)} egress file(s), kept in quarantine at "
                f"{qdir}; nothing was published. {detail}"
            )
        return decisions, rounds

    def _plain_policy(self, active: _Active, f: _Staged, policy: AirlockPolicy) -> AirlockPolicy:
        """The policy a file is checked by before release. Round sums the node will mask are
        checked without the small-cell rule on their counts: no single site's counts leave,
        only the sum over the round's participants can be read (n and the cases are still
        checked, as for masked aggregates)."""
        if self.masker is None or not f.dest.name.endswith(".sums.json"):
            return policy
        from snakemake_fedgen.exact.site_masking import mask_request

        try:
            request = mask_request(active.doc)
        except ConfigError:
            return policy
        round_of, kind_of, _ = _sums_labels(f.source)
        if request is None or round_of != request.round_id or kind_of in PLAIN_SUMS_KINDS:
            return policy
        return dataclasses.replace(policy, min_cell=1)

    def _secure_aggregation(
        self,
        active: _Active,
        layout: TaskLayout,
        f: _Staged,
        decision: AirlockDecision,
        round_id: str | None,
        policy: AirlockPolicy,
    ) -> tuple[AirlockDecision, str | None]:
        """Mask plain aggregates a task asked the node to mask; refuse task-made masked ones
        where the node masks. Returns the decision on what will be published and its round."""
        from snakemake_fedgen.exact.site_masking import mask_request

        def refuse(why: str) -> tuple[AirlockDecision, str | None]:
            reason = f"{f.dest.name}: refused: {why}"
            return dataclasses.replace(decision, accepted=False, reason=reason), None

        try:
            request = mask_request(active.doc)
        except ConfigError as exc:
            return refuse(str(exc))
        if round_id is not None:
            if self.masker is not None:
                return refuse(
                    "a masked upload made by the task; at this site the node masks (egress the "
                    "plain aggregates with the fedgen_mask_* backend_parameters)"
                )
            return decision, round_id
        if request is None:
            return decision, None
        if self.masker is None:
            return refuse(
                "the task asks the node to mask its aggregates, but this node has no "
                "secure_aggregation_key; ask the site's steward to configure it"
            )
        masked = f.source.with_name(f.source.name + ".masked")
        if decision.kind == "sums":
            from snakemake_fedgen.exact.sums import mask_sums_at_node  # numpy: this kind only

            round_of, kind_of, _ = _sums_labels(f.source)
            if kind_of in PLAIN_SUMS_KINDS:
                # A site's own report next to the round's sums: plain by design, checked on
                # its own numbers (as plain sums), and it leaves as it is.
                return decision, None
            if round_of != request.round_id:
                return refuse(
                    f"the task asked the node to mask round {request.round_id!r} but these "
                    f"sums are of round {round_of!r}; nothing is published unmasked"
                )
            try:
                count = mask_sums_at_node(self.masker, f.source, request, masked)
            except FedgenError as exc:
                masked.unlink(missing_ok=True)
                return refuse(f"cannot mask for round {request.round_id!r}: {exc}")
            return self._publish_masked(active, f, decision, request, masked, policy, count)
        if request.variants is None:
            return refuse(
                "an aggregates table is masked on a variant list: set fedgen_mask_variants"
            )
        variants = f.source.with_name(f.source.name + ".variants")
        owner_uid = self.task_user.uid if self.task_user is not None else None
        container_path = f"/fedgen/work/{request.variants}"
        given = [
            (i, item)
            for i, item in enumerate(active.doc.get("inputs") or [])
            if item.get("path") == container_path and item.get("url")
        ]
        try:
            if given:
                # An input (bound read-only into the sandbox): read it where the node found it.
                i, item = given[0]
                real = self.roots.input_path(
                    item["url"], kind="FILE", area=active.owner, what=f"inputs[{i}]"
                )
                shutil.copyfile(real, variants)
            else:
                fd = paths.open_file(
                    layout.root,
                    container_path.lstrip("/"),
                    owner_uid=owner_uid,
                    what="fedgen_mask_variants",
                )
                with os.fdopen(fd, "rb") as src, open(variants, "xb") as sink:
                    shutil.copyfileobj(src, sink)
            count = self.masker.mask(f.source, variants, request, masked)
        except FedgenError as exc:
            return refuse(f"cannot mask for round {request.round_id!r}: {exc}")
        finally:
            variants.unlink(missing_ok=True)
        return self._publish_masked(active, f, decision, request, masked, policy, count)

    def _publish_masked(
        self,
        active: _Active,
        f: _Staged,
        decision: AirlockDecision,
        request: MaskRequest,
        masked: Path,
        policy: AirlockPolicy,
        count: int,
    ) -> tuple[AirlockDecision, str | None]:
        """Put the node's masked file in place of the plain one and check it again."""
        os.replace(masked, f.source)
        checked = inspect(
            f.source, dataclasses.replace(policy, secure_aggregation=True), name=f.dest.name
        )
        self.audit.record(
            caller=active.owner,
            action="Masked",
            task=active.doc["id"],
            outcome="masked" if checked.accepted else "refused",
            file=f.container_path,
            round=request.round_id,
            participants=",".join(request.participants),
            variants=count,
        )
        if checked.accepted:
            checked = dataclasses.replace(
                checked,
                reason=f"{decision.reason}; masked by the node for round {request.round_id} "
                f"({count} {'entries' if decision.kind == 'sums' else 'variants'}, "
                f"participants {','.join(request.participants)})",
            )
        return checked, request.round_id if checked.accepted else None

    def _sample_sets(self, doc: dict[str, Any], owner: str) -> frozenset[str]:
        """Registered sample sets the task reads: keep files among its inputs (checked against
        their registered content) and the sets earlier tasks wrote its area inputs from."""
        registered = sample_sets(self.cfg.state_dir)
        found: set[str] = set()
        for i, item in enumerate(doc.get("inputs") or []):
            url = item.get("url")
            if item.get("content") or not url or url_scheme(url) != "file":
                continue
            real = self.roots.input_path(
                url, kind=item.get("type", "FILE"), area=owner, what=f"inputs[{i}]"
            )
            entry = registered.get(str(real))
            if entry is not None:
                if sha256_file(real) != entry.sha256:
                    raise StorageError(
                        f"inputs[{i}]: sample set {entry.name}'s file {real} changed since it was "
                        "registered; the steward registers it again (fedgen node dataset "
                        "sample-set)."
                    )
                found.add(entry.name)
            found.update(self.store.lineage(str(real)))
        return frozenset(found)

    def _ledger_problem(self, active: _Active) -> str | None:
        """Why this task's release would single out samples (differencing), or None.

        Records the release in the ledger when it may go.
        """
        names = active.sample_sets
        required = self.cfg.sample_sets == "required"
        if not names:
            if required:
                return (
                    "this site releases results only from a registered sample set, and the "
                    "task's inputs trace back to none; run the study on a set the site "
                    "registered (fedgen node dataset sample-set)"
                )
            return None
        if len(names) > 1:
            return (
                f"the task's inputs trace back to several sample sets ({', '.join(sorted(names))});"
                " a release comes from exactly one"
            )
        by_name = {e.name: e for e in sample_sets(self.cfg.state_dir).values()}
        entry = by_name.get(next(iter(names)))
        if entry is None:
            return f"sample set {next(iter(names))} is no longer registered at this site"
        floor = self.cfg.min_set_difference
        for other, members, task, released in self.store.ledger(entry.dataset):
            diff = set_difference(entry.members, members)
            if 0 < diff < floor:
                return (
                    f"sample set {entry.name} differs from sample set {other} (released by task "
                    f"{task} at {released}) by {diff} sample(s); this site needs at least "
                    f"min_set_difference={floor}, or the two releases would single them out"
                )
        self.store.add_ledger(
            entry.dataset,
            entry.name,
            entry.members,
            task=active.doc["id"],
            released=now_rfc3339(),
        )
        return None

    def _release_policy(self) -> AirlockPolicy:
        """The airlock policy with the registered datasets' facts, reloaded when they change."""
        stamp = facts_stamp(self.cfg.state_dir)
        if stamp != self._facts_stamp:
            facts = load_facts(self.cfg.state_dir)
            self.policy = dataclasses.replace(self.policy, facts=facts)
            self._facts_stamp = stamp
            if facts is not None:
                log.info("release checks on registered datasets: %s", facts.describe())
        return self.policy

    def _add_noise(self, active: _Active, f: _Staged, policy: AirlockPolicy) -> DpRelease | None:
        """Differential privacy: noise a summary-statistics egress copy in place and charge
        the release to every registered dataset's budget (EgressRefused when one is spent)."""
        settings = self.privacy
        if settings is None:
            return None
        import numpy as np  # scipy and numpy: only at a node that adds noise

        from snakemake_fedgen.egress.privacy import basic_composition

        datasets = [d.name for d in policy.facts.datasets] if policy.facts else ["site"]
        for name in datasets:
            eps, delta = basic_composition(self.store.privacy_spent(name))
            if (
                eps + settings.epsilon > settings.total_epsilon + 1e-12
                or delta + settings.delta > settings.total_delta + 1e-18
            ):
                raise EgressRefused(
                    f"{f.dest.name}: the privacy budget of dataset {name} is spent (epsilon "
                    f"{eps:g} of {settings.total_epsilon:g}, delta {delta:g} of "
                    f"{settings.total_delta:g} used); nothing was published. The steward "
                    "decides whether to grant more (differential_privacy in node.yaml)"
                )
        tmp = f.source.with_name(f.source.name + ".noisy")
        rng = np.random.default_rng(secrets.randbits(128))
        report = privatise_sumstats(
            f.source, tmp, settings=settings, name=f.dest.name, rng=rng, min_mac=policy.min_mac
        )
        if report is None:
            return None
        os.replace(tmp, f.source)
        for name in datasets:
            self.store.spend_privacy(
                name,
                settings.epsilon,
                settings.delta,
                task=active.doc["id"],
                released=now_rfc3339(),
            )
        self.audit.record(
            caller=active.owner,
            action="Privacy",
            task=active.doc["id"],
            outcome="noised",
            file=f.container_path,
            epsilon=settings.epsilon,
            delta=settings.delta,
            datasets=",".join(datasets),
            rows=report.rows,
            released=report.released,
            withheld_maf=report.withheld_maf,
        )
        return report

    def _round(self, active: _Active, f: _Staged, policy: AirlockPolicy) -> Rounded | None:
        """Round the numbers of a summary-statistics egress copy in place (before the airlock)."""
        tmp = f.source.with_name(f.source.name + ".rounded")
        rounded = round_sumstats(
            f.source,
            tmp,
            digits=policy.digits,
            name=f.dest.name,
            max_bytes=self.cfg.max_output_bytes,
            min_mac=policy.min_mac,
        )
        if rounded is None:
            return None
        os.replace(tmp, f.source)
        self.audit.record(
            caller=active.owner,
            action="Rounded",
            task=active.doc["id"],
            outcome="rewritten",
            file=f.container_path,
            rows=rounded.rows,
            changed=rounded.changed,
            digits=rounded.digits,
        )
        return rounded

    def _quarantine(self, active: _Active, files: list[_Staged]) -> Path:
        """Move egress copies into the caller's quarantine; returns the task's directory."""
        # Quarantine is per caller, like everything else a caller's tasks write.
        assert self.cfg.quarantine_dir is not None  # set by load_config (default STATE/quarantine)
        area_dir = self.cfg.quarantine_dir / active.owner
        area_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        qdir: Path = area_dir / str(active.doc["id"])
        for f in files:
            target = qdir / f.container_path.lstrip("/")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.move(str(f.source), target)
        return qdir

    def _remove_task_dir(self, task_id: str) -> None:
        # shutil.rmtree removes symlinks, never what they point at (fd-based on Linux).
        task_dir = self.cfg.tasks_dir / task_id
        record = task_dir / HOST_TMP_RECORD
        if record.is_file() and not record.is_symlink():
            host_tmp = Path(record.read_text().strip())
            if host_tmp.name.startswith("fedgen-task-"):
                shutil.rmtree(host_tmp, ignore_errors=True)
        shutil.rmtree(task_dir, ignore_errors=True)


def _harden(cfg: NodeConfig, user: TaskUser | None) -> None:
    """Close the state directory, quarantine and token file to everyone but the node.

    Tasks never see them inside the sandbox; this keeps them out of reach of a host task run as
    the task user (and of other local users) too.
    """
    euid = os.geteuid()
    for directory in (cfg.state_dir, cfg.tasks_dir, cfg.quarantine_dir):
        if directory is None:
            continue
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
        if st.st_uid == euid and st.st_mode & 0o077:
            directory.chmod(0o700)
    token = cfg.token_file
    if token is None:
        return
    st = token.stat()
    readable = st.st_mode & 0o004 or (
        user is not None and st.st_mode & 0o040 and st.st_gid == user.gid
    )
    if st.st_uid == euid:
        if st.st_mode & 0o077:
            if readable:
                log.warning("token_file %s was readable by others; it is now mode 600", token)
            token.chmod(0o600)
    elif readable:
        raise ConfigError(
            f"token_file {token} can be read by other users or the task user (mode "
            f"{st.st_mode & 0o777:o}); chmod 600 it."
        )


def _limit_bytes(doc: dict[str, Any], key: str, cap_gb: float | None, *, floor: int) -> int | None:
    """``resources[key]`` (GB, 1 GB = 10**9 bytes) in bytes, at most ``cap_gb``; the cap when
    the task asks for nothing; None when neither is set. At least ``floor`` bytes."""
    given = (doc.get("resources") or {}).get(key)
    wanted = None
    if isinstance(given, int | float) and not isinstance(given, bool):
        wanted = float(given) if math.isfinite(given) and given > 0 else None
    if wanted is None:
        gb = cap_gb
    elif cap_gb is None:
        gb = wanted
    else:
        gb = min(wanted, cap_gb)
    return None if gb is None else max(int(gb * 10**9), floor)


def _disk_usage(top: Path) -> tuple[int, int]:
    """(bytes allocated under ``top``, size of its largest file); links are not followed."""
    used = largest = 0
    stack = [str(top)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    used += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        largest = max(largest, st.st_size)
    return used, largest


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a full disk raises (ENOSPC/EDQUOT, SQLite's "disk is full")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _seconds_since(stamp: object) -> float:
    """Seconds since an RFC 3339 time stamp of the node's (0 when there is none)."""
    if not isinstance(stamp, str):
        return 0.0
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def _private_tail(path: Path, limit: int) -> str:
    """The tail of a node-private file (never through a symlink); "" when it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return paths.tail(fd, limit)
    finally:
        os.close(fd)


def _process_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a process, to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


__all__ = ["RESTART_REASON", "Scheduler", "is_disk_full"]


#: Sums kinds that are plain by design (a site's own metrics): never masked by the node.
PLAIN_SUMS_KINDS = frozenset({"risk-eval-site"})


def _sums_labels(path: Path) -> tuple[str | None, str | None, bool]:
    """The round id, the kind and whether it is masked, of a ``fedgen-sums/1`` file (None,
    None, False where unreadable)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None, None, False
    if not isinstance(doc, dict):
        return None, None, False
    return str(doc.get("round")), str(doc.get("kind")), "masked" in doc


def _masked_round(path: Path, kind: str) -> str | None:
    """The round id of a masked upload of ``kind`` (aggregates or sums); None if plain."""
    if kind == "sums":
        round_of, _, masked = _sums_labels(path)
        return round_of if masked else None
    from snakemake_fedgen.exact.secure import masked_round  # numpy: this kind only

    return masked_round(path)
