"""How an executor's command is started: bubblewrap sandbox, plain host process, or an engine.

Under ``bwrap`` the task sees the host's /usr, /etc and tool paths read-only, its own task
directory at the container paths, its file inputs bound read-only at their container paths, a
private /tmp, no network and its own PID namespace; nothing else of the host. Under ``host``
the command runs in the task directory with the workdir mapped into it (commands must use
relative paths). ``docker``/``podman`` get the equivalent ``run`` command line.

Tasks never run as root: a node running as root runs them as its task user (``task_user``,
default ``nobody`` for bwrap/docker/podman; required for ``host``), switched to with
``setpriv`` inside the sandbox after bubblewrap has set up its mounts, so the task holds a real
unprivileged uid on the host, no capabilities and ``no_new_privs``.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.node import paths

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Launch:
    """What to exec: argv, working directory on the host (or None) and environment."""

    argv: list[str]
    cwd: Path | None
    env: dict[str, str]


@dataclass(frozen=True)
class TaskUser:
    """The unprivileged uid/gid tasks run as (when the node runs as root)."""

    uid: int
    gid: int
    name: str = ""

    def setpriv(self, exe: str = "setpriv") -> list[str]:
        """The command prefix that becomes this user: no groups, no capabilities, no new privs."""
        return [
            exe,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]


NOBODY = 65534


def task_user_for(setting: object, *, runtime: str) -> TaskUser | None:
    """Who tasks run as, from the ``task_user`` setting; None: as the node's own user.

    A node running as root never runs tasks as root: the configured user, else ``nobody``
    (65534) for sandboxed runtimes; ``host`` without a task user is refused, it would hand
    every caller root on the host. A node not running as root runs tasks as itself.

    Raises
    ------
    ConfigError
        Unknown user, uid/gid 0, a task user on a node that cannot switch to it, host as root
        without one.
    """
    if setting in (None, ""):
        if os.geteuid() != 0:
            return None
        if runtime == "host":
            raise ConfigError(
                "runtime host on a node running as root would run every task as root; set "
                "task_user (an unprivileged user such as nobody, or uid:gid) or use runtime bwrap."
            )
        _need_setpriv()
        return TaskUser(NOBODY, NOBODY, "nobody")
    user = _parse_task_user(setting)
    if user.uid == 0 or user.gid == 0:
        raise ConfigError(f"task_user {setting!r} is root; name an unprivileged user.")
    if os.geteuid() != 0:
        if (user.uid, user.gid) == (os.geteuid(), os.getegid()):
            return None
        raise ConfigError(
            f"task_user {setting!r}: only a node running as root can run tasks as another user; "
            "remove task_user or start the node as root."
        )
    _need_setpriv()
    return user


def reachable_by(path: Path, user: TaskUser) -> bool:
    """Whether ``user`` may search every directory above ``path`` (mode bits only)."""
    for parent in Path(os.path.realpath(path)).parents:
        st = parent.stat()
        bit = 0o100 if st.st_uid == user.uid else 0o010 if st.st_gid == user.gid else 0o001
        if not st.st_mode & bit:
            return False
    return True


def _need_setpriv() -> None:
    if shutil.which("setpriv") is None:
        raise ConfigError(
            "a node running as root runs tasks as an unprivileged task_user with the setpriv "
            "command (util-linux); install it."
        )


def _parse_task_user(setting: object) -> TaskUser:
    text = str(setting).strip()
    name, _, group = text.partition(":")
    try:
        if name.isdigit():
            uid = int(name)
            try:
                entry = pwd.getpwuid(uid)
                gid, shown = entry.pw_gid, entry.pw_name
            except KeyError:
                gid, shown = uid, name
        else:
            entry = pwd.getpwnam(name)
            uid, gid, shown = entry.pw_uid, entry.pw_gid, name
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"task_user {text!r}: no such user or group on this host; use an existing user "
            "name or uid[:gid]."
        ) from None
    return TaskUser(uid, gid, shown)


@dataclass(frozen=True)
class TaskLayout:
    """Host side of one task: its root directory, private tmp and read-only input binds."""

    root: Path
    tmp: Path
    binds: tuple[tuple[Path, str], ...] = ()  # (host path, container path), read-only
    user: TaskUser | None = None  # run as this uid/gid (the node runs as root)


def task_env(extra: Mapping[str, str], *, home: str, tmp: str) -> dict[str, str]:
    """A clean environment: never the node's own (it may hold secrets)."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:{BASE_PATH}",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra)
    return env


