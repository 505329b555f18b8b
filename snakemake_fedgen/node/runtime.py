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
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snakemake_executor_plugin_fedgen.errors import ConfigError, InvalidTask, StorageError

from snakemake_fedgen.node import paths
from snakemake_fedgen.node.images import check_image, pinned

if TYPE_CHECKING:
    from snakemake_fedgen.node.config import SlurmSettings

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Who a task is inside a docker/podman container by default: nobody:nogroup.
DEFAULT_CONTAINER_USER = "65534:65534"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


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
    # Limits the scheduler granted: cores (container engines), memory in bytes (a memory
    # cgroup, or the engine's --memory) and scratch disk in bytes (also the largest file a
    # task may write: RLIMIT_FSIZE; the scheduler's watchdog bounds the total).
    cpus: int | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None


def file_size_limit(layout: TaskLayout) -> str:
    """Shell text capping every file the task writes at its disk quota (``ulimit -f`` counts
    512-byte blocks; rounded up, so a file stopped there is at least the quota), or ""."""
    if not layout.disk_bytes:
        return ""
    return f"ulimit -f {-(-layout.disk_bytes // 512)} || exit 125; "


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

    def memory_exceeded(self, task_id: str) -> bool:
        """True if the kernel killed a process of the executor at its memory limit.

        Called after the executor ended and before :meth:`release`.
        """
        return False


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
        shim = file_size_limit(layout) + _CD_AND_EXEC
        argv = ["/bin/sh", "-c", shim, "fedgen-task", "." + workdir.rstrip("/")]
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
        memory_root: Path | None = None,
    ) -> None:
        self.bwrap = bwrap
        # setpriv runs inside the sandbox: it must come from the read-only /usr.
        self.setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        self.tool_paths = [p for p in tool_paths if Path(p).exists()]
        # A fork bomb run as root ignores RLIMIT_NPROC; a pids cgroup bounds it (see below).
        self.pids_root = pids_root
        # resources.ram_gb is enforced by a per-task memory cgroup (none: not enforced).
        self.memory_root = memory_root

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
        cgroups = []
        if self.pids_root is not None:
            cgroup = self.pids_root / f"fedgen-{task_id}"
            cgroup.mkdir(exist_ok=True)
            (cgroup / "pids.max").write_text(f"{TASK_MAX_PIDS}\n")
            cgroups.append(str(cgroup))
        if self.memory_root is not None and layout.memory_bytes:
            cgroups.append(str(_memory_cgroup(self.memory_root, task_id, layout.memory_bytes)))
        limit = file_size_limit(layout)
        if cgroups or limit:
            # The shim joins the task's cgroups and sets the file size limit before bwrap forks
            # anything (one shell, no extra process per executor).
            shim = limit + _JOIN_CGROUPS
            argv = ["/bin/sh", "-c", shim, "fedgen-task", *cgroups, "--", *argv]
        # bwrap itself needs no environment; keep the node's out of reach.
        return Launch(argv, None, {"PATH": BASE_PATH})

    def memory_exceeded(self, task_id: str) -> bool:
        if self.memory_root is None:
            return False
        return _oom_kills(self.memory_root / f"fedgen-{task_id}") > 0

    def release(self, task_id: str) -> None:
        """Kill whatever is left in the task's cgroups (even setsid escapees), remove them."""
        for root in (self.pids_root, self.memory_root):
            if root is not None:
                _empty_and_remove(root / f"fedgen-{task_id}")


