"""Task inputs and outputs: ``file://`` under the configured roots, ``http(s)://``, ``content``.

Every input URL is parsed and canonicalised (:func:`snakemake_fedgen.governance.datasets.
local_path`), mapped to the caller's area if it lies under a write root
(:mod:`snakemake_fedgen.node.areas`), resolved (symlinks followed) and must stay inside what
the caller may read; ``..`` is refused before resolving. Outputs are read from the task
directory without following anything the task planted (:mod:`snakemake_fedgen.node.paths`) and
written beneath the caller's area the same way: a temporary file in the destination directory,
renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit

from snakemake_executor_plugin_fedgen.errors import InvalidTask, StorageError

from snakemake_fedgen.governance.datasets import local_path
from snakemake_fedgen.node import paths
from snakemake_fedgen.node.areas import SiteRoots, Target
from snakemake_fedgen.node.ingress import IngressStore, ingress_digest, is_ingress_url


def host_path(task_root: Path, container_path: str) -> Path:
    """Where a (checked, normalised) container path lives in the task's host directory.

    Only for paths the node itself creates before any executor ran; everything a task may
    have touched goes through :mod:`snakemake_fedgen.node.paths`.
    """
    return task_root / container_path.lstrip("/")


def url_scheme(url: str) -> str:
    if url.startswith("/"):
        return "file"
    return urlsplit(url).scheme.lower()


def file_url_path(url: str, *, what: str) -> Path:
    """The canonical local path of a ``file:`` URL (or a bare absolute path), ``..`` refused."""
    return Path(local_path(url, what=what))


def inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def check_http_host(url: str, allowed_hosts: Sequence[str], *, what: str) -> None:
    """Refuse an http(s) URL whose host (or ``host:port``) matches no allow-list pattern.

    A node fetches http(s) inputs from inside the site's network; without this check any caller
    could make it read internal services (server-side request forgery).
    """
    import fnmatch

    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    if not any(
        fnmatch.fnmatchcase(host, pat.lower()) or fnmatch.fnmatchcase(netloc, pat.lower())
        for pat in allowed_hosts
    ):
        allowed = ", ".join(allowed_hosts) if allowed_hosts else "none"
        raise StorageError(
            f"{what} {url!r}: this node does not fetch http(s) inputs from {netloc or '?'} "
            f"(allowed_input_hosts: {allowed}); ask the site to allow the host, or use data "
            "already at the site (file://) or small inline content."
        )


def check_task_urls(
    cfg: Any, doc: dict[str, Any], *, area: str, ingress: IngressStore | None = None
) -> None:
    """Refuse, at submission, inputs and outputs the caller of ``area`` may not use.

    Raises StorageError naming the field: http(s) hosts off the allow-list, local inputs
    outside the read roots and the caller's area (in any spelling, through any symlink),
    outputs outside the write roots or through a symlink in the caller's area; InvalidTask for
    an ingress URL (``fedgen-ingress:sha256:<hex>``) the caller's own ingress area does not
    hold (or a node without ``ingress``).
    """
    roots = SiteRoots.of(cfg)
    for i, item in enumerate(doc.get("inputs") or []):
        if item.get("content"):
            continue
        url, what = item["url"], f"inputs[{i}]"
        scheme = url_scheme(url)
        if is_ingress_url(url):
            digest = ingress_digest(url, what=what)
            if item.get("type", "FILE") != "FILE":
                raise InvalidTask(f"{what} {url!r}: ingress inputs must be of type FILE.")
            if ingress is None:
                raise InvalidTask(f"{what} {url!r}: this node has no ingress endpoint.")
            ingress.check_present(area, digest, what=what)
        elif scheme in ("http", "https"):
            check_http_host(url, cfg.allowed_input_hosts, what=what)
        elif scheme == "file":
            roots.input_path(url, kind=item.get("type", "FILE"), area=area, what=what)
        else:
            raise StorageError(
                f"{what} {url!r}: scheme {scheme!r} is not supported; use file://, http(s)://, "
                "content or fedgen-ingress:sha256:<hex>."
            )
    for i, item in enumerate(doc.get("outputs") or []):
        what = f"outputs[{i}].url"
        if url_scheme(item["url"]) != "file":
            raise StorageError(f"{what} {item['url']!r}: outputs must be file:// URLs.")
        target = roots.output_target(item["url"], area=area, what=what)
        _check_no_link(target, url=item["url"], what=what)


def _check_no_link(target: Target, *, url: str, what: str) -> None:
    """Refuse an output whose existing part in the caller's area is or crosses a symlink."""
    path = target.area_dir
    for part in ["", *(target.rel.split("/") if target.rel else [])]:
        path = path / part if part else path
        if path.is_symlink():
            raise StorageError(
                f"{what} {url!r} passes through a symlink in your area; symlink escapes are "
                "refused."
            )
        if not path.exists():
            return


def fetch_http(
    url: str, dest: Path, *, max_bytes: int, allowed_hosts: Sequence[str], max_redirects: int = 5
) -> None:
    """GET ``url`` into ``dest`` (atomic), refusing bodies larger than ``max_bytes``.

    Redirects are followed by hand so that every hop's host is checked against
    ``allowed_hosts`` (an allowed host must not be able to bounce the node elsewhere).
    """
    import httpx

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(dest)
    try:
        current = url
        with httpx.Client(follow_redirects=False, timeout=60) as client:
            for _ in range(max_redirects + 1):
                check_http_host(current, allowed_hosts, what="input")
                with client.stream("GET", current) as resp:
                    if resp.is_redirect and resp.next_request is not None:
                        current = str(resp.next_request.url)
                        continue
                    if resp.status_code != 200:
                        raise StorageError(f"input {url!r}: HTTP {resp.status_code}.")
                    size = 0
                    with open(tmp, "wb") as fh:
                        for chunk in resp.iter_bytes():
                            size += len(chunk)
                            if size > max_bytes:
                                raise StorageError(
                                    f"input {url!r} is larger than {max_bytes} bytes."
                                )
                            fh.write(chunk)
                    break
            else:
                raise StorageError(f"input {url!r}: more than {max_redirects} redirects.")
        os.replace(tmp, dest)
    except httpx.HTTPError as exc:
        raise StorageError(f"input {url!r}: cannot fetch it ({type(exc).__name__}).") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass(frozen=True)
