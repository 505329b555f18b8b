"""Where a node keeps a caller's files: the site admin's view of a URL under a write root.

A node maps every ``file://`` URL under one of its write roots to the calling caller's area
(``ROOT/<area>/...``, :mod:`snakemake_fedgen.node.areas`); tests that look at site-held files
the way a site admin would use these helpers instead of the URL's literal path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from snakemake_fedgen.node.areas import area_of
from snakemake_fedgen.node.auth import Caller

#: The caller name the demo, the workflow tests and the executor fixtures use at every node.
COORDINATOR = "coordinator"


def caller_area(root: Path, caller: str = COORDINATOR) -> Path:
    """``root``'s directory for ``caller`` (a static-token caller)."""
    return Path(root) / area_of(Caller(caller))


def held_file(url: str, roots: Iterable[Path], caller: str = COORDINATOR) -> Path:
    """The file on the site's disk behind ``url`` as ``caller`` wrote it.

    ``roots`` are the node's write roots; the longest one holding the path decides (as the
    node's own mapping does). A path under no root is returned unchanged (a read root).
    """
    path = Path(unquote(urlparse(url).path)) if "://" in url else Path(url)
    for root in sorted((Path(r) for r in roots), key=lambda r: len(r.parts), reverse=True):
        if path.is_relative_to(root):
            return caller_area(root, caller) / path.relative_to(root)
    return path