class Runtime:
    """Base class; subclasses build a :class:`Launch` for one executor."""

    name = "base"
    binds_inputs = False  # True: file inputs are bound read-only, not copied

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        raise NotImplementedError

    def kill_argv(self, task_id: str) -> list[str] | None:
        """A command that stops the task's executor beyond its process group, if needed."""
        return None

    def release(self, task_id: str) -> None:
        """Free what the runtime holds for a finished executor (called after it ended)."""


_CD_AND_EXEC = 'cd -P -- "$1" && shift && exec "$@"'


class HostRuntime(Runtime):
    """Runs the command on the host, in the task directory. No isolation: for development.

    The node starts the process in the task root (a directory it made) and the process itself
    changes into the workdir, after it became the task user: a symlink the task planted there
    is followed with the task user's rights only, never the node's.
    """

    name = "host"

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        workdir = executor.get("workdir") or "/"
        env = task_env(executor.get("env") or {}, home=str(layout.tmp), tmp=str(layout.tmp))
        argv = ["/bin/sh", "-c", _CD_AND_EXEC, "fedgen-task", "." + workdir.rstrip("/")]
        argv += list(executor["command"])
        if layout.user is not None:
            argv = [*layout.user.setpriv(), *argv]
        return Launch(argv, layout.root, env)


class BwrapRuntime(Runtime):
    """bubblewrap sandbox: no network, read-only host system, task root at container paths."""

    name = "bwrap"
    binds_inputs = True

    def __init__(
        self,
        *,
        tool_paths: Sequence[str] = (),
        bwrap: str = "bwrap",
        pids_root: Path | None = None,
    ) -> None:
        self.bwrap = bwrap
        # setpriv runs inside the sandbox: it must come from the read-only /usr.
        self.setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        self.tool_paths = [p for p in tool_paths if Path(p).exists()]
        # A fork bomb run as root ignores RLIMIT_NPROC; a pids cgroup bounds it (see below).
        self.pids_root = pids_root

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        argv = [
            self.bwrap,
            "--die-with-parent",
            # A node running as root would otherwise hand the task every capability, enough to
            # remount the read-only binds writable (or mknod a disk) and write to the host.
            "--cap-drop",
            "ALL",
            # Only setpriv (below) uses these, to become the task user before the command runs.
            *(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if layout.user else []),
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "fedgen-task",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/", top)
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), str(host)]
        argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
        tops = sorted(p.name for p in layout.root.iterdir() if p.is_dir() and not p.is_symlink())
        if "tmp" not in tops:
            argv += ["--bind", str(layout.tmp), "/tmp"]
        for top in tops:
            argv += ["--bind", str(layout.root / top), f"/{top}"]
        # Tool paths after the task directories, so a task path like /root cannot hide them.
        for path in self.tool_paths:
            parts = Path(path).parts
            if len(parts) > 2 and parts[1] in tops:
                # Their mount point lies in the task's directory: make its parents (bwrap would
                # create them 0700) searchable by the task user, without following links.
                os.close(paths.open_dir(layout.root, "/".join(parts[1:-1]), create=True))
            else:
                for i in range(2, len(parts)):
                    argv += ["--perms", "0755", "--dir", "/" + "/".join(parts[1:i])]
            argv += ["--ro-bind", path, path]
        for host, container in layout.binds:
            argv += ["--ro-bind", str(host), container]
        workdir = executor.get("workdir") or "/"
        argv += ["--chdir", workdir, "--clearenv"]
        env = task_env(executor.get("env") or {}, home="/tmp", tmp="/tmp")
        for key, value in env.items():
            argv += ["--setenv", key, value]
        command = list(executor["command"])
        if layout.user is not None:
            command = [*layout.user.setpriv(self.setpriv), *command]
        argv += ["--", *command]
        if self.pids_root is not None:
            # The shim joins the task's pids cgroup before bwrap forks anything.
            cgroup = self.pids_root / f"fedgen-{task_id}"
            cgroup.mkdir(exist_ok=True)
            (cgroup / "pids.max").write_text(f"{TASK_MAX_PIDS}\n")
            argv = ["/bin/sh", "-c", _JOIN_CGROUP, "fedgen-task", str(cgroup), *argv]
        # bwrap itself needs no environment; keep the node's out of reach.
        return Launch(argv, None, {"PATH": BASE_PATH})

    def release(self, task_id: str) -> None:
        """Kill whatever is left in the task's pids cgroup (even setsid escapees), remove it."""
        if self.pids_root is None:
            return
        cgroup = self.pids_root / f"fedgen-{task_id}"
        for _ in range(50):
            try:
                pids = (cgroup / "cgroup.procs").read_text().split()
            except OSError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                cgroup.rmdir()
                return
            except OSError:
                time.sleep(0.02)


