"""Ingress: coordinator files too large (or binary) for inline ``content``, uploaded first.

A caller uploads a file with ``PUT /fedgen/v1/ingress/<sha256>`` (raw body, streamed to a
temporary file, checked against the path's digest, then renamed into place) and names it in a
task as the input URL ``fedgen-ingress:sha256:<hex>``. The node keeps each caller's files in
its own directory of the node-private state directory::

    STATE/ingress/<area>/<sha256>        (0700 directories, 0600 files, the node's)

so a task never sees the ingress area; at staging the node copies the caller's own file into
the task (hashing it again, mode 0444: data, never a program) and refuses the task if the bytes
no longer match. Ingress is inbound only: nothing here returns a file's content, and ``GET``/
``HEAD`` only say whether the caller's own area holds a digest.

Bounds: ``max_ingress_bytes`` per file, ``max_ingress_bytes_per_caller`` per area (uploads in
flight count), ``min_free_disk_mb`` under the state directory. Files neither uploaded again nor
used by a task for ``ingress_keep_days`` are removed (:meth:`IngressStore.collect_garbage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from snakemake_executor_plugin_fedgen.errors import InvalidTask, StorageError
from snakemake_executor_plugin_fedgen.tes.ingress import (
    INGRESS_PREFIX,
    INGRESS_SCHEME,
    ingress_digest,
    ingress_url,
    is_digest,
    is_ingress_url,
)

from snakemake_fedgen.node.areas import is_area_name

if TYPE_CHECKING:
    from snakemake_fedgen.node.config import NodeConfig

__all__ = [
    "INGRESS_PREFIX",
    "INGRESS_SCHEME",
    "IngressRefused",
    "IngressStore",
    "IngressUpload",
    "ingress_digest",
    "ingress_url",
    "is_digest",
    "is_ingress_url",
]

_PART = ".part"
_CHUNK = 1 << 20


class IngressRefused(StorageError):
    """An upload the node does not keep; ``status`` is the HTTP answer (400, 413, 507)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class IngressUpload:
    """One upload in progress: a temporary file in the caller's area, hashed as it grows."""

    store: IngressStore
    area: str
    digest: str
    dir_fd: int
    tmp: str
    fd: int
    base: int
    received: int = 0
    disk_checked_at: int = -1

    def __post_init__(self) -> None:
        self._sha = hashlib.sha256()

    def write(self, block: bytes) -> None:
        """Append ``block``; past the per-file cap, the caller's quota or the free-disk floor
        the upload is refused (IngressRefused; :meth:`abort` removes the temporary file)."""
        self.received += len(block)
        self.store._check_bounds(self)
        self._sha.update(block)
        view = memoryview(block)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> bool:
        """Check the digest and rename the file into place; True if it was new.

        Raises
        ------
        IngressRefused
            The bytes do not hash to the digest of the URL (400); nothing is kept.
        """
        got = self._sha.hexdigest()
        if got != self.digest:
            raise IngressRefused(
                400,
                f"the uploaded {self.received} bytes have sha256 {got}, not {self.digest} as "
                "the URL says; nothing was kept. Upload the file under its own sha256.",
            )
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        existed = self.store._present_at(self.dir_fd, self.digest) is not None
        if existed:
            os.unlink(self.tmp, dir_fd=self.dir_fd)
            os.utime(self.digest, dir_fd=self.dir_fd, follow_symlinks=False)
        else:
            os.replace(self.tmp, self.digest, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.tmp = ""
        return not existed

    def abort(self) -> None:
        """Remove the temporary file (nothing of a refused upload stays on disk)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            self.tmp = ""

    def close(self) -> None:
        """Abort if not committed, release the directory and the caller's reservation."""
        self.abort()
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1
        self.store._end(self)


class IngressStore:
    """The node's ingress directory (``STATE/ingress``), one subdirectory per caller's area.

    Parameters
    ----------
    root
        ``STATE/ingress``; created 0700.
    max_bytes
        Largest single file (``max_ingress_bytes``).
    quota
        Total bytes of one area, uploads in flight included (``max_ingress_bytes_per_caller``).
    keep_seconds
        Files not uploaded again or used for this long are removed by :meth:`collect_garbage`.
    min_free_bytes
        Free space kept on the file system of ``root``.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        quota: int,
        keep_seconds: float,
        min_free_bytes: int = 0,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.quota = quota
        self.keep_seconds = keep_seconds
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        self._inflight: dict[int, IngressUpload] = {}

    @classmethod
    def of(cls, cfg: NodeConfig) -> IngressStore:
        """The ingress store of a node config."""
        return cls(
            cfg.state_dir / "ingress",
            max_bytes=cfg.max_ingress_bytes,
            quota=cfg.max_ingress_bytes_per_caller,
            keep_seconds=cfg.ingress_keep_days * 86400,
            min_free_bytes=cfg.min_free_disk_mb * 1024 * 1024,
        )

    # -- directories ------------------------------------------------------------------------------

    def _area_fd(self, area: str, *, create: bool) -> int | None:
        """An fd of the area's directory (no symlink followed), or None if it does not exist."""
        if not is_area_name(area):
            raise StorageError(f"{area!r} is not a caller's area name.")
        if create:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(area, 0o700, dir_fd=root_fd)
            try:
                return os.open(area, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            except FileNotFoundError:
                return None
        finally:
            os.close(root_fd)

    @staticmethod
    def _present_at(dir_fd: int, digest: str) -> os.stat_result | None:
        try:
            st = os.stat(digest, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def size_of(self, area: str, digest: str) -> int | None:
        """Size of the caller's file ``digest``, or None if its area holds no such file."""
        if not is_digest(digest):
            return None
        fd = self._area_fd(area, create=False)
        if fd is None:
            return None
        try:
            st = self._present_at(fd, digest)
        finally:
            os.close(fd)
        return None if st is None else st.st_size

    def usage(self, area: str) -> int:
        """Bytes held in the caller's area (finished files)."""
        fd = self._area_fd(area, create=False)
        if fd is None:
            return 0
        try:
            total = 0
            for name in os.listdir(fd):
                st = self._present_at(fd, name) if is_digest(name) else None
                total += st.st_size if st is not None else 0
            return total
        finally:
            os.close(fd)

    # -- upload -----------------------------------------------------------------------------------

    def begin(self, area: str, digest: str, *, length: int | None) -> IngressUpload:
        """Start an upload of ``digest`` for the caller of ``area``.

        Raises
        ------
        IngressRefused
            A digest not in the accepted form (400), an announced ``length`` past the per-file
            cap or the caller's quota (413), or too little free disk (507).
        """
        if not is_digest(digest):
            raise IngressRefused(
                400,
                f"{digest[:80]!r} is not a sha256; upload to {INGRESS_PREFIX}/<sha256> with 64 "
                "lower-case hex digits.",
            )
        if length is not None and length > self.max_bytes:
            raise IngressRefused(413, self._too_large())
        dir_fd = self._area_fd(area, create=True)
        assert dir_fd is not None
        tmp = f".{digest[:16]}.{secrets.token_hex(6)}{_PART}"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
        except OSError:
            os.close(dir_fd)
            raise
        upload = IngressUpload(self, area, digest, dir_fd, tmp, fd, base=self.usage(area))
        with self._lock:
            self._inflight[id(upload)] = upload
        try:
            # The announced length against the caps, and the free disk, before any byte.
            upload.received = length or 0
            self._check_bounds(upload)
            upload.received, upload.disk_checked_at = 0, 0
        except IngressRefused:
            upload.close()
            raise
        return upload

    def _check_bounds(self, upload: IngressUpload) -> None:
        if upload.received > self.max_bytes:
            raise IngressRefused(413, self._too_large())
        with self._lock:
            others = sum(
                u.received
                for u in self._inflight.values()
                if u.area == upload.area and u is not upload
            )
        if upload.base + others + upload.received > self.quota:
            raise IngressRefused(
                413,
                f"this upload would take your ingress files past {self.quota} bytes (the node's "
                f"max_ingress_bytes_per_caller; {upload.base} bytes held"
                + (f", {others} in other uploads" if others else "")
                + "); nothing was kept. Files unused for the node's ingress_keep_days are "
                "removed; ask the site for a larger quota.",
            )
        # The free-disk floor, looked at every 16 MiB rather than every block.
        if upload.disk_checked_at < 0 or upload.received - upload.disk_checked_at >= 16 * _CHUNK:
            upload.disk_checked_at = upload.received
            free = shutil.disk_usage(self.root).free
            if free < self.min_free_bytes:
                raise IngressRefused(
                    507,
                    f"the disk under the node's state directory has {free} bytes free, less "
                    "than the node's min_free_disk_mb; nothing was kept. The site must free "
                    "space.",
                )

    def _end(self, upload: IngressUpload) -> None:
        with self._lock:
            self._inflight.pop(id(upload), None)

    def _too_large(self) -> str:
        return (
            f"the upload is larger than {self.max_bytes} bytes (the node's max_ingress_bytes); "
            "nothing was kept. Make it a site dataset (fedgen sites ref) or split it."
        )

    # -- use ----------------------------------------------------------------------------------

    def check_present(self, area: str, digest: str, *, what: str) -> int:
        """Size of the caller's file ``digest``, marked as used; unknown digests refused.

        Raises
        ------
        InvalidTask
            The caller's area holds no file with this digest (another caller's does not count).
        """
        size = self.size_of(area, digest)
        if size is None:
            raise InvalidTask(
                f"{what} {ingress_url(digest)!r}: you have uploaded no file with this sha256 to "
                f"this node; upload it first (PUT {INGRESS_PREFIX}/{digest}), or it was removed "
                "after the node's ingress_keep_days without use."
            )
        self.touch(area, digest)
        return size

    def touch(self, area: str, digest: str) -> None:
        """Mark the file as used now (its modification time), so garbage collection keeps it."""
        fd = self._area_fd(area, create=False)
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.utime(digest, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def stage(self, area: str, digest: str, dest: Path) -> int:
        """Copy the caller's file ``digest`` to ``dest`` (mode 0444), checking its sha256.

        Returns the size. The file is opened beneath the area without following links, and the
        bytes written are hashed: a file changed on disk since upload is refused.

        Raises
        ------
        StorageError
            No such file in the caller's area (removed meanwhile), or its bytes changed.
        """
        fd = self._area_fd(area, create=False) if is_digest(digest) else None
        try:
            src = (
                os.open(digest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                if fd is not None
                else -1
            )
        except FileNotFoundError:
            src = -1
        finally:
            if fd is not None:
                os.close(fd)
        if src < 0:
            raise StorageError(
                f"ingress file {ingress_url(digest)} is no longer at the node (removed after "
                "ingress_keep_days without use); upload it again and resubmit."
            )
        sha = hashlib.sha256()
        size = 0
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise StorageError(f"ingress file {ingress_url(digest)} is not a regular file.")
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                while block := os.read(src, _CHUNK):
                    sha.update(block)
                    size += len(block)
                    view = memoryview(block)
                    while view:
                        view = view[os.write(out, view) :]
                # Data, never a program: no execute bit, whatever the upload was.
                os.fchmod(out, 0o444)
            finally:
                os.close(out)
        finally:
            os.close(src)
        if sha.hexdigest() != digest:
            dest.unlink()
            raise StorageError(
                f"ingress file {ingress_url(digest)} no longer has that sha256 (changed on the "
                "node's disk); the task was not run. Upload it again."
            )
        self.touch(area, digest)
        return size

    # -- garbage collection -------------------------------------------------------------------------

    def collect_garbage(self, *, now: float | None = None, stale_parts: bool = False) -> list[str]:
        """Remove files unused for ``keep_seconds`` (and, with ``stale_parts``, temporary files
        left by a crash); return ``area/name`` of each file removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            areas = os.listdir(self.root)
        except FileNotFoundError:
            return removed
        with self._lock:
            busy = {(u.area, u.tmp) for u in self._inflight.values()}
        for area in areas:
            if not is_area_name(area):
                continue
            fd = self._area_fd(area, create=False)
            if fd is None:
                continue
            try:
                for name in os.listdir(fd):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    old = now - st.st_mtime > self.keep_seconds
                    part = name.endswith(_PART) and (area, name) not in busy
                    if (is_digest(name) and old) or (part and (stale_parts or old)):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=fd)
                        removed.append(f"{area}/{name}")
            finally:
                os.close(fd)
        return removed
