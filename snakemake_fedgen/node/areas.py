"""Callers' areas: every caller works in its own directory of each write root.

A caller names site files by the URLs the site publishes (the registry's ``work_url`` and
``egress_url``), the same for every coordinator. The node maps a ``file://`` URL under a write
root (or the egress root) to that caller's area::

    file:///site/work/results/x.tsv  ->  /site/work/<area>/results/x.tsv
    file:///site/work/egress/A/s.tsv ->  /site/work/egress/<area>/A/s.tsv   (egress root)

so a task can name only its caller's area and the read roots; the executor and the workflow
see no difference. ``<area>`` encodes the caller's whole identity, filesystem-safe and
collision-free (:func:`area_of`)::

    static token caller NAME   static-NAME              (NAME of [A-Za-z0-9._-], <= 64 chars)
                               static_<sha256(NAME)[:32]>   (any other NAME)
    JWT (iss, sub)             jwt-<sha256(iss NUL sub)[:32]>
    no authentication          anonymous

Areas are created by the node, mode 0700. URLs under a read root are not mapped; the longest
root containing a path decides (a write root wins a tie with a read root).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError, StorageError

from snakemake_fedgen.governance.datasets import local_path

ANONYMOUS_AREA = "anonymous"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
AREA_RE = re.compile(r"static-[A-Za-z0-9][A-Za-z0-9._-]{0,63}|static_[0-9a-f]{32}|jwt-[0-9a-f]{32}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def area_of(caller: Any) -> str:
    """The area (and task owner) of an authenticated caller; see the module docstring."""
    kind = getattr(caller, "kind", "static")
    if kind == "anonymous":
        return ANONYMOUS_AREA
    if kind == "jwt":
        issuer = str((caller.claims or {}).get("iss", ""))
        return "jwt-" + _digest(f"{issuer}\0{caller.name}")
    name = str(caller.name)
    return f"static-{name}" if _SAFE_NAME.fullmatch(name) else "static_" + _digest(name)


def is_area_name(name: str) -> bool:
    return name == ANONYMOUS_AREA or AREA_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class Root:
    """A configured root: write roots and the egress root hold per-caller areas."""

    path: Path
    writable: bool
    egress: bool = False


@dataclass(frozen=True)
class Target:
    """Where an output goes: ``root.path / area / rel`` (``rel`` may be empty)."""

    root: Root
    area: str
    rel: str

    @property
    def area_dir(self) -> Path:
        return self.root.path / self.area

    @property
    def path(self) -> Path:
        return self.area_dir / self.rel if self.rel else self.area_dir

    def child(self, sub: str) -> Target:
        return Target(self.root, self.area, f"{self.rel}/{sub}".strip("/"))


class SiteRoots:
    """The site's roots and the mapping of task URLs to files of one caller's area.

    Parameters
    ----------
    private
        Paths no task may read even if a read root contains them (state directory, token
        file, quarantine).
    """

    def __init__(
        self,
        *,
        read_roots: Sequence[Path] = (),
        write_roots: Sequence[Path] = (),
        egress_root: Path | None = None,
        private: Iterable[Path | None] = (),
    ) -> None:
        roots = [Root(Path(p), True) for p in write_roots]
        if egress_root is not None:
            roots = [r for r in roots if r.path != egress_root] + [Root(egress_root, True, True)]
        writable = {r.path for r in roots}
        roots += [Root(Path(p), False) for p in read_roots if Path(p) not in writable]
        # Longest first; a write root before a read root of the same length never happens
        # (equal paths were merged above), so the first match is the one that decides.
        self.roots = sorted(roots, key=lambda r: (-len(r.path.parts), not r.writable))
        self.private = [Path(os.path.realpath(p)) for p in private if p is not None]
        for root in self.roots:
            for outer in self.writable_roots:
                if outer.path != root.path and root.path.is_relative_to(outer.path):
                    first = root.path.relative_to(outer.path).parts[0]
                    if is_area_name(first):
                        raise ConfigError(
                            f"root {root.path} lies where the node keeps callers' areas of "
                            f"{outer.path} (a directory named like {first!r}); rename it."
                        )

    @classmethod
    def of(cls, cfg: Any) -> SiteRoots:
        return cls(
            read_roots=cfg.read_roots,
            write_roots=cfg.write_roots,
            egress_root=cfg.egress_root,
            private=[cfg.state_dir, cfg.token_file, cfg.quarantine_dir],
        )

    @property
    def writable_roots(self) -> list[Root]:
        return [r for r in self.roots if r.writable]

    @property
    def egress(self) -> Root | None:
        return next((r for r in self.roots if r.egress), None)

    def _shown(self, *, writable: bool = False) -> str:
        roots = self.writable_roots if writable else self.roots
        return ", ".join(str(r.path) for r in roots) or "(none configured)"

    def locate(self, path: PurePosixPath | Path) -> Root | None:
        """The root that decides about ``path`` (the longest one containing it)."""
        path = Path(path)
        return next((r for r in self.roots if path == r.path or path.is_relative_to(r.path)), None)

    def physical(self, url: str, area: str, *, what: str = "input") -> Path | None:
        """The host path ``url`` names for the caller of ``area`` (None: outside every root)."""
        lexical = Path(local_path(url, what=what))
        root = self.locate(lexical)
        if root is None:
            return None
        if not root.writable:
            return lexical
        rel = lexical.relative_to(root.path)
        return root.path / area / rel

    def allowed(self, real: Path, area: str) -> bool:
        """May the caller of ``area`` read the resolved path ``real``?"""
        if any(real == p or real.is_relative_to(p) for p in self.private):
            return False
        root = self.locate(real)
        if root is None:
            return False
        return not root.writable or real.is_relative_to(root.path / area)

    def input_path(self, url: str, *, kind: str, area: str, what: str) -> Path:
        """The resolved host path of a ``file:`` input, checked for the caller of ``area``.

        Raises StorageError: outside the roots (also through a symlink), in another caller's
        area, missing, of the wrong type, or a directory holding the node's write roots or
        private files.
        """
        phys = self.physical(url, area, what=what)
        if phys is None:
            raise StorageError(f"{what} {url!r} is outside the allowed roots {self._shown()}.")
        real = Path(os.path.realpath(phys))
        if not self.allowed(real, area):
            if real != phys:
                raise StorageError(
                    f"{what} {url!r} resolves through a symlink outside the allowed roots "
                    f"{self._shown()}; symlink escapes are refused."
                )
            raise StorageError(f"{what} {url!r} is outside the allowed roots {self._shown()}.")
        if not real.exists():
            raise StorageError(f"{what} {url!r} does not exist.")
        if kind == "FILE" and not real.is_file():
            raise StorageError(f"{what} {url!r} is not a file (type is FILE).")
        if kind == "DIRECTORY":
            if not real.is_dir():
                raise StorageError(f"{what} {url!r} is not a directory (type is DIRECTORY).")
            self._check_directory(real, url=url, area=area, what=what)
        return real

    def _check_directory(self, real: Path, *, url: str, area: str, what: str) -> None:
        for held in [*(r.path for r in self.writable_roots), *self.private]:
            if held == real or held.is_relative_to(real):
                raise StorageError(
                    f"{what} {url!r} contains {held}, which holds other callers' files or the "
                    "node's own; name a directory below it."
                )
        # A symlink inside an input directory must not lead out of what the caller may read.
        for dirpath, dirnames, filenames in os.walk(real):
            for name in [*dirnames, *filenames]:
                entry = Path(dirpath, name)
                if entry.is_symlink():
                    target = Path(os.path.realpath(entry))
                    if not self.allowed(target, area):
                        raise StorageError(
                            f"{what} {url!r}: {entry.relative_to(real)} is a symlink leading "
                            "outside the allowed roots; symlink escapes are refused."
                        )

    def output_target(self, url: str, *, area: str, what: str) -> Target:
        """Where an output URL is written for the caller of ``area`` (not created here)."""
        lexical = Path(local_path(url, what=what))
        root = self.locate(lexical)
        if root is None:
            raise StorageError(
                f"{what} {url!r} is outside the write roots {self._shown(writable=True)}."
            )
        if not root.writable:
            raise StorageError(
                f"{what} {url!r} is inside the read-only root {root.path}; outputs go under the "
                f"write roots {self._shown(writable=True)}."
            )
        rel = lexical.relative_to(root.path)
        return Target(root, area, "" if rel == Path(".") else rel.as_posix())
