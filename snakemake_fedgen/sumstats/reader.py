"""Read and validate GWAS-SSF summary-statistics tables, one chromosome at a time.

Reading streams one chromosome at a time so that memory is set by the largest chromosome, not by
the genome. Parsing uses the pyarrow CSV reader (C++, typed columns); when it meets a bad value
the file is scanned again line by line to name the exact line and column in the error.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SumstatsError
from snakemake_executor_plugin_fedgen.fileio import DECOMPRESS_ERRORS, open_binary, open_text

from snakemake_fedgen.sumstats.columns import chromosome_code
from snakemake_fedgen.sumstats.sidecar import StudyInfo

__all__ = ["INVALID_REASONS", "ChromBlock", "Exclusion", "StudyTable"]

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
            with open_text(self.path, newline="") as fh:
                first = fh.readline()
        except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:  # also a truncated gzip stream
            raise SumstatsError(f"{self.path}: cannot be read ({exc})") from exc
        except UnicodeDecodeError as exc:
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
        with open_text(self.path, newline="") as fh:
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
        with open_binary(self.path) as source:
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
            except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
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


def _float_numpy(col: Any) -> np.ndarray:
    """An Arrow float column as numpy, nulls as NaN (zero-copy when there are none)."""
    import pyarrow.compute as pc

    if col.null_count:
        col = pc.fill_null(col, float("nan"))
    return col.to_numpy(zero_copy_only=True)
