"""Runtime ``slurm``: each executor of a task is one Slurm job running the bwrap sandbox.

The node *submits* instead of *launching*: :meth:`SlurmRuntime.submit` writes a job script
(in the node-private task directory, next to the task root) whose one command is the argv
:class:`~snakemake_fedgen.node.runtime.BwrapRuntime` builds, and hands it to ``sbatch``.
Slurm opens the job's stdin/stdout/stderr: node-private files next to the task root, never a
path inside it (a task could have replaced that by a symlink, and the job runs as the node's
service account). The script records the sandbox's exit status atomically in
``executor-N.exit``; a job that ends without that file (scancel, TIMEOUT, OUT_OF_MEMORY,
NODE_FAIL) gets a reason naming its Slurm state from ``scontrol``.

One poller per node asks ``squeue`` about all of its jobs at once every ``poll_seconds``
(:meth:`SlurmRuntime.wait`). Jobs outlive the node: it records each job id in its task store
and reattaches after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ClusterError, ConfigError

from snakemake_fedgen.node.config import SlurmSettings
from snakemake_fedgen.node.runtime import BASE_PATH, BwrapRuntime, Launch, Runtime, TaskLayout

log = logging.getLogger("snakemake_fedgen.node")

CLIENT_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
# Job states in which a job may still run its script (squeue -j also lists ended jobs).
_ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
_CLIENT_TIMEOUT = 60
_SCANCEL_ATTEMPTS = 5


@dataclass(frozen=True)
class JobFiles:
    """The node-private files of one executor's job, in the task directory (not its root)."""

    script: Path
    stdin: Path
    stdout: Path
    stderr: Path
    exit: Path

    @classmethod
    def of(cls, task_dir: Path, index: int, *, shared_output: bool = False) -> JobFiles:
        """The files of ``executors[index]``; ``shared_output``: stdout and stderr are one."""
        stem = task_dir / f"executor-{index}"
        out = Path(f"{stem}.stdout")
        return cls(
            script=Path(f"{stem}.sbatch"),
            stdin=Path(f"{stem}.stdin"),
            stdout=out,
            stderr=out if shared_output else Path(f"{stem}.stderr"),
            exit=Path(f"{stem}.exit"),
        )


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: the sandbox's exit status, or None and why Slurm ended it first."""

    job_id: str
    exit_code: int | None
    state: str
    reason: str | None = None


