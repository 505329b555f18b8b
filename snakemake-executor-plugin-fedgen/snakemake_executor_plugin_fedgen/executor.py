"""The ``fedgen`` Snakemake executor: site jobs go to their site's GA4GH TES endpoint.

This module only wires Snakemake's executor interface to the focused modules: task building
(:mod:`.tasks`), staging of inputs/outputs (:mod:`.staging`), batched status (:mod:`.status`),
resume (:mod:`.resume`) and the TES package (:mod:`.tes`: models, states, tags, client).
"""

import asyncio
import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import (
    CommonSettings,
    ExecutorSettingsBase,
)

from snakemake_executor_plugin_fedgen import staging, tasks
from snakemake_executor_plugin_fedgen.crypt import PRIVATE_KEY_ENV
from snakemake_executor_plugin_fedgen.duo import executor_gate
from snakemake_executor_plugin_fedgen.errors import FedgenError, TesError
from snakemake_executor_plugin_fedgen.resume import ResumeIndex
from snakemake_executor_plugin_fedgen.sites import load_registry
from snakemake_executor_plugin_fedgen.status import AdaptiveInterval, SiteProgress, StatusPoller
from snakemake_executor_plugin_fedgen.tes.client import BUSY_STATUSES, DEFAULT_MAX_PAGES, TesClient
from snakemake_executor_plugin_fedgen.tes.models import TesTask, TesTaskLog
from snakemake_executor_plugin_fedgen.tes.states import FAILED_STATES, LIVE_STATES, TesState
from snakemake_executor_plugin_fedgen.tes.tags import RULE_TAG

common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=True,
    job_deploy_sources=False,
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    can_transfer_local_files=True,
)


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    sites: Optional[str] = field(
        default=None,
        metadata={
            "help": "Path to the site registry (sites.yaml) naming each site's TES endpoint.",
            "env_var": True,
        },
    )
    run_id: Optional[str] = field(
        default=None,
        metadata={
            "help": "Tag identifying this analysis at the sites (default: derived from the "
            "working directory, so a rerun after a crash finds its tasks again)."
        },
    )
    poll_interval_min: float = field(
        default=0.25,
        metadata={"help": "Seconds between status polls while jobs are finishing."},
    )
    poll_interval_max: float = field(
        default=10.0,
        metadata={"help": "Largest seconds between status polls when nothing changes."},
    )
    site_deadline: float = field(
        default=600.0,
        metadata={
            "help": "Seconds a site may stay unreachable before its jobs fail (naming the site)."
        },
    )
    request_timeout: float = field(
        default=30.0, metadata={"help": "Seconds per HTTP request to a TES endpoint."}
    )
    max_attempts: int = field(
        default=5,
        metadata={"help": "Attempts per request on HTTP 5xx, connection resets and timeouts."},
    )
    max_list_pages: int = field(
        default=DEFAULT_MAX_PAGES,
        metadata={
            "help": "Most ListTasks pages followed per site and poll; a node paging beyond it "
            "(or repeating a page token) fails that site's jobs with an error naming it."
        },
    )
    crypt4gh_key: Optional[str] = field(
        default=None,
        metadata={
            "help": "The coordinator's Crypt4GH private key (path) for egress the sites encrypt "
            "(default: the registry's crypt4gh_recipient_key with .pub replaced by .sec).",
            "env_var": True,
        },
    )


#: Seconds before a job a site answered 429/507 for is submitted again.
BUSY_RETRY_SECONDS = 10.0
# Seconds between two per-site progress lines in the log (a line shows only when it changed).
PROGRESS_SECONDS = 5.0

#: The executor exports its run tag under this name to the localrules of its run (their shell
#: inherits this process's environment): `fedgen provenance crate` reads it.
RUN_ID_ENV = "FEDGEN_RUN_ID"


def _put_own_scripts_on_path(log: Callable[[str], object]) -> None:
    """Let the coordinator's localrules find ``fedgen`` without an activated venv.

    Snakemake started as ``.venv/bin/snakemake`` runs localrules with the caller's PATH, where
    the venv's scripts are missing unless it was activated ("fedgen: command not found"). The
    directory of this Python is put first on PATH when it holds ``fedgen`` and PATH has none.
    """
    scripts = os.path.dirname(sys.executable)
    if shutil.which("fedgen") is None and os.access(os.path.join(scripts, "fedgen"), os.X_OK):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
        log(f"fedgen: localrules find fedgen in {scripts} (put first on PATH)")


def default_run_id(workdir: str) -> str:
    """Return the run tag for a working directory (stable across reruns)."""
    return "fedgen-" + hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:16]


