"""Read, validate and write GWAS-SSF summary-statistics tables and their ``-meta.yaml`` sidecars.

Reading streams one chromosome at a time so that memory is set by the largest chromosome, not by
the genome. Parsing uses the pyarrow CSV reader (C++, typed columns); when it meets a bad value
the file is scanned again line by line to name the exact line and column in the error.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import HarmonisationError, SumstatsError

try:  # ISA-L's gzip: the same format, 2-4 times faster to read and write
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _isal_error

    _DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _isal_error)
except ImportError:  # pragma: no cover - isal is a declared dependency
    _gzip = gzip  # type: ignore[assignment]
    _DECOMPRESS_ERRORS = (zlib.error,)

#: Chromosome labels by code (1-22, X=23, Y=24, MT=25), as written in output files.
CHROM_LABELS: tuple[str, ...] = ("", *(str(i) for i in range(1, 23)), "X", "Y", "MT")

_CHROM_CODES: dict[str, int] = {
    **{str(i): i for i in range(1, 26)},
    **{f"chr{i}": i for i in range(1, 26)},
    "X": 23,
    "Y": 24,
    "MT": 25,
    "M": 25,
    "chrX": 23,
    "chrY": 24,
    "chrM": 25,
    "chrMT": 25,
}

_NULLS = ["", "NA", "NaN", "nan", "null", "NULL", "."]
_ALLELE_RE = re.compile(r"^[ACGT]+$")
_SNP_LUT = np.full(256, -1, dtype=np.int8)
for _code, _base in enumerate(b"ACGT"):
    _SNP_LUT[_base] = _code
    _SNP_LUT[_base + 32] = _code  # lower case
_SNP_STR = np.array(["A", "C", "G", "T"], dtype=object)


def _allele_column(col: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one allele column straight from its Arrow buffers.

    Single nucleotides (almost every row) are coded from their byte without creating Python
    strings; only longer alleles are converted, upper-cased and checked.

    Returns
    -------
    values : object array of str
        Upper-case alleles.
    code : int8 array
        0-3 for A, C, G, T; -1 for anything longer.
    ok : bool array
        False where the allele is not A/C/G/T or an indel made of them.
    """
    import pyarrow as pa

    n = len(col)
    width = np.int64 if pa.types.is_large_string(col.type) else np.int32
    buffers = col.buffers()
    offsets = np.frombuffer(
        buffers[1], dtype=width, count=n + 1, offset=col.offset * width().itemsize
    )
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(1, np.uint8)
    )
    lengths = np.diff(offsets)
    first = data[np.minimum(offsets[:-1], max(len(data) - 1, 0))]
    code = np.where(lengths == 1, _SNP_LUT[first], -1).astype(np.int8)
    ok = code >= 0
    values = _SNP_STR[np.maximum(code, 0)]
    rest = np.flatnonzero(~ok)
    if len(rest):
        longer = [str(x).upper() for x in col.take(pa.array(rest)).to_pylist()]
        values[rest] = longer
        ok[rest] = [len(x) > 1 and _ALLELE_RE.match(x) is not None for x in longer]
    return values, code, ok


#: Reasons a row can be turned into a counted exclusion instead of an error.
INVALID_REASONS: tuple[str, ...] = (
    "non_numeric",
    "missing_value",
    "se_not_positive",
    "invalid_allele",
    "invalid_chromosome",
    "duplicate_variant",
)

# Small blocks without reader threads: studies are read in parallel instead, and memory stays
# bounded at a few MB per study.
_BLOCK_SIZE = 2 << 20

_ASSEMBLY_ALIASES = {"hg19": "GRCh37", "grch37": "GRCh37", "hg38": "GRCh38", "grch38": "GRCh38"}


def chromosome_code(label: str) -> int:
    """Return the numeric code (1-25) of a chromosome label, or 0 if it is not one."""
    return _CHROM_CODES.get(label.strip(), 0)


def _open_binary(path: Path) -> io.BufferedIOBase:
    """Open a plain or gzip-compressed file for binary reading."""
    if str(path).endswith(".gz"):
        return _gzip.open(path, "rb")
    return open(path, "rb")