class SlurmRuntime(Runtime):
    """Submits each executor as a Slurm job; the job runs the same bwrap sandbox as ``bwrap``.

    Inside the job there are no node cgroups (they do not exist on compute nodes): Slurm's own
    limits (cores, memory, time) apply, the ``ulimit -f`` disk shim stays.
    """

    name = "slurm"
    binds_inputs = True

    def __init__(
        self, settings: SlurmSettings, *, tool_paths: Sequence[str], bwrap: str = "bwrap"
    ) -> None:
        self.settings = settings
        self.sandbox = BwrapRuntime(tool_paths=tool_paths, bwrap=bwrap)
        self._waiting: dict[str, list[asyncio.Future[str]]] = {}
        self._poller: asyncio.Task[None] | None = None
        # How many squeue queries this node made, and in how many each job was seen.
        self.queries = 0
        self._polls: Counter[str] = Counter()

    def client_env(self) -> dict[str, str]:
        """Environment of the Slurm client commands; never the node's own (it may hold
        secrets, and sbatch would copy it into the job)."""
        env = {"PATH": BASE_PATH, "LANG": "C.UTF-8"}
        if self.settings.conf is not None:
            env["SLURM_CONF"] = str(self.settings.conf)
        elif "SLURM_CONF" in os.environ:
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        return env

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        """The command the job runs: the bwrap sandbox of the executor."""
        return self.sandbox.launch(executor, layout, task_id=task_id)

    # -- submitting ------------------------------------------------------------------------------

    def sbatch_argv(
        self,
        *,
        task_id: str,
        index: int,
        layout: TaskLayout,
        files: JobFiles,
        minutes: int | None,
    ) -> list[str]:
        """The sbatch command line of one executor's job (options from the steward only)."""
        s = self.settings
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=fedgen-{task_id[:12]}-{index}",
            f"--chdir={files.script.parent}",
            f"--input={files.stdin}",
            f"--output={files.stdout}",
            f"--error={files.stderr}",
            "--open-mode=truncate",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={layout.cpus or 1}",
            # A job the cluster lost is not run twice behind the node's back.
            "--no-requeue",
            # The environment sbatch sees is client_env(): nothing of the node's.
            "--export=ALL",
        ]
        if layout.memory_bytes:
            argv.append(f"--mem={math.ceil(layout.memory_bytes / 2**20)}M")
        if minutes is not None:
            argv.append(f"--time={minutes}")
        if s.partition:
            argv.append(f"--partition={s.partition}")
        if s.account:
            argv.append(f"--account={s.account}")
        argv += list(s.options)
        argv.append(str(files.script))
        return argv

    def job_script(self, launch: Launch, files: JobFiles, *, task_id: str, index: int) -> str:
        """The job script: the sandbox, then its exit status written atomically."""
        part = f"{files.exit}.part"
        return (
            "#!/bin/sh\n"
            f"# fedgen task {task_id} executors[{index}]: the bwrap sandbox (see runtime.py)\n"
            f"PATH={shlex.quote(BASE_PATH)}; export PATH\n"
            f"{shlex.join(launch.argv)}\n"
            "rc=$?\n"
            f"printf '%d\\n' \"$rc\" > {shlex.quote(part)} && "
            f"mv -f {shlex.quote(part)} {shlex.quote(str(files.exit))}\n"
            'exit "$rc"\n'
        )

    def submit(
        self,
        executor: Mapping[str, Any],
        layout: TaskLayout,
        *,
        task_id: str,
        index: int,
        files: JobFiles,
        minutes: int | None,
    ) -> str:
        """Write the job script and submit it; returns the Slurm job id (blocking).

        Raises
        ------
        ClusterError
            sbatch failed (the message is sbatch's, e.g. an invalid partition or too many
            cores asked).
        """
        launch = self.launch(executor, layout, task_id=task_id)
        for stale in (files.exit, files.stdout, files.stderr):
            stale.unlink(missing_ok=True)
        _write_private(files.script, self.job_script(launch, files, task_id=task_id, index=index))
        if not files.stdin.exists():
            _write_private(files.stdin, "")
        argv = self.sbatch_argv(
            task_id=task_id, index=index, layout=layout, files=files, minutes=minutes
        )
        try:
            res = self._client(argv)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"sbatch failed: {exc}") from None
        job_id = res.stdout.strip().split(";")[0]
        if res.returncode != 0 or not job_id.isdigit():
            raise ClusterError(
                f"sbatch refused the job (exit {res.returncode}): "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )
        log.info("task %s executors[%d]: Slurm job %s submitted", task_id, index, job_id)
        return job_id

    def cancel(self, job_id: str) -> None:
        """scancel the job in the background (the poller sees it leave); a refused or timed
        out scancel (a busy slurmctld) is retried and logged, never dropped silently."""
        threading.Thread(
            target=self._scancel, args=(job_id,), name=f"scancel-{job_id}", daemon=True
        ).start()

    def _scancel(self, job_id: str) -> None:
        for attempt in range(1, _SCANCEL_ATTEMPTS + 1):
            try:
                res = self._client(["scancel", job_id])
            except (OSError, subprocess.TimeoutExpired) as exc:
                problem = str(exc)
            else:
                if res.returncode == 0:
                    return
                problem = (res.stderr or res.stdout).strip()[-300:]
                if "Invalid job id" in problem or "already completed" in problem:
                    return
            log.warning(
                "scancel %s failed (attempt %d of %d): %s",
                job_id,
                attempt,
                _SCANCEL_ATTEMPTS,
                problem,
            )
            time.sleep(min(2.0 * attempt, 10.0))

    # -- waiting ---------------------------------------------------------------------------------

    async def wait(self, job_id: str, files: JobFiles) -> JobEnd:
        """Wait until the job has ended (one shared squeue query per poll for all jobs)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            state = await future
        finally:
            waiters = self._waiting.get(job_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(job_id, None)
        end = await asyncio.to_thread(self._end_of, job_id, state, files)
        log.info(
            "Slurm job %s ended %s (exit %s): seen in %d of the node's squeue queries (%d so far)",
            job_id,
            end.state,
            end.exit_code,
            self._polls.pop(job_id, 0),
            self.queries,
        )
        return end

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.settings.poll_seconds)
            ids = sorted(self._waiting, key=int)
            if not ids:
                return
            states = await self._squeue(ids)
            if states is None:
                continue  # the controller did not answer: ask again next time
            for job_id in ids:
                self._polls[job_id] += 1
                state = states.get(job_id, "")
                if state in _ACTIVE_STATES:
                    continue
                for future in self._waiting.get(job_id, []):
                    if not future.done():
                        future.set_result(state)

    async def _squeue(self, ids: list[str]) -> dict[str, str] | None:
        """Job id -> state of every listed job squeue still knows; None if squeue failed."""
        self.queries += 1
        log.debug("squeue: one query for %d job(s)", len(ids))
        try:
            proc = await asyncio.create_subprocess_exec(
                "squeue",
                "-h",
                "-j",
                ",".join(ids),
                "-o",
                "%i|%T|%r",
                env=self.client_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), _CLIENT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.warning("squeue failed (%s); asking again in %g s", exc, self.settings.poll_seconds)
            return None
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip()
            if "Invalid job id" in text:
                return {}  # none of them is known any more
            log.warning("squeue failed: %s; asking again", text[-300:])
            return None
        states = {}
        for line in out.decode(errors="replace").splitlines():
            job_id, _, rest = line.partition("|")
            states[job_id.strip()] = rest.partition("|")[0].strip()
        return states

    def _end_of(self, job_id: str, state: str, files: JobFiles) -> JobEnd:
        """The exit status the job script recorded, else the reason Slurm gives (blocking)."""
        with contextlib.suppress(OSError, ValueError):
            code = int(files.exit.read_text().strip())
            return JobEnd(job_id, code, state or "COMPLETED")
        shown = _show_job(job_id, self._client)
        state = shown.get("JobState") or state or "unknown"
        why = shown.get("Reason")
        if not shown:
            reason = (
                f"Slurm job {job_id} ended without an exit status and the cluster no longer "
                "knows it"
            )
        elif state == "TIMEOUT":
            reason = (
                f"Slurm job {job_id} reached its time limit (TIMEOUT; {shown.get('TimeLimit')}); "
                "ask for more runtime (resources.runtime, minutes)"
            )
        elif state == "OUT_OF_MEMORY":
            reason = f"Slurm job {job_id} exceeded its memory (OUT_OF_MEMORY); ask for more ram_gb"
        else:
            detail = f", reason {why}" if why and why != "None" else ""
            reason = f"Slurm job {job_id} ended {state}{detail} before the executor finished"
        return JobEnd(job_id, None, state, reason)

    def _client(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=self.client_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CLIENT_TIMEOUT,
            check=False,
        )


def job_minutes(doc: Mapping[str, Any], max_task_seconds: float | None) -> int | None:
    """The job's time limit in minutes: ``backend_parameters.runtime`` (minutes, as the
    executor plugin sends Snakemake's ``runtime``), at most the node's ``max_task_seconds``;
    None: neither is set (the partition's limit applies)."""
    params = (doc.get("resources") or {}).get("backend_parameters") or {}
    wanted: float | None = None
    given = params.get("runtime")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        with contextlib.suppress(ValueError):
            wanted = float(given)
    if wanted is not None and not (math.isfinite(wanted) and wanted > 0):
        wanted = None
    cap = max_task_seconds / 60 if max_task_seconds else None
    minutes = min(x for x in (wanted, cap) if x is not None) if (wanted or cap) else None
    return None if minutes is None else max(1, math.ceil(minutes))


def _show_job(job_id: str, client: Any) -> dict[str, str]:
    """``scontrol -o show job ID`` as key -> value ({} when Slurm no longer knows it)."""
    try:
        res = client(["scontrol", "-o", "show", "job", job_id])
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if res.returncode != 0:
        return {}
    fields = {}
    for word in res.stdout.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` (mode 600, never through a symlink) holding ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_slurm_runtime(settings: SlurmSettings, *, tool_paths: Sequence[str]) -> SlurmRuntime:
    """Check the Slurm client commands, the controller and the partition; build the runtime.

    Raises
    ------
    ConfigError
        A client command is missing, ``sinfo`` fails (controller unreachable, munge), the
        partition does not exist or the task root is missing; the message names the fix.
    """
    missing = [c for c in CLIENT_COMMANDS if shutil.which(c, path=BASE_PATH) is None]
    if missing:
        raise ConfigError(
            f"runtime slurm: {', '.join(missing)} not found on PATH ({BASE_PATH}); install the "
            "Slurm client commands (Debian: slurm-client or slurm-wlm) on the node's machine."
        )
    if not settings.task_root.is_dir():
        raise ConfigError(
            f"runtime slurm: slurm.task_root {settings.task_root} is not an existing directory; "
            "create it on the file system the compute nodes share."
        )
    runtime = SlurmRuntime(settings, tool_paths=tool_paths)
    argv = ["sinfo", "-h", "-o", "%P"]
    if settings.partition:
        argv += ["-p", settings.partition]
    try:
        res = runtime._client(argv)
    except (OSError, subprocess.TimeoutExpired) as exc:
        res = subprocess.CompletedProcess(argv, 1, "", str(exc))
    if res.returncode != 0:
        raise ConfigError(
            f"runtime slurm: 'sinfo' failed, the Slurm controller is not reachable from the "
            f"node: {res.stderr.strip()[-300:]} (check munge, the controller and slurm.conf; "
            "node.yaml slurm.conf names a slurm.conf other than the default)."
        )
    if settings.partition and not res.stdout.strip():
        raise ConfigError(
            f"runtime slurm: the cluster has no partition {settings.partition!r}; fix "
            "slurm.partition in node.yaml (sinfo lists the partitions)."
        )
    return runtime


__all__ = ["JobEnd", "JobFiles", "SlurmRuntime", "job_minutes", "make_slurm_runtime"]
