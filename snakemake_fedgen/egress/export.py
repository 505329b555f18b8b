"""Export PLINK 2 ``--glm`` results to GWAS-SSF with disclosure control (runs at the site).

The exporter reads a ``.glm.linear``, ``.glm.logistic(.hybrid)`` or ``.glm.firth`` report, keeps
the additive test, converts it to GWAS-SSF v1.0 (``effect_allele`` = PLINK's A1), drops rows the
site's airlock would refuse (``n < min_n`` or minor allele count below ``min_mac``) and rows
PLINK could not estimate, sorts by chromosome and position and writes ``<name>.tsv.gz`` plus the
``<name>.tsv.gz-meta.yaml`` sidecar, both atomically. The result is checked with
:func:`snakemake_fedgen.egress.airlock.inspect` before it is moved into place, so an exported
file always passes the airlock with the same ``min_n``/``min_mac``.

Binary traits carry one effect column, ``beta`` = log(OR), with ``standard_error`` = PLINK's
``LOG(OR)_SE`` (or PLINK's ``BETA``/``SE`` when ``--glm`` ran with ``cols=+beta``); the sidecar
says so in ``fedgen.effect_scale``.

The input is streamed; rows are spooled per chromosome to a private temporary directory next to
the output, so memory is bounded by the largest unsorted chromosome, not the genome.

The exporter is part of egress, the layer above :mod:`snakemake_fedgen.sumstats`: it depends on
the GWAS-SSF format (:mod:`snakemake_fedgen.sumstats.columns`) and on the airlock it must
satisfy, and nothing in ``sumstats`` depends on it.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from snakemake_executor_plugin_fedgen.errors import SumstatsError
from snakemake_executor_plugin_fedgen.fileio import (
    DECOMPRESS_ERRORS,
    AtomicFile,
    compression,
    open_text,
)

from snakemake_fedgen import __version__
from snakemake_fedgen.egress.airlock import (
    AirlockDecision,
    AirlockPolicy,
    inspect,
    minor_allele_count,
)
from snakemake_fedgen.sumstats.columns import ALLELE_RE, RSID_RE, VARIANT_ID_RE
from snakemake_fedgen.sumstats.sidecar import PANEL_DIGEST_RE, md5sum

__all__ = [
    "ExportResult",
    "count_cases_controls",
    "export_glm",
    "glm_trait_type",
]

#: GWAS-SSF chromosome order (X=23, Y=24, MT=25).
_CHROM_ORDER = {**{str(i): i for i in range(1, 23)}, "X": 23, "Y": 24, "MT": 25}
#: PLINK chromosome codes -> GWAS-SSF names. PLINK numbers X=23, Y=24, XY=25 (pseudo-autosomal,
#: X coordinates), MT=26, which clash with GWAS-SSF's MT=25, so numbers are translated here.
_PLINK_CHROM = {
    **{str(i): str(i) for i in range(1, 23)},
    "X": "X",
    "23": "X",
    "XY": "X",
    "25": "X",
    "Y": "Y",
    "24": "Y",
    "MT": "MT",
    "M": "MT",
    "26": "MT",
}
_GLM_SUFFIX = re.compile(r"\.glm\.(linear|logistic|logistic\.hybrid|firth)(\.gz)?$")
_MISSING_PLINK = {"NA", "nan", "-nan", "inf", "-inf", ""}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_glm` wrote.

    Attributes
    ----------
    data_path, meta_path : Path
        The GWAS-SSF table (``.tsv.gz``) and its ``-meta.yaml`` sidecar.
    variants_read : int
        ADD-test rows in the PLINK report.
    variants_exported : int
        Rows written.
    variants_suppressed : int
        Rows withheld by disclosure control (``n < min_n`` or MAC < ``min_mac``).
    variants_dropped : dict of str to int
        Every withheld row by reason (``min_n``, ``min_mac``, ``errcode``, ``missing_estimate``,
        ``multiallelic``, ``invalid_allele``, ``invalid_chromosome``, ``invalid_position``).
    decision : AirlockDecision
        The airlock's verdict on the data file (always accepted).
    """

    data_path: Path
    meta_path: Path
    variants_read: int
    variants_exported: int
    variants_suppressed: int
    variants_dropped: dict[str, int] = field(default_factory=dict)
    decision: AirlockDecision | None = None