class OutputFile:
    """One file to upload: its container path, the URL the caller named, where it goes."""

    container_path: str
    url: str
    target: Target
    size: int

    @property
    def dest(self) -> Path:
        return self.target.path

    @property
    def rel(self) -> str:
        """The path below the task root."""
        return self.container_path.lstrip("/")


def collect_outputs(
    outputs: Sequence[dict[str, Any]], *, task_root: Path, roots: SiteRoots, area: str
) -> list[OutputFile]:
    """Expand the task's outputs (FILE, DIRECTORY, wildcard) into single files, all checked.

    The task directory is read without following symlinks: a symlink (or a special file) on
    or under a declared output refuses the task. Files are opened later, one at a time,
    with :func:`open_output`.

    Raises
    ------
    StorageError
        A declared output is missing, is or contains a symlink, or its destination is outside
        the write roots.
    """
    files: list[OutputFile] = []
    for i, out in enumerate(outputs):
        what = f"outputs[{i}]"
        cpath = out["path"]
        target = roots.output_target(out["url"], area=area, what=what)
        if any(c in cpath for c in "*?["):
            prefix = out["path_prefix"].rstrip("/")
            for match in paths.glob(task_root, cpath, what=what):
                rel_container = "/" + match
                pruned = rel_container[len(prefix) :].lstrip("/")
                sub_target = target.child(pruned)
                url = out["url"].rstrip("/") + "/" + pruned
                files.extend(
                    _files_of(task_root, rel_container, url, sub_target, directory=True, what=what)
                )
            continue
        st = paths.lstat(task_root, cpath, what=what)
        if st is None:
            raise StorageError(f"{what}: the task did not create {cpath}.")
        if out.get("type", "FILE") == "FILE" and stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{what}: {cpath} is a directory but the output type is FILE.")
        files.extend(_files_of(task_root, cpath, out["url"], target, directory=True, what=what))
    return files


def _files_of(
    task_root: Path, cpath: str, url: str, target: Target, *, directory: bool, what: str
) -> Iterator[OutputFile]:
    st = paths.lstat(task_root, cpath, what=what)
    if st is None:
        raise StorageError(f"{what}: the task did not create {cpath}.")
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise StorageError(
            f"{what}: {cpath} is a symlink; outputs must be regular files the task wrote "
            "(a symlink could lead outside the task)."
        )
    if stat.S_ISREG(mode):
        yield OutputFile(cpath, url, target, st.st_size)
        return
    if not (directory and stat.S_ISDIR(mode)):
        raise StorageError(f"{what}: {cpath} is not a regular file.")
    for sub, size in paths.walk_files(task_root, cpath, what=what):
        yield OutputFile(
            f"{cpath.rstrip('/')}/{sub}", url.rstrip("/") + "/" + sub, target.child(sub), size
        )


def open_output(task_root: Path, f: OutputFile, *, owner_uid: int | None) -> int:
    """An fd of an output file, opened beneath the task root without following links."""
    return paths.open_file(task_root, f.rel, owner_uid=owner_uid, what=f"output {f.container_path}")


def publish_fd(
    src_fd: int, target: Target, *, expect_sha256: str | None = None, max_bytes: int | None = None
) -> tuple[str, int]:
    """Copy the open file ``src_fd`` to ``target`` beneath its root; return (sha256, size).

    The caller's area (0700) and the parent directories are created without following any
    symlink; the bytes go to a temporary file created with ``O_EXCL`` in the destination
    directory, which is then renamed over the destination. With ``expect_sha256`` a different
    content (the file changed after it was checked) is refused and nothing is written.
    """
    root_fd = paths.open_dir(target.root.path, "", what="write root")
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(target.area, 0o700, dir_fd=root_fd)
        parent, name = paths.split(target.rel) if target.rel else ("", "")
        if not name:
            raise StorageError(f"output {target.path} names a write root, not a file.")
        dfd = paths.open_dir(
            root_fd, f"{target.area}/{parent}".rstrip("/"), create=True, what="output destination"
        )
    finally:
        os.close(root_fd)
    tmp = f".{name[:200]}.{secrets.token_hex(6)}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        out = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            os.lseek(src_fd, 0, os.SEEK_SET)
            while chunk := os.read(src_fd, 1 << 20):
                digest.update(chunk)
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise StorageError(
                        f"output {target.rel} grew beyond {max_bytes} bytes while it was copied."
                    )
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, 0o644)
        finally:
            os.close(out)
        if expect_sha256 is not None and digest.hexdigest() != expect_sha256:
            raise StorageError(
                f"{name} changed after the airlock checked it; it was not published."
            )
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = ""
    except IsADirectoryError:
        raise StorageError(f"output {target.rel}: a directory is in the way.") from None
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
        os.close(dfd)
    return digest.hexdigest(), size


def publish(src: Path, target: Target, *, expect_sha256: str | None = None) -> str:
    """Copy the node-private file ``src`` to ``target`` (see :func:`publish_fd`)."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return publish_fd(fd, target, expect_sha256=expect_sha256)[0]
    finally:
        os.close(fd)


def _tmp_beside(dest: Path) -> Path:
    import tempfile

    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)
