"""The ``counts`` kind: a short QC counts table (``step  quantity  count``, e.g. ``qc_counts.tsv``).

Labels are short machine tokens; every count is 0, at least ``min_cell``, or suppressed as
``<k`` with ``k >= min_cell`` (:func:`snakemake_fedgen.egress.disclosure.write_counts_table`
writes such tables).
"""

from __future__ import annotations

import re
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import Kind, Violations, text_lines
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = ["COUNTS_HEADER", "COUNTS_TOKEN_RE", "KIND"]

COUNTS_HEADER = ("step", "quantity", "count")
_COUNTS_HEADER_TEXT = "\t".join(COUNTS_HEADER)
#: Step and quantity labels are short machine tokens, so they cannot smuggle identifiers.
COUNTS_TOKEN_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,47}$")


def detect(s: Sniff) -> bool:
    name = s.name.lower()
    if not name.endswith(".tsv") or s.compression:
        return False
    return name.endswith("counts.tsv") or (
        s.first_line is not None and s.first_line.split("\t")[0] == "step"
    )


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    lines = text_lines(stream)
    header = next(lines, None)
    if header is None or tuple(header.split("\t")) != COUNTS_HEADER:
        return False, (
            f"line 1: a counts table's header must be exactly {_COUNTS_HEADER_TEXT!r}; "
            f"got {(header or '')[:80]!r}"
        )
    suppressed = f"<{policy.min_cell}"
    bad = Violations()
    total = 0
    for lineno, line in enumerate(lines, start=2):
        total += 1
        if total > policy.max_count_rows:
            return False, (
                f"line {lineno}: more than max_count_rows={policy.max_count_rows} data rows; "
                "a counts table is a short QC summary"
            )
        row = line.split("\t")
        if len(row) != 3:
            bad.row("malformed", f"line {lineno}: {len(row)} fields but the header has 3")
            continue
        step, quantity, count = row
        for col, value in (("step", step), ("quantity", quantity)):
            if not COUNTS_TOKEN_RE.match(value):
                bad.row(
                    "malformed",
                    f"line {lineno} column {col!r}: {value[:40]!r} is not a short token "
                    "(lower-case letters, digits, _ . -; at most 48 characters)",
                )
                break
        else:
            # "<k" with k >= min_cell was suppressed at least as strictly as this site asks.
            if count.startswith("<") and count[1:].isascii() and count[1:].isdigit():
                if int(count[1:]) >= policy.min_cell:
                    continue
                bad.row(
                    "min_cell",
                    f"line {lineno} column 'count': {count!r} was suppressed below "
                    f"min_cell={policy.min_cell}; write it as {suppressed!r}",
                )
                continue
            if not (count.isascii() and count.isdigit()):
                bad.row(
                    "malformed",
                    f"line {lineno} column 'count': {count[:40]!r} is neither a non-negative "
                    f"integer nor {suppressed!r}",
                )
            elif 0 < int(count) < policy.min_cell:
                bad.row(
                    "min_cell",
                    f"line {lineno} column 'count': count={count} is below "
                    f"min_cell={policy.min_cell}; write it as {suppressed!r}",
                )
    if bad.rows:
        return False, bad.summary(total)
    return True, f"counts table with {total} rows passes (min_cell={policy.min_cell})"


KIND = Kind("counts", detect, validate)