class EngineRuntime(Runtime):
    """``docker run``/``podman run`` with no network and the task directories as volumes.

    The image really is the container image here (under bwrap/host it is only an identifier).
    """

    binds_inputs = True

    def __init__(self, engine: str) -> None:
        self.name = engine
        self.engine = engine

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        argv = [self.engine, "run", "--rm", "--network", "none", "--name", f"fedgen-{task_id}"]
        if layout.user is not None:
            argv += ["--user", f"{layout.user.uid}:{layout.user.gid}", "--cap-drop", "ALL"]
            argv += ["--security-opt", "no-new-privileges"]
        if executor.get("stdin"):
            argv.append("-i")
        for top in sorted(p.name for p in layout.root.iterdir() if p.is_dir()):
            argv += ["-v", f"{layout.root / top}:/{top}"]
        for host, container in layout.binds:
            argv += ["-v", f"{host}:{container}:ro"]
        argv += ["-w", executor.get("workdir") or "/"]
        for key, value in (executor.get("env") or {}).items():
            argv += ["-e", f"{key}={value}"]
        argv += [executor["image"], *executor["command"]]
        return Launch(argv, None, {"PATH": BASE_PATH})

    def kill_argv(self, task_id: str) -> list[str]:
        # The container belongs to the engine's daemon, not to the killed client process.
        return [self.engine, "kill", f"fedgen-{task_id}"]


TASK_MAX_PIDS = 1024
_JOIN_CGROUP = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'


def pids_cgroup_root() -> Path | None:
    """A cgroup directory where the node may create per-task pids cgroups, or None.

    cgroup v1 (``/sys/fs/cgroup/pids``) or the v2 root with the pids controller delegated to
    children. None where cgroups are read-only (then only max_task_seconds bounds a task).
    """
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file() and os.access(v1, os.W_OK):
        return v1
    v2 = Path("/sys/fs/cgroup")
    try:
        delegated = "pids" in (v2 / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return v2 if delegated and os.access(v2, os.W_OK) else None


def bwrap_works(bwrap: str = "bwrap") -> bool:
    """Probe whether bubblewrap can create the namespaces we need on this machine."""
    exe = shutil.which(bwrap)
    if exe is None:
        return False
    try:
        res = subprocess.run(
            [
                exe,
                "--ro-bind",
                "/",
                "/",
                "--unshare-net",
                "--unshare-pid",
                "--die-with-parent",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "true",
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def make_runtime(name: str, *, tool_paths: Sequence[str]) -> Runtime:
    """Build the configured runtime; ``auto`` is bwrap where it works, else host."""
    if name == "auto":
        name = "bwrap" if bwrap_works() else "host"
    if name == "bwrap":
        if not bwrap_works():
            raise ConfigError(
                "runtime bwrap: bubblewrap is missing or cannot create namespaces here; "
                "install the 'bubblewrap' package or set runtime: host."
            )
        pids_root = pids_cgroup_root()
        if pids_root is None:
            logging.getLogger("snakemake_fedgen.node").warning(
                "no writable pids cgroup: tasks are bounded by max_task_seconds only, "
                "not by a process count"
            )
        return BwrapRuntime(tool_paths=tool_paths, pids_root=pids_root)
    if name == "host":
        return HostRuntime()
    if name in ("docker", "podman"):
        if shutil.which(name) is None:
            raise ConfigError(f"runtime {name}: the {name} command is not installed.")
        return EngineRuntime(name)
    raise ConfigError(f"unknown runtime {name!r}.")
