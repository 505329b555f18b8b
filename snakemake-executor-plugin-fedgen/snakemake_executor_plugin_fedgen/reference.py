"""References: small JSON files that stand, on the coordinator, for data held at a site.

A site-held output (or a site dataset) is represented at its Snakemake path by::

    {"fedgen_ref": 1, "site": "A", "url": "file:///...", "size": 123, "sha256": "...",
     "task": "<tes id>"}

(``size``/``sha256`` may be null, ``dataset`` names a registry dataset). For a ``directory()``
output the reference is the file ``.fedgen_ref.json`` inside the directory, because Snakemake
insists that a directory output is a directory. A reference tells Snakemake the output exists
and tells the next task at the same site where the real data lives; it is never data itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import SiteDataError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

DIRECTORY_REFERENCE = ".fedgen_ref.json"
# A reference is a few hundred bytes; anything much larger at an output path is real data.
_MAX_REFERENCE_BYTES = 64 * 1024
_MAGIC = b'"fedgen_ref"'


@dataclass(frozen=True)
class Reference:
    """Where a site-held file lives: site name, site-side URL, optional size/sha256/task."""

    site: str
    url: str
    size: int | None = None
    sha256: str | None = None
    task: str | None = None
    dataset: str | None = None
    is_directory: bool = False

    def to_json(self) -> str:
        """Return the canonical JSON text of the reference file."""
        data = {"fedgen_ref": 1, **asdict(self)}
        data.pop("is_directory")
        if data["dataset"] is None:
            data.pop("dataset")
        if self.is_directory:
            data["directory"] = True
        return json.dumps(data, indent=1, sort_keys=False) + "\n"


def _reference_file(path: Path) -> Path:
    return path / DIRECTORY_REFERENCE if path.is_dir() else path


def read_reference(path: str | os.PathLike[str]) -> Reference | None:
    """Return the reference stored at ``path`` (a file or a directory output), or None.

    None means ``path`` is ordinary coordinator data (or missing).
    """
    target = _reference_file(Path(path))
    try:
        if target.stat().st_size > _MAX_REFERENCE_BYTES:
            return None
        raw = target.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    head = raw.lstrip()[:64]
    if not head.startswith(b"{") or _MAGIC not in head:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("fedgen_ref") != 1:
        return None
    return Reference(
        site=str(data["site"]),
        url=str(data["url"]),
        size=data.get("size"),
        sha256=data.get("sha256"),
        task=data.get("task"),
        dataset=data.get("dataset"),
        is_directory=bool(data.get("directory", False)),
    )


def is_reference(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` holds a reference rather than data."""
    return read_reference(path) is not None


def write_reference(path: str | os.PathLike[str], ref: Reference) -> None:
    """Write ``ref`` at ``path`` atomically (temp file in the same directory, then rename).

    For a directory reference ``path`` becomes a directory holding ``.fedgen_ref.json``.
    """
    path = Path(path)
    if ref.is_directory:
        path.mkdir(parents=True, exist_ok=True)
        target = path / DIRECTORY_REFERENCE
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = path
    write_text_atomic(target, ref.to_json())


def require_local_data(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it is coordinator data; raise if it is a reference to site data.

    Raises
    ------
    SiteDataError
        ``path`` is a reference: the data is held at a site and can only be used by a job
        running at that site.
    """
    ref = read_reference(path)
    if ref is not None:
        raise SiteDataError(
            f"{path} is held at site {ref.site} (the coordinator only has a reference to "
            f"{ref.url}); use it in a rule that runs at site {ref.site} (resource site="
            f"{ref.site!r}), not on the coordinator."
        )
    return Path(path)
