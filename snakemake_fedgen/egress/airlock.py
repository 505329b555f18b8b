"""The egress airlock: decide whether a file may leave its site.

A site publishes a file written under its egress root only if :func:`inspect` accepts it. The
airlock is a whitelist: a file must match one registered *kind* (:data:`KINDS`: GWAS-SSF summary
statistics, a QC counts table, the GWAS-SSF metadata sidecar) and pass that kind's disclosure
checks. Everything else is refused, and per-sample formats (VCF/BCF, PLINK binaries and their
sample/variant tables, tables with a sample-ID column) are recognised by their *content*, not only
by their name, so renaming a VCF to ``x.tsv`` does not get it out.

The decision carries the file's size and SHA-256 so the node can publish exactly the bytes that
were checked and the audit log can name them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.sumstats import columns

__all__ = [
    "COUNTS_HEADER",
    "COUNTS_TOKEN_RE",
    "KINDS",
    "AirlockDecision",
    "AirlockPolicy",
    "Kind",
    "Sniff",
    "inspect",
    "minor_allele_count",
]

#: How much of a file (after decompression) is sniffed for forbidden content.
_SNIFF_BYTES = 64 * 1024
_HASH_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Policy and decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AirlockPolicy:
    """A site's disclosure policy for files leaving through its egress root.

    Attributes
    ----------
    min_n : int
        Every summary-statistics row needs a sample size ``n >= min_n``.
    min_mac : float
        Every row needs a minor allele count ``2 * n * min(eaf, 1 - eaf) >= min_mac``.
    min_cell : int
        Counts tables: every count is 0, ``>= min_cell`` or a suppressed literal ``<k`` with
        ``k >= min_cell`` (normally ``<min_cell``).
    max_bytes : int
        Largest file the airlock publishes.
    allowed_columns : frozenset of str
        Column names a summary-statistics table may carry (GWAS-SSF names).
    max_count_rows : int
        Largest number of data rows in a counts table.
    min_cases : int
        Case/control studies (a GWAS-SSF sidecar of a binary trait): the study needs at least
        this many cases and this many controls, and must say how many it has.
    secure_aggregation : bool
        Admit masked exact-mode aggregates (noise to the airlock; the site checked n and MAC
        before masking). See docs/exact-and-secure-aggregation.md.
    """

    min_n: int = 50
    min_mac: float = 10.0
    min_cell: int = 5
    max_bytes: int = 2 * 1024**3
    allowed_columns: frozenset[str] = columns.ALLOWED
    max_count_rows: int = 1000
    min_cases: int = 10
    secure_aggregation: bool = False

    def __post_init__(self) -> None:
        _check_policy_values(self)

    @classmethod
    def from_mapping(cls, data: Mapping | None) -> AirlockPolicy:
        """Build a policy from a config mapping (e.g. the node config's ``airlock`` key).

        Parameters
        ----------
        data : mapping or None
            Keys among the attribute names; missing keys take their defaults, ``None`` gives the
            default policy.

        Raises
        ------
        ConfigError
            An unknown key, or a value of the wrong type or range; the message names the key,
            the value received and what is expected.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"airlock policy must be a mapping of {_policy_keys()}; got "
                f"{type(data).__name__} {data!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(
                f"airlock policy: unknown key(s) {', '.join(unknown)}; valid keys are "
                f"{_policy_keys()}"
            )
        kwargs: dict[str, object] = {}
        for key in ("min_n", "min_cell", "max_bytes", "max_count_rows", "min_cases"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"airlock policy: {key} must be an integer; got {value!r}")
                kwargs[key] = value
        if "min_mac" in data:
            value = data["min_mac"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"airlock policy: min_mac must be a number; got {value!r}")
            kwargs["min_mac"] = float(value)
        if "secure_aggregation" in data:
            if not isinstance(data["secure_aggregation"], bool):
                raise ConfigError(
                    "airlock policy: secure_aggregation must be true or false; got "
                    f"{data['secure_aggregation']!r}"
                )
            kwargs["secure_aggregation"] = data["secure_aggregation"]
        if "allowed_columns" in data:
            value = data["allowed_columns"]
            if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
                raise ConfigError(
                    "airlock policy: allowed_columns must be a list of GWAS-SSF column names; "
                    f"got {value!r}"
                )
            bad = sorted(str(c) for c in value if not isinstance(c, str))
            if bad:
                raise ConfigError(
                    f"airlock policy: allowed_columns must hold strings; got {', '.join(bad)}"
                )
            kwargs["allowed_columns"] = frozenset(value)
        return cls(**kwargs)  # type: ignore[arg-type]


