"""Keep sample IDs out of the task logs a node returns to callers.

A task's stdout/stderr tail goes back to the coordinator in the TES task log, and tools print
sample IDs in their messages (``plink2``: "Error: Duplicate sample ID 'HOSP-0042'"; ``bcftools``
names samples it cannot find). The node knows the site's sample IDs from files its data steward
lists under ``redact_ids_from`` (the genotype VCF's header, PLINK ``.psam``/``.fam`` files,
phenotype tables with ``FID``/``IID`` columns) and replaces every word of a log that is one of
them with ``[sample-id]`` before the log is stored or served. The files are re-read when they
change, so a new cohort extract is covered without restarting the node.

IDs shorter than :data:`MIN_ID_LENGTH` characters (PLINK's placeholder family ID ``0``, ``1``,
...) are not redacted: they identify nobody and would blank out ordinary numbers in the logs.

Matching ignores case and also finds an ID written backwards. IDs of at least
:data:`MIN_SUBSTRING_LENGTH` characters are found inside longer words too (``xHOSP-0042``,
``HOSP-0042.vcf``); shorter ones only as whole words (or parts joined by ``_``/``/``), so that
short IDs do not blank out ordinary words.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from snakemake_executor_plugin_fedgen.errors import ConfigError, HarmonisationError

from snakemake_fedgen.governance.refget import read_vcf_header

#: What an ID becomes in a returned log.
MARK = "[sample-id]"
#: Shorter IDs are left alone (see the module docstring).
MIN_ID_LENGTH = 3
#: IDs at least this long are also found inside longer words.
MIN_SUBSTRING_LENGTH = 5
#: Column names holding sample IDs in PLINK-style and phenotype tables.
ID_COLUMNS = frozenset({"FID", "IID", "#FID", "#IID", "SID", "sample_id", "sample", "ID"})

# A "word" of a log: anything between whitespace, quotes, brackets and list separators.
_WORD = re.compile(r"[^\s\"'`,;()\[\]{}<>=|]+")
_TRIM = ".:!?"


def _open_text(path: Path) -> TextIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def sample_ids(path: Path) -> set[str]:
    """The sample IDs one file holds.

    VCF (plain or bgzipped): the sample columns of the ``#CHROM`` header line. PLINK ``.fam``
    (no header): the first two columns. Any other table (``.psam``, phenotype tables): the
    columns named in :data:`ID_COLUMNS` of its header, split on tabs or spaces.

    Raises
    ------
    ConfigError
        The file cannot be read or has no recognisable ID column.
    """
    path = Path(path)
    ids: set[str] = set()
    name = path.name.lower()
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
        try:
            header = read_vcf_header(path)
        except (HarmonisationError, OSError) as exc:
            raise ConfigError(f"redact_ids_from: cannot read {path} ({exc})") from exc
        if header and header[-1].startswith("#CHROM"):
            ids.update(header[-1].rstrip("\r").split("\t")[9:])
        return ids
    try:
        with _open_text(path) as fh:
            if name.endswith(".fam"):
                for line in fh:
                    ids.update(line.split()[:2])
                return ids
            header = fh.readline().split()
            columns = [i for i, c in enumerate(header) if c in ID_COLUMNS]
            if not columns:
                raise ConfigError(
                    f"redact_ids_from: {path} has no sample-ID column (looked for "
                    f"{', '.join(sorted(ID_COLUMNS))} in its header {' '.join(header)!r}); "
                    "list the genotype VCF, a .psam/.fam or a phenotype table with FID/IID"
                )
            for line in fh:
                fields = line.split()
                ids.update(fields[i] for i in columns if i < len(fields))
    except OSError as exc:
        raise ConfigError(f"redact_ids_from: cannot read {path} ({exc.strerror})") from exc
    return ids


class IdRedactor:
    """Replace a site's sample IDs in text; re-reads the ID files when they change.

    Parameters
    ----------
    paths : sequence of Path
        Files holding the site's sample IDs (see :func:`sample_ids`).
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._ids: frozenset[str] = frozenset()
        # Case-folded IDs and their reversals; the long ones and their lengths (longest first).
        self._folded: frozenset[str] = frozenset()
        self._long: frozenset[str] = frozenset()
        self._lengths: tuple[int, ...] = ()
        self.ids()  # fail at start-up, not on the first finished task

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        out = []
        for p in self.paths:
            try:
                st = p.stat()
            except OSError as exc:
                raise ConfigError(
                    f"redact_ids_from: cannot read {p} ({exc.strerror}); fix the path in the "
                    "node config"
                ) from exc
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def ids(self) -> frozenset[str]:
        """The current set of IDs (re-read if any file changed)."""
        stamp = self._stamps()
        with self._lock:
            if stamp != self._stamp:
                found: set[str] = set()
                for p in self.paths:
                    found |= sample_ids(p)
                self._ids = frozenset(i for i in found if len(i) >= MIN_ID_LENGTH)
                folded = {i.casefold() for i in self._ids}
                self._folded = frozenset(folded | {i[::-1] for i in folded})
                self._long = frozenset(i for i in self._folded if len(i) >= MIN_SUBSTRING_LENGTH)
                self._lengths = tuple(sorted({len(i) for i in self._long}, reverse=True))
                self._stamp = stamp
            return self._ids

    def redact(self, text: str) -> str:
        """``text`` with every word that is a sample ID replaced by :data:`MARK`."""
        if not self.paths or not text:
            return text
        if not self.ids():
            return text
        with self._lock:
            folded, long_ids, lengths = self._folded, self._long, self._lengths

        def word(m: re.Match[str]) -> str:
            w = m.group(0)
            low = w.casefold()
            if len(low) != len(w):  # casefold changed the length (e.g. 'ß'): match whole words
                return MARK if low in folded else w
            if low in folded:
                return MARK
            core = low.strip(_TRIM)
            if core and core in folded:
                start = low.index(core)
                return w[:start] + MARK + w[start + len(core) :]
            # PLINK joins family and individual IDs with '_' or '/' in some messages.
            for sep in ("_", "/"):
                if sep in core and any(part in folded for part in core.split(sep)):
                    start = low.index(core)
                    return w[:start] + MARK + w[start + len(core) :]
            return _inner(w, low, long_ids, lengths)

        return _WORD.sub(word, text)


def _inner(w: str, low: str, long_ids: frozenset[str], lengths: tuple[int, ...]) -> str:
    """``w`` with every long ID inside it (case-folded ``low``, same length) replaced."""
    out: list[str] = []
    i = last = 0
    while i < len(low):
        for n in lengths:
            if low[i : i + n] in long_ids:
                out.append(w[last:i] + MARK)
                i = last = i + n
                break
        else:
            i += 1
    if not out:
        return w
    return "".join(out) + w[last:]
