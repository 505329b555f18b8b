"""Sniffing: what a file's bytes say it is, and the individual-level formats that never leave.

Per-sample formats (VCF/BCF, BAM/CRAM, BGEN, PLINK 1 and 2 genotype files and their sample and
variant tables, raw ``plink2 --glm`` reports, any table with a sample-ID column) are recognised
by their *content*, so renaming a VCF to ``x.tsv`` does not get it out; their usual name
suffixes are refused as well, whatever the content.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from snakemake_fedgen.sumstats import columns

__all__ = ["SNIFF_BYTES", "Sniff", "forbidden", "sniff"]

#: How much of a file (after decompression) is sniffed for forbidden content.
SNIFF_BYTES = 64 * 1024


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


def sniff(f: BinaryIO, name: str) -> Sniff:
    """Read the first :data:`SNIFF_BYTES` of ``f`` (and of its gzip content) and its first line;
    ``f`` is left at its start. ``name`` is the name the file will be published under."""
    f.seek(0)
    raw = f.read(SNIFF_BYTES)
    compression = None
    text = raw
    if raw[:2] == b"\x1f\x8b":
        compression = "gzip"
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                text = gz.read(SNIFF_BYTES)
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
        "",  # reason built in forbidden() with the column name
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


def forbidden(sniff: Sniff) -> tuple[str, str] | None:
    """``(label, reason)`` if the file is individual-level data, by its content or its name."""
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