def _policy_keys() -> str:
    return ", ".join(f.name for f in fields(AirlockPolicy))


def _check_policy_values(policy: AirlockPolicy) -> None:
    if policy.min_n < 1:
        raise ConfigError(f"airlock policy: min_n must be >= 1; got min_n={policy.min_n}")
    if not math.isfinite(policy.min_mac) or policy.min_mac < 0:
        raise ConfigError(
            f"airlock policy: min_mac must be a finite number >= 0; got min_mac={policy.min_mac}"
        )
    if policy.min_cases < 1:
        raise ConfigError(
            f"airlock policy: min_cases must be >= 1; got min_cases={policy.min_cases}"
        )
    if policy.min_cell < 1:
        raise ConfigError(f"airlock policy: min_cell must be >= 1; got min_cell={policy.min_cell}")
    if policy.max_bytes < 1:
        raise ConfigError(
            f"airlock policy: max_bytes must be >= 1; got max_bytes={policy.max_bytes}"
        )
    if policy.max_count_rows < 1:
        raise ConfigError(
            f"airlock policy: max_count_rows must be >= 1; got {policy.max_count_rows}"
        )
    # A site may narrow the allowed set, never widen it beyond GWAS-SSF names: a column the
    # format does not define is a free-text channel the airlock cannot reason about.
    extra = sorted(policy.allowed_columns - columns.ALLOWED)
    if extra:
        raise ConfigError(
            f"airlock policy: allowed_columns holds non-GWAS-SSF name(s) {', '.join(extra)}; "
            f"use names from {', '.join(sorted(columns.ALLOWED))}"
        )


@dataclass(frozen=True)
class AirlockDecision:
    """The airlock's verdict on one file.

    Attributes
    ----------
    accepted : bool
        True if the file may be published.
    kind : str
        The registered kind the file matched (``sumstats``, ``counts``, ...) or, when refused,
        what it looked like (``vcf``, ``bcf``, ``plink-bed``, ``pgen``, ``sample-table``,
        ``unknown``, ...).
    reason : str
        One line naming the file and, for refusals, the first violation (line, column) and how
        many rows violate the policy.
    size : int
        File size in bytes (0 if it could not be read).
    sha256 : str
        Hex SHA-256 of the bytes inspected ("" if the file could not be read).
    """

    accepted: bool
    kind: str
    reason: str
    size: int
    sha256: str


# --------------------------------------------------------------------------------------------
# Sniffing: what the file's bytes say it is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sniff:
    """What the first bytes of a file reveal.

    Attributes
    ----------
    name : str
        The name the file will be published under (used for kind detection by suffix).
    raw : bytes
        First bytes of the file as stored.
    compression : str or None
        ``"gzip"`` (including BGZF) or None.
    text : bytes
        First bytes after decompression (equals ``raw`` when not compressed).
    first_line : str or None
        First line of ``text`` decoded as UTF-8, without the newline; None if not text.
    """

    name: str
    raw: bytes
    compression: str | None
    text: bytes
    first_line: str | None = field(default=None)


def _sniff(f: BinaryIO, name: str) -> Sniff:
    f.seek(0)
    raw = f.read(_SNIFF_BYTES)
    compression = None
    text = raw
    if raw[:2] == b"\x1f\x8b":
        compression = "gzip"
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                text = gz.read(_SNIFF_BYTES)
        except (OSError, EOFError, zlib.error):
            text = b""
    f.seek(0)
    first_line = None
    head = text.split(b"\n", 1)[0]
    try:
        first_line = head.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        first_line = None
    return Sniff(name=name, raw=raw, compression=compression, text=text, first_line=first_line)


