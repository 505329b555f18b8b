"""The airlock's ``aggregates`` kind: exact-mode tables, plain or masked.

Plain aggregates (``#fedgen-aggregates v1``) are checked from their own numbers: ``n >= min_n``
and every variant's minor allele count ``min(AC, 2n - AC) >= min_mac`` with ``AC`` the dosage
sum (``Ctg.intercept``). Masked uploads (``#fedgen-aggregates-masked v1``) are uniform noise, so
those guards cannot be recomputed: they are admitted only when the site's policy sets
``secure_aggregation: true``, and only if the guard the site applied before masking (header
``guard``) is at least as strict as the policy and the round has at least three participants.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from snakemake_fedgen.exact.aggregates import FORMAT_LINE, check_aggregates_lines
from snakemake_fedgen.exact.secure import MASKED_FORMAT_LINE, check_masked_lines

__all__ = ["detect", "validate"]


def detect(sniff) -> bool:
    """Does the sniffed file claim to be an exact-mode aggregates table?"""
    name = sniff.name.lower()
    return name.endswith((".tsv", ".tsv.gz")) and (sniff.first_line or "").startswith(
        "#fedgen-aggregates"
    )


def _lines(stream: BinaryIO) -> Iterator[str]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
    for line in text:
        yield line[:-1] if line.endswith("\n") else line


def validate(stream: BinaryIO, sniff, policy) -> tuple[bool, str]:
    """Airlock validator (streaming) for plain and masked aggregates tables."""
    first = sniff.first_line or ""
    if first == MASKED_FORMAT_LINE:
        if not getattr(policy, "secure_aggregation", False):
            return False, (
                "masked aggregates cannot be checked for min_n/min_mac (they are noise); the "
                "site admits them only with 'secure_aggregation: true' in its airlock policy"
            )
        return check_masked_lines(_lines(stream), min_n=policy.min_n, min_mac=policy.min_mac)
    if first == FORMAT_LINE:
        return check_aggregates_lines(_lines(stream), min_n=policy.min_n, min_mac=policy.min_mac)
    return False, f"line 1: unknown aggregates format {first[:60]!r}"