def open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file for reading."""
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


# ----------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class StudyInfo:
    """What the meta-analysis needs to know about one study (from its sidecar, if any).

    Attributes
    ----------
    path : Path
        The GWAS-SSF table.
    name : str
        Study name: the sidecar's ``fedgen.site`` or the file name without extensions.
    sidecar : Path or None
        The ``-meta.yaml`` sidecar that was read.
    assembly : str or None
        Genome assembly (normalised to ``GRCh37``/``GRCh38`` where recognised).
    trait_type : str or None
        ``quantitative`` or ``binary``.
    n_cases, n_controls : int or None
        Case and control counts for a binary trait.
    sample_size : float or None
        Total sample size from the sidecar's ``samples``.
    refget_digest : str or None
        GA4GH refget sequence-collection digest of the reference the study used.
    is_sorted : bool or None
        The sidecar's ``is_sorted`` flag.
    """

    path: Path
    name: str
    sidecar: Path | None = None
    assembly: str | None = None
    trait_type: str | None = None
    n_cases: int | None = None
    n_controls: int | None = None
    sample_size: float | None = None
    refget_digest: str | None = None
    is_sorted: bool | None = None

    @property
    def effective_n(self) -> float | None:
        """Effective sample size ``4 / (1/N_cases + 1/N_controls)`` for a binary trait."""
        if self.n_cases and self.n_controls:
            return 4.0 / (1.0 / self.n_cases + 1.0 / self.n_controls)
        return None


def sidecar_path(path: Path) -> Path | None:
    """Return the existing ``-meta.yaml`` sidecar of ``path`` or None.

    Both ``x.tsv.gz-meta.yaml`` (GWAS-SSF convention) and ``x-meta.yaml`` are recognised.
    """
    path = Path(path)
    candidates = [path.with_name(path.name + "-meta.yaml")]
    stem = path.name
    for ext in (".gz", ".tsv", ".txt"):
        stem = stem.removesuffix(ext)
    candidates.append(path.with_name(stem + "-meta.yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".tsv", ".txt"):
        name = name.removesuffix(ext)
    return name


def read_study_info(path: Path, *, sidecar: Path | None = None) -> StudyInfo:
    """Read a study's sidecar (if present) into a :class:`StudyInfo`.

    Parameters
    ----------
    path : Path
        The GWAS-SSF table.
    sidecar : Path, optional
        Explicit sidecar; by default the one next to ``path`` is used when it exists.
    """
    import yaml

    path = Path(path)
    sidecar = Path(sidecar) if sidecar else sidecar_path(path)
    if sidecar is None:
        return StudyInfo(path=path, name=_stem(path))
    try:
        with open(sidecar, encoding="utf-8") as fh:
            meta = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise SumstatsError(
            f"{sidecar}: not valid YAML ({exc}); fix or remove the sidecar of {path}"
        ) from exc
    if not isinstance(meta, dict):
        raise SumstatsError(f"{sidecar}: expected a YAML mapping of GWAS-SSF metadata keys")
    fed = meta.get("fedgen") or {}
    samples = meta.get("samples") or []
    sizes = [s.get("sample_size") for s in samples if isinstance(s, dict)]
    sample_size = float(sum(x for x in sizes if x)) if any(sizes) else None
    assembly = meta.get("genome_assembly")
    if assembly:
        assembly = _ASSEMBLY_ALIASES.get(str(assembly).lower(), str(assembly))

    def _int(key: str) -> int | None:
        value = fed.get(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise SumstatsError(
                f"{sidecar}: fedgen.{key} must be an integer, got {value!r}"
            ) from exc

    return StudyInfo(
        path=path,
        name=str(fed.get("site") or _stem(path)),
        sidecar=sidecar,
        assembly=assembly,
        trait_type=fed.get("trait_type"),
        n_cases=_int("n_cases"),
        n_controls=_int("n_controls"),
        sample_size=sample_size,
        refget_digest=fed.get("refget_seqcol_digest"),
        is_sorted=meta.get("is_sorted"),
    )


def check_compatible(studies: list[StudyInfo]) -> str | None:
    """Refuse studies on different genome assemblies or reference digests.

    Returns
    -------
    str or None
        The common assembly, if any study declared one.

    Raises
    ------
    HarmonisationError
        Naming the studies and their assemblies (or digests).
    """
    assemblies = {s.name: s.assembly for s in studies if s.assembly}
    if len(set(assemblies.values())) > 1:
        listing = ", ".join(f"{n}={a}" for n, a in assemblies.items())
        raise HarmonisationError(
            f"studies are on different genome assemblies ({listing}); lift them over to one "
            "assembly before meta-analysis"
        )
    digests = {s.name: s.refget_digest for s in studies if s.refget_digest}
    if len(set(digests.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in digests.items())
        raise HarmonisationError(
            f"studies used different reference sequences (refget digests {listing}); "
            "re-export them against the same reference"
        )
    return next(iter(assemblies.values()), None)


# ----------------------------------------------------------------------------- reading


@dataclass
class ChromBlock:
    """One study's rows on one chromosome, in file order unless sorted.

    Arrays have one entry per row. ``ea_code``/``oa_code`` are 0-3 for A, C, G, T and -1 for
    longer alleles (indels). ``line`` is the 1-based line number in the input file.
    """

    chrom: int
    pos: np.ndarray
    ea: np.ndarray  # object array of str
    oa: np.ndarray
    ea_code: np.ndarray
    oa_code: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    eaf: np.ndarray
    n: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.pos)

    def take(self, idx: np.ndarray | slice) -> ChromBlock:
        """Return the rows at ``idx`` (an index array or a slice)."""
        return ChromBlock(
            self.chrom,
            *(getattr(self, f)[idx] for f in _BLOCK_FIELDS[1:]),  # type: ignore[arg-type]
        )


_BLOCK_FIELDS = (
    "chrom",
    "pos",
    "ea",
    "oa",
    "ea_code",
    "oa_code",
    "beta",
    "se",
    "eaf",
    "n",
    "line",
)


def _concat(blocks: list[ChromBlock]) -> ChromBlock:
    if len(blocks) == 1:
        return blocks[0]
    return ChromBlock(
        blocks[0].chrom,
        *(np.concatenate([getattr(b, f) for b in blocks]) for f in _BLOCK_FIELDS[1:]),
    )


@dataclass
class Exclusion:
    """Rows of one study dropped for one reason (arrays of equal length)."""

    study: str
    reason: str
    chrom: np.ndarray
    pos: np.ndarray
    ea: np.ndarray
    oa: np.ndarray
    line: np.ndarray


@dataclass
class StudyTable:
    """A streaming reader of one GWAS-SSF table, chromosome by chromosome.

    Parameters
    ----------
    info : StudyInfo
        The study (path, name, sidecar values).
    drop_invalid : bool
        Turn bad rows (non-numeric, missing, SE <= 0, bad allele or chromosome) into counted
        exclusions instead of raising :class:`SumstatsError`.
    sort : bool
        Accept unsorted input: rows are split into per-chromosome temporary files in bounded
        chunks and each chromosome is sorted by position in memory.
    tmpdir : Path, optional
        Where the temporary per-chromosome files go when sorting.
    """

    info: StudyInfo
    drop_invalid: bool = False
    sort: bool = False
    tmpdir: Path | None = None
    rows_read: int = 0
    exclusions: list[Exclusion] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.info.path)
        self.columns = self._header()
        effect = [c for c in ("beta", "odds_ratio", "hazard_ratio") if c in self.columns]
        missing = [
            c
            for c in (
                "chromosome",
                "base_pair_location",
                "effect_allele",
                "other_allele",
                "standard_error",
            )
            if c not in self.columns
        ]
        if not effect:
            missing.append("beta (or odds_ratio)")
        if missing:
            raise SumstatsError(
                f"{self.path}, line 1: missing column(s) {', '.join(missing)}; the header has "
                f"{', '.join(self.columns)}. GWAS-SSF needs chromosome, base_pair_location, "
                "effect_allele, other_allele, beta (or odds_ratio), standard_error"
            )
        self.effect_column = effect[0]
        self.numeric = [self.effect_column, "standard_error"]
        self.optional = [c for c in ("effect_allele_frequency", "n") if c in self.columns]

    # -- header and diagnostics

    def _header(self) -> list[str]:
        try:
            with open_text(self.path) as fh:
                first = fh.readline()
        except OSError as exc:
            raise SumstatsError(f"{self.path}: cannot be read ({exc})") from exc
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
            raise SumstatsError(f"{self.path}: not a tab-separated text file ({exc})") from exc
        if not first.strip():
            raise SumstatsError(f"{self.path}, line 1: empty file; expected a GWAS-SSF header")
        return first.rstrip("\r\n").split("\t")

    def _col(self, name: str) -> str:
        return f"column {self.columns.index(name) + 1} ({name})"

    def _fail(self, line: int, column: str, problem: str, fix: str) -> SumstatsError:
        return SumstatsError(f"{self.path}, line {line}, {self._col(column)}: {problem}; {fix}")

    def _diagnose(self) -> SumstatsError:
        """Find the first line whose values the typed reader refused, by scanning in Python."""
        wanted = [*self.numeric, *self.optional, "base_pair_location"]
        idx = {c: self.columns.index(c) for c in wanted}
        with open_text(self.path) as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(self.columns):
                    return SumstatsError(
                        f"{self.path}, line {lineno}: {len(row)} fields where the header has "
                        f"{len(self.columns)}; every row needs one tab-separated value per column"
                    )
                for name, i in idx.items():
                    value = row[i]
                    if value in _NULLS:
                        continue
                    try:
                        number = float(value) if name != "base_pair_location" else int(value)
                    except ValueError:
                        kind = "an integer" if name == "base_pair_location" else "a number"
                        return self._fail(
                            lineno, name, f"non-numeric value {value!r}", f"expected {kind} or NA"
                        )
                    if name == "base_pair_location" and number < 1:
                        return self._fail(
                            lineno, name, f"position {value!r}", "expected a 1-based position"
                        )
        return SumstatsError(f"{self.path}: could not be parsed as a GWAS-SSF table")

    # -- typed reading

    def _batches(self) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        include = [
            "chromosome",
            "base_pair_location",
            "effect_allele",
            "other_allele",
            *self.numeric,
            *self.optional,
        ]
        numeric_type = pa.string() if self.drop_invalid else pa.float64()
        types = {
            "chromosome": pa.string(),
            "base_pair_location": pa.int64(),
            "effect_allele": pa.string(),
            "other_allele": pa.string(),
            **{c: numeric_type for c in (*self.numeric, *self.optional)},
        }
        read_options = pacsv.ReadOptions(
            column_names=self.columns, use_threads=False, block_size=2 * _BLOCK_SIZE
        )
        parse_options = pacsv.ParseOptions(
            delimiter="\t", quote_char=False, ignore_empty_lines=False
        )
        convert_options = pacsv.ConvertOptions(
            include_columns=include,
            column_types=types,
            null_values=_NULLS,
            strings_can_be_null=False,
        )
        # Arrow's streaming reader reads tens of MB ahead per open file; cutting the text into
        # blocks ourselves keeps each open study to about one block in memory.
        with _open_binary(self.path) as source:
            try:
                source.readline()  # the header, already checked
                carry = b""
                while True:
                    data = source.read(_BLOCK_SIZE)
                    buf = carry + data
                    cut = buf.rfind(b"\n") if data else len(buf) - 1
                    if cut < 0 and data:
                        carry = buf
                        continue
                    chunk, carry = buf[: cut + 1], buf[cut + 1 :]
                    if chunk.strip():
                        table = pacsv.read_csv(
                            pa.py_buffer(chunk),
                            read_options=read_options,
                            parse_options=parse_options,
                            convert_options=convert_options,
                        )
                        if table.num_rows:
                            yield table.combine_chunks().to_batches()[0]
                    if not data:
                        break
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise self._diagnose() from exc
            except (OSError, EOFError, *_DECOMPRESS_ERRORS) as exc:
                raise SumstatsError(f"{self.path}: cannot be read ({exc})") from exc

    def _numbers(self, batch: Any, name: str, lines: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """Column ``name`` as float64; in drop-invalid mode non-numbers become NaN and flagged."""
        col = batch.column(name)
        if not self.drop_invalid:
            return _float_numpy(col)
        import pandas as pd

        raw = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        # Columns are read as text here, so NA and friends arrive as strings: they are missing.
        nonnum = np.isnan(values) & ~(raw.isna() | raw.isin(_NULLS)).to_numpy()
        bad |= nonnum
        self._bad_reason[nonnum & (self._bad_reason == "")] = "non_numeric"
        return values

    def _convert(self, batch: Any) -> tuple[np.ndarray, ChromBlock]:
        """Convert and validate one record batch; returns chromosome codes and the rows."""
        import pyarrow.compute as pc

        nrows = batch.num_rows
        lines = np.arange(self.rows_read + 2, self.rows_read + 2 + nrows, dtype=np.int64)
        self.rows_read += nrows
        self._bad_reason = np.full(nrows, "", dtype=object)
        bad = np.zeros(nrows, dtype=bool)

        chrom_col = pc.dictionary_encode(batch.column("chromosome"))
        labels = chrom_col.dictionary.to_pylist()
        lut = np.array([chromosome_code(x) for x in labels], dtype=np.int8)
        chrom = lut[chrom_col.indices.to_numpy()]
        badc = chrom == 0
        if badc.any():
            i = int(np.flatnonzero(badc)[0])
            if not self.drop_invalid:
                value = batch.column("chromosome")[i].as_py()
                raise self._fail(
                    int(lines[i]),
                    "chromosome",
                    f"unknown chromosome {value!r}",
                    "expected 1-22, X, Y or MT (or 23-25)",
                )
            self._bad_reason[badc & ~bad] = "invalid_chromosome"
            bad |= badc

        pos_col = batch.column("base_pair_location")
        if pos_col.null_count:
            missing = np.asarray(pos_col.is_null())
            i = int(np.flatnonzero(missing)[0])
            raise self._fail(
                int(lines[i]), "base_pair_location", "missing position", "every row needs one"
            )
        pos = pos_col.to_numpy()
        alleles, codes = [], []
        for name in ("effect_allele", "other_allele"):
            values, code, ok = _allele_column(batch.column(name))
            alleles.append(values)
            codes.append(code)
            badv = ~ok
            if badv.any():
                i = int(np.flatnonzero(badv)[0])
                if not self.drop_invalid:
                    raw = batch.column(name)[i].as_py()
                    raise self._fail(
                        int(lines[i]),
                        name,
                        f"allele {raw!r} is not A/C/G/T or an indel of them",
                        "write alleles as upper-case nucleotides (e.g. A, or AT for an indel)",
                    )
                self._bad_reason[badv & ~bad] = "invalid_allele"
                bad |= badv
        ea, oa = alleles
        ea_code, oa_code = codes
        snp = (ea_code >= 0) & (oa_code >= 0)
        same = snp & (ea_code == oa_code)
        longer = np.flatnonzero(~snp & ~bad)
        if len(longer):
            same[longer] = ea[longer] == oa[longer]
        if same.any():
            i = int(np.flatnonzero(same)[0])
            if not self.drop_invalid:
                raise self._fail(
                    int(lines[i]),
                    "other_allele",
                    f"other allele equals the effect allele ({ea[i]!r})",
                    "the two alleles of a variant must differ",
                )
            self._bad_reason[same & ~bad] = "invalid_allele"
            bad |= same

        beta = self._numbers(batch, self.effect_column, lines, bad)
        if self.effect_column != "beta":
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = beta
                beta = np.log(ratio)
            badr = ratio <= 0
            if badr.any():
                i = int(np.flatnonzero(badr)[0])
                if not self.drop_invalid:
                    raise self._fail(
                        int(lines[i]),
                        self.effect_column,
                        f"ratio {float(ratio[i])!r} is not positive",
                        "odds and hazard ratios must be > 0",
                    )
                self._bad_reason[badr & ~bad] = "non_numeric"
                bad |= badr
        se = self._numbers(batch, "standard_error", lines, bad)
        for name, values in ((self.effect_column, beta), ("standard_error", se)):
            missing = np.isnan(values) & ~bad
            if missing.any():
                i = int(np.flatnonzero(missing)[0])
                if not self.drop_invalid:
                    raise self._fail(
                        int(lines[i]),
                        name,
                        "missing value (NA/NaN)",
                        "remove the row or pass --drop-invalid to count it as an exclusion",
                    )
                self._bad_reason[missing] = "missing_value"
                bad |= missing
        nonpos = ~(se > 0) & ~bad
        if nonpos.any():
            i = int(np.flatnonzero(nonpos)[0])
            if not self.drop_invalid:
                raise self._fail(
                    int(lines[i]),
                    "standard_error",
                    f"standard error {float(se[i])!r} is not positive",
                    "standard errors must be > 0 (pass --drop-invalid to count such rows)",
                )
            self._bad_reason[nonpos] = "se_not_positive"
            bad |= nonpos
        if "effect_allele_frequency" in self.optional:
            eaf = self._numbers(batch, "effect_allele_frequency", lines, bad)
            out = ~((eaf >= 0) & (eaf <= 1)) & ~np.isnan(eaf) & ~bad
            if out.any():
                i = int(np.flatnonzero(out)[0])
                if not self.drop_invalid:
                    raise self._fail(
                        int(lines[i]),
                        "effect_allele_frequency",
                        f"frequency {float(eaf[i])!r} outside [0, 1]",
                        "write a frequency between 0 and 1 or NA",
                    )
                self._bad_reason[out] = "non_numeric"
                bad |= out
        else:
            eaf = np.full(nrows, np.nan)
        if "n" in self.optional:
            n = self._numbers(batch, "n", lines, bad)
        else:
            n = np.full(nrows, np.nan)
        if self.info.sample_size:
            n = np.where(np.isnan(n), self.info.sample_size, n)

        block = ChromBlock(0, pos, ea, oa, ea_code, oa_code, beta, se, eaf, n, lines)
        if bad.any():
            reasons = self._bad_reason[bad]
            dropped = block.take(np.flatnonzero(bad))
            for reason in np.unique(reasons):
                sel = reasons == reason
                self.exclusions.append(
                    Exclusion(
                        self.info.name,
                        str(reason),
                        chrom[bad][sel],
                        dropped.pos[sel],
                        dropped.ea[sel],
                        dropped.oa[sel],
                        dropped.line[sel],
                    )
                )
            keep = np.flatnonzero(~bad)
            return chrom[keep], block.take(keep)
        return chrom, block

    def _split(self) -> Iterator[tuple[np.ndarray, ChromBlock]]:
        for batch in self._batches():
            yield self._convert(batch)

    def chromosomes(self) -> Iterator[ChromBlock]:
        """Yield one :class:`ChromBlock` per chromosome, in increasing chromosome order.

        Raises
        ------
        SumstatsError
            On a bad value, or on unsorted input when ``sort`` is off.
        """
        if self.sort:
            yield from self._sorted_chromosomes()
            return
        done: set[int] = set()
        current = 0
        pieces: list[ChromBlock] = []
        last_pos = 0
        for chrom, block in self._split():
            if len(block) == 0:
                continue
            # Each batch may hold several chromosomes; cut it where the code changes.
            cuts = np.flatnonzero(np.diff(chrom)) + 1
            starts = np.concatenate([[0], cuts])
            ends = np.concatenate([cuts, [len(chrom)]])
            for s, e in zip(starts, ends, strict=True):
                code = int(chrom[s])
                part = block.take(slice(s, e)) if len(starts) > 1 else block
                if code != current:
                    if code < current or code in done:
                        raise self._unsorted(int(part.line[0]), "chromosome")
                    if pieces:
                        # Drop the pieces before yielding: the consumer holds the chromosome
                        # for a while and the rows must not be kept twice.
                        whole, pieces = _concat(pieces), []
                        yield whole
                        del whole
                        done.add(current)
                    pieces, current, last_pos = [], code, 0
                    part.chrom = code
                steps = np.diff(part.pos)
                if len(part.pos) and (part.pos[0] < last_pos or (steps < 0).any()):
                    i = 0 if part.pos[0] < last_pos else int(np.flatnonzero(steps < 0)[0]) + 1
                    raise self._unsorted(int(part.line[i]), "base_pair_location")
                last_pos = int(part.pos[-1])
                part.chrom = code
                pieces.append(part)
        if pieces:
            whole, pieces = _concat(pieces), []
            yield whole

    def _unsorted(self, line: int, column: str) -> SumstatsError:
        return self._fail(
            line,
            column,
            "rows are not sorted by chromosome (1-22, X, Y, MT) then position",
            "sort the file (fedgen sumstats export does) or pass --sort to sort on the fly",
        )

    def _sorted_chromosomes(self) -> Iterator[ChromBlock]:
        """Spill rows to one temporary file per chromosome, then sort each in memory."""
        with tempfile.TemporaryDirectory(
            prefix="fedgen-sort-", dir=self.tmpdir or self.path.parent
        ) as tmp:
            spill: dict[int, list[str]] = {}
            counter = 0
            for chrom, block in self._split():
                for code in np.unique(chrom):
                    part = block.take(np.flatnonzero(chrom == code))
                    target = os.path.join(tmp, f"{int(code)}-{counter}.npz")
                    counter += 1
                    # Pickled object arrays keep allele strings; the spill files are our own.
                    np.savez(target, **{f: getattr(part, f) for f in _BLOCK_FIELDS[1:]})
                    spill.setdefault(int(code), []).append(target)
            for code in sorted(spill):
                parts = []
                for target in spill.pop(code):
                    with np.load(target, allow_pickle=True) as data:
                        parts.append(ChromBlock(code, *(data[f] for f in _BLOCK_FIELDS[1:])))
                    os.unlink(target)
                block = _concat(parts)
                order = np.argsort(block.pos, kind="stable")
                yield block.take(order)


# ----------------------------------------------------------------------------- writing


_POW10 = 10.0 ** np.arange(0, 23)  # exact doubles


def round_significant(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """Round to ``digits`` significant digits so the shortest decimal form is short.

    Values outside 1e-15..1e15 are left as they are (their decimal form stays exact).
    """
    x = np.asarray(values, dtype=np.float64)
    mag = np.abs(x)
    ok = np.isfinite(x) & (mag >= 1e-15) & (mag < 1e15)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = ((digits - 1) - np.floor(np.log10(np.where(ok, mag, 1.0)))).astype(np.int64)
    # Multiplying or dividing by an exact power of ten (table lookup, |k| <= 22) gives the
    # nearest double to the decimal.
    scale = _POW10[np.clip(np.abs(k), 0, 22)]
    up = k >= 0
    r = np.empty_like(x)
    np.multiply(x, scale, out=r, where=up)
    np.divide(x, scale, out=r, where=~up)
    np.rint(r, out=r)
    np.divide(r, scale, out=r, where=up)
    np.multiply(r, scale, out=r, where=~up)
    return np.where(ok, r, x)


def float_array(values: np.ndarray) -> Any:
    """A pyarrow float64 array with NaN as null (written ``NA``), without importing pandas."""
    import pyarrow as pa

    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    return pa.array(values, mask=nan) if nan.any() else pa.array(values)


def _float_numpy(col: Any) -> np.ndarray:
    """An Arrow float column as numpy, nulls as NaN (zero-copy when there are none)."""
    import pyarrow.compute as pc

    if col.null_count:
        col = pc.fill_null(col, float("nan"))
    return col.to_numpy(zero_copy_only=True)


def format_p_values(log10_p: np.ndarray, digits: int = 7) -> np.ndarray:
    """Format p-values given as log10(p) so that p never prints as 0.

    P-values below the smallest double (p < 1e-300) are written in scientific notation from the
    log, e.g. ``7.311787e-350``.

    Returns
    -------
    np.ndarray of object
        Strings; ``NA`` where ``log10_p`` is NaN.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    log10_p = np.asarray(log10_p, dtype=np.float64)
    tiny = log10_p < -300
    with np.errstate(under="ignore"):
        p = round_significant(np.power(10.0, np.where(tiny, 0.0, log10_p)), digits)
    strings = pc.cast(float_array(p), pa.string()).to_numpy(zero_copy_only=False)
    strings = np.where(np.isnan(log10_p), "NA", strings).astype(object)
    for i in np.flatnonzero(tiny):
        exponent = math.floor(log10_p[i])
        mantissa = 10.0 ** (log10_p[i] - exponent)
        if round(mantissa, digits - 1) >= 10.0:
            mantissa, exponent = mantissa / 10.0, exponent + 1
        strings[i] = f"{mantissa:.{digits - 1}f}e{exponent}"
    return strings