def glm_trait_type(path: str | os.PathLike[str]) -> str:
    """Return ``quantitative`` for ``.glm.linear`` and ``binary`` for logistic/Firth reports.

    Raises
    ------
    SumstatsError
        The name is not a PLINK 2 ``--glm`` report name.
    """
    m = _GLM_SUFFIX.search(Path(path).name)
    if m is None:
        raise SumstatsError(
            f"{path}: not a PLINK 2 --glm report name (expected *.glm.linear, "
            "*.glm.logistic.hybrid, *.glm.logistic or *.glm.firth, optionally .gz)"
        )
    return "quantitative" if m.group(1) == "linear" else "binary"


def _open_report(path: Path) -> io.TextIOBase:
    """Open a plink2 report, plain or gzipped; refuse Zstandard (plink2's 'zs') with the fix."""
    try:
        packed = compression(path)
    except OSError as exc:
        raise SumstatsError(f"{path}: cannot read the report ({exc.strerror}).") from None
    if packed == "zstd":
        raise SumstatsError(
            f"{path}: Zstandard-compressed report; run plink2 --glm without the 'zs' modifier"
        )
    return open_text(path, newline="\n")


class _Columns:
    """Indices of the PLINK 2 report columns the exporter uses."""

    def __init__(self, header: list[str], path: Path) -> None:
        idx = {name: i for i, name in enumerate(header)}

        def need(*names: str, fix: str) -> int:
            for name in names:
                if name in idx:
                    return idx[name]
            raise SumstatsError(f"{path} line 1: no {' or '.join(names)} column; {fix}")

        self.width = len(header)
        self.chrom = need("#CHROM", "CHROM", fix="rerun plink2 --glm with the default columns")
        self.pos = need("POS", fix="rerun plink2 --glm with the default columns (cols=+pos)")
        self.id = idx.get("ID")
        self.ref = idx.get("REF")
        self.alt = idx.get("ALT", idx.get("ALT1"))
        self.ax = idx.get("AX")
        self.a1 = need("A1", fix="use PLINK 2 (v2.00a3 or later) --glm output")
        if self.ax is None and (self.ref is None or self.alt is None):
            raise SumstatsError(
                f"{path} line 1: need REF and ALT (default columns) or AX (cols=+ax) to know "
                "the other allele"
            )
        self.freq = need("A1_FREQ", fix="rerun plink2 --glm with cols=+a1freq")
        self.nobs = need("OBS_CT", fix="rerun plink2 --glm with the default columns (nobs)")
        self.test = idx.get("TEST")
        self.errcode = idx.get("ERRCODE")
        self.info = idx.get("MACH_R2")
        if "BETA" in idx:
            self.effect, self.effect_is_or = idx["BETA"], False
            self.se = need("SE", fix="rerun plink2 --glm with the default columns (se)")
        elif "OR" in idx:
            self.effect, self.effect_is_or = idx["OR"], True
            self.se = need("LOG(OR)_SE", fix="rerun plink2 --glm with the default columns (se)")
        else:
            raise SumstatsError(
                f"{path} line 1: no BETA or OR column; rerun plink2 --glm with the default "
                "columns (orbeta) or cols=+beta"
            )
        if "P" in idx:
            self.p, self.p_is_log10 = idx["P"], False
        elif "LOG10_P" in idx:
            self.p, self.p_is_log10 = idx["LOG10_P"], True
        else:
            raise SumstatsError(f"{path} line 1: no P or LOG10_P column; rerun with cols=+p")


