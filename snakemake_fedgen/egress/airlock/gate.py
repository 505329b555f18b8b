"""The gate: open a file once, refuse individual-level content, find its kind, validate it."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import MAX_LINE, LineTooLong
from snakemake_fedgen.egress.airlock.kinds import KINDS
from snakemake_fedgen.egress.airlock.policy import AirlockDecision, AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import forbidden, sniff

__all__ = ["inspect"]

HASH_CHUNK = 1024 * 1024


def _sha256(f: BinaryIO) -> str:
    f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(HASH_CHUNK):
        digest.update(chunk)
    f.seek(0)
    return digest.hexdigest()


def inspect(path: Path, policy: AirlockPolicy, *, name: str | None = None) -> AirlockDecision:
    """Decide whether the file at ``path`` may leave the site under ``policy``.

    The file is streamed (memory does not grow with its size) and opened once without
    following symlinks, so the bytes hashed are the bytes checked.

    Parameters
    ----------
    path : Path
        The file written under the egress root.
    policy : AirlockPolicy
        The site's disclosure policy.
    name : str, optional
        The name the file will be published under (its path relative to the egress root);
        defaults to ``path.name``. Kinds are detected from this name and the content.

    Returns
    -------
    AirlockDecision
        Never raises for bad content: unreadable, forbidden or violating files give a refusal
        with the reason.
    """
    path = Path(path)
    label = name or path.name

    def refuse(kind: str, reason: str, size: int = 0, sha: str = "") -> AirlockDecision:
        return AirlockDecision(False, kind, f"{label}: refused: {reason}", size, sha)

    try:
        st = os.lstat(path)
    except OSError as exc:
        return refuse("missing", f"cannot stat the file ({exc.strerror})")
    if stat.S_ISLNK(st.st_mode):
        return refuse("symlink", "is a symbolic link; only regular files are published")
    if not stat.S_ISREG(st.st_mode):
        return refuse("not-a-file", "is not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return refuse("unreadable", f"cannot open the file ({exc.strerror})")
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return refuse("empty", "is empty", 0, hashlib.sha256(b"").hexdigest())
        if size > policy.max_bytes:
            return refuse("too-large", f"{size} bytes exceeds max_bytes={policy.max_bytes}", size)
        sha = _sha256(f)
        sniffed = sniff(f, label)
        refused = forbidden(sniffed)
        if refused is not None:
            return refuse(refused[0], refused[1], size, sha)
        kind = next((k for k in KINDS.values() if k.detect(sniffed)), None)
        if kind is None:
            return refuse(
                "unknown",
                "not a file kind the airlock publishes (known kinds: "
                f"{', '.join(KINDS)}; e.g. GWAS-SSF '.tsv.gz', 'qc_counts.tsv', '-meta.yaml')",
                size,
                sha,
            )
        gz_name = label.lower().endswith((".gz", ".bgz"))
        if gz_name != (sniffed.compression == "gzip"):
            return refuse(
                kind.name,
                "name and content disagree about compression (a '.gz' name needs gzip/BGZF "
                "content and vice versa)",
                size,
                sha,
            )
        f.seek(0)
        try:
            if sniffed.compression == "gzip":
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    ok, reason = kind.validate(gz, sniffed, policy)  # type: ignore[arg-type]
            else:
                ok, reason = kind.validate(f, sniffed, policy)
        except UnicodeDecodeError as exc:
            return refuse(kind.name, f"not UTF-8 text ({exc.reason})", size, sha)
        except LineTooLong as exc:
            return refuse(
                kind.name, f"line {exc.lineno} is longer than {MAX_LINE} characters", size, sha
            )
        except (OSError, EOFError, zlib.error) as exc:
            return refuse(kind.name, f"cannot be decompressed ({exc})", size, sha)
    if not ok:
        return refuse(kind.name, reason, size, sha)
    return AirlockDecision(True, kind.name, f"{label}: accepted: {reason}", size, sha)