class Executor(RemoteExecutor):
    """Sends each site job as one TES task to its site; see the package docs."""

    def __post_init__(self) -> None:
        settings: ExecutorSettings = self.workflow.executor_settings
        if not settings or not settings.sites:
            raise WorkflowError(
                "the fedgen executor needs the site registry: pass --fedgen-sites SITES.yaml "
                "(or set SNAKEMAKE_FEDGEN_SITES, or `fedgen-sites:` in a profile)."
            )
        try:
            self.registry = load_registry(settings.sites)
            # Data use (DUO, issue 6): refuse a purpose a site's consent does not permit before
            # any task is sent.
            executor_gate(
                self.registry,
                workflow_config=getattr(self.workflow, "config", None),
                log=self.logger.info,
            )
        except FedgenError as exc:
            raise WorkflowError(str(exc)) from None
        self.run_id = settings.run_id or default_run_id(os.getcwd())
        os.environ[RUN_ID_ENV] = self.run_id
        _put_own_scripts_on_path(self.logger.info)
        if settings.crypt4gh_key:
            # Read by snakemake_executor_plugin_fedgen.crypt when an encrypted download arrives.
            os.environ[PRIVATE_KEY_ENV] = os.path.abspath(settings.crypt4gh_key)
        self.site_deadline = settings.site_deadline
        self.clients = {
            name: TesClient(
                site,
                timeout=settings.request_timeout,
                max_attempts=settings.max_attempts,
                max_pages=settings.max_list_pages,
            )
            for name, site in self.registry.sites.items()
        }
        self.resume = ResumeIndex(self.run_id)
        self.poller = StatusPoller(self.run_id, self.clients)
        self.interval = AdaptiveInterval(
            minimum=settings.poll_interval_min, maximum=settings.poll_interval_max
        )
        self.next_seconds_between_status_checks = self.interval.minimum
        # Every task this run created or reattached, and its site: cancel_jobs uses this rather
        # than Snakemake's active list, which is empty while a status check is running.
        self._live: dict[str, str] = {}
        self._states: dict[str, TesState] = {}
        self._track = threading.Lock()
        self._wake = threading.Event()
        self._submit_lock = threading.Lock()
        self._cycles = 0
        # Per-site progress, logged when it changes (at most every PROGRESS_SECONDS).
        self.progress = SiteProgress(self.registry.sites)
        self._progress_shown = ("", 0.0)
        try:
            staging.refuse_local_reads(
                self.dag, site_of=lambda job: tasks.site_of(job, self.registry)
            )
        except FedgenError as exc:
            raise WorkflowError(str(exc)) from None
        self.logger.info(f"fedgen: run tag {self.run_id}, sites {', '.join(self.registry.sites)}")

    # -- submission ---------------------------------------------------------------------------

    def run_job(self, job: JobExecutorInterface) -> None:
        try:
            plan = tasks.build_task(
                job,
                registry=self.registry,
                run_id=self.run_id,
                ingress_limit=lambda site: self.clients[site.name].ingress_limit(),
            )
        except FedgenError as exc:
            raise WorkflowError(str(exc)) from None
        info = SubmittedJobInfo(job=job, aux={"plan": plan})
        self._submit(info)
        self.report_job_submission(info)
        # Check soon: the poll interval may have backed off while nothing was running.
        self._wake.set()

    async def sleep(self) -> None:
        """Wait for the adaptive interval, cut short when a new job is submitted."""
        wake = getattr(self, "_wake", None)
        if wake is None:
            # Still inside __post_init__: Snakemake's default interval would be 10 s here.
            await asyncio.sleep(0.05)
            return
        deadline = time.monotonic() + self.next_seconds_between_status_checks
        while (remaining := deadline - time.monotonic()) > 0:
            if wake.is_set():
                break
            await asyncio.sleep(min(0.05, remaining))
        wake.clear()

    def _live_count(self, site: str) -> int:
        with self._track:
            return sum(1 for s in self._live.values() if s == site)

    def _submit(self, info: SubmittedJobInfo) -> None:
        """Reattach, reuse or create the job's task; on a site error remember it for the poll."""
        # Submissions come from the main thread and (for held-back jobs) the status thread; one
        # at a time keeps max_parallel_tasks exact.
        with self._submit_lock:
            self._submit_locked(info)

    def _submit_locked(self, info: SubmittedJobInfo) -> None:
        plan: tasks.TaskPlan = info.aux["plan"]
        site = plan.site.name
        client = self.clients[site]
        try:
            self.resume.load(site, client)
            if self.resume.ignores_tag_filter.get(site):
                self.poller.per_task_fallback[site] = True
            known = None if info.aux.get("no_reuse") else self.resume.find(site, plan.job_key)
            if known is not None:
                info.external_jobid = known.id
                info.aux["reused"] = known.state == TesState.COMPLETE
                verb = "reusing finished" if known.state == TesState.COMPLETE else "reattached to"
                self.logger.info(f"fedgen: {verb} task {known.id} at site {site}")
            elif self._live_count(site) >= plan.site.max_parallel_tasks:
                info.aux["pending"] = True
                return
            else:
                # Larger coordinator inputs reach the site's ingress before the task names them.
                for upload in plan.uploads:
                    if client.upload(upload.path, upload.sha256, upload.size):
                        self.logger.info(
                            f"fedgen: uploaded {upload.path} ({upload.size} bytes) to the "
                            f"ingress of site {site}"
                        )
                info.external_jobid = client.create_task_once(plan.task, job_key=plan.job_key)
                self.resume.add(site, plan.job_key, info.external_jobid)
        except FedgenError as exc:
            busy = isinstance(exc, TesError) and exc.status in BUSY_STATUSES
            if busy and self._hold_back(info, site, exc):
                return
            info.aux.pop("pending", None)
            info.aux["error"] = f"submitting to site {site} failed: {exc}"
            return
        info.aux.pop("pending", None)
        info.aux.pop("busy_since", None)
        with self._track:
            self._live[info.external_jobid] = site

    def _hold_back(self, info: SubmittedJobInfo, site: str, exc: FedgenError) -> bool:
        """Keep a job the site is too busy for (429/507) pending; False once it waited longer
        than the site deadline."""
        now = time.monotonic()
        since = info.aux.setdefault("busy_since", now)
        if now - since > self.site_deadline:
            return False
        if since == now:
            self.logger.info(f"fedgen: {exc}; the job waits and is submitted again")
        info.aux["pending"] = True
        info.aux["retry_at"] = now + BUSY_RETRY_SECONDS
        return True

    # -- status -------------------------------------------------------------------------------

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs or not hasattr(self, "poller"):
            # The status thread starts before __post_init__ has finished; nothing to check yet.
            return
        changed = False
        polled: list[SubmittedJobInfo] = []
        for info in active_jobs:
            if info.aux.get("pending") and time.monotonic() >= info.aux.get("retry_at", 0.0):
                self._submit(info)
            if info.aux.get("error"):
                self.report_job_error(info, msg=info.aux.pop("error"))
                changed = True
            elif info.aux.get("pending"):
                yield info
            else:
                polled.append(info)
        wanted: dict[str, list[str]] = {}
        for info in polled:
            wanted.setdefault(info.aux["plan"].site.name, []).append(info.external_jobid)
        answers = self.poller.poll(wanted)
        if wanted:
            self._cycles += 1
            # Tests and the benchmark compare this with the ListTasks count at each node.
            self.logger.debug(
                f"fedgen: status poll {self._cycles} sites {','.join(sorted(wanted))}"
            )
        for info in polled:
            site = info.aux["plan"].site.name
            answer = answers[site]
            task_id = info.external_jobid
            if answer.error:
                if answer.silent_for > self.site_deadline:
                    self._forget(task_id)
                    self.resume.forget(site, info.aux["plan"].job_key, task_id)
                    self.report_job_error(
                        info,
                        msg=f"site {site} has not answered for {answer.silent_for:.0f} s "
                        f"(deadline {self.site_deadline:.0f} s, --fedgen-site-deadline); task "
                        f"{task_id} is left at the site. Last error: {answer.error}\n",
                    )
                    changed = True
                else:
                    yield info
                continue
            state = answer.states.get(task_id, TesState.UNKNOWN)
            if self._states.get(task_id) != state:
                self._states[task_id] = state
                changed = True
                if state == TesState.PAUSED:
                    # A node with `release: review` holds the egress for its steward.
                    self.logger.info(
                        f"fedgen: task {task_id} at site {site} is PAUSED: its release waits "
                        "for the site's steward; the job waits (no time limit)"
                    )
            if state in LIVE_STATES or state == TesState.CANCELING:
                yield info
            elif state == TesState.COMPLETE:
                if self._finish(info):
                    yield info
            elif state in FAILED_STATES:
                self._fail(info, state)
            else:
                yield info
        self._show_progress(active_jobs)
        self.next_seconds_between_status_checks = self.interval.update(changed=changed)

    def _show_progress(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Log jobs done/running/queued/waiting per site when the line changed."""
        waiting: dict[str, int] = {}
        for info in active_jobs:
            if info.aux and info.aux.get("pending") and "plan" in info.aux:
                site = info.aux["plan"].site.name
                waiting[site] = waiting.get(site, 0) + 1
        with self._track:
            states = {t: (s, self._states.get(t, TesState.QUEUED)) for t, s in self._live.items()}
        line = self.progress.line(states, waiting)
        last, when = self._progress_shown
        now = time.monotonic()
        if line and line != last and (now - when >= PROGRESS_SECONDS or not states):
            self._progress_shown = (line, now)
            self.logger.info(f"fedgen: progress {line}")

    def _forget(self, task_id: str | None) -> None:
        if task_id is None:
            return
        with self._track:
            self._live.pop(task_id, None)
            self._states.pop(task_id, None)

    def _finish(self, info: SubmittedJobInfo) -> bool:
        """Land the outputs of a COMPLETE task; return True if the job was resubmitted."""
        plan: tasks.TaskPlan = info.aux["plan"]
        client = self.clients[plan.site.name]
        task_id = info.external_jobid
        try:
            full = client.get_task(task_id, view="FULL")
            staging.land_outputs(plan, full, client=client)
        except FedgenError as exc:
            self._forget(task_id)
            if info.aux.get("reused"):
                # A finished task from an earlier run whose outputs are gone: run it again.
                self.logger.info(f"fedgen: outputs of task {task_id} are gone ({exc}); rerunning")
                self.resume.forget(plan.site.name, plan.job_key, task_id)
                info.aux.update(no_reuse=True, reused=False)
                info.external_jobid = None
                self._submit(info)
                return True
            self.report_job_error(
                info, msg=f"site {plan.site.name}: task {task_id} finished but {exc}\n"
            )
            return False
        self._forget(task_id)
        self.progress.ended_one(plan.site.name, ok=True)
        self.report_job_success(info)
        return False

    def _fail(self, info: SubmittedJobInfo, state: TesState) -> None:
        plan: tasks.TaskPlan = info.aux["plan"]
        task_id = info.external_jobid
        self._forget(task_id)
        # A retry of this job (Snakemake --retries) must create a new task, not reattach.
        self.resume.forget(plan.site.name, plan.job_key, task_id)
        try:
            full = self.clients[plan.site.name].get_task(task_id, view="FULL")
        except TesError as exc:
            full = TesTask(
                id=task_id,
                state=state,
                executors=plan.task.executors,
                logs=[TesTaskLog(logs=[], outputs=[], system_logs=[str(exc)])],
            )
        rule = (plan.task.tags or {}).get(RULE_TAG, "?")
        self.progress.ended_one(plan.site.name, ok=False)
        self.report_job_error(
            info, msg=staging.failure_message(full, site=plan.site.name, rule=rule) + "\n"
        )

    # -- cancel / shutdown --------------------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        with self._track:
            live = dict(self._live)
        for info in active_jobs:
            if info.external_jobid and info.aux and "plan" in info.aux:
                live.setdefault(info.external_jobid, info.aux["plan"].site.name)

        # Ctrl-C can fall between a site creating a task and this process reading the POST's
        # answer: that task is in no list here. Each site this run submitted to is asked for
        # the run's live tasks (in parallel: a site that is down costs its timeout once).
        def run_tasks(site: str) -> list[tuple[str, str]]:
            try:
                return [(i, site) for i in self.resume.live_task_ids(self.clients[site])]
            except FedgenError as exc:
                self.logger.error(
                    f"fedgen: site {site}: the run's tasks could not be listed, so a task "
                    f"submitted just before the cancel may still run there: {exc}"
                )
                return []

        sites = self.resume.sites()
        if sites:
            with ThreadPoolExecutor(max_workers=min(8, len(sites))) as pool:
                for found in pool.map(run_tasks, sites):
                    for task_id, site in found:
                        live.setdefault(task_id, site)
        if not live:
            return

        def cancel(item: tuple[str, str]) -> str | None:
            task_id, site = item
            try:
                self.clients[site].cancel_task(task_id)
            except FedgenError as exc:
                return f"site {site}: task {task_id} could not be canceled: {exc}"
            return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = [p for p in pool.map(cancel, live.items()) if p]
        for problem in problems:
            self.logger.error(f"fedgen: {problem}")
        self.logger.info(f"fedgen: canceled {len(live) - len(problems)} live task(s)")
        with self._track:
            self._live.clear()

    def shutdown(self) -> None:
        super().shutdown()
        self.poller.close()
        for client in self.clients.values():
            client.close()


__all__ = ["RUN_ID_ENV", "Executor", "ExecutorSettings", "common_settings", "default_run_id"]
