"""Task inputs and outputs: ``file://`` under the configured roots, ``http(s)://``, ``content``.

Every site path is resolved (symlinks followed) and must stay inside an allowed root; ``..``
is refused before resolving so a request never even names a path outside. Outputs are copied
to a temporary file in the destination directory and renamed into place.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from snakemake_executor_plugin_fedgen.errors import StorageError


def host_path(task_root: Path, container_path: str) -> Path:
    """Where a (checked, normalised) container path lives in the task's host directory."""
    return task_root / container_path.lstrip("/")


def url_scheme(url: str) -> str:
    if url.startswith("/"):
        return "file"
    return urlsplit(url).scheme.lower()


def file_url_path(url: str, *, what: str) -> Path:
    """The local path of a ``file://`` URL (or a bare absolute path), ``..`` refused."""
    if url.startswith("/"):
        raw = url
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise StorageError(f"{what} {url!r} is not a file:// URL.")
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"{what} {url!r} names host {parts.netloc!r}; use file:///path.")
        raw = unquote(parts.path)
    if not raw.startswith("/") or "\x00" in raw:
        raise StorageError(f"{what} {url!r} is not an absolute path.")
    if ".." in raw.split("/"):
        raise StorageError(f"{what} {url!r} contains '..'; path traversal is refused.")
    return Path(raw)


def inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_under(path: Path, roots: Sequence[Path], *, what: str, url: str) -> Path:
    """Resolve symlinks in ``path`` and require the result inside one of ``roots``."""
    real = Path(os.path.realpath(path))
    if not inside(real, roots):
        shown = ", ".join(str(r) for r in roots) or "(none configured)"
        if real != path:
            raise StorageError(
                f"{what} {url!r} resolves (through a symlink) to {real}, outside the allowed "
                f"roots {shown}; symlink escapes are refused."
            )
        raise StorageError(f"{what} {url!r} is outside the allowed roots {shown}.")
    return real


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


def check_input_url(
    url: str,
    *,
    kind: str,
    read_roots: Sequence[Path],
    what: str,
    allowed_hosts: Sequence[str] = (),
) -> Path | None:
    """Check an input URL; return the resolved local path for ``file://`` inputs."""
    scheme = url_scheme(url)
    if scheme in ("http", "https"):
        check_http_host(url, allowed_hosts, what=what)
        return None
    if scheme != "file":
        raise StorageError(
            f"{what} {url!r}: scheme {scheme!r} is not supported; use file://, http(s):// or "
            "content."
        )
    path = file_url_path(url, what=what)
    real = resolve_under(path, read_roots, what=what, url=url)
    if not real.exists():
        raise StorageError(f"{what} {url!r} does not exist.")
    if kind == "FILE" and not real.is_file():
        raise StorageError(f"{what} {url!r} is not a file (type is FILE).")
    if kind == "DIRECTORY":
        if not real.is_dir():
            raise StorageError(f"{what} {url!r} is not a directory (type is DIRECTORY).")
        # A symlink inside an input directory must not lead out of the roots either.
        for dirpath, dirnames, filenames in os.walk(real):
            for name in [*dirnames, *filenames]:
                entry = Path(dirpath, name)
                if entry.is_symlink():
                    resolve_under(
                        entry, read_roots, what=what, url=f"{url}/{entry.relative_to(real)}"
                    )
    return real


def check_output_url(url: str, *, write_roots: Sequence[Path], what: str) -> Path:
    """Check an output URL; return the local destination (its parent resolved)."""
    scheme = url_scheme(url)
    if scheme != "file":
        raise StorageError(
            f"{what} {url!r}: outputs must be file:// URLs under the node's write roots."
        )
    path = file_url_path(url, what=what)
    # Resolve the deepest existing ancestor: the destination itself may not exist yet.
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    real_parent = resolve_under(parent, write_roots, what=what, url=url)
    dest = real_parent / path.relative_to(parent)
    if dest.is_symlink():
        dest = resolve_under(dest, write_roots, what=what, url=url)
    elif not inside(dest, write_roots):
        raise StorageError(f"{what} {url!r} is outside the write roots.")
    return dest


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
    """One file to upload: where it is in the task, its container path and destination."""

    source: Path
    container_path: str
    url: str
    dest: Path


