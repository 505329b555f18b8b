"""Statistical disclosure control for small aggregate tables (QC counts).

The rule follows DataSHIELD's ``nfilter.tab``: a cell count that is *non-zero but below* the
site's minimum cell size could single out a few people, so it leaves the site only as the literal
``<min_cell`` (e.g. ``<5``). A count of zero stays ``0``: DataSHIELD accepts empty cells, and for
QC counts ("0 duplicate samples removed") a zero describes nobody. Counts at or above the
threshold are published exactly.

What this does not do: secondary (complementary) suppression. If a table publishes both
``samples_in=100`` and ``samples_out=97``, the suppressed ``removed=<5`` can be recovered by
subtraction. Callers should publish either the totals or the per-step removals that matter,
not both; the airlock checks each cell, not arithmetic relations between cells.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import EgressRefused
from snakemake_executor_plugin_fedgen.fileio import AtomicFile

from snakemake_fedgen.egress.airlock import COUNTS_HEADER, COUNTS_TOKEN_RE, AirlockPolicy, inspect

__all__ = ["CountRow", "suppress_small_counts", "write_counts_table"]

#: One row of a counts table: (step, quantity, count); count is an int or ``"<min_cell"``.
CountRow = tuple[str, str, int | str]


def _as_row(row: CountRow | Mapping[str, object], index: int) -> tuple[str, str, object]:
    if isinstance(row, Mapping):
        try:
            return str(row["step"]), str(row["quantity"]), row["count"]
        except KeyError as exc:
            raise EgressRefused(
                f"counts row {index}: missing key {exc.args[0]!r}; rows need step, quantity, count"
            ) from None
    if len(row) != 3:
        raise EgressRefused(
            f"counts row {index}: expected (step, quantity, count), got {len(row)} values"
        )
    step, quantity, count = row
    return str(step), str(quantity), count


def suppress_small_counts(
    rows: Iterable[CountRow | Mapping[str, object]], *, min_cell: int
) -> list[CountRow]:
    """Replace every count in ``1 .. min_cell-1`` by the literal ``"<min_cell"``.

    Parameters
    ----------
    rows : iterable of (step, quantity, count) tuples or mappings with those keys
        ``step`` and ``quantity`` are short tokens (lower-case letters, digits, ``_ . -``);
        ``count`` a non-negative integer (an already suppressed ``"<k"`` is passed through if
        ``k >= min_cell``).
    min_cell : int
        The site's minimum cell size (>= 1).

    Returns
    -------
    list of CountRow
        Same order; counts are ints (0 or >= ``min_cell``) or ``f"<{min_cell}"``.

    Raises
    ------
    EgressRefused
        A label is not a short token, or a count is negative or not an integer.
    """
    if isinstance(min_cell, bool) or not isinstance(min_cell, int) or min_cell < 1:
        raise EgressRefused(f"min_cell must be an integer >= 1; got min_cell={min_cell!r}")
    suppressed = f"<{min_cell}"
    out: list[CountRow] = []
    for index, raw in enumerate(rows, start=1):
        step, quantity, count = _as_row(raw, index)
        for col, value in (("step", step), ("quantity", quantity)):
            if not COUNTS_TOKEN_RE.match(value):
                raise EgressRefused(
                    f"counts row {index} {col} {value[:40]!r}: use a short token of lower-case "
                    "letters, digits, '_', '.', '-' (at most 48 characters)"
                )
        if isinstance(count, str) and count.startswith("<"):
            # Already suppressed upstream with a threshold at least as strict: keep it.
            if count[1:].isascii() and count[1:].isdigit() and int(count[1:]) >= min_cell:
                out.append((step, quantity, suppressed))
                continue
            raise EgressRefused(
                f"counts row {index} ({step}/{quantity}): {count!r} was suppressed with a "
                f"threshold below min_cell={min_cell}; pass the raw count instead"
            )
        if isinstance(count, bool) or not isinstance(count, int):
            integral_float = isinstance(count, float) and count.is_integer()
            digit_text = isinstance(count, str) and count.isascii() and count.isdigit()
            if integral_float or digit_text:
                count = int(count)  # type: ignore[arg-type]
            else:
                raise EgressRefused(
                    f"counts row {index} ({step}/{quantity}): count {count!r} is not an integer"
                )
        if count < 0:
            raise EgressRefused(
                f"counts row {index} ({step}/{quantity}): count {count} is negative"
            )
        out.append((step, quantity, suppressed if 0 < count < min_cell else count))
    return out


def write_counts_table(
    path: str | os.PathLike[str],
    rows: Iterable[CountRow | Mapping[str, object]],
    *,
    min_cell: int,
) -> Path:
    """Write a QC counts table the airlock accepts (the ``counts`` kind), atomically.

    Small counts are suppressed with :func:`suppress_small_counts`; the result is checked with
    the airlock before it is moved into place, so a file at ``path`` always passes
    ``inspect(path, AirlockPolicy(min_cell=min_cell))``.

    Parameters
    ----------
    path : path-like
        Output file; its name should end in ``counts.tsv`` (e.g. ``qc_counts.tsv``).
    rows : iterable of (step, quantity, count) or mappings
        Raw counts.
    min_cell : int
        The site's minimum cell size.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    EgressRefused
        Bad labels or counts, more rows than the airlock allows, or a name the airlock would not
        recognise as a counts table. Nothing is left at ``path``.
    """
    path = Path(path)
    if not path.name.endswith(".tsv"):
        raise EgressRefused(
            f"{path}: a counts table is a '.tsv' file (e.g. qc_counts.tsv); got {path.name!r}"
        )
    safe = suppress_small_counts(rows, min_cell=min_cell)
    lines = ["\t".join(COUNTS_HEADER)]
    lines += [f"{step}\t{quantity}\t{count}" for step, quantity, count in safe]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    staged = AtomicFile(path, "wb", perms=0o644)
    with staged as f:
        f.write(data)
        f.flush()
        decision = inspect(staged.tmp, AirlockPolicy(min_cell=min_cell), name=path.name)
        if not decision.accepted:
            raise EgressRefused(f"{path}: the airlock would refuse this table: {decision.reason}")
    return path
