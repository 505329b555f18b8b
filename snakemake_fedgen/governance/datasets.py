"""Which governed datasets an input reads, decided on its canonical path, never on URL text.

``file:///srv/data/x``, ``/srv/data/x``, ``file://localhost/srv/data/x``, ``FILE:///srv//./data/x``
and ``file:///srv/%64ata/x`` are one file, and so is a symlink to it. Every local input URL is
parsed (scheme case, ``localhost``), percent-decoded, normalised (``//``, ``.``; ``..`` is
refused) and resolved (symlinks) before any rule is applied, and the rules of
``datasets_requiring_visa`` are resolved the same way. A DIRECTORY input needs the visa of every
governed dataset inside it, and of every governed file a symlink inside it leads to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from snakemake_executor_plugin_fedgen.errors import StorageError

LOCAL_HOSTS = ("", "localhost")
_WALK_LIMIT = 100_000


def is_remote(url: str) -> bool:
    """True for http(s) URLs (any case)."""
    return not url.startswith("/") and urlsplit(url).scheme.lower() in ("http", "https")


def local_path(url: str, *, what: str = "input") -> PurePosixPath:
    """The canonical absolute path a ``file:`` URL (or a bare absolute path) names.

    ``file:`` in any case, an empty or ``localhost`` authority, percent-decoding, ``//`` and
    ``.`` segments collapsed. Raises StorageError for other schemes or hosts, a query or
    fragment, a relative path, NUL bytes and ``..`` segments (checked after decoding).
    """
    if url.startswith("/"):
        raw = url
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise StorageError(f"{what} {url!r} is not a file:// URL.")
        if parts.netloc.lower() not in LOCAL_HOSTS:
            raise StorageError(f"{what} {url!r} names host {parts.netloc!r}; use file:///path.")
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            raise StorageError(
                f"{what} {url!r} has a query or fragment; percent-encode '?' and '#' in names."
            )
        raw = unquote(parts.path)
    if "\x00" in raw or not raw.startswith("/"):
        raise StorageError(f"{what} {url!r} is not an absolute path.")
    segments = raw.split("/")
    if ".." in segments:
        raise StorageError(f"{what} {url!r} contains '..'; path traversal is refused.")
    return PurePosixPath("/" + "/".join(s for s in segments if s not in ("", ".")))


def real_path(url: str, *, what: str = "input") -> Path:
    """:func:`local_path` with every symlink resolved (what the node would really read)."""
    return Path(os.path.realpath(local_path(url, what=what)))


@dataclass(frozen=True)
class _Rule:
    dataset: str
    url: str
    # Local rules: the resolved directory the rule covers, or the resolved parent directory
    # plus the name prefix the rule text ends with (``file:///srv/data/EGAD1_``).
    directory: Path | None = None
    parent: Path | None = None
    name_prefix: str = ""

    def covers(self, real: Path) -> bool:
        """The rule governs the file or directory at resolved path ``real``."""
        if self.directory is not None:
            return real == self.directory or real.is_relative_to(self.directory)
        if self.parent is None or real == self.parent or not real.is_relative_to(self.parent):
            return False
        # The first name below the parent starts with the prefix: the file itself, or a
        # directory (and everything in it) whose name does.
        return real.relative_to(self.parent).parts[0].startswith(self.name_prefix)

    def inside(self, directory: Path) -> bool:
        """Some governed file may lie inside ``directory`` (resolved)."""
        where = self.directory if self.directory is not None else self.parent
        return where is not None and (where == directory or where.is_relative_to(directory))


class DatasetRules:
    """``datasets_requiring_visa`` (URL prefix -> dataset id), canonicalised once."""

    def __init__(self, rules: Mapping[str, str] | None) -> None:
        self.remote: list[tuple[str, str]] = []
        self.local: list[_Rule] = []
        for prefix, dataset in (rules or {}).items():
            if is_remote(prefix):
                self.remote.append((prefix, dataset))
                continue
            path = local_path(prefix, what="datasets_requiring_visa prefix")
            if prefix.endswith("/") or path == PurePosixPath("/"):
                self.local.append(_Rule(dataset, prefix, directory=Path(os.path.realpath(path))))
            else:
                # A name prefix; if it also names an existing file or directory, that is covered.
                self.local.append(
                    _Rule(
                        dataset,
                        prefix,
                        parent=Path(os.path.realpath(path.parent)),
                        name_prefix=path.name,
                    )
                )
                if os.path.lexists(path):
                    self.local.append(
                        _Rule(dataset, prefix, directory=Path(os.path.realpath(path)))
                    )

    def __bool__(self) -> bool:
        return bool(self.remote or self.local)

    def for_input(self, url: str, *, kind: str = "FILE") -> set[str]:
        """Dataset ids whose visa reading ``url`` (a FILE or DIRECTORY input) needs."""
        if is_remote(url):
            return {ds for prefix, ds in self.remote if url.startswith(prefix)}
        real = real_path(url)
        if kind == "DIRECTORY" or real.is_dir():
            return self._in_directory(real)
        return self._covering(real)

    def _covering(self, real: Path) -> set[str]:
        return {r.dataset for r in self.local if r.covers(real)}

    def _in_directory(self, real: Path) -> set[str]:
        needed: set[str] = set()
        seen: set[Path] = set()
        todo = [real]
        count = 0
        while todo:
            top = todo.pop()
            if top in seen:
                continue
            seen.add(top)
            needed |= self._covering(top)
            needed |= {r.dataset for r in self.local if r.inside(top)}
            # Symlinks inside lead to whatever they point at: that needs its visa as well.
            for dirpath, dirnames, filenames in os.walk(top):
                for name in [*dirnames, *filenames]:
                    count += 1
                    if count > _WALK_LIMIT:
                        raise StorageError(
                            f"directory input {real} holds more than {_WALK_LIMIT} entries; "
                            "name a smaller directory."
                        )
                    entry = os.path.join(dirpath, name)
                    if not os.path.islink(entry):
                        continue
                    target = Path(os.path.realpath(entry))
                    if target.is_dir():
                        todo.append(target)
                    else:
                        needed |= self._covering(target)
        return needed


def datasets_for_inputs(
    inputs: Iterable[tuple[str, str]], rules: Mapping[str, str] | DatasetRules | None
) -> dict[str, set[str]]:
    """Map each (url, FILE|DIRECTORY) input that reads governed data to its dataset ids."""
    rules = rules if isinstance(rules, DatasetRules) else DatasetRules(rules)
    out: dict[str, set[str]] = {}
    if not rules:
        return out
    for url, kind in inputs:
        needed = rules.for_input(url, kind=kind)
        if needed:
            out[url] = needed
    return out
