"""Opening task-controlled paths on the host without ever leaving a trusted directory.

A task can write anything inside its own directory, including symlinks and hard links, and it
may do so while the node is looking (a process that outlived its executor). So the node never
hands such a path to ``open()``: it starts from a directory it trusts (the task root, a caller's
area) and opens one component at a time relative to the previous one with ``O_NOFOLLOW``. A
symlink anywhere on the way is refused (``ELOOP``/``ENOTDIR``), ``..`` never occurs (container
paths are normalised at submission) and nothing is resolved twice, which is what ``openat2``
with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` gives, in portable Python.

Files opened for the node's own use must also be regular files (no FIFO to block on, no device)
and, when tasks run under their own uid, owned by that uid: a hard link the task made to a file
it could not read itself is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import StorageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WILDCARD = frozenset("*?[")


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts or any("\x00" in p for p in parts):
        raise StorageError(f"{rel!r} is not a plain path below its root.")
    return parts


class MissingTaskPath(StorageError):
    """A path in the task does not exist (the executor fails, as ``cmd < missing`` would)."""


def _refuse(exc: OSError, shown: str, what: str) -> StorageError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return StorageError(
            f"{what} {shown} is or passes through a symlink (or a non-directory); "
            "the node does not follow links a task made."
        )
    if exc.errno == errno.ENOENT:
        return MissingTaskPath(f"{what} {shown} does not exist.")
    return StorageError(f"{what} {shown}: {exc.strerror or exc}.")


def open_dir(
    root: Path | int,
    rel: str,
    *,
    create: bool = False,
    mode: int = 0o755,
    owner: tuple[int, int] | None = None,
    what: str = "path",
) -> int:
    """An fd of directory ``root/rel``, reached without following any symlink below ``root``.

    Parameters
    ----------
    root
        A trusted directory (path or fd); its own path may contain symlinks the site made.
    create
        Create missing directories (``mode``, chowned to ``owner`` if given).
    """
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW) if not isinstance(root, int) else os.dup(root)
    done: list[str] = []
    try:
        for name in _parts(rel):
            if create:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                    if owner is not None:
                        os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            done.append(name)
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refuse(exc, "/" + "/".join(done), what) from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def split(rel: str) -> tuple[str, str]:
    """(parent, name) of a relative path; name non-empty."""
    parts = _parts(rel)
    if not parts:
        raise StorageError(f"{rel!r} names a directory root, not a file.")
    return "/".join(parts[:-1]), parts[-1]


def _check_regular(fd: int, shown: str, what: str, owner_uid: int | None) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"{what} {shown} is not a regular file.")
    if owner_uid is not None and st.st_uid != owner_uid:
        raise StorageError(
            f"{what} {shown} is not a file the task wrote (owned by uid {st.st_uid}); "
            "a hard link to another file is refused."
        )
    return st


def open_file(root: Path | int, rel: str, *, owner_uid: int | None = None, what: str) -> int:
    """An fd (read-only, blocking) of the regular file ``root/rel``; symlinks refused."""
    parent, name = split(rel)
    dfd = open_dir(root, parent, what=what)
    try:
        try:
            fd = os.open(
                name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                dir_fd=dfd,
            )
        except OSError as exc:
            raise _refuse(exc, "/" + rel.lstrip("/"), what) from None
    finally:
        os.close(dfd)
    try:
        _check_regular(fd, "/" + rel.lstrip("/"), what, owner_uid)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def create_file(
    root: Path | int, rel: str, *, owner: tuple[int, int] | None = None, what: str
) -> int:
    """A new, empty regular file ``root/rel`` opened read-write; whatever was there is unlinked.

    Parent directories are created (and chowned to ``owner``). A directory at ``rel`` is
    refused. The file is created with ``O_EXCL | O_NOFOLLOW``, so nothing the task planted can
    redirect the write.
    """
    parent, name = split(rel)
    dfd = open_dir(root, parent, create=True, owner=owner, what=what)
    try:
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError) as exc:
            raise StorageError(f"{what} /{rel.lstrip('/')} is a directory.") from exc
        try:
            fd = os.open(
                name,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dfd,
            )
        except OSError as exc:
            raise _refuse(exc, "/" + rel.lstrip("/"), what) from None
        if owner is not None:
            os.fchown(fd, *owner)
        return fd
    finally:
        os.close(dfd)


def lstat(root: Path | int, rel: str, *, what: str) -> os.stat_result | None:
    """lstat of ``root/rel`` reached without symlinks (None if it does not exist)."""
    parent, name = split(rel)
    try:
        dfd = open_dir(root, parent, what=what)
    except StorageError:
        if _exists_as_link(root, parent):
            raise
        return None
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(dfd)


def _exists_as_link(root: Path | int, rel: str) -> bool:
    """True if the missing-or-bad parent ``rel`` exists at all (then it is a link or a file)."""
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW) if not isinstance(root, int) else os.dup(root)
    try:
        for name in _parts(rel):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                return True
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return False
    finally:
        os.close(fd)


def walk_files(root: Path | int, rel: str, *, what: str) -> Iterator[tuple[str, int]]:
    """Regular files below directory ``root/rel`` as (path relative to it, size), sorted.

    Any symlink, FIFO, socket or device below it is refused.
    """

    def walk(dfd: int, prefix: str) -> Iterator[tuple[str, int]]:
        with os.scandir(dfd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            sub = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                try:
                    nfd = os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)
                except OSError as exc:
                    raise _refuse(exc, f"{rel}/{sub}", what) from None
                try:
                    yield from walk(nfd, sub + "/")
                finally:
                    os.close(nfd)
            elif stat.S_ISREG(st.st_mode):
                yield sub, st.st_size
            elif stat.S_ISLNK(st.st_mode):
                raise StorageError(
                    f"{what}: {sub} inside /{rel.lstrip('/')} is a symlink; outputs must be "
                    "files the task wrote."
                )
            else:
                raise StorageError(
                    f"{what}: {sub} inside /{rel.lstrip('/')} is not a regular file."
                )

    dfd = open_dir(root, rel, what=what)
    try:
        yield from walk(dfd, "")
    finally:
        os.close(dfd)


def glob(root: Path | int, pattern: str, *, what: str) -> list[str]:
    """Paths below ``root`` (relative, sorted) matching ``pattern`` like :func:`glob.glob`.

    Directories are entered without following symlinks; a symlink that matches a wildcard is
    returned (the caller refuses it when it opens it), one on a literal part is refused here.
    Names starting with ``.`` match only a pattern part starting with ``.``.
    """
    import fnmatch

    parts = _parts(pattern)
    found: list[str] = []

    def step(dfd: int, index: int, prefix: str) -> None:
        part = parts[index]
        last = index == len(parts) - 1
        if any(c in _WILDCARD for c in part):
            with os.scandir(dfd) as it:
                names = sorted(
                    e.name
                    for e in it
                    if fnmatch.fnmatchcase(e.name, part)
                    and (part.startswith(".") or not e.name.startswith("."))
                )
        else:
            names = [part]
        for name in names:
            path = f"{prefix}{name}"
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if last:
                found.append(path)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise StorageError(
                    f"{what}: /{path} is a symlink; the node does not follow links a task made."
                )
            if not stat.S_ISDIR(st.st_mode):
                continue
            nfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            try:
                step(nfd, index + 1, path + "/")
            finally:
                os.close(nfd)

    if not parts:
        return []
    dfd = open_dir(root, "", what=what)
    try:
        step(dfd, 0, "")
    finally:
        os.close(dfd)
    return found


def tail(fd: int, limit: int) -> str:
    """The last ``limit`` bytes of an open file, decoded (what the task wrote to it)."""
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - limit)
        return os.pread(fd, size - start, start).decode("utf-8", errors="replace")
    except OSError:
        return ""


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give ``path`` and everything below it to ``uid:gid`` (links themselves, never targets)."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
