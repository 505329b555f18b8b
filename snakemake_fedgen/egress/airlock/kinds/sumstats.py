"""The ``sumstats`` kind: a GWAS-SSF summary-statistics table (``.tsv``, ``.tsv.gz``, ``.tsv.bgz``).

Only GWAS-SSF columns the site allows, exactly one effect column and the mandatory ones plus
``n``; every row needs ``n >= min_n`` and a minor allele count ``2*n*min(eaf, 1-eaf) >= min_mac``,
and every value has the shape of its column (chromosome, position, allele, number, rsID or variant
label), so no free text can ride along.
"""

from __future__ import annotations

import math
import re
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import Kind, Violations, text_lines
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff
from snakemake_fedgen.egress.facts import ReleaseFacts, rsid_key, variant_key, variant_label_matches
from snakemake_fedgen.sumstats import columns

__all__ = ["KIND", "minor_allele_count"]

_CHROMOSOMES = frozenset(columns.CHROMOSOMES)
#: A plain decimal number (no "_", spaces, "nan" or "inf", which float() would accept).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_MISSING = "NA"
#: Numeric columns that may be "NA"; n and effect_allele_frequency never (they gate disclosure).
_NUMERIC_NULLABLE = frozenset(
    {
        "beta",
        "odds_ratio",
        "hazard_ratio",
        "standard_error",
        "p_value",
        "neg_log_10_p_value",
        "ci_upper",
        "ci_lower",
        "info",
    }
)


def minor_allele_count(n: float, eaf: float) -> float:
    """Minor allele count ``2 * n * min(eaf, 1 - eaf)`` as the airlock computes it."""
    return 2.0 * n * min(eaf, 1.0 - eaf)


def detect(s: Sniff) -> bool:
    name = s.name.lower()
    return name.endswith(".tsv") or name.endswith(".tsv.gz") or name.endswith(".tsv.bgz")


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    lines = text_lines(stream)
    header_line = next(lines, None)
    if header_line is None or not header_line.strip():
        return False, "line 1: no header; a GWAS-SSF table starts with its column names"
    header = header_line.split("\t")
    seen: set[str] = set()
    for i, col in enumerate(header, start=1):
        if col in seen:
            return False, f"line 1 column {i}: duplicate column {col!r}"
        seen.add(col)
        if col not in policy.allowed_columns:
            return False, (
                f"line 1 column {i}: column {col!r} is not allowed by the site policy "
                f"(allowed: {', '.join(sorted(policy.allowed_columns))})"
            )
    effect = [c for c in columns.EFFECT if c in seen]
    if len(effect) != 1:
        return False, (
            "line 1: a GWAS-SSF table carries exactly one effect column of "
            f"{', '.join(columns.EFFECT)}; found {effect or 'none'}"
        )
    required = [c for c in columns.MANDATORY if c not in columns.EFFECT and c != "p_value"]
    required.append("n")  # the airlock needs n to check min_n and min_mac
    missing = [c for c in required if c not in seen]
    if "p_value" not in seen and "neg_log_10_p_value" not in seen:
        missing.append("p_value")
    if missing:
        return False, (
            f"line 1: missing mandatory column(s) {', '.join(missing)} "
            "(n is required for egress: the airlock checks min_n and min_mac per row)"
        )

    idx = {c: i for i, c in enumerate(header)}
    i_n = idx["n"]
    i_eaf = idx["effect_allele_frequency"]
    i_chr = idx["chromosome"]
    i_pos = idx["base_pair_location"]
    allele_cols = [(idx[c], c) for c in ("effect_allele", "other_allele", "ref_allele") if c in idx]
    numeric_cols = [(idx[c], c) for c in header if c in _NUMERIC_NULLABLE]
    i_rsid = idx.get("rsid")
    i_vid = idx.get("variant_id")
    width = len(header)
    min_n, min_mac = policy.min_n, policy.min_mac
    facts = policy.facts
    max_n = facts.max_samples if facts is not None else None
    i_a1, i_a2 = idx["effect_allele"], idx["other_allele"]
    keys: list[int] = []
    rs_keys: list[int] = []
    key_lines: list[int] = []
    rs_lines: list[int] = []
    bad = Violations()
    total = 0
    isfinite = math.isfinite
    number = _NUMBER.match

    for lineno, line in enumerate(lines, start=2):
        total += 1
        row = line.split("\t")
        if len(row) != width:
            bad.row(
                "malformed",
                f"line {lineno}: {len(row)} fields but the header has {width}",
            )
            continue
        # Disclosure rules first: they matter most to a data protection officer.
        try:
            if not number(row[i_n]):
                raise ValueError
            n = float(row[i_n])
            if not isfinite(n) or n < 0 or n != int(n):
                raise ValueError
        except ValueError:
            bad.row("not-numeric", f"line {lineno} column 'n': {row[i_n]!r} is not a count")
            continue
        try:
            if not number(row[i_eaf]):
                raise ValueError
            eaf = float(row[i_eaf])
            if not (0.0 <= eaf <= 1.0):
                raise ValueError
        except ValueError:
            bad.row(
                "not-numeric",
                f"line {lineno} column 'effect_allele_frequency': {row[i_eaf]!r} is not a "
                "frequency in [0, 1]",
            )
            continue
        if n < min_n:
            bad.row("min_n", f"line {lineno} column 'n': n={row[i_n]} is below min_n={min_n}")
            continue
        if max_n is not None and n > max_n:
            bad.row(
                "site-facts",
                f"line {lineno} column 'n': n={row[i_n]} is above the {max_n} samples of the "
                "largest dataset registered at this site",
            )
            continue
        mac = minor_allele_count(n, eaf)
        if mac < min_mac:
            bad.row(
                "min_mac",
                f"line {lineno} column 'effect_allele_frequency': minor allele count "
                f"2*n*min(eaf,1-eaf)={mac:.4g} is below min_mac={min_mac:g}",
            )
            continue
        message = _check_sumstats_fields(
            row, lineno, i_chr, i_pos, allele_cols, numeric_cols, i_rsid, i_vid
        )
        if message is not None:
            bad.row("malformed", message)
            continue
        if facts is not None:
            chrom, pos, a1, a2 = row[i_chr], row[i_pos], row[i_a1], row[i_a2]
            vid = row[i_vid] if i_vid is not None else _MISSING
            if vid != _MISSING and not variant_label_matches(vid, chrom, pos, a1, a2):
                bad.row(
                    "site-facts",
                    f"line {lineno} column 'variant_id': {vid[:40]!r} is not a label of the "
                    f"row's variant ({chrom}:{pos}:{a1}:{a2}); only CHR:POS[:A:B] labels leave "
                    "a site with registered datasets",
                )
                continue
            keys.append(variant_key(chrom, pos, a1, a2))
            key_lines.append(lineno)
            if i_rsid is not None and row[i_rsid] != _MISSING:
                rs_keys.append(rsid_key(row[i_rsid], chrom, pos))
                rs_lines.append(lineno)
    if total == 0:
        return False, "the table has a header but no data rows"
    if facts is not None:
        _check_site_facts(facts, keys, key_lines, rs_keys, rs_lines, total, bad)
    if bad.rows:
        return False, bad.summary(total)
    return True, (f"GWAS-SSF table with {total} rows passes (min_n={min_n}, min_mac={min_mac:g})")


