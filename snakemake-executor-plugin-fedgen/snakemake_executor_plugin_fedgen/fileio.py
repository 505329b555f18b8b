"""Atomic file writes, and reading text that may be gzip/BGZF-compressed.

Every file fedgen writes appears at its path complete or not at all. :func:`atomic_write`
writes a temporary file in the same directory (same file system, so the rename is atomic),
flushes and fsyncs it, then ``os.replace``-s it over the target; on any error the temporary
file is removed and an existing file at the target is left as it was. Readers, and concurrent
writers of the same path, therefore see either the old or the new content, never a mixture.

:func:`open_text` and :func:`open_binary` open plain or gzip-compressed files (BGZF, as written
by ``bgzip``, is multi-member gzip), recognised by their magic bytes rather than their name.
They use ISA-L's ``igzip`` (same format, 2-4 times faster) when the optional ``isal`` package is
installed and the standard library's :mod:`gzip` otherwise; this distribution does not depend
on ``isal``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import secrets
import zlib
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, cast

_igzip: ModuleType | None
_isal_error: type[BaseException] | None
try:  # optional: snakemake-fedgen installs it, the executor plugin alone does not need it
    from isal import igzip as _igzip
    from isal.isal_zlib import error as _isal_error_class

    _isal_error = cast(type[BaseException], _isal_error_class)
except ImportError:  # pragma: no cover - depends on the environment
    _igzip = None
    _isal_error = None

__all__ = [
    "DECOMPRESS_ERRORS",
    "AtomicFile",
    "atomic_write",
    "compression",
    "fast_gzip",
    "open_binary",
    "open_text",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: The gzip implementation for bulk reading and writing: ISA-L's ``igzip`` when installed (the
#: same API as :mod:`gzip`), else :mod:`gzip`.
fast_gzip: ModuleType = _igzip if _igzip is not None else gzip

#: Exceptions a corrupt compressed stream raises while it is read (besides ``OSError`` and
#: ``EOFError``), for whichever implementation :data:`fast_gzip` is.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    (zlib.error, _isal_error) if _isal_error is not None else (zlib.error,)
)

_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class AtomicFile:
    """A temporary file next to ``path`` that replaces ``path`` on :meth:`commit`.

    Used as a context manager (see :func:`atomic_write`) it yields the open file object and
    commits when the block succeeds, or discards the temporary file when it raises. Use the
    object itself when the file must be checked before it is published: after ``file.flush()``
    the complete content is readable at :attr:`tmp`::

        out = AtomicFile(path, "wb")
        with out as f:
            f.write(data)
            f.flush()
            check(out.tmp)  # raising here leaves nothing at path

    Parameters
    ----------
    path : path-like
        Final path; its parent directory is created if missing.
    mode : {"w", "wb"}
        Text or binary.
    encoding : str
        Text mode only (default UTF-8).
    newline : str, optional
        Text mode only, as for :func:`open`.
    perms : int, optional
        Exact permission bits of the result (e.g. ``0o600`` for a private key; the temporary
        file has them from its creation). By default the result gets what a plain ``open()``
        would give: ``0o666`` less the umask.

    Attributes
    ----------
    path : Path
        The final path.
    tmp : Path
        The temporary file (hidden: ``.<name>.<random>.tmp``).
    file : file object
        The open temporary file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "w",
        *,
        encoding: str | None = None,
        newline: str | None = None,
        perms: int | None = None,
    ) -> None:
        if mode not in ("w", "wb", "wt"):
            raise ValueError(f"atomic_write mode must be 'w' or 'wb'; got {mode!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = _create_temp(self.path, 0o600 if perms is not None else 0o666)
        try:
            if perms is not None:
                os.fchmod(fd, perms)
            if "b" in mode:
                self.file: IO[Any] = os.fdopen(fd, "wb")
            else:
                self.file = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        self._done = False

    def commit(self) -> None:
        """Flush, fsync and close the file, then rename it over :attr:`path`."""
        if self._done:
            return
        self._done = True
        try:
            if self.file.closed:  # closed by the caller: sync what reached the file
                fd = os.open(self.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self._remove()
            raise
        _fsync_directory(self.path.parent)

    def discard(self) -> None:
        """Close and remove the temporary file; :attr:`path` is not touched."""
        if self._done:
            return
        self._done = True
        self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    perms: int | None = None,
) -> AtomicFile:
    """Open ``path`` for writing so that it appears complete or not at all.

    Use as ``with atomic_write(path) as f: f.write(...)``: the content goes to a temporary file
    in the same directory that is fsynced and renamed over ``path`` when the block succeeds and
    removed when it raises. Parameters as for :class:`AtomicFile`.
    """
    return AtomicFile(path, mode, encoding=encoding, newline=newline, perms=perms)


def write_text_atomic(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    perms: int | None = None,
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding=encoding, newline=newline, perms=perms) as f:
        f.write(text)


def write_bytes_atomic(
    path: str | os.PathLike[str], data: bytes, *, perms: int | None = None
) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", perms=perms) as f:
        f.write(data)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    # os.open with O_EXCL like mkstemp, but with the mode a plain open() uses (the kernel
    # applies the umask), so the result needs no chmod and the umask is never changed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {path}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; best effort (not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def compression(path: str | os.PathLike[str]) -> str | None:
    """The compression the file's magic bytes announce: ``gzip`` (also BGZF), ``zstd``,
    ``bzip2``, ``xz``, or None for anything else (plain text, binary formats, empty files).

    Raises
    ------
    OSError
        The file cannot be opened.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a plain or gzip/BGZF-compressed file for reading its (decompressed) bytes.

    Compression is recognised by the magic bytes, not the name; gzip goes through
    :data:`fast_gzip`. A corrupt stream raises ``OSError``, ``EOFError`` or one of
    :data:`DECOMPRESS_ERRORS` while it is read.
    """
    if compression(path) == "gzip":
        stream: IO[bytes] = fast_gzip.open(path, "rb")
        return stream
    return open(path, "rb")


def open_text(
    path: str | os.PathLike[str],
    *,
    encoding: str = "utf-8",
    errors: str | None = None,
    newline: str | None = None,
) -> io.TextIOWrapper:
    """Open a plain or gzip/BGZF-compressed text file for reading.

    Parameters as for :func:`open` (``newline="\\n"`` keeps ``\\r`` in lines; ``newline=""``
    is what :mod:`csv` wants). See :func:`open_binary` for compression and errors.
    """
    if compression(path) == "gzip":
        return io.TextIOWrapper(
            fast_gzip.open(path, "rb"), encoding=encoding, errors=errors, newline=newline
        )
    return open(path, encoding=encoding, errors=errors, newline=newline)