def collect_outputs(
    outputs: Sequence[dict[str, Any]], *, task_root: Path, write_roots: Sequence[Path]
) -> list[OutputFile]:
    """Expand the task's outputs (FILE, DIRECTORY, wildcard) into single files, all checked.

    Raises
    ------
    StorageError
        A declared output is missing, leaves the task root through a symlink, or its
        destination is outside the write roots.
    """
    files: list[OutputFile] = []
    for i, out in enumerate(outputs):
        what = f"outputs[{i}]"
        cpath = out["path"]
        if any(c in cpath for c in "*?["):
            prefix = out["path_prefix"].rstrip("/")
            pattern = str(host_path(task_root, cpath))
            for match in sorted(glob.glob(pattern)):
                mpath = Path(match)
                rel_container = "/" + str(mpath.relative_to(task_root))
                pruned = rel_container[len(prefix) :].lstrip("/")
                for src, sub in _files_of(mpath, task_root, what=what):
                    tail = f"{pruned}/{sub}" if sub else pruned
                    url = out["url"].rstrip("/") + "/" + tail
                    dest = check_output_url(url, write_roots=write_roots, what=what)
                    files.append(OutputFile(src, f"{rel_container}/{sub}".rstrip("/"), url, dest))
            continue
        src = host_path(task_root, cpath)
        if not src.exists() and not src.is_symlink():
            raise StorageError(f"{what}: the task did not create {cpath}.")
        if out.get("type", "FILE") == "FILE" and src.is_dir() and not src.is_symlink():
            raise StorageError(f"{what}: {cpath} is a directory but the output type is FILE.")
        for file, sub in _files_of(src, task_root, what=what):
            url = out["url"].rstrip("/") + "/" + sub if sub else out["url"]
            dest = check_output_url(url, write_roots=write_roots, what=what)
            files.append(OutputFile(file, f"{cpath}/{sub}" if sub else cpath, url, dest))
    return files


def _files_of(path: Path, task_root: Path, *, what: str) -> Iterator[tuple[Path, str]]:
    """Regular files at or under ``path`` with their path relative to it; symlinks checked."""
    real_root = Path(os.path.realpath(task_root))
    real = Path(os.path.realpath(path))
    if not inside(real, [real_root]):
        raise StorageError(
            f"{what}: {path.relative_to(task_root)} is a symlink leading outside the task "
            f"(to {real}); outputs must be files the task wrote."
        )
    if real.is_file():
        yield real, ""
        return
    if not real.is_dir():
        raise StorageError(f"{what}: {path.relative_to(task_root)} is not a regular file.")
    for dirpath, _dirnames, filenames in os.walk(real):
        for name in sorted(filenames):
            entry = Path(dirpath, name)
            sub = str(entry.relative_to(real))
            target = Path(os.path.realpath(entry))
            if not inside(target, [real_root]) or not target.is_file():
                raise StorageError(
                    f"{what}: {sub} inside {path.relative_to(task_root)} leads outside the "
                    "task or is not a regular file."
                )
            yield target, sub


def publish(src: Path, dest: Path, *, expect_sha256: str | None = None) -> str:
    """Copy ``src`` to ``dest`` atomically (temporary file in the same directory, rename).

    Returns the SHA-256 of the bytes written. With ``expect_sha256`` a different content
    (the file changed after it was checked) is refused and nothing is written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(dest)
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                digest.update(chunk)
                fout.write(chunk)
        if expect_sha256 is not None and digest.hexdigest() != expect_sha256:
            raise StorageError(
                f"{src.name} changed after the airlock checked it; it was not published."
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return digest.hexdigest()


def _tmp_beside(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)