def _check_row(
    row: list[str], cols: _Columns, *, glm: Path, lineno: int, seen: dict[tuple[str, ...], int]
) -> None:
    """Refuse a corrupt report: a negative or zero SE, or a variant repeated at one position.

    ``seen`` holds the variants of the current position only (plink2 writes a position's
    variants together), so memory does not grow with the report.
    """
    se = _finite(row[cols.se])
    if se is not None and se <= 0:
        raise SumstatsError(
            f"{glm} line {lineno}: standard error {row[cols.se]} is not positive; the report "
            "is corrupt, rerun plink2 --glm"
        )
    alleles = tuple(row[i] for i in (cols.ref, cols.alt, cols.a1) if i is not None)
    position = (row[cols.chrom], row[cols.pos])
    if seen and next(iter(seen))[:2] != position:
        seen.clear()
    first = seen.setdefault((*position, *alleles), lineno)
    if first != lineno:
        raise SumstatsError(
            f"{glm} line {lineno}: duplicate variant {position[0]}:{position[1]} "
            f"{'/'.join(alleles)} (already on line {first}); remove one of the rows"
        )


def _finite(text: str) -> float | None:
    if text in _MISSING_PLINK:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _other_allele(row: list[str], cols: _Columns) -> tuple[str | None, str | None]:
    """Return (other allele, drop reason)."""
    a1 = row[cols.a1]
    if "," in a1:
        return None, "multiallelic"
    if cols.ax is not None:
        other = row[cols.ax]
        if "," in other:
            return None, "multiallelic"
        return other, None
    ref, alt = row[cols.ref], row[cols.alt]  # type: ignore[index]
    if "," in alt:
        return None, "multiallelic"
    if a1 == alt:
        return ref, None
    if a1 == ref:
        return alt, None
    return None, "invalid_allele"


def _convert(
    row: list[str],
    cols: _Columns,
    policy: AirlockPolicy,
    rsids: Mapping[str, str] | None = None,
) -> tuple[str, int, int, str] | str:
    """Return (chromosome, position, n, rest of the GWAS-SSF line) or a drop reason.

    ``rsids`` maps ``CHROM:POS:REF:ALT`` variant IDs to the rsID the genotypes or the reference
    panel gave the variant (the workflow's IDs are positional).
    """
    if cols.errcode is not None and row[cols.errcode] != ".":
        return "errcode"
    chrom = _PLINK_CHROM.get(row[cols.chrom].removeprefix("chr"))
    if chrom is None:
        return "invalid_chromosome"
    pos_text = row[cols.pos]
    if not (pos_text.isascii() and pos_text.isdigit()) or int(pos_text) < 1:
        return "invalid_position"
    other, reason = _other_allele(row, cols)
    if reason is not None:
        return reason
    effect_allele = row[cols.a1]
    if not ALLELE_RE.match(effect_allele) or not ALLELE_RE.match(other or ""):
        return "invalid_allele"
    nobs = _finite(row[cols.nobs])
    eaf = _finite(row[cols.freq])
    effect = _finite(row[cols.effect])
    se = _finite(row[cols.se])
    p = _finite(row[cols.p])
    if nobs is None or eaf is None or not (0.0 <= eaf <= 1.0):
        return "missing_estimate"
    # Disclosure control first, so the suppressed count is complete whatever else is wrong.
    if nobs < policy.min_n:
        return "min_n"
    if minor_allele_count(nobs, eaf) < policy.min_mac:
        return "min_mac"
    if effect is None or se is None or p is None:
        return "missing_estimate"
    if cols.effect_is_or:
        if effect <= 0:
            return "missing_estimate"
        beta = f"{math.log(effect):.6g}"
    else:
        beta = row[cols.effect]
    variant = row[cols.id] if cols.id is not None else "."
    rsid = variant if RSID_RE.match(variant) else "NA"
    if rsid == "NA" and rsids:
        found = rsids.get(variant.removeprefix("chr"), "NA")
        rsid = found if RSID_RE.match(found) else "NA"
    variant_id = variant if variant != "." and VARIANT_ID_RE.match(variant) else "NA"
    fields = [
        effect_allele.upper(),
        other.upper(),  # type: ignore[union-attr]
        beta,
        row[cols.se],
        row[cols.freq],
        row[cols.p],
        str(int(nobs)),
    ]
    if cols.info is not None:
        fields.append(row[cols.info] if _finite(row[cols.info]) is not None else "NA")
    fields += [rsid, variant_id]
    return chrom, int(pos_text), int(nobs), "\t".join(fields)


