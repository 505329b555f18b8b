"""Write GWAS-SSF tables: number formatting and an atomic, background-compressed ``.tsv.gz``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.fileio import AtomicFile, fast_gzip

__all__ = [
    "AtomicTsvGzWriter",
    "float_array",
    "format_p_values",
    "p_value_array",
    "round_significant",
]

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

    Formatting (Arrow's CSV writer) and compression (ISA-L when installed, see
    :data:`~snakemake_executor_plugin_fedgen.fileio.fast_gzip`) run in a background thread; both
    release the GIL, so the caller computes the next piece meanwhile. A piece may be given as
    a function that builds the table, so that building it (rounding, string columns) runs in
    that thread too.

    Parameters
    ----------
    path : Path
        Final path. A temporary file in the same directory is renamed over it on success and
        removed on failure, so no partial file is ever left at ``path``
        (:class:`~snakemake_executor_plugin_fedgen.fileio.AtomicFile`).
    compresslevel : int
        gzip level; the default favours speed (the files are read once by a machine).
    """

    def __init__(self, path: Path, *, compresslevel: int = 1) -> None:
        import queue
        import threading

        self.path = Path(path)
        self._out = AtomicFile(self.path, "wb")
        self._gz = fast_gzip.GzipFile(
            filename="", mode="wb", fileobj=self._out.file, compresslevel=compresslevel, mtime=0
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
        try:
            self._gz.close()
        except BaseException:
            self._out.discard()
            raise
        self._out.commit()

    def abort(self) -> None:
        """Remove the temporary file."""
        self._finish_thread()
        with contextlib.suppress(OSError):
            self._gz.close()
        self._out.discard()

    def __enter__(self) -> AtomicTsvGzWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