class EngineRuntime(Runtime):
    """``docker run``/``podman run``: the image really is the container image here.

    The container gets no network, no capabilities, no new privileges, a read-only root file
    system, a non-root user, the task's own directories (read-write) and file inputs
    (read-only) and nothing else of the host; its environment is the task's ``env`` only. The
    image must be an image reference on the allow-list and comes after ``--``, so nothing a
    caller sends can become an engine option. The engine never pulls: approved images are
    loaded by the site.
    """

    binds_inputs = True

    def __init__(
        self,
        engine: str,
        *,
        allowed_images: Sequence[str],
        user: str = DEFAULT_CONTAINER_USER,
        containers_conf: Path | None = None,
    ) -> None:
        self.name = engine
        self.engine = engine
        self.allowed_images = list(allowed_images)
        self.uid, self.gid = parse_container_user(user)
        self.containers_conf = containers_conf
        # A node running as root owns the task directories; the container user must own them.
        # A rootless node maps its own uid into the container instead (--userns keep-id).
        self.rootless = os.geteuid() != 0

    def _client_env(self) -> dict[str, str]:
        env = {"PATH": BASE_PATH}
        if self.containers_conf is not None:
            env["CONTAINERS_CONF"] = str(self.containers_conf)
        if self.rootless:
            for key in ("HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
                if key in os.environ:
                    env[key] = os.environ[key]
        return env

    def launch(self, executor: Mapping[str, Any], layout: TaskLayout, *, task_id: str) -> Launch:
        # Checked at submission too; again here so a stored task can never smuggle options.
        ref = check_image(executor.get("image"), self.allowed_images, what="image")
        env = task_env_for_container(executor.get("env") or {})
        tops = sorted(p.name for p in layout.root.iterdir() if p.is_dir())
        mounts = [(layout.root / top, f"/{top}", False) for top in tops]
        if "tmp" not in tops:
            mounts.append((layout.tmp, "/tmp", False))
        mounts += [(host, container, True) for host, container in layout.binds]
        if self.rootless:
            uid, gid = os.getuid(), os.getgid()
        else:
            # The node's task user (task_user, default nobody) when it runs as root.
            uid, gid = (layout.user.uid, layout.user.gid) if layout.user else (self.uid, self.gid)
            _give_to(uid, gid, [layout.root, layout.tmp])
        argv = [
            self.engine,
            "run",
            "--rm",
            "--pull",
            "never",
            "--name",
            f"fedgen-{task_id}",
            "--hostname",
            "fedgen-task",
            "--network",
            "none",
            "--ipc",
            "private",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            f"{uid}:{gid}",
            "--read-only",
            "--pids-limit",
            str(TASK_MAX_PIDS),
            # Task output never lands in the engine's log files (it goes to the task's files).
            "--log-driver",
            "none",
        ]
        if self.engine == "podman":
            # No writable tmpfs on /run, /var/tmp; no proxy variables from the host.
            argv += ["--read-only-tmpfs=false", "--http-proxy=false"]
            if self.rootless:
                argv += ["--userns", "keep-id"]
        if layout.cpus:
            argv += ["--cpus", str(layout.cpus)]
        if layout.memory_bytes:
            argv += [
                "--memory",
                str(layout.memory_bytes),
                "--memory-swap",
                str(layout.memory_bytes),
            ]
        if executor.get("stdin"):
            argv.append("-i")
        for host, container, read_only in mounts:
            argv += ["-v", _volume(host, container, read_only=read_only)]
        argv += ["-w", executor.get("workdir") or "/"]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        argv += ["--", str(ref), *executor["command"]]
        return Launch(argv, None, self._client_env())

    def kill_argv(self, task_id: str) -> list[str]:
        # The container belongs to the engine (daemon or conmon), not to the killed client.
        return [self.engine, "kill", f"fedgen-{task_id}"]

    def release(self, task_id: str) -> None:
        """Remove the task's container if it outlived its client (kill, timeout, node crash)."""
        argv = [self.engine, "rm", "--force"]
        if self.engine == "podman":
            argv.append("--ignore")
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [*argv, f"fedgen-{task_id}"],
                env=self._client_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )


def parse_container_user(user: object) -> tuple[int, int]:
    """``"uid:gid"`` (numbers, uid not 0) as a pair; ConfigError otherwise."""
    if not isinstance(user, str) or re.fullmatch(r"[0-9]+:[0-9]+", user, re.ASCII) is None:
        raise ConfigError(
            f"container_user must be a quoted string 'uid:gid' of numbers, got {user!r}."
        )
    uid, gid = (int(x) for x in user.split(":"))
    if uid == 0:
        raise ConfigError("container_user must not be root (uid 0); the default is 65534:65534.")
    return uid, gid