def _ssf_header(cols: _Columns) -> str:
    names = [
        "chromosome",
        "base_pair_location",
        "effect_allele",
        "other_allele",
        "beta",
        "standard_error",
        "effect_allele_frequency",
        "neg_log_10_p_value" if cols.p_is_log10 else "p_value",
        "n",
    ]
    if cols.info is not None:
        names.append("info")
    names += ["rsid", "variant_id"]
    return "\t".join(names)


@dataclass
class _Spool:
    """Per-chromosome spool files and whether each arrived already sorted."""

    directory: Path
    files: dict[str, io.TextIOWrapper] = field(default_factory=dict)
    last_pos: dict[str, int] = field(default_factory=dict)
    sorted: dict[str, bool] = field(default_factory=dict)

    def add(self, chrom: str, pos: int, rest: str) -> None:
        f = self.files.get(chrom)
        if f is None:
            f = open(self.directory / f"chr{chrom}.tsv", "w", encoding="utf-8")  # noqa: SIM115
            self.files[chrom] = f
            self.sorted[chrom] = True
            self.last_pos[chrom] = 0
        if pos < self.last_pos[chrom]:
            self.sorted[chrom] = False
        self.last_pos[chrom] = pos
        f.write(f"{chrom}\t{pos}\t{rest}\n")

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def lines(self) -> Iterator[str]:
        for chrom in sorted(self.files, key=_CHROM_ORDER.__getitem__):
            path = self.directory / f"chr{chrom}.tsv"
            if self.sorted[chrom]:
                with open(path, encoding="utf-8") as f:
                    yield from f
            else:
                # Only this chromosome is held in memory; sort is stable for equal positions.
                with open(path, encoding="utf-8") as f:
                    rows = f.readlines()
                rows.sort(key=lambda line: int(line.split("\t", 2)[1]))
                yield from rows


def count_cases_controls(
    pheno: str | os.PathLike[str], pheno_name: str, *, keep: str | os.PathLike[str] | None = None
) -> tuple[int, int]:
    """Count cases (2) and controls (1) of a PLINK-coded binary phenotype at the site.

    Parameters
    ----------
    pheno : path-like
        PLINK 2 phenotype table (header ``#FID IID ...`` or ``#IID ...``; whitespace-separated).
    pheno_name : str
        Column to count; 2 = case, 1 = control, anything else (0, -9, NA) missing.
    keep : path-like, optional
        A ``.psam``/``.fam`` or one-ID-per-line list; only these samples (by IID) are counted,
        e.g. the samples that passed QC.

    Returns
    -------
    (n_cases, n_controls)
    """
    pheno = Path(pheno)
    with open(pheno, encoding="utf-8") as f:
        header = f.readline().split()
        if not header:
            raise SumstatsError(f"{pheno} line 1: empty header; expected '#FID IID ...'")
        names = [h.lstrip("#") for h in header]
        if "IID" not in names:
            raise SumstatsError(f"{pheno} line 1: no IID column; expected '#FID IID ...'")
        if pheno_name not in names:
            raise SumstatsError(
                f"{pheno} line 1: no phenotype column {pheno_name!r}; columns are "
                f"{', '.join(names)}"
            )
        i_iid, i_ph = names.index("IID"), names.index(pheno_name)
        values = {}
        for lineno, line in enumerate(f, start=2):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names):
                raise SumstatsError(
                    f"{pheno} line {lineno}: {len(parts)} fields but the header has {len(names)}"
                )
            values[parts[i_iid]] = parts[i_ph]
    if keep is not None:
        kept = _read_sample_ids(Path(keep))
        values = {iid: v for iid, v in values.items() if iid in kept}
    cases = sum(1 for v in values.values() if v == "2")
    controls = sum(1 for v in values.values() if v == "1")
    return cases, controls