def p_value_array(log10_p: np.ndarray, digits: int = 7) -> Any:
    """P-values as a pyarrow array for writing: doubles, or strings if any p < 1e-300.

    Nulls (written ``NA``) where ``log10_p`` is NaN. A table is written one piece at a time,
    so a piece with an extreme p-value may carry strings where the others carry numbers.
    """
    import pyarrow as pa

    log10_p = np.asarray(log10_p, dtype=np.float64)
    if (log10_p < -300).any():
        return pa.array(format_p_values(log10_p, digits), type=pa.string())
    return float_array(round_significant(np.power(10.0, log10_p), digits))


_WRITE_ROWS = 100_000


class AtomicTsvGzWriter:
    """Write a tab-separated ``.tsv.gz`` table in pieces; it appears at ``path`` only on close.

    Formatting (Arrow's CSV writer) and compression (ISA-L) run in a background thread; both
    release the GIL, so the caller computes the next piece meanwhile. A piece may be given as
    a function that builds the table, so that building it (rounding, string columns) runs in
    that thread too.

    Parameters
    ----------
    path : Path
        Final path. A temporary file in the same directory is renamed over it on success and
        removed on failure, so no partial file is ever left at ``path``.
    compresslevel : int
        gzip level; the default favours speed (the files are read once by a machine).
    """

    def __init__(self, path: Path, *, compresslevel: int = 1) -> None:
        import queue
        import threading

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._tmp = Path(tmp)
        self._raw = os.fdopen(fd, "wb")
        self._gz = _gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel, mtime=0
        )
        self._header_done = False
        self.rows = 0
        # One piece waits while one is formatted: memory for two pieces at most.
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    if isinstance(item, bytes):
                        self._gz.write(item)
                    else:
                        self._format(item() if callable(item) else item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def _format(self, table: Any) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(
            include_header=False,
            delimiter="\t",
            quoting_style="none",
            null_string="NA",
            batch_size=1 << 16,
        )
        # Format in slices so that at most a few MB of text exist before compression.
        for start in range(0, table.num_rows, _WRITE_ROWS):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table.slice(start, _WRITE_ROWS), sink, write_options=options)
            self._gz.write(memoryview(sink.getvalue()))

    def _put(self, data: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def write_table(
        self, table: Any, *, columns: Sequence[str] | None = None, rows: int | None = None
    ) -> None:
        """Append a pyarrow Table, or a function returning one, formatted in the background.

        Parameters
        ----------
        table : pyarrow.Table or callable
            The rows, or a zero-argument function that builds them (then ``columns`` and
            ``rows`` are required: the header is written with the first piece).
        """
        if callable(table):
            if columns is None or rows is None:
                raise TypeError("a table factory needs columns= and rows=")
        else:
            columns, rows = table.column_names, table.num_rows
        # pyarrow quotes header names whatever the quoting style, so the header is ours.
        self.write_header(list(columns))
        self._put(table)
        self.rows += rows

    def write_header(self, names: list[str]) -> None:
        """Write only a header line (for a table that may get no rows)."""
        if not self._header_done:
            self._put(("\t".join(names) + "\n").encode())
            self._header_done = True

    def _finish_thread(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self) -> None:
        """Finish the file and move it to its final path."""
        self._finish_thread()
        if self._error is not None:
            self.abort()
            raise self._error
        self._gz.close()
        self._raw.close()
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Remove the temporary file."""
        self._finish_thread()
        with contextlib.suppress(OSError):
            self._gz.close()
        with contextlib.suppress(OSError):
            self._raw.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> AtomicTsvGzWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def publish(tmp: Path, path: Path) -> None:
    """Give a finished temporary file the usual permissions and rename it to ``path``.

    ``mkstemp`` creates files readable by their owner only; outputs follow the umask instead.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        publish(Path(tmp), path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_sidecar(path: Path, meta: dict[str, Any]) -> None:
    """Write a GWAS-SSF ``-meta.yaml`` sidecar atomically."""
    import yaml

    write_text_atomic(path, yaml.safe_dump(meta, sort_keys=False))


def md5sum(path: Path) -> str:
    """Return the MD5 hex digest of a file (the GWAS-SSF ``file_md5sum`` field)."""
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
