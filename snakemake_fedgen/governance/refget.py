"""GA4GH refget Sequence Collections (seqcol) digests of a VCF's contigs.

Summary statistics from different sites may only be combined when their coordinates refer to the
same reference. A VCF header names its contigs and their lengths (``##contig=<ID=20,
length=64444167>``) but carries no sequence digests, so fedgen digests the *coordinate system*
(names + lengths) with the seqcol algorithm:

* each attribute array is serialised as RFC-8785 canonical JSON and hashed with ``sha512t24u``
  (SHA-512, first 24 bytes, base64url) -> the level-1 digests ``names`` and ``lengths``;
* the level-0 digest is ``sha512t24u`` of the canonical JSON of the level-1 object. The seqcol
  standard's level 0 also covers ``sequences``; VCF headers have none, so fedgen's digest
  (``refget_seqcol_digest`` in the sumstats sidecar) is over ``{lengths, names}`` only.
* ``sorted_name_length_pairs`` (the spec's order-independent coordinate-system attribute) is
  computed too, for comparisons that should ignore contig order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import HarmonisationError
from snakemake_executor_plugin_fedgen.fileio import DECOMPRESS_ERRORS, open_text

_CONTIG = re.compile(r"^##contig=<(?P<body>.*)>\s*$")


def sha512t24u(data: bytes) -> str:
    """GA4GH digest: SHA-512, truncated to 24 bytes, base64url without padding."""
    return base64.urlsafe_b64encode(hashlib.sha512(data).digest()[:24]).decode("ascii")


def canonical_json(value: Any) -> bytes:
    """RFC-8785 (JCS) canonical JSON for strings, integers, booleans, null, lists and objects.

    Floats are refused: seqcol attributes never hold them and their JCS form needs care.
    """

    def check(v: Any) -> None:
        if isinstance(v, float):
            raise TypeError("canonical_json: floats are not supported")
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise TypeError("canonical_json: object keys must be strings")
                check(item)
        elif isinstance(v, list | tuple):
            for item in v:
                check(item)

    check(value)

    def sort(v: Any) -> Any:
        # JCS orders object members by their keys' UTF-16 code units.
        if isinstance(v, Mapping):
            return {k: sort(v[k]) for k in sorted(v, key=lambda s: s.encode("utf-16-be"))}
        if isinstance(v, list | tuple):
            return [sort(i) for i in v]
        return v

    return json.dumps(sort(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_json(value: Any) -> str:
    """``sha512t24u`` of the canonical JSON of ``value``."""
    return sha512t24u(canonical_json(value))


@dataclass(frozen=True)
class SeqCol:
    """A sequence collection's names and lengths (level 2, as far as a VCF header tells)."""

    names: tuple[str, ...]
    lengths: tuple[int, ...]

    def level1(self) -> dict[str, str]:
        """Level-1 digests: ``names``, ``lengths``, ``name_length_pairs``,
        ``sorted_name_length_pairs``."""
        pairs = [{"length": n, "name": s} for s, n in zip(self.names, self.lengths, strict=True)]
        return {
            "lengths": digest_json(list(self.lengths)),
            "names": digest_json(list(self.names)),
            "name_length_pairs": digest_json(pairs),
            "sorted_name_length_pairs": digest_json(sorted(digest_json(p) for p in pairs)),
        }

    def digest(self) -> str:
        """Level-0 digest over ``{lengths, names}`` (fedgen's ``refget_seqcol_digest``)."""
        level1 = self.level1()
        return level0({"lengths": level1["lengths"], "names": level1["names"]})


def level0(level1: Mapping[str, str]) -> str:
    """Level-0 digest of a level-1 object (attribute name -> digest)."""
    return digest_json(dict(level1))


def contigs_from_header(lines: Sequence[str], *, source: str = "VCF") -> SeqCol:
    """Parse ``##contig`` lines (in header order) into a :class:`SeqCol`.

    Raises
    ------
    HarmonisationError
        a contig without ``ID`` or integer ``length``, or no contig lines at all.
    """
    names: list[str] = []
    lengths: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        m = _CONTIG.match(line)
        if not m:
            continue
        fields = _split_structured(m.group("body"))
        if "ID" not in fields or not re.fullmatch(r"\d+", fields.get("length", "")):
            raise HarmonisationError(
                f"{source} line {lineno}: contig line {line.strip()!r} needs ID and an integer "
                "length; re-header the VCF (bcftools reheader --fai REF.fa.fai)."
            )
        names.append(fields["ID"])
        lengths.append(int(fields["length"]))
    if not names:
        raise HarmonisationError(
            f"{source}: the header has no ##contig lines, so its reference cannot be digested; "
            "add them (bcftools reheader --fai REF.fa.fai)."
        )
    return SeqCol(tuple(names), tuple(lengths))


def _split_structured(body: str) -> dict[str, str]:
    """``ID=20,length=1,assembly="GRCh38, p13"`` -> mapping (quotes honoured)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|[^,]*)', body):
        value = m.group(2)
        out[m.group(1)] = value[1:-1] if value.startswith('"') else value
    return out


def read_vcf_header(path: str | Path) -> list[str]:
    """Header lines (``##`` and ``#CHROM``) of a VCF, plain or (b)gzipped."""
    path = Path(path)
    lines: list[str] = []
    try:
        with open_text(path, errors="replace") as f:
            for line in f:
                if not line.startswith("#"):
                    break
                lines.append(line.rstrip("\n"))
                if line.startswith("#CHROM"):
                    break
    except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
        raise HarmonisationError(f"cannot read the VCF header of {path}: {exc}") from exc
    return lines


def vcf_seqcol(path: str | Path) -> SeqCol:
    """The :class:`SeqCol` of a VCF/BCF-text header (``.vcf`` or ``.vcf.gz``)."""
    return contigs_from_header(read_vcf_header(path), source=str(path))


def vcf_digest(path: str | Path) -> str:
    """fedgen's ``refget_seqcol_digest`` of a VCF: level 0 over contig names and lengths."""
    return vcf_seqcol(path).digest()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snakemake_fedgen.governance.refget VCF``: print the digests as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m snakemake_fedgen.governance.refget VCF", file=sys.stderr)
        return 2
    col = vcf_seqcol(args[0])
    print(json.dumps({"refget_seqcol_digest": col.digest(), "level1": col.level1()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