def _read_sample_ids(path: Path) -> set[str]:
    """IIDs from a .psam (header with IID), a .fam (IID in column 2) or a --keep style list."""
    with open(path, encoding="utf-8") as f:
        rows = [line.split() for line in f if line.strip()]
    if not rows:
        return set()
    if rows[0][0].startswith("#"):
        names = [h.lstrip("#") for h in rows[0]]
        column = names.index("IID") if "IID" in names else 0
        rows = rows[1:]
    else:
        # .fam and "FID IID" keep files carry the IID second; a bare list has one column.
        column = 0 if len(rows[0]) == 1 else 1
    return {r[column] for r in rows if len(r) > column}


def read_rsids(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``CHROM:POS:REF:ALT<TAB>rsID`` map (e.g. ``bcftools query`` of the imputed VCF);
    ``chr`` prefixes are dropped so the keys match PLINK 2's variant IDs."""
    found: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, rsid = line.rstrip("\n").partition("\t")
            for one in rsid.split(";"):
                if RSID_RE.match(one):
                    found[key.removeprefix("chr")] = one
                    break
    return found


def _plink_version(glm: Path) -> str:
    """The PLINK banner from the run's .log (``<prefix>.log`` next to the report), if any."""
    m = re.match(r"^(.*?)(\.[^.]+)?\.glm\.", glm.name)
    if m is None:
        return "PLINK 2"
    stems = [m.group(1), m.group(1) + (m.group(2) or "")]
    for candidate in (glm.with_name(f"{stem}.log") for stem in stems):
        try:
            with open(candidate, encoding="utf-8") as f:
                first = f.readline().strip()
        except OSError:
            continue
        if re.match(r"^PLINK v2\.[0-9A-Za-z.]+ [^\n]{0,60}$", first):
            return first
    return "PLINK 2"


def export_glm(
    glm: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    site: str,
    assembly: str,
    trait_type: str | None = None,
    n_cases: int | None = None,
    n_controls: int | None = None,
    min_n: int = 50,
    min_mac: float = 10.0,
    ancestry: str | None = None,
    trait_description: str | None = None,
    refget_digest: str | None = None,
    genotyping_technology: str = "Genome-wide genotyping array",
    rsids: Mapping[str, str] | None = None,
    aligned_panel: str | None = None,
) -> ExportResult:
    """Convert a PLINK 2 ``--glm`` report to a disclosure-controlled GWAS-SSF table + sidecar.

    Parameters
    ----------
    glm : path-like
        ``*.glm.linear``, ``*.glm.logistic.hybrid``, ``*.glm.logistic`` or ``*.glm.firth``
        (optionally gzipped), run with ``cols=+a1freq`` (and ``+machr2`` for ``info``).
    out : path-like
        Output table; ``.tsv.gz`` is appended unless the name already ends with it. The sidecar
        is ``<table>-meta.yaml``.
    site : str
        Site name recorded in the sidecar.
    assembly : str
        Genome assembly (e.g. ``GRCh38``).
    trait_type : {"quantitative", "binary"}, optional
        Defaults to what the report name says; a contradiction is an error.
    n_cases, n_controls : int, optional
        Case and control counts for binary traits (see :func:`count_cases_controls`).
    min_n, min_mac : int, float
        Disclosure thresholds: rows with ``n < min_n`` or minor allele count
        ``2*n*min(eaf,1-eaf) < min_mac`` are withheld (and counted).
    ancestry, trait_description, refget_digest, genotyping_technology : str, optional
        Sidecar metadata.
    rsids : mapping, optional
        ``CHROM:POS:REF:ALT`` -> rsID (:func:`read_rsids`): fills the ``rsid`` column.
    aligned_panel : str, optional
        ``sha256:<hex>`` of the reference panel the genotypes were aligned to before the GWAS
        (:func:`snakemake_fedgen.sumstats.sidecar.panel_digest`), written as
        ``fedgen.aligned_panel``; the meta-analysis then keeps palindromic SNPs of sites that
        declare the same panel.

    Returns
    -------
    ExportResult

    Raises
    ------
    SumstatsError
        The report is malformed (file and line named), or no variant is left to export.
    """
    glm = Path(glm)
    out = Path(out)
    if not out.name.endswith(".tsv.gz"):
        out = out.with_name(out.name + ".tsv.gz")
    meta_path = out.with_name(out.name + "-meta.yaml")
    named_type = glm_trait_type(glm)
    if trait_type is None:
        trait_type = named_type
    elif trait_type not in ("quantitative", "binary"):
        raise SumstatsError(f"trait_type must be quantitative or binary; got {trait_type!r}")
    elif trait_type != named_type:
        raise SumstatsError(
            f"{glm}: the report is a {named_type} --glm result but trait_type={trait_type!r}"
        )
    if trait_type == "quantitative" and (n_cases is not None or n_controls is not None):
        raise SumstatsError("n_cases/n_controls apply to binary traits only")
    if aligned_panel is not None and not PANEL_DIGEST_RE.match(aligned_panel):
        raise SumstatsError(
            f"aligned_panel must be 'sha256:' and 64 lower-case hex digits; got "
            f"{aligned_panel[:80]!r} (fedgen sumstats export --aligned-to-panel PANEL computes it)"
        )
    for label, value in (("n_cases", n_cases), ("n_controls", n_controls)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise SumstatsError(f"{label} must be a non-negative integer; got {value!r}")
    policy = AirlockPolicy(min_n=min_n, min_mac=min_mac)
    out.parent.mkdir(parents=True, exist_ok=True)

    dropped: dict[str, int] = {}
    read = exported = 0
    max_n = 0
    with tempfile.TemporaryDirectory(prefix=".fedgen-export-", dir=out.parent) as spool_dir:
        spool = _Spool(Path(spool_dir))
        seen: dict[tuple[str, ...], int] = {}
        try:
            with _open_report(glm) as f:
                header_line = f.readline()
                if not header_line.strip():
                    raise SumstatsError(f"{glm} line 1: empty file; expected a plink2 --glm report")
                cols = _Columns(header_line.rstrip("\n").split("\t"), glm)
                for lineno, line in enumerate(f, start=2):
                    row = line.rstrip("\n").split("\t")
                    if len(row) != cols.width:
                        raise SumstatsError(
                            f"{glm} line {lineno}: {len(row)} fields but the header has "
                            f"{cols.width}; the report is truncated or not tab-separated"
                        )
                    if cols.test is not None and row[cols.test] != "ADD":
                        continue
                    _check_row(row, cols, glm=glm, lineno=lineno, seen=seen)
                    read += 1
                    result = _convert(row, cols, policy, rsids)
                    if isinstance(result, str):
                        dropped[result] = dropped.get(result, 0) + 1
                        continue
                    chrom, pos, n, rest = result
                    spool.add(chrom, pos, rest)
                    exported += 1
                    max_n = max(max_n, n)
        except UnicodeDecodeError as exc:
            raise SumstatsError(f"{glm}: not UTF-8 text ({exc.reason})") from None
        except (EOFError, *DECOMPRESS_ERRORS) as exc:
            raise SumstatsError(f"{glm}: cannot be decompressed ({exc})") from None
        finally:
            spool.close()
        suppressed = dropped.get("min_n", 0) + dropped.get("min_mac", 0)
        if exported == 0:
            raise SumstatsError(
                f"{glm}: no variant left to export ({read} ADD rows; withheld: "
                f"{_format_counts(dropped) or 'none'}); lower min_n/min_mac only if the site's "
                "disclosure policy allows it"
            )
        decision, md5, data = _stage_table(out, _ssf_header(cols), spool.lines(), policy)

    sidecar: AtomicFile | None = None
    try:
        effect_scale = "beta" if trait_type == "quantitative" else "log_odds_ratio"
        sample: dict[str, object] = {
            "sample_size": (n_cases + n_controls)
            if (n_cases is not None and n_controls is not None)
            else max_n,
        }
        if ancestry:
            sample["sample_ancestry"] = [ancestry]
        if trait_type == "binary":
            sample["case_control_study"] = True
            if n_cases is not None:
                sample["case_count"] = n_cases
            if n_controls is not None:
                sample["control_count"] = n_controls
        source = _GLM_SUFFIX.search(glm.name)
        meta = {
            "file_type": "GWAS-SSF v1.0",
            "data_file_name": out.name,
            "file_md5sum": md5,
            "genome_assembly": assembly,
            "coordinate_system": "1-based",
            "is_harmonised": False,
            "is_sorted": True,
            "genotyping_technology": [genotyping_technology],
            "trait_description": [trait_description or _phenotype_name(glm)],
            "samples": [sample],
            "analysis_software": f"{_plink_version(glm)} --glm; fedgen {__version__} sumstats export",
            "date_last_modified": _dt.datetime.now(_dt.UTC).date().isoformat(),
            "fedgen": {
                "site": site,
                "trait_type": trait_type,
                "n_cases": n_cases,
                "n_controls": n_controls,
                "refget_seqcol_digest": refget_digest,
                **({"aligned_panel": aligned_panel} if aligned_panel else {}),
                "min_n": min_n,
                "min_mac": min_mac,
                "variants_suppressed": suppressed,
                "variants_exported": exported,
                "variants_dropped": dict(sorted(dropped.items())),
                "effect_scale": effect_scale,
                "source_format": f"plink2 --glm {source.group(1) if source else ''}".strip(),
            },
        }
        sidecar = _stage_meta(meta_path, meta, policy)
        # Both files passed the airlock: move them into place together, the sidecar last.
        data.commit()
        sidecar.commit()
    finally:
        # No-ops for a committed file; otherwise nothing is left behind.
        data.discard()
        if sidecar is not None:
            sidecar.discard()
    return ExportResult(
        data_path=out,
        meta_path=meta_path,
        variants_read=read,
        variants_exported=exported,
        variants_suppressed=suppressed,
        variants_dropped=dict(sorted(dropped.items())),
        decision=decision,
    )


def _phenotype_name(glm: Path) -> str:
    m = re.match(r"^.*?\.([^.]+)\.glm\.", glm.name)
    return m.group(1) if m else glm.name


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _stage_table(
    out: Path, header: str, lines: Iterator[str], policy: AirlockPolicy
) -> tuple[AirlockDecision, str, AtomicFile]:
    """Write the table to a temporary file next to ``out`` and check it; return (decision, md5,
    staged file). The caller commits (or discards) it."""
    staged = AtomicFile(out, "wb", perms=0o644)
    try:
        # mtime=0 and no file name: the same input gives the same bytes (and checksums).
        with gzip.GzipFile(filename="", mode="wb", fileobj=staged.file, mtime=0) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            text.write(header + "\n")
            for line in lines:
                text.write(line)
            text.flush()
            text.detach()
        staged.file.flush()
        decision = inspect(staged.tmp, policy, name=out.name)
        if not decision.accepted:
            # A bug, not a user error: the exporter must only write what the airlock accepts.
            raise SumstatsError(f"{out}: exported table fails the airlock: {decision.reason}")
        md5 = md5sum(staged.tmp)
    except BaseException:
        staged.discard()
        raise
    return decision, md5, staged


def _stage_meta(path: Path, meta: dict, policy: AirlockPolicy) -> AtomicFile:
    """Write the sidecar to a temporary file next to ``path`` and check it; return it staged."""
    staged = AtomicFile(path, "w", encoding="utf-8", perms=0o644)
    try:
        yaml.safe_dump(meta, staged.file, sort_keys=False, allow_unicode=True)
        staged.file.flush()
        decision = inspect(staged.tmp, policy, name=path.name)
        if not decision.accepted:
            raise SumstatsError(f"{path}: sidecar fails the airlock: {decision.reason}")
    except BaseException:
        staged.discard()
        raise
    return staged