def task_env_for_container(extra: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: the image's PATH plus HOME/TMPDIR/locale and the task's env.

    Names must be plain variable names: an engine reads ``-e NAME`` (no ``=``) or ``NAME*`` as
    "copy from the host", which would hand a task the node's own environment.
    """
    env = {"HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for key, value in extra.items():
        if not isinstance(key, str) or _ENV_NAME.fullmatch(key) is None:
            raise InvalidTask(
                f"env name {key!r} is not a plain variable name ([A-Za-z_][A-Za-z0-9_]*)."
            )
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidTask(f"env {key}: the value must be a string without NUL.")
        env[key] = value
    return env


def _volume(host: Path, container: str, *, read_only: bool) -> str:
    # ':' separates the fields of -v and ',' the options of --mount: neither may be in a path.
    for path in (str(host), container):
        if any(c in path for c in ":,\n\x00"):
            raise StorageError(f"path {path!r} cannot be mounted into a container (':' or ',').")
    return f"{host}:{container}:ro" if read_only else f"{host}:{container}"


def _give_to(uid: int, gid: int, tops: Sequence[Path]) -> None:
    """Hand the task's own directories to the container user (never following symlinks)."""
    for top in tops:
        if not top.exists():
            continue
        os.chown(top, uid, gid, follow_symlinks=False)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [*dirnames, *filenames]:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


TASK_MAX_PIDS = 1024
# Join every cgroup named before "--", then exec the rest.
_JOIN_CGROUPS = (
    'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; '
    'shift; exec "$@"'
)


def _empty_and_remove(cgroup: Path) -> None:
    """SIGKILL every process in ``cgroup`` until it can be removed (gone: nothing to do)."""
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


def _memory_cgroup(root: Path, task_id: str, limit: int) -> Path:
    """Create the task's memory cgroup under ``root`` with ``limit`` bytes (swap included)."""
    cgroup = root / f"fedgen-{task_id}"
    cgroup.mkdir(exist_ok=True)
    if (cgroup / "memory.limit_in_bytes").exists():  # cgroup v1
        (cgroup / "memory.limit_in_bytes").write_text(f"{limit}\n")
        memsw = cgroup / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            memsw.write_text(f"{limit}\n")
    else:  # cgroup v2
        (cgroup / "memory.max").write_text(f"{limit}\n")
        swap = cgroup / "memory.swap.max"
        if swap.exists():
            swap.write_text("0\n")
    return cgroup


def _oom_kills(cgroup: Path) -> int:
    """How many processes the kernel killed in ``cgroup`` at its memory limit."""
    for name in ("memory.oom_control", "memory.events"):  # v1, v2
        try:
            text = (cgroup / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def _v2_root(controller: str) -> Path | None:
    """The cgroup v2 root if ``controller`` is delegated to its children and writable."""
    v2 = Path("/sys/fs/cgroup")
    try:
        delegated = controller in (v2 / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return v2 if delegated and os.access(v2, os.W_OK) else None


def memory_cgroup_root() -> Path | None:
    """A cgroup directory where the node may create per-task memory cgroups, or None.

    cgroup v1: the node's own memory cgroup (so the node's own limit still bounds its tasks);
    cgroup v2: the root, with the memory controller delegated to children. None where the
    node cannot write there (then ``resources.ram_gb`` is not enforced under bwrap).
    """
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "cgroup.procs").is_file():
        own = "/"
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _n, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    own = path
        parent = v1 / own.lstrip("/")
        return parent if os.access(parent, os.W_OK) else None
    return _v2_root("memory")


def pids_cgroup_root() -> Path | None:
    """A cgroup directory where the node may create per-task pids cgroups, or None.

    cgroup v1 (``/sys/fs/cgroup/pids``) or the v2 root with the pids controller delegated to
    children. None where cgroups are read-only (then only max_task_seconds bounds a task).
    """
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file() and os.access(v1, os.W_OK):
        return v1
    return _v2_root("pids")


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


def make_runtime(
    name: str,
    *,
    tool_paths: Sequence[str],
    allowed_images: Sequence[str] = (),
    container_user: object = DEFAULT_CONTAINER_USER,
    containers_conf: Path | None = None,
    slurm: SlurmSettings | None = None,
) -> Runtime:
    """Build the configured runtime; ``auto`` is bwrap where it works, else host.

    ``slurm`` needs the checked ``slurm`` block of node.yaml (see
    :func:`snakemake_fedgen.node.slurm.make_slurm_runtime`).

    Under ``docker``/``podman`` the allow-list must not be empty (the image is real software
    there, so "any image" would mean any software, pulled from anywhere), ``container_user``
    must be a non-root ``uid:gid`` and ``containers_conf``, if set, an existing file.
    """
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
        memory_root = memory_cgroup_root()
        if memory_root is None:
            logging.getLogger("snakemake_fedgen.node").warning(
                "no writable memory cgroup: resources.ram_gb is not enforced under bwrap"
            )
        return BwrapRuntime(tool_paths=tool_paths, pids_root=pids_root, memory_root=memory_root)
    if name == "host":
        return HostRuntime()
    if name == "slurm":
        from snakemake_fedgen.node.slurm import make_slurm_runtime

        if slurm is None:
            raise ConfigError(
                "runtime slurm: node.yaml has no slurm block (slurm: {task_root: ...})."
            )
        return make_slurm_runtime(slurm, tool_paths=tool_paths)
    if name in ("docker", "podman"):
        return _engine_runtime(
            name,
            allowed_images=allowed_images,
            container_user=container_user,
            containers_conf=containers_conf,
        )
    raise ConfigError(f"unknown runtime {name!r}.")


def _engine_runtime(
    name: str,
    *,
    allowed_images: Sequence[str],
    container_user: object,
    containers_conf: Path | None,
) -> EngineRuntime:
    log = logging.getLogger("snakemake_fedgen.node")
    if shutil.which(name) is None:
        raise ConfigError(f"runtime {name}: the {name} command is not installed.")
    if not allowed_images:
        raise ConfigError(
            f"runtime {name}: allowed_images is empty; under a container engine the image is "
            "the software a task runs, so list the approved images, pinned by digest "
            "(e.g. localhost/fedgen-tools@sha256:...)."
        )
    loose = [p for p in allowed_images if not pinned(p)]
    if loose:
        log.warning(
            "runtime %s: allowed_images %s are not pinned by digest; whatever image the engine "
            "has under such a name runs (pin them as name@sha256:...)",
            name,
            ", ".join(loose),
        )
    try:
        parse_container_user(container_user)
    except ConfigError as exc:
        raise ConfigError(f"runtime {name}: {exc}") from None
    if containers_conf is not None:
        conf = Path(containers_conf)
        if not conf.is_file():
            raise ConfigError(f"runtime {name}: containers_conf {conf} is not a file.")
        if name != "podman":
            log.warning("runtime %s: containers_conf is read by podman only; ignored", name)
            containers_conf = None
    runtime = EngineRuntime(
        name,
        allowed_images=allowed_images,
        user=container_user,  # type: ignore[arg-type]  # checked above
        containers_conf=Path(containers_conf) if containers_conf is not None else None,
    )
    try:
        probe = subprocess.run(
            [name, "info"],
            env=runtime._client_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"runtime {name}: '{name} info' failed: {exc}") from None
    if probe.returncode != 0:
        raise ConfigError(
            f"runtime {name}: '{name} info' failed: {probe.stderr.strip()[-500:]} "
            "(see docs/site-admin.md, 'Container runtimes')."
        )
    return runtime
