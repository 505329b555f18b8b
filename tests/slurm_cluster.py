"""A private one-machine Slurm cluster for tests: munged, slurmctld and slurmd under a tmp dir.

Every daemon gets its own ports, socket, pid, state and log files; :meth:`SlurmCluster.stop`
ends exactly the processes it started (by pid). Client commands find the cluster through
``SLURM_CONF`` (:attr:`SlurmCluster.env`); the node through its ``slurm.conf`` key.

Example
-------
>>> cluster = SlurmCluster.start(tmp_path / "slurm")
>>> subprocess.run(["sinfo"], env=cluster.env)
>>> cluster.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from snakemake_fedgen.node.process import free_port

PARTITION = "fedgen"
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "scancel")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot start on this machine (the message says why)."""


@dataclass
class SlurmCluster:
    """A running private cluster (see :meth:`start`)."""

    root: Path
    conf: Path
    cpus: int
    memory_mb: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (sinfo, squeue, ...)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, root: Path, *, timeout: float = 60.0) -> SlurmCluster:
        """Write the configs, start munged, slurmctld and slurmd, wait until the node is idle.

        Raises
        ------
        ClusterUnavailable
            A command is missing, this process is not root, or a daemon does not come up.
        """
        missing = [d for d in DAEMONS if shutil.which(d) is None]
        if missing:
            raise ClusterUnavailable(
                f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
            )
        if os.geteuid() != 0:
            raise ClusterUnavailable("a private slurmd must run as root (it starts jobs as users)")
        try:
            munge = pwd.getpwnam("munge")
        except KeyError:
            raise ClusterUnavailable("no 'munge' user (the munge package creates it)") from None
        root = root.absolute()
        munge_dir = root / "munge"
        for sub in ("munge", "state", "spool", "log", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # munged refuses a directory others can write to: its own dirs, owned by munge.
        root.chmod(0o755)
        munge_dir.chmod(0o700)
        subprocess.run(["chown", "-R", "munge:munge", str(munge_dir)], check=True)
        socket = munge_dir / "munge.socket"
        cpus = os.cpu_count() or 1
        memory_mb = _real_memory_mb()
        conf = root / "slurm.conf"
        conf.write_text(
            _slurm_conf(
                root,
                socket=socket,
                ctld_port=free_port(),
                slurmd_port=free_port(),
                cpus=cpus,
                memory_mb=memory_mb,
            )
        )
        cluster = cls(root, conf, cpus, memory_mb)
        try:
            cluster._spawn(
                "munged",
                [
                    "setpriv",
                    f"--reuid={munge.pw_uid}",
                    f"--regid={munge.pw_gid}",
                    "--clear-groups",
                    "munged",
                    "--foreground",
                    f"--socket={socket}",
                    f"--key-file={key}",
                    f"--pid-file={munge_dir / 'munged.pid'}",
                    f"--log-file={munge_dir / 'munged.log'}",
                    f"--seed-file={munge_dir / 'munged.seed'}",
                    "--force",
                ],
            )
            cluster._wait(lambda: socket.exists(), "munged did not create its socket", timeout)
            cluster._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
            cluster._spawn("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", "localhost"])
            cluster._wait(cluster._idle, "the node did not become idle in sinfo", timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - the child's
        try:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait(self, ready: object, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ClusterUnavailable(f"{name} exited ({proc.returncode}): {self.logs()}")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise ClusterUnavailable(f"{what} within {timeout:g} s: {self.logs()}")

    def _idle(self) -> bool:
        res = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return res.returncode == 0 and res.stdout.strip() == "idle"

    def logs(self, limit: int = 1500) -> str:
        """The tails of the daemons' log files (for error messages)."""
        parts = []
        for path in [*sorted((self.root / "log").glob("*")), self.root / "munge" / "munged.log"]:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)

    def run(self, *argv: str) -> str:
        """Run a client command against this cluster; its stdout."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> None:
        """Stop the daemons this helper started (by pid), slurmd first, munged last."""
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            # Leave slurmd's own margin: it refuses a node that has less than configured.
            return max(256, int(line.split()[1]) // 1024 - 512)
    return 1024


def _slurm_conf(
    root: Path, *, socket: Path, ctld_port: int, slurmd_port: int, cpus: int, memory_mb: int
) -> str:
    lines = {
        "ClusterName": "fedgentest",
        "SlurmctldHost": "localhost",
        "SlurmctldPort": str(ctld_port),
        "SlurmdPort": str(slurmd_port),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={socket}",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "SchedulerType": "sched/builtin",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        # Without it a job that asks no memory would take the whole node.
        "DefMemPerCPU": "256",
        "StateSaveLocation": str(root / "state"),
        "SlurmdSpoolDir": str(root / "spool"),
        "SlurmctldPidFile": str(root / "run" / "slurmctld.pid"),
        "SlurmdPidFile": str(root / "run" / "slurmd.pid"),
        "SlurmctldLogFile": str(root / "log" / "slurmctld.log"),
        "SlurmdLogFile": str(root / "log" / "slurmd.log"),
        "ReturnToService": "2",
        "MinJobAge": "30",
        "KillWait": "2",
        "InactiveLimit": "0",
        "MpiDefault": "none",
        "SlurmctldTimeout": "30",
        "SlurmdTimeout": "30",
        "SchedulerParameters": "sched_interval=1",
    }
    text = "".join(f"{k}={v}\n" for k, v in lines.items())
    text += (
        f"NodeName=localhost CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
    )
    return text