def _header_tokens(line: str) -> list[str]:
    return [t for t in re.split(r"[\t ,;|]+", line.strip()) if t]


def _sample_id_column(line: str | None) -> str | None:
    """Return the first header token that names a sample identifier, else None."""
    if line is None:
        return None
    for token in _header_tokens(line):
        bare = token.strip("\"'").lower()
        if bare in columns.SAMPLE_ID_COLUMNS or bare.lstrip("#") in columns.SAMPLE_ID_COLUMNS:
            return token
    return None


def _is_bim_like(text: bytes) -> bool:
    # .bim: chrom, id, cM, bp, a1, a2 with no header.
    for line in text.split(b"\n")[:3]:
        parts = line.split()
        if len(parts) != 6:
            return False
        try:
            float(parts[2])
            int(parts[3])
        except ValueError:
            return False
    return bool(text.strip())


def _is_fam_like(text: bytes) -> bool:
    # .fam: FID, IID, father, mother, sex (0/1/2), phenotype with no header.
    for line in text.split(b"\n")[:3]:
        parts = line.split()
        if len(parts) != 6 or parts[4] not in (b"0", b"1", b"2"):
            return False
    return bool(text.strip())


#: Content that is individual-level data whatever the file is called: (label, test, why).
_FORBIDDEN_CONTENT: tuple[tuple[str, Callable[[Sniff], bool], str], ...] = (
    (
        "bcf",
        # "BCF" then the binary major version byte (2), compressed (BGZF) or not.
        lambda s: s.raw.startswith(b"BCF\x02") or s.text.startswith(b"BCF\x02"),
        "content is BCF (per-sample genotypes)",
    ),
    (
        "vcf",
        lambda s: (
            s.text.startswith(b"##fileformat=VCF")
            or s.text.startswith(b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
        ),
        "content is VCF (per-sample genotypes)",
    ),
    (
        "plink-bed",
        lambda s: s.raw[:3] in (b"\x6c\x1b\x01", b"\x6c\x1b\x00"),
        "content is a PLINK 1 .bed genotype matrix (magic 0x6c 0x1b 0x01)",
    ),
    (
        "pgen",
        lambda s: s.raw[:2] == b"\x6c\x1b",
        "content is a PLINK 2 .pgen genotype matrix (magic 0x6c 0x1b)",
    ),
    ("bam", lambda s: s.text.startswith(b"BAM\x01"), "content is BAM (per-sample reads)"),
    ("cram", lambda s: s.raw.startswith(b"CRAM"), "content is CRAM (per-sample reads)"),
    (
        "bgen",
        lambda s: s.raw[16:20] == b"bgen",
        "content is BGEN (per-sample genotype probabilities)",
    ),
    (
        "pvar",
        lambda s: (
            s.first_line is not None
            and s.first_line.startswith("#CHROM")
            and _header_tokens(s.first_line)[1:5] == ["POS", "ID", "REF", "ALT"]
            and not any(t in {"A1", "OBS_CT", "P"} for t in _header_tokens(s.first_line))
        ),
        "content is a PLINK 2 .pvar variant table (part of a genotype fileset)",
    ),
    (
        "plink2-glm",
        lambda s: (
            s.first_line is not None
            and s.first_line.startswith("#CHROM")
            and {"A1", "OBS_CT"} <= set(_header_tokens(s.first_line))
        ),
        "content is a raw plink2 --glm report; convert it with 'fedgen sumstats export', which "
        "applies the site's disclosure control",
    ),
    (
        "sample-table",
        lambda s: _sample_id_column(s.first_line) is not None,
        "",  # reason built in _forbidden() with the column name
    ),
    ("plink-fam", lambda s: _is_fam_like(s.text), "content looks like a PLINK .fam sample table"),
    ("plink-bim", lambda s: _is_bim_like(s.text), "content looks like a PLINK .bim variant table"),
)

#: Name suffixes of per-sample or genotype formats, refused whatever the content.
_FORBIDDEN_SUFFIXES: tuple[str, ...] = (
    ".vcf",
    ".vcf.gz",
    ".vcf.bgz",
    ".bcf",
    ".bed",
    ".bim",
    ".fam",
    ".pgen",
    ".pvar",
    ".pvar.zst",
    ".psam",
    ".pgi",
    ".bgen",
    ".sample",
    ".bam",
    ".cram",
    ".sam",
    ".haps",
    ".legend",
    ".gen",
    ".gen.gz",
    ".tbi",
    ".csi",
)


def _forbidden(sniff: Sniff) -> tuple[str, str] | None:
    # Content first: it names what the file really is, whatever it is called.
    for label, test, why in _FORBIDDEN_CONTENT:
        if test(sniff):
            if label == "sample-table":
                col = _sample_id_column(sniff.first_line)
                why = (
                    f"line 1 has a sample-identifier column {col!r}: "
                    "per-sample tables never leave the site"
                )
            return label, why
    lname = sniff.name.lower()
    for suffix in _FORBIDDEN_SUFFIXES:
        if lname.endswith(suffix):
            return (
                "genotype-file",
                f"name ends in {suffix!r}: genotype and sample files never leave the site",
            )
    return None


# --------------------------------------------------------------------------------------------
# Kind registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of file the airlock may publish.

    Attributes
    ----------
    name : str
        Kind name as recorded in decisions and audit logs.
    detect : callable
        ``detect(sniff) -> bool``: does this file claim to be of this kind (name and content)?
    validate : callable
        ``validate(stream, sniff, policy) -> (ok, reason)`` with ``stream`` the decompressed
        binary content positioned at its start. Must stream: never hold the whole file.
    """

    name: str
    detect: Callable[[Sniff], bool]
    validate: Callable[[BinaryIO, Sniff, AirlockPolicy], tuple[bool, str]]


#: Longest line a text kind may have; bounds memory whatever the file holds.
_MAX_LINE = 64 * 1024


class _LineTooLong(Exception):
    def __init__(self, lineno: int) -> None:
        super().__init__(lineno)
        self.lineno = lineno


def _text_lines(stream: BinaryIO) -> Iterator[str]:
    """Yield decoded lines without their newline.

    Raises UnicodeDecodeError on bytes that are not UTF-8 and _LineTooLong past ``_MAX_LINE``.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
    readline = text.readline
    lineno = 0
    while line := readline(_MAX_LINE + 1):
        lineno += 1
        if line[-1] == "\n":
            yield line[:-1]
        elif len(line) > _MAX_LINE:
            raise _LineTooLong(lineno)
        else:
            yield line


# -- sumstats ---------------------------------------------------------------------------------

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


def _detect_sumstats(s: Sniff) -> bool:
    name = s.name.lower()
    return name.endswith(".tsv") or name.endswith(".tsv.gz") or name.endswith(".tsv.bgz")


class _Violations:
    """Counts violating rows and remembers the first violation for the reason."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.rows = 0
        self.by_rule: dict[str, int] = {}

    def row(self, rule: str, message: str) -> None:
        self.rows += 1
        self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        if self.first is None:
            self.first = message

    def summary(self, total: int) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_rule.items()))
        return f"{self.first}; {self.rows} of {total} data rows violate the policy ({parts})"


def _validate_sumstats(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    lines = _text_lines(stream)
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
    bad = _Violations()
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
    if total == 0:
        return False, "the table has a header but no data rows"
    if bad.rows:
        return False, bad.summary(total)
    return True, (f"GWAS-SSF table with {total} rows passes (min_n={min_n}, min_mac={min_mac:g})")


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


# -- counts -----------------------------------------------------------------------------------

COUNTS_HEADER = ("step", "quantity", "count")
_COUNTS_HEADER_TEXT = "\t".join(COUNTS_HEADER)
#: Step and quantity labels are short machine tokens, so they cannot smuggle identifiers.
COUNTS_TOKEN_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,47}$")


def _detect_counts(s: Sniff) -> bool:
    name = s.name.lower()
    if not name.endswith(".tsv") or s.compression:
        return False
    return name.endswith("counts.tsv") or (
        s.first_line is not None and s.first_line.split("\t")[0] == "step"
    )


def _validate_counts(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    lines = _text_lines(stream)
    header = next(lines, None)
    if header is None or tuple(header.split("\t")) != COUNTS_HEADER:
        return False, (
            f"line 1: a counts table's header must be exactly {_COUNTS_HEADER_TEXT!r}; "
            f"got {(header or '')[:80]!r}"
        )
    suppressed = f"<{policy.min_cell}"
    bad = _Violations()
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


# -- sumstats-meta ----------------------------------------------------------------------------

#: GWAS-SSF v1.0 metadata keys (GWAS Catalog sumstats metadata model).
META_KEYS: frozenset[str] = frozenset(
    {
        "file_type",
        "data_file_name",
        "file_md5sum",
        "data_file_md5sum",
        "genome_assembly",
        "coordinate_system",
        "is_harmonised",
        "is_sorted",
        "genotyping_technology",
        "trait_description",
        "samples",
        "analysis_software",
        "date_last_modified",
        "date_metadata_last_modified",
        "gwas_id",
        "gwas_catalog_api",
        "minor_allele_freq_lower_limit",
        "imputation_panel",
        "imputation_software",
        "adjusted_covariates",
        "ontology_mapping",
        "author_notes",
        "sex",
        "effect_statistic",
        "pvalue_is_neg_log10",
        "hm_code_definition",
        "harmonisation_reference",
        "analysis_name",
        "fedgen",
    }
)
#: Keys of one ``samples`` entry.
META_SAMPLE_KEYS: frozenset[str] = frozenset(
    {
        "sample_size",
        "sample_ancestry",
        "sample_ancestry_category",
        "ancestry_method",
        "case_control_study",
        "case_count",
        "control_count",
        "case_type",
    }
)
#: Keys of the ``fedgen`` block.
META_FEDGEN_KEYS: frozenset[str] = frozenset(
    {
        "site",
        "trait_type",
        "n_cases",
        "n_controls",
        "refget_seqcol_digest",
        "min_n",
        "min_mac",
        "variants_suppressed",
        "variants_exported",
        "variants_dropped",
        "effect_scale",
        "source_format",
        "effect_column",
        "source_file",
        "fedgen_version",
    }
)
_META_MAX_BYTES = 64 * 1024
_META_MAX_LIST = 20
_META_MAX_STRING = 1000


def _detect_meta(s: Sniff) -> bool:
    name = s.name.lower()
    return not s.compression and (name.endswith("-meta.yaml") or name.endswith("-meta.yml"))


def _meta_scalar_problem(path: str, value: object) -> str | None:
    if isinstance(value, str):
        if len(value) > _META_MAX_STRING:
            return f"key {path}: text longer than {_META_MAX_STRING} characters"
        return None
    if value is None or isinstance(value, bool | int | float):
        return None
    if isinstance(value, list):
        if len(value) > _META_MAX_LIST:
            return (
                f"key {path}: a list of {len(value)} items (at most {_META_MAX_LIST}); "
                "sample lists never leave the site"
            )
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                return f"key {path}[{i}]: nested structure not allowed here"
            problem = _meta_scalar_problem(f"{path}[{i}]", item)
            if problem:
                return problem
        return None
    return f"key {path}: unsupported value type {type(value).__name__}"


def _meta_tally_problem(path: str, value: dict) -> str | None:
    if len(value) > _META_MAX_LIST:
        return f"key {path}: more than {_META_MAX_LIST} entries"
    for k, v in value.items():
        if not isinstance(k, str) or not COUNTS_TOKEN_RE.match(k):
            return f"key {path}: label {str(k)[:40]!r} is not a short token"
        if isinstance(v, bool) or not isinstance(v, int):
            return f"key {path}.{k}: {v!r} is not an integer count"
    return None


def _validate_meta(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    data = stream.read(_META_MAX_BYTES + 1)
    if len(data) > _META_MAX_BYTES:
        return False, f"metadata sidecar larger than {_META_MAX_BYTES} bytes"
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        return False, f"not valid UTF-8 YAML: {str(exc).splitlines()[0]}"
    if not isinstance(doc, dict):
        return False, "the metadata sidecar must be a YAML mapping"
    unknown = sorted(str(k) for k in doc if k not in META_KEYS)
    if unknown:
        return False, f"unknown top-level key(s) {', '.join(unknown)}"
    for key, value in doc.items():
        if key == "samples":
            if not isinstance(value, list) or len(value) > _META_MAX_LIST:
                return False, f"key samples: must be a list of at most {_META_MAX_LIST} groups"
            for i, group in enumerate(value):
                if not isinstance(group, dict):
                    return False, f"key samples[{i}]: must be a mapping"
                bad = sorted(str(k) for k in group if k not in META_SAMPLE_KEYS)
                if bad:
                    return False, f"key samples[{i}]: unknown key(s) {', '.join(bad)}"
                for k, v in group.items():
                    problem = _meta_scalar_problem(f"samples[{i}].{k}", v)
                    if problem:
                        return False, problem
        elif key == "fedgen":
            if not isinstance(value, dict):
                return False, "key fedgen: must be a mapping"
            bad = sorted(str(k) for k in value if k not in META_FEDGEN_KEYS)
            if bad:
                return False, f"key fedgen: unknown key(s) {', '.join(bad)}"
            for k, v in value.items():
                if isinstance(v, dict):
                    # Tallies such as variants_dropped: {errcode: 3}; labels are short tokens.
                    problem = _meta_tally_problem(f"fedgen.{k}", v)
                else:
                    problem = _meta_scalar_problem(f"fedgen.{k}", v)
                if problem:
                    return False, problem
        else:
            if isinstance(value, dict):
                return False, f"key {key}: nested mapping not allowed"
            problem = _meta_scalar_problem(str(key), value)
            if problem:
                return False, problem
    problem = _case_control_problem(doc, policy)
    if problem:
        return False, problem
    return True, "GWAS-SSF metadata sidecar passes"


def _case_control_problem(doc: dict, policy: AirlockPolicy) -> str | None:
    """A case/control study needs declared case and control counts, each >= min_cases."""
    fedgen = doc.get("fedgen") if isinstance(doc.get("fedgen"), dict) else {}
    counts: list[tuple[str, object]] = [
        (f"fedgen.{k}", fedgen[k]) for k in ("n_cases", "n_controls") if k in fedgen
    ]
    for i, group in enumerate(doc.get("samples") or []):
        counts += [
            (f"samples[{i}].{k}", group[k]) for k in ("case_count", "control_count") if k in group
        ]
    binary = fedgen.get("trait_type") == "binary" or any(
        g.get("case_control_study") is True for g in doc.get("samples") or []
    )
    if binary and not counts:
        return (
            "a case/control study without fedgen.n_cases/n_controls: the airlock needs them to "
            f"check min_cases={policy.min_cases} (fedgen sumstats export --n-cases/--n-controls)"
        )
    for where, value in counts:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return f"key {where}: {value!r} is not an integer count"
        if value < policy.min_cases:
            return (
                f"key {where}: {value} is below min_cases={policy.min_cases}; results of a "
                "case/control study this small could disclose individuals"
            )
    return None


# -- aggregates (exact mode; checked by snakemake_fedgen.exact.disclosure) -----------------------


def _detect_aggregates(s: Sniff) -> bool:
    # Decided here without importing the exact-mode package, so every other file is inspected
    # without loading numpy/cryptography.
    name = s.name.lower()
    return name.endswith((".tsv", ".tsv.gz")) and (s.first_line or "").startswith(
        "#fedgen-aggregates"
    )


def _validate_aggregates(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    try:
        from snakemake_fedgen.exact import disclosure  # lazy: numpy only for this kind
    except ImportError as exc:
        return False, f"the exact-mode aggregates checker is not available ({exc})"
    return disclosure.validate(stream, sniff, policy)


# -- provenance ------------------------------------------------------------------------------------

#: The versioned schema a provenance record must follow (shipped with the package).
PROVENANCE_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "provenance.schema.json"
_PROVENANCE_MAX_BYTES = 1024 * 1024


def _detect_provenance(s: Sniff) -> bool:
    return not s.compression and s.name.lower().endswith(".prov.json")


def _validate_provenance(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    import json

    import jsonschema

    data = stream.read(_PROVENANCE_MAX_BYTES + 1)
    if len(data) > _PROVENANCE_MAX_BYTES:
        return False, f"provenance record larger than {_PROVENANCE_MAX_BYTES} bytes"
    try:
        schema = json.loads(PROVENANCE_SCHEMA.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # Without the schema nothing says what the record may hold: refuse, do not guess.
        return False, f"no usable provenance schema at {PROVENANCE_SCHEMA} ({exc})"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return False, f"not valid UTF-8 JSON ({exc})"
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return False, f"does not follow {PROVENANCE_SCHEMA.name} at {where}: {error.message}"
    return True, f"provenance record follows {PROVENANCE_SCHEMA.name}"


#: The registry: kind name -> detector and validator, tried in order. A new kind is one more
#: entry.
KINDS: dict[str, Kind] = {
    # Before "sumstats", which claims every .tsv name.
    "aggregates": Kind("aggregates", _detect_aggregates, _validate_aggregates),
    "counts": Kind("counts", _detect_counts, _validate_counts),
    "sumstats": Kind("sumstats", _detect_sumstats, _validate_sumstats),
    "sumstats-meta": Kind("sumstats-meta", _detect_meta, _validate_meta),
    "provenance": Kind("provenance", _detect_provenance, _validate_provenance),
}


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def _sha256(f: BinaryIO) -> str:
    f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(_HASH_CHUNK):
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
        sniff = _sniff(f, label)
        forbidden = _forbidden(sniff)
        if forbidden is not None:
            return refuse(forbidden[0], forbidden[1], size, sha)
        kind = next((k for k in KINDS.values() if k.detect(sniff)), None)
        if kind is None:
            return refuse(
                "unknown",
                "not a file kind the airlock publishes (known kinds: "
                f"{', '.join(KINDS)}; e.g. GWAS-SSF '.tsv.gz', 'qc_counts.tsv', '-meta.yaml')",
                size,
                sha,
            )
        gz_name = label.lower().endswith((".gz", ".bgz"))
        if gz_name != (sniff.compression == "gzip"):
            return refuse(
                kind.name,
                "name and content disagree about compression (a '.gz' name needs gzip/BGZF "
                "content and vice versa)",
                size,
                sha,
            )
        f.seek(0)
        try:
            if sniff.compression == "gzip":
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    ok, reason = kind.validate(gz, sniff, policy)  # type: ignore[arg-type]
            else:
                ok, reason = kind.validate(f, sniff, policy)
        except UnicodeDecodeError as exc:
            return refuse(kind.name, f"not UTF-8 text ({exc.reason})", size, sha)
        except _LineTooLong as exc:
            return refuse(
                kind.name, f"line {exc.lineno} is longer than {_MAX_LINE} characters", size, sha
            )
        except (OSError, EOFError, zlib.error) as exc:
            return refuse(kind.name, f"cannot be decompressed ({exc})", size, sha)
    if not ok:
        return refuse(kind.name, reason, size, sha)
    return AirlockDecision(True, kind.name, f"{label}: accepted: {reason}", size, sha)
