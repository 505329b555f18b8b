"""The ``aggregates`` kind: exact-mode aggregates tables, plain or masked.

Plain aggregates (``#fedgen-aggregates v1``) are checked from their own numbers: ``n >= min_n``
and every variant's minor allele count ``min(AC, 2n - AC) >= min_mac`` with ``AC`` the dosage
sum (``Ctg.intercept``). Masked uploads (``#fedgen-aggregates-masked v1``) are uniform noise, so
those guards cannot be recomputed: they are admitted only when the site's policy sets
``secure_aggregation: true``, and only if the guard the site applied before masking (header
``guard``) is at least as strict as the policy and the round has at least three participants.

This module owns what the check needs of the two formats (format lines, header parser, column
layout, value shapes); :mod:`snakemake_fedgen.exact`, which writes and reads the tables, imports
them from here, so egress never imports the exact-mode code (nor numpy).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from snakemake_executor_plugin_fedgen.errors import SiteDataError

from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = [
    "ALLELE_RE",
    "FORMAT_LINE",
    "HEX_WORD_RE",
    "KIND",
    "MASKED_FORMAT_LINE",
    "MIN_PARTICIPANTS",
    "NAME_RE",
    "ROUND_RE",
    "VARIANT_COLUMNS",
    "VARIANT_LABEL_RE",
    "check_aggregates_lines",
    "check_masked_lines",
    "parse_header",
    "variant_value_names",
]

#: First line of a plain aggregates table.
FORMAT_LINE = "#fedgen-aggregates v1"
#: First line of a masked upload (secure aggregation).
MASKED_FORMAT_LINE = "#fedgen-aggregates-masked v1"
#: Columns that name a variant in both tables, before the statistics.
VARIANT_COLUMNS = (
    "chromosome",
    "base_pair_location",
    "variant_id",
    "other_allele",
    "effect_allele",
)
#: With two participants the sum reveals the other site's aggregates to each of them.
MIN_PARTICIPANTS = 3
#: Alleles an aggregates table may carry.
ALLELE_RE = re.compile(r"^[ACGTN]+$")
#: Chromosome and variant labels.
VARIANT_LABEL_RE = re.compile(r"^[A-Za-z0-9_:.\-<>*]{1,200}$")
#: Site, trait and model column names.
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: One masked value: a ring element as 32 lower-case hex digits.
HEX_WORD_RE = re.compile(r"^[0-9a-f]{32}$")
#: A secure-aggregation round id.
ROUND_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")


def parse_header(lines: Iterator[tuple[int, str]], path: str, format_line: str) -> dict:
    """Read the ``#format`` line and the ``##key=value`` lines of a numbered line iterator.

    Returns the keys with their values, plus ``__header__`` (the table's column line) and
    ``__header_line__`` (its line number); ``lines`` is left at the first data row.

    Raises
    ------
    SiteDataError
        Line 1 is not ``format_line`` or a ``##`` line has no ``=``; the message starts with
        ``path``.
    """
    first = next(lines, None)
    if first is None or first[1] != format_line:
        got = "" if first is None else first[1][:60]
        raise SiteDataError(f"{path}: line 1 must be {format_line!r}; got {got!r}")
    meta: dict[str, str] = {}
    for lineno, line in lines:
        if line.startswith("##"):
            key, sep, value = line[2:].partition("=")
            if not sep:
                raise SiteDataError(f"{path}: line {lineno}: expected '##key=value'")
            meta[key] = value
            continue
        meta["__header__"] = line
        meta["__header_line__"] = str(lineno)
        break
    return meta


def variant_value_names(columns: Sequence[str]) -> list[str]:
    """Value columns of a masked upload's table after the variant columns."""
    return ["present", "gtg", "gty", *(f"Ctg.{c}" for c in columns)]


_INT = re.compile(r"^[0-9]{1,15}$")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_META_SHAPES = {
    "min_n": _INT,
    "min_mac": _NUMBER,
    "missing_dosage": re.compile(r"^mean-imputed$"),
    "variants_suppressed": _INT,
    "variants_skipped_alleles": _INT,
}


def check_aggregates_lines(lines: Iterable[str], *, min_n: int, min_mac: float) -> tuple[bool, str]:
    """Disclosure check of a plain aggregates table, streaming its lines.

    The guard is recomputed from the numbers in the file, not trusted from its header:
    ``n >= min_n`` and, per variant, minor allele count ``min(AC, 2n - AC) >= min_mac`` with
    ``AC = Ctg.intercept`` (the dosage sum). Variant fields are pinned to allele and label
    shapes and every statistic must be a finite number, so no free text can ride along.

    Returns
    -------
    (bool, str)
        Accepted or not, and a one-line reason naming the first offending line and column.
    """
    it = iter(enumerate(lines, start=1))
    try:
        meta = parse_header(it, "aggregates", FORMAT_LINE)
    except SiteDataError as exc:
        return False, str(exc).removeprefix("aggregates: ")
    allowed_meta = {
        "site",
        "sites",
        "trait",
        "columns",
        "n",
        "yty",
        "Cty",
        "CtC",
        "min_n",
        "min_mac",
        "missing_dosage",
        "variants_suppressed",
        "variants_skipped_alleles",
        "__header__",
        "__header_line__",
    }
    unknown = sorted(set(meta) - allowed_meta)
    if unknown:
        return False, f"unknown header key(s) {', '.join(unknown)}"
    # Header values are pinned to their shapes so no free text rides along in them.
    for key, shape in _META_SHAPES.items():
        if key in meta and not shape.match(meta[key]):
            return False, f"header key {key}: value {meta[key][:40]!r} has the wrong shape"
    try:
        columns = meta["columns"].split(",")
        k = len(columns)
        n = int(meta["n"])
        once = [float(meta["yty"])]
        once += [float(v) for v in meta["Cty"].split(",")]
        once += [float(v) for v in meta["CtC"].split(",")]
    except (KeyError, ValueError) as exc:
        return False, f"header key {exc} is missing or not numeric"
    for name in (meta.get("site", ""), meta.get("trait", ""), *meta.get("sites", "").split(",")):
        if not NAME_RE.match(name):
            return False, f"site/trait name {name[:40]!r} is not a short token"
    if not all(NAME_RE.match(c) for c in columns) or columns[0] != "intercept":
        return False, "header key columns must start with 'intercept' and hold short tokens"
    if len(once) != 1 + k + k * (k + 1) // 2 or not all(math.isfinite(v) for v in once):
        return False, "header keys yty/Cty/CtC do not match the number of columns or not finite"
    if n < min_n:
        return False, f"header key n: n={n} is below min_n={min_n}"
    expected = [*VARIANT_COLUMNS, "gtg", "gty", *(f"Ctg.{c}" for c in columns)]
    if meta.get("__header__", "").split("\t") != expected:
        return False, f"line {meta.get('__header_line__', '?')}: table header must be " + " ".join(
            expected
        )
    rows = 0
    for lineno, line in it:
        rows += 1
        row = line.split("\t")
        if len(row) != len(expected):
            return False, f"line {lineno}: {len(row)} fields but the header has {len(expected)}"
        if not row[1].isdigit() or not VARIANT_LABEL_RE.match(row[0]):
            return False, f"line {lineno}: chromosome/base_pair_location malformed"
        if not VARIANT_LABEL_RE.match(row[2]):
            return False, f"line {lineno} column 'variant_id': not a variant label"
        if not (ALLELE_RE.match(row[3]) and ALLELE_RE.match(row[4])):
            return False, f"line {lineno}: alleles must be A/C/G/T/N"
        try:
            numbers = [float(v) for v in row[5:]]
        except ValueError:
            return False, f"line {lineno}: a statistic is not a number"
        if not all(math.isfinite(v) for v in numbers):
            return False, f"line {lineno}: a statistic is not finite"
        ac = numbers[2]
        mac = min(ac, 2.0 * n - ac)
        if mac < min_mac:
            return False, (
                f"line {lineno} column 'Ctg.intercept': minor allele count {mac:.4g} is below "
                f"min_mac={min_mac:g}"
            )
    return True, (
        f"exact-mode aggregates with n={n} and {rows} variants pass (min_n={min_n}, "
        f"min_mac={min_mac:g})"
    )


def check_masked_lines(lines, *, min_n: int, min_mac: float) -> tuple[bool, str]:
    """Airlock check of a masked upload (streaming); see the airlock's ``aggregates`` kind.

    Masked values are uniform noise, so the n and MAC guards cannot be recomputed here: the
    site's own ``fedgen exact mask`` applied them before masking and records them in the
    ``guard`` header, which must be at least as strict as the policy. Every value must be a
    ring element (32 hex digits) and the round needs at least three participants.
    """
    it = iter(enumerate(lines, start=1))
    try:
        meta = parse_header(it, "masked", MASKED_FORMAT_LINE)
    except SiteDataError as exc:
        return False, str(exc).removeprefix("masked: ")
    allowed = {
        "site", "round", "participants", "sites", "trait", "columns", "ring", "frac_bits",
        "context", "guard", "missing_dosage", "variants_sha256", "variants_absent_here",
        "variants_outside_universe", "once", "__header__", "__header_line__",
    }  # fmt: skip
    unknown = sorted(set(meta) - allowed)
    if unknown:
        return False, f"unknown header key(s) {', '.join(unknown)}"
    name = r"[A-Za-z0-9_.\-]{1,64}"
    shapes = {
        "site": f"^{name}$",
        "trait": f"^{name}$",
        "sites": f"^{name}(,{name})*$",
        "participants": f"^{name}(,{name})*$",
        "columns": f"^{name}(,{name})*$",
        "round": ROUND_RE.pattern,
        "ring": r"^Z_2\^128$",
        "frac_bits": r"^[0-9]{1,2}$",
        "context": r"^[0-9a-f]{64}$",
        "variants_sha256": r"^[0-9a-f]{64}$",
        "missing_dosage": r"^mean-imputed$",
        "variants_absent_here": r"^[0-9]{1,15}$",
        "variants_outside_universe": r"^[0-9]{1,15}$",
        "guard": r"^min_n:[0-9]{1,15},min_mac:[0-9.eE+\-]{1,20}$",
    }
    for key, pattern in shapes.items():
        if key not in meta or not re.match(pattern, meta[key]):
            return False, f"header key {key}: missing or value has the wrong shape"
    guard = dict(part.split(":", 1) for part in meta.get("guard", "").split(",") if ":" in part)
    try:
        g_n, g_mac = int(guard["min_n"]), float(guard["min_mac"])
    except (KeyError, ValueError):
        return False, "header key guard must be 'min_n:<int>,min_mac:<number>'"
    if g_n < min_n or g_mac < min_mac:
        return False, (
            f"header key guard: the site applied min_n={g_n}, min_mac={g_mac:g} before masking, "
            f"weaker than the policy's min_n={min_n}, min_mac={min_mac:g}"
        )
    participants = meta.get("participants", "").split(",")
    if len(participants) < MIN_PARTICIPANTS:
        return False, (
            f"only {len(participants)} participants: with fewer than {MIN_PARTICIPANTS} the sum "
            "reveals a site's aggregates to the other site"
        )
    once = meta.get("once", "").split(",")
    if not all(HEX_WORD_RE.match(x) for x in once):
        return False, "header key once: values must be 32 lower-case hex digits"
    columns = meta.get("columns", "").split(",")
    expected = [*VARIANT_COLUMNS, *variant_value_names(columns)]
    if meta.get("__header__", "").split("\t") != expected or columns[0] != "intercept":
        return False, "table header does not match the columns key"
    width = len(expected)
    rows = 0
    for lineno, line in it:
        rows += 1
        row = line.split("\t")
        if len(row) != width:
            return False, f"line {lineno}: {len(row)} fields but the header has {width}"
        if not (
            row[1].isdigit() and re.match(r"^[ACGTN]+$", row[3]) and re.match(r"^[ACGTN]+$", row[4])
        ):
            return False, f"line {lineno}: variant fields malformed"
        if not re.match(r"^[A-Za-z0-9_:.\-<>*]{1,200}$", row[2]) or not re.match(
            r"^[A-Za-z0-9_.\-]{1,20}$", row[0]
        ):
            return False, f"line {lineno}: chromosome/variant_id is not a label"
        if not all(HEX_WORD_RE.match(x) for x in row[5:]):
            return False, f"line {lineno}: values must be 32 lower-case hex digits"
    return True, (
        f"masked exact-mode aggregates for round {meta.get('round')} with {rows} variants pass "
        f"(guards min_n={g_n}, min_mac={g_mac:g} applied at the site before masking)"
    )


# --------------------------------------------------------------------------------------------
# The airlock kind
# --------------------------------------------------------------------------------------------


def detect(sniff: Sniff) -> bool:
    """Does the sniffed file claim to be an exact-mode aggregates table?"""
    # Before "sumstats" in the registry: that kind claims every .tsv name.
    name = sniff.name.lower()
    return name.endswith((".tsv", ".tsv.gz")) and (sniff.first_line or "").startswith(
        "#fedgen-aggregates"
    )


def _lines(stream: BinaryIO) -> Iterator[str]:
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
    for line in text:
        yield line[:-1] if line.endswith("\n") else line


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    """Airlock validator (streaming) for plain and masked aggregates tables."""
    first = sniff.first_line or ""
    if first == MASKED_FORMAT_LINE:
        if not policy.secure_aggregation:
            return False, (
                "masked aggregates cannot be checked for min_n/min_mac (they are noise); the "
                "site admits them only with 'secure_aggregation: true' in its airlock policy"
            )
        return check_masked_lines(_lines(stream), min_n=policy.min_n, min_mac=policy.min_mac)
    if first == FORMAT_LINE:
        return check_aggregates_lines(_lines(stream), min_n=policy.min_n, min_mac=policy.min_mac)
    return False, f"line 1: unknown aggregates format {first[:60]!r}"


KIND = Kind("aggregates", detect, validate)
