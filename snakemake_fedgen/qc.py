"""Site-side QC steps that PLINK 2 and bcftools lack (``fedgen qc`` runs them inside a TES task).

Steps (each runs at the site, on site-held files):

``align``
    Compare the site's variants with the reference panel (by chromosome and position) and
    write the PLINK 2 lists that fix them: ``--update-alleles`` for strand flips,
    ``--ref-allele force`` for REF/ALT swaps, ``--exclude`` for variants that cannot be aligned
    (absent from the panel, other alleles, ambiguous A/T or C/G near 50 %, allele frequency far
    from the panel's). PLINK 2 applies the lists; this step only decides.
``het-outliers``
    Samples whose inbreeding coefficient F (``plink2 --het``) lies more than ``--sd`` standard
    deviations from the mean.
``covariates``
    Join covariate columns of the phenotype table with the principal components of
    ``plink2 --pca`` into one ``--covar`` file (PLINK 2 reads a single covariate file).
``counts``
    Turn the PLINK 2 filesets of the QC chain into the per-step counts table that may leave the
    site: samples and variants removed per step, with small counts suppressed (min_cell) and the
    input totals withheld whenever that suppression could be undone by differencing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.egress.airlock.kinds.counts import ALIGN_CLASSES
from snakemake_fedgen.egress.disclosure import write_counts_table

_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


# ------------------------------------------------------------------------------------------
# small file helpers
# ------------------------------------------------------------------------------------------


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Read a whitespace/tab separated table with one header line (leading ``#`` dropped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the rule's input") from exc
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("##")]
    if not lines:
        raise ConfigError(f"{path}: empty file, expected a header line and rows")
    header = lines[0].lstrip("#").split()
    rows = [ln.split() for ln in lines[1:]]
    for lineno, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(
                f"{path}: line {lineno} has {len(row)} fields but the header has "
                f"{len(header)}; the file is truncated or not a PLINK 2 table"
            )
    return header, rows


def _column(header: list[str], name: str, path: Path) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise ConfigError(
            f"{path}: no column {name!r} (columns: {', '.join(header)}); "
            "was the file written by the expected PLINK 2 command?"
        ) from None


# ------------------------------------------------------------------------------------------
# align
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelVariant:
    """One biallelic SNP of the reference panel: alleles and ALT frequency."""

    ref: str
    alt: str
    alt_freq: float


def _read_panel(path: Path) -> dict[tuple[str, int], PanelVariant | None]:
    """Read ``CHROM POS REF ALT AF`` rows (bcftools query); positions seen twice map to None."""
    panel: dict[tuple[str, int], PanelVariant | None] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 5:
                raise ConfigError(
                    f"{path}: line {lineno} has {len(fields)} fields; expected CHROM POS REF ALT "
                    "AF as written by `bcftools query -f '%CHROM\\t%POS\\t%REF\\t%ALT\\t%AF\\n'`"
                )
            key = (_chrom(fields[0]), int(fields[1]))
            if key in panel:
                panel[key] = None  # multi-allelic split or duplicate: not usable for alignment
                continue
            panel[key] = PanelVariant(fields[2].upper(), fields[3].upper(), float(fields[4]))
    return panel


def _chrom(name: str) -> str:
    return name[3:] if name.lower().startswith("chr") else name


def classify_variant(
    ref: str,
    alt: str,
    alt_freq: float,
    panel: PanelVariant | None,
    *,
    max_af_diff: float,
    ambiguous_maf: float,
) -> str:
    """Decide how one site SNP relates to the panel SNP at the same position.

    Parameters
    ----------
    ref, alt : str
        The site's alleles.
    alt_freq : float
        Frequency of the site's ALT allele.
    panel : PanelVariant or None
        The panel's SNP at that position (None if absent or not biallelic).
    max_af_diff : float
        Largest accepted difference between site and panel allele frequency after alignment.
    ambiguous_maf : float
        A/T and C/G SNPs whose panel or site minor allele frequency exceeds this are dropped
        because their strand cannot be told from frequency; so are those whose frequency fits
        both strands within ``max_af_diff``.

    Returns
    -------
    str
        One of ``match``, ``swap`` (REF/ALT swapped), ``flip`` (other strand), ``flip_swap``,
        ``not_in_panel``, ``allele_mismatch``, ``ambiguous``, ``af_mismatch``.
    """
    if panel is None:
        return "not_in_panel"
    pa = panel.alt_freq
    if _COMPLEMENT.get(ref) == alt:  # palindromic: strand only knowable from frequency
        if {ref, alt} != {panel.ref, panel.alt}:
            return "allele_mismatch"
        if max(min(pa, 1.0 - pa), min(alt_freq, 1.0 - alt_freq)) > ambiguous_maf:
            return "ambiguous"
        same = alt_freq if ref == panel.ref else 1.0 - alt_freq
        same_ok = abs(same - pa) <= max_af_diff
        flip_ok = abs((1.0 - same) - pa) <= max_af_diff
        if same_ok and flip_ok:
            # Both readings fit the panel: ancestry differences could make either one look
            # right, and a wrong "fix" would invert the genotypes. Drop it.
            return "ambiguous"
        if same_ok:
            return "match" if ref == panel.ref else "swap"
        if flip_ok:
            # The labels read as the panel's other allele: a strand flip of a palindromic SNP.
            return "flip" if ref == panel.ref else "flip_swap"
        return "af_mismatch"
    candidates = {
        (ref, alt): ("match", alt_freq),
        (alt, ref): ("swap", 1.0 - alt_freq),
        (_COMPLEMENT.get(ref), _COMPLEMENT.get(alt)): ("flip", alt_freq),
        (_COMPLEMENT.get(alt), _COMPLEMENT.get(ref)): ("flip_swap", 1.0 - alt_freq),
    }
    hit = candidates.get((panel.ref, panel.alt))
    if hit is None:
        return "allele_mismatch"
    kind, freq_as_panel_alt = hit
    if abs(freq_as_panel_alt - pa) > max_af_diff:
        return "af_mismatch"
    return kind


def align(
    afreq: Path,
    panel_alleles: Path,
    *,
    out_prefix: Path,
    max_af_diff: float = 0.3,
    ambiguous_maf: float = 0.4,
) -> dict[str, int]:
    """Write the PLINK 2 lists that align a site's SNPs with the reference panel.

    Parameters
    ----------
    afreq : Path
        ``plink2 --freq`` output of the site's genotypes (``#CHROM ID REF ALT ALT_FREQS``).
    panel_alleles : Path
        Panel SNPs as ``CHROM POS REF ALT AF`` (``bcftools query``).
    out_prefix : Path
        Writes ``.update_alleles`` (ID, old alleles, new alleles: strand flips), ``.ref_allele``
        (ID, panel REF: for ``--ref-allele force``), ``.exclude`` (IDs) and ``.counts.tsv``.
    max_af_diff, ambiguous_maf : float
        See :func:`classify_variant`.

    Returns
    -------
    dict of str to int
        Number of variants per class (keys :data:`ALIGN_CLASSES`).
    """
    header, rows = _table(afreq)
    i_chrom = _column(header, "CHROM", afreq)
    i_id = _column(header, "ID", afreq)
    i_ref = _column(header, "REF", afreq)
    i_alt = _column(header, "ALT", afreq)
    i_freq = _column(header, "ALT_FREQS", afreq)
    panel = _read_panel(panel_alleles)
    counts = dict.fromkeys(ALIGN_CLASSES, 0)
    update, ref_allele, exclude = [], [], []
    for row in rows:
        vid, ref, alt = row[i_id], row[i_ref].upper(), row[i_alt].upper()
        try:
            pos = int(vid.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(
                f"{afreq}: variant ID {vid!r} is not CHROM:POS; import the genotypes with "
                "`plink2 --set-all-var-ids @:#`"
            ) from None
        freq = float(row[i_freq]) if row[i_freq] != "NA" else math.nan
        key = (_chrom(row[i_chrom]), pos)
        kind = classify_variant(
            ref,
            alt,
            freq,
            panel.get(key),
            max_af_diff=max_af_diff,
            ambiguous_maf=ambiguous_maf,
        )
        if math.isnan(freq) and kind not in ("not_in_panel", "allele_mismatch"):
            kind = "af_mismatch"
        counts[kind] += 1
        if kind in ("match", "swap", "flip", "flip_swap"):
            pv = panel[key]
            assert pv is not None
            if kind in ("flip", "flip_swap"):
                update.append(f"{vid}\t{ref}\t{alt}\t{_COMPLEMENT[ref]}\t{_COMPLEMENT[alt]}")
            ref_allele.append(f"{vid}\t{pv.ref}")
        else:
            exclude.append(vid)
    write_text_atomic(out_prefix.with_name(out_prefix.name + ".update_alleles"), _lines(update))
    write_text_atomic(out_prefix.with_name(out_prefix.name + ".ref_allele"), _lines(ref_allele))
    write_text_atomic(out_prefix.with_name(out_prefix.name + ".exclude"), _lines(exclude))
    table = ["step\tquantity\tcount"]
    table += [f"align\tvariants_{k}\t{v}" for k, v in counts.items()]
    write_text_atomic(out_prefix.with_name(out_prefix.name + ".counts.tsv"), _lines(table))
    return counts


def _lines(items: Iterable[str]) -> str:
    text = "\n".join(items)
    return text + "\n" if text else ""


# ------------------------------------------------------------------------------------------
# het-outliers
# ------------------------------------------------------------------------------------------


def het_outliers(het: Path, *, output: Path, sd: float = 3.0, eigenvec: Path | None = None) -> int:
    """Write the samples whose ``plink2 --het`` F lies more than ``sd`` SDs from the mean.

    Parameters
    ----------
    het : Path
        ``plink2 --het`` output (columns ``#FID``/``IID`` ... ``F``).
    output : Path
        Sample list for ``plink2 --remove`` (same ID columns as the input).
    sd : float
        Threshold in standard deviations of F.
    eigenvec : Path, optional
        ``plink2 --pca`` eigenvectors of the same samples. F is then taken relative to what the
        samples' ancestry predicts (residuals of a least-squares fit on the PCs): at a site
        mixing ancestries, heterozygosity differs between populations and a single mean +- SD
        would flag whole populations or miss real outliers.

    Returns
    -------
    int
        Number of outliers.
    """
    import numpy as np

    header, rows = _table(het)
    i_f = _column(header, "F", het)
    i_iid = _column(header, "IID", het)
    id_cols = [i for i, name in enumerate(header) if name in ("FID", "IID")]
    rows = [r for r in rows if r[i_f] not in ("NA", "nan")]
    values = np.array([float(r[i_f]) for r in rows])
    if eigenvec is not None and len(rows) > 10:
        eh, erows = _table(eigenvec)
        e_iid = _column(eh, "IID", eigenvec)
        pcs = [i for i, name in enumerate(eh) if name.startswith("PC")]
        by_iid = {r[e_iid]: [float(r[i]) for i in pcs] for r in erows}
        missing = [r[i_iid] for r in rows if r[i_iid] not in by_iid]
        if missing:
            raise ConfigError(
                f"{eigenvec}: {len(missing)} samples of {het} have no principal components; "
                "compute both on the same samples"
            )
        design = np.column_stack([np.ones(len(rows)), [by_iid[r[i_iid]] for r in rows]])
        coef, *_ = np.linalg.lstsq(design, values, rcond=None)
        values = values - design @ coef
    out = ["\t".join("#" * (k == 0) + header[i] for k, i in enumerate(id_cols))]
    if len(values) >= 3:
        mean, std = float(values.mean()), float(values.std(ddof=1))
        for r, v in zip(rows, values, strict=True):
            if std > 0 and abs(v - mean) > sd * std:
                out.append("\t".join(r[i] for i in id_cols))
    write_text_atomic(output, _lines(out))
    return len(out) - 1


# ------------------------------------------------------------------------------------------
# covariates
# ------------------------------------------------------------------------------------------


def covariates(
    pheno: Path, eigenvec: Path, *, output: Path, columns: Sequence[str], pcs: int
) -> int:
    """Join phenotype-table covariates with the first ``pcs`` principal components.

    Parameters
    ----------
    pheno : Path
        PLINK 2 phenotype/covariate table (``#FID IID ...``).
    eigenvec : Path
        ``plink2 --pca`` eigenvectors (``#FID IID PC1 ...`` or ``#IID PC1 ...``).
    output : Path
        ``--covar`` file with the eigenvec's ID columns, ``columns`` and ``PC1..PC<pcs>``.
    columns : sequence of str
        Covariate columns taken from ``pheno``.
    pcs : int
        Number of principal components.

    Returns
    -------
    int
        Number of samples written (samples missing from ``pheno`` are left out).
    """
    ph, prows = _table(pheno)
    eh, erows = _table(eigenvec)
    p_iid = _column(ph, "IID", pheno)
    e_iid = _column(eh, "IID", eigenvec)
    p_cols = [_column(ph, c, pheno) for c in columns]
    pc_names = [f"PC{i}" for i in range(1, pcs + 1)]
    e_cols = [_column(eh, c, eigenvec) for c in pc_names]
    e_ids = [i for i, name in enumerate(eh) if name in ("FID", "IID")]
    by_iid = {r[p_iid]: r for r in prows}
    header = "\t".join(["#" + eh[e_ids[0]], *(eh[i] for i in e_ids[1:]), *columns, *pc_names])
    out = [header]
    for r in erows:
        p = by_iid.get(r[e_iid])
        if p is None:
            continue
        out.append(
            "\t".join([*(r[i] for i in e_ids), *(p[i] for i in p_cols), *(r[i] for i in e_cols)])
        )
    if len(out) == 1:
        # An empty --covar file would make plink2 drop every sample further down the line.
        raise ConfigError(
            f"{pheno}: none of its {len(prows)} IIDs is among the {len(erows)} samples of "
            f"{eigenvec}; the phenotype file does not belong to these genotypes (check the "
            "site's phenotypes dataset and its ID columns)"
        )
    write_text_atomic(output, _lines(out))
    return len(out) - 1


# ------------------------------------------------------------------------------------------
# counts
# ------------------------------------------------------------------------------------------


def _count_rows(path: Path) -> int:
    """Data rows of a PLINK 2 .psam/.pvar (header and ``##`` lines excluded)."""
    try:
        with path.open(encoding="utf-8") as f:
            return sum(1 for ln in f if ln.strip() and not ln.startswith("#"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the rule's input") from exc


def fileset_counts(filesets: Sequence[tuple[str, Path]]) -> list[tuple[str, str, int]]:
    """Per-step removal counts from an ordered chain of PLINK 2 filesets.

    Parameters
    ----------
    filesets : sequence of (step, prefix)
        The QC chain in order; the first is the input, every later one the output of ``step``.

    Returns
    -------
    list of (step, quantity, count)
        ``(first, samples|variants, n)``, then per later step ``samples_removed`` and
        ``variants_removed``, then ``(final, samples|variants, n)``.
    """
    if not filesets:
        return []
    n = [
        (
            step,
            _count_rows(Path(f"{prefix}.psam")),
            _count_rows(Path(f"{prefix}.pvar")),
        )
        for step, prefix in filesets
    ]
    rows = [(n[0][0], "samples", n[0][1]), (n[0][0], "variants", n[0][2])]
    for (_, s0, v0), (step, s1, v1) in itertools.pairwise(n):
        rows.append((step, "samples_removed", s0 - s1))
        rows.append((step, "variants_removed", v0 - v1))
    rows += [("final", "samples", n[-1][1]), ("final", "variants", n[-1][2])]
    return rows


def read_counts_table(path: Path) -> list[tuple[str, str, int]]:
    """Read a ``step quantity count`` table written by another QC step."""
    header, rows = _table(path)
    if header != ["step", "quantity", "count"]:
        raise ConfigError(f"{path}: header must be 'step quantity count', got {header}")
    out = []
    for lineno, (step, quantity, count) in enumerate(rows, start=2):
        if not count.isdigit():
            raise ConfigError(f"{path}: line {lineno} column 'count': {count!r} is not an integer")
        out.append((step, quantity, int(count)))
    return out


def withhold_totals(
    rows: Sequence[tuple[str, str, int]], *, min_cell: int, first_step: str
) -> list[tuple[str, str, int]]:
    """Drop the input sample total when it would let a reader undo small-cell suppression.

    A suppressed ``samples_removed`` count could be recovered as input minus final minus the
    other removals. The final sample count is public anyway (it is the GWAS N), so the input
    total is withheld whenever any sample removal count will be suppressed. Variant counts say
    nothing about persons; they are suppressed cell by cell only, as the airlock demands.
    """
    small = any(q == "samples_removed" and 0 < c < min_cell for _, q, c in rows)
    if not small:
        return list(rows)
    return [r for r in rows if not (r[0] == first_step and r[1] == "samples")]


def write_counts(
    rows: Sequence[tuple[str, str, int]],
    *,
    output: Path,
    min_cell: int,
    first_step: str,
    full_output: Path | None = None,
) -> None:
    """Write the counts table that may leave the site (suppressed) and the site's full copy.

    ``full_output`` keeps every count for the site's own records and is never an egress path.
    """
    if min_cell < 1:
        raise ConfigError(f"--min-cell must be at least 1; got {min_cell}")
    if full_output is not None:
        write_text_atomic(
            full_output,
            _lines(["step\tquantity\tcount", *(f"{s}\t{q}\t{c}" for s, q, c in rows)]),
        )
    write_counts_table(
        output, withhold_totals(rows, min_cell=min_cell, first_step=first_step), min_cell=min_cell
    )


def check_alignment(counts: dict[str, int], *, afreq: Path, panel: Path) -> None:
    """Refuse an alignment in which no variant matches the panel (wrong assembly or names)."""
    if counts["match"] + counts["swap"] + counts["flip"] + counts["flip_swap"] == 0:
        raise ConfigError(
            f"{afreq}: no variant aligns with the panel {panel}; "
            "check that both use the same assembly and chromosome names"
        )