def _check_site_facts(
    facts: ReleaseFacts,
    keys: list[int],
    key_lines: list[int],
    rs_keys: list[int],
    rs_lines: list[int],
    total: int,
    bad: Violations,
) -> None:
    """Rows against the registered datasets: known variants and rsIDs, each variant once, no
    more rows than the universe holds."""
    import numpy as np

    if total > facts.universe_size:
        bad.row(
            "site-facts",
            f"the table has {total} rows but the datasets registered at this site hold "
            f"{facts.universe_size} variants",
        )
    arr = np.array(keys, dtype=np.uint64)
    for at in np.flatnonzero(facts.unknown(arr)):
        bad.row(
            "site-facts",
            f"line {key_lines[at]}: the variant is not in the datasets registered at this site "
            "(chromosome, position and alleles are checked)",
        )
    if arr.size:
        order = np.argsort(arr, kind="stable")
        dup = np.flatnonzero(arr[order][1:] == arr[order][:-1])
        for at in order[dup + 1]:
            bad.row(
                "site-facts",
                f"line {key_lines[at]}: the variant appears a second time in the table",
            )
    rs = np.array(rs_keys, dtype=np.uint64)
    for at in np.flatnonzero(facts.unknown_rsids(rs)):
        bad.row(
            "site-facts",
            f"line {rs_lines[at]} column 'rsid': not the rsID the registered datasets give this "
            "position",
        )


def _check_sumstats_fields(
    row: list[str],
    lineno: int,
    i_chr: int,
    i_pos: int,
    allele_cols: list[tuple[int, str]],
    numeric_cols: list[tuple[int, str]],
    i_rsid: int | None,
    i_vid: int | None,
) -> str | None:
    if row[i_chr] not in _CHROMOSOMES:
        return f"line {lineno} column 'chromosome': {row[i_chr]!r} is not a GWAS-SSF chromosome"
    pos = row[i_pos]
    if not (pos.isascii() and pos.isdigit()) or int(pos) < 1:
        return f"line {lineno} column 'base_pair_location': {pos!r} is not a positive integer"
    for i, col in allele_cols:
        if not columns.ALLELE_RE.match(row[i]):
            return f"line {lineno} column {col!r}: {row[i]!r} is not an allele (A/C/G/T/N)"
    for i, col in numeric_cols:
        value = row[i]
        if value == _MISSING:
            continue
        try:
            if not _NUMBER.match(value) or not math.isfinite(float(value)):
                raise ValueError
        except ValueError:
            return f"line {lineno} column {col!r}: {value!r} is not a finite number or NA"
    # Identifier columns are free text in principle: pin them to variant-label shapes so they
    # cannot carry anything else.
    if i_rsid is not None and row[i_rsid] != _MISSING and not columns.RSID_RE.match(row[i_rsid]):
        return f"line {lineno} column 'rsid': {row[i_rsid]!r} is not rs<digits> or NA"
    if i_vid is not None and row[i_vid] != _MISSING and not columns.VARIANT_ID_RE.match(row[i_vid]):
        return (
            f"line {lineno} column 'variant_id': {row[i_vid][:40]!r} is not a variant label "
            "(letters, digits and _ : . - only, at most 200 characters)"
        )
    return None


KIND = Kind("sumstats", detect, validate)
