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
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.assemblies import chrom_sort_key, plink_chrom
from snakemake_fedgen.egress.airlock.kinds.counts import (
    ALIGN_CLASSES,
    IMPORT_QUANTITIES,
    PHENOTYPE_QUANTITIES,
    STEP_ORDER,
)
from snakemake_fedgen.egress.disclosure import write_counts_table
from snakemake_fedgen.egress.facts import find_genotypes

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


def het_outliers(
    het: Path,
    *,
    output: Path,
    sd: float = 3.0,
    eigenvec: Path | None = None,
    pcs: int | None = None,
) -> int:
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
    pcs : int, optional
        Use only ``PC1`` .. ``PC<pcs>`` of ``eigenvec`` (all of them by default; 0: none).

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
    if eigenvec is not None and len(rows) > 10 and pcs != 0:
        eh, erows = _table(eigenvec)
        e_iid = _column(eh, "IID", eigenvec)
        wanted = [f"PC{i}" for i in range(1, pcs + 1)] if pcs else None
        pc_cols = [
            i
            for i, name in enumerate(eh)
            if name.startswith("PC") and (wanted is None or name in wanted)
        ]
        by_iid = {r[e_iid]: [float(r[i]) for i in pc_cols] for r in erows}
        missing = [r[i_iid] for r in rows if r[i_iid] not in by_iid]
        if missing:
            raise ConfigError(
                f"{eigenvec}: {len(missing)} samples of {het} have no principal components; "
                "compute both on the same samples"
            )
        design = np.column_stack([np.ones(len(rows)), [by_iid[r[i_iid]] for r in rows]])
    else:
        design = np.ones((len(rows), 1))
    out = ["\t".join("#" * (k == 0) + header[i] for k, i in enumerate(id_cols))]
    if len(values) >= 3:
        for r, outlier in zip(rows, _robust_outliers(design, values, sd), strict=True):
            if outlier:
                out.append("\t".join(r[i] for i in id_cols))
    write_text_atomic(output, _lines(out))
    return len(out) - 1


def _robust_outliers(design: Any, values: Any, sd: float, rounds: int = 20) -> list[bool]:
    """Samples whose value lies beyond ``sd`` SDs of the fit on ``design``, fitted on the
    others only: an outlier must not pull the fit (a contaminated sample's genotypes also shift
    its projected PCs, so a fit that includes it explains part of its heterozygosity away)."""
    import numpy as np

    inlier = np.ones(len(values), dtype=bool)
    for _ in range(rounds):
        if inlier.sum() <= design.shape[1] + 1:
            break
        coef, *_ = np.linalg.lstsq(design[inlier], values[inlier], rcond=None)
        resid = values - design @ coef
        std = float(resid[inlier].std(ddof=design.shape[1]))
        if std == 0:
            break
        mean = float(resid[inlier].mean())
        now = np.abs(resid - mean) <= sd * std
        if (now == inlier).all():
            break
        inlier = now
    return [not bool(x) for x in inlier]


# ------------------------------------------------------------------------------------------
# covariates
# ------------------------------------------------------------------------------------------


def covariates(
    pheno: Path,
    eigenvec: Path,
    *,
    output: Path,
    columns: Sequence[str],
    pcs: int,
    keep: Path | None = None,
    collinear_output: Path | None = None,
) -> int:
    """Join phenotype-table covariates with the first ``pcs`` principal components.

    ``keep`` (a ``.psam``) limits the rows to the analysed samples. ``collinear_output`` also
    writes the table without the PCs that are (nearly) linear combinations of the covariates and
    earlier PCs over those samples (R^2 > :data:`MAX_PC_R2`): the panel's PCs are orthogonal in
    the panel, not at every site (a site drawn from two populations has PC1 and PC2 both
    measuring the same contrast), and ``plink2 --glm`` refuses such covariates (VIF).

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
    kept_ids = None if keep is None else set(_ids_of(keep))
    header = ["#" + eh[e_ids[0]], *(eh[i] for i in e_ids[1:]), *columns, *pc_names]
    table: list[list[str]] = []
    for r in erows:
        p = by_iid.get(r[e_iid])
        if p is None or (kept_ids is not None and r[e_iid] not in kept_ids):
            continue
        table.append([*(r[i] for i in e_ids), *(p[i] for i in p_cols), *(r[i] for i in e_cols)])
    out = ["\t".join(header), *("\t".join(row) for row in table)]
    if len(out) == 1:
        # An empty --covar file would make plink2 drop every sample further down the line.
        raise ConfigError(
            f"{pheno}: none of its {len(prows)} IIDs is among the {len(erows)} samples of "
            f"{eigenvec}; the phenotype file does not belong to these genotypes (check the "
            "site's phenotypes dataset and its ID columns)"
        )
    write_text_atomic(output, _lines(out))
    if collinear_output is not None:
        first_pc = len(e_ids) + len(columns)
        drop = collinear_pcs(table, first_covariate=len(e_ids), first_pc=first_pc)
        for i in drop:
            print(
                f"{header[i]}: dropped from {collinear_output}, R^2 > {MAX_PC_R2} on the other "
                "covariates at this site",
                file=sys.stderr,
            )
        keep_cols = [i for i in range(len(header)) if i not in drop]
        write_text_atomic(
            collinear_output,
            _lines("\t".join(row[i] for i in keep_cols) for row in [header, *table]),
        )
    return len(out) - 1


#: A projected PC explained this well by the covariates and earlier PCs is left out of the GWAS.
MAX_PC_R2 = 0.95


def collinear_pcs(
    table: Sequence[Sequence[str]], *, first_covariate: int, first_pc: int
) -> list[int]:
    """Columns (from ``first_pc`` on) whose R^2 on the intercept, the covariates and the earlier
    kept PCs exceeds :data:`MAX_PC_R2`, or that are constant; rows with a non-number are skipped.
    """
    import numpy as np

    rows = []
    for row in table:
        try:
            rows.append([float(x) for x in row[first_covariate:]])
        except ValueError:
            continue
    if not rows:
        return []
    x = np.array(rows)
    n_cov = first_pc - first_covariate
    kept = [np.ones(len(x)), *(x[:, j] for j in range(n_cov))]
    drop = []
    for j in range(n_cov, x.shape[1]):
        y = x[:, j]
        ss = float(((y - y.mean()) ** 2).sum())
        design = np.column_stack(kept)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = float(((y - design @ coef) ** 2).sum())
        if ss == 0.0 or 1.0 - resid / ss > MAX_PC_R2:
            drop.append(first_covariate + j)
        else:
            kept.append(y)
    return drop


def _ids_of(psam: Path) -> list[str]:
    header, rows = _table(psam)
    i_iid = _column(header, "IID", psam)
    return [r[i_iid] for r in rows]


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
    # In the order the steps ran (import and phenotype matching come before QC), whatever
    # order the tables were given in; unknown steps last.
    order = {step: i for i, step in enumerate(STEP_ORDER)}
    rows = sorted(rows, key=lambda r: order.get(r[0], len(order)))
    if full_output is not None:
        write_text_atomic(
            full_output,
            _lines(["step\tquantity\tcount", *(f"{s}\t{q}\t{c}" for s, q, c in rows)]),
        )
    write_counts_table(
        output, withhold_totals(rows, min_cell=min_cell, first_step=first_step), min_cell=min_cell
    )


def check_alignment(counts: dict[str, int], *, afreq: Path, panel: Path) -> None:
    """Refuse an alignment in which fewer than :data:`MIN_ALIGNED_SHARE` of the site's SNPs
    align with the panel: genotypes and panel of different builds (or chromosome naming) match
    only by chance, and a silent run on those few would be wrong, not small."""
    aligned = counts["match"] + counts["swap"] + counts["flip"] + counts["flip_swap"]
    total = sum(counts.values())
    if aligned == 0 or aligned < MIN_ALIGNED_SHARE * total:
        raise ConfigError(
            f"{afreq}: only {aligned} of {total} site SNPs align with the panel {panel} "
            f"({counts['not_in_panel']} not at a panel position, {counts['allele_mismatch']} with "
            "other alleles); the genotypes and the panel look like different genome builds or "
            "chromosome namings. Check both datasets' `assembly:` and lift the genotypes over "
            "to the panel's build"
        )


#: The share of a site's SNPs that must align with the panel (a wrong build aligns by chance).
MIN_ALIGNED_SHARE = 0.5


# ------------------------------------------------------------------------------------------
# import: genotypes as the site holds them -> one PLINK 2 fileset of biallelic SNPs
# ------------------------------------------------------------------------------------------

#: Chromosomes the workflow analyses (PLINK 2's codes; ``chr`` prefixes are read as the same).
STANDARD_CHROMS = frozenset([*(str(i) for i in range(1, 23)), "X", "Y", "XY", "MT"])


def _tool(argv: Sequence[str], *, what: str) -> str:
    import subprocess

    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"{what}: {argv[0]} failed: {' / '.join(tail)}")
    return proc.stdout


def _first_locus(vcf: Path) -> tuple[tuple[int, str], int]:
    """(chromosome order, position) of a VCF's first record: the order to concatenate files
    holding one chromosome, or one chunk of one, each."""
    import subprocess

    with subprocess.Popen(
        ["bcftools", "view", "-H", str(vcf)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.kill()
    if not line:
        raise ConfigError(f"{vcf}: has no variants")
    chrom, pos = line.split("\t", 2)[:2]
    return chrom_sort_key(chrom), int(pos)


def _concat_vcfs(vcfs: Sequence[Path], out: Path) -> Path:
    """One BCF of per-chromosome (or per-chunk) VCFs: same samples, put in genome order."""
    samples = {p: _tool(["bcftools", "query", "-l", str(p)], what=str(p)) for p in vcfs}
    first = vcfs[0]
    for p in vcfs[1:]:
        if samples[p] != samples[first]:
            raise ConfigError(
                f"{p}: its samples differ from those of {first} (names or order); the files "
                "of one genotypes folder must hold the same samples in the same order"
            )
    ordered = sorted(vcfs, key=_first_locus)
    _tool(["bcftools", "concat", "-Ob", "-o", str(out), *map(str, ordered)], what="bcftools concat")
    return out


def _import_counts(pvar: Path, chromosomes: frozenset[str] = STANDARD_CHROMS) -> dict[str, int]:
    """Classify the variants of the unfiltered import (PLINK 2 ``.pvar``) as import filters."""
    counts = dict.fromkeys(IMPORT_QUANTITIES, 0)
    snp_positions: dict[tuple[str, str], int] = {}
    acgt = set("ACGT")
    with pvar.open(encoding="utf-8") as f:
        header: list[str] = []
        for line in f:
            if line.startswith("##"):
                continue
            if line.startswith("#"):
                header = line[1:].split()
                continue
            row = line.split()
            rec = dict(zip(header, row, strict=False))
            counts["variants"] += 1
            if plink_chrom(rec["CHROM"]).upper() not in chromosomes:
                counts["variants_other_contig"] += 1
            elif "," in rec["ALT"]:
                counts["variants_multiallelic"] += 1
            elif rec["REF"].upper() not in acgt or rec["ALT"].upper() not in acgt:
                counts["variants_not_snp"] += 1
            else:
                key = (_chrom(rec["CHROM"]), rec["POS"])
                snp_positions[key] = snp_positions.get(key, 0) + 1
    counts["variants_duplicate_position"] = sum(n for n in snp_positions.values() if n > 1)
    return counts


def import_genotypes(
    genotypes: Path,
    *,
    out_prefix: Path,
    chromosomes: Sequence[str] | None = None,
    threads: int = 1,
    memory_mb: int = 2000,
) -> dict[str, int]:
    """Import the site's genotypes as it holds them into one PLINK 2 fileset of biallelic SNPs.

    VCF/BCF (one file or one per chromosome) and PLINK 1/2 filesets are read; ``chr`` prefixes
    or not, the IDs become ``CHROM:POS`` with PLINK 2's chromosome codes. What is not carried on
    (other contigs and chromosomes not in ``chromosomes``, multi-allelic sites, indels and
    other non-SNPs, SNPs sharing a position) is counted in ``<out_prefix>.import.counts.tsv`` (step ``import``). Indels of the reference
    panel come back through imputation.

    Writes ``<out_prefix>.pgen/.pvar/.psam/.afreq``. Returns the import counts.
    """
    source = find_genotypes(genotypes)
    if source.kind != "vcf":
        parts = (".bed", ".bim", ".fam") if source.kind == "bfile" else (".pgen", ".pvar", ".psam")
        missing = [source.part(x).name for x in parts if not source.part(x).exists()]
        if missing:
            raise ConfigError(
                f"{genotypes}: the PLINK fileset lacks {', '.join(missing)}; register the folder "
                "that holds all three files"
            )
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)

    def part(prefix: Path, suffix: str) -> Path:
        return prefix.with_name(prefix.name + suffix)

    staging = part(out_prefix, ".input")
    concat = part(out_prefix, ".concat.bcf")
    plink = ["plink2", "--threads", str(threads), "--memory", str(memory_mb)]
    try:
        if source.kind == "vcf":
            vcf = source.paths[0] if len(source.paths) == 1 else _concat_vcfs(source.paths, concat)
            flag = "--bcf" if vcf.name.endswith(".bcf") else "--vcf"
            read = [flag, str(vcf), "--double-id", "--vcf-half-call", "missing"]
        else:
            read = [f"--{source.kind}", str(source.paths[0])]
        _tool(
            [
                *plink,
                *read,
                "--allow-extra-chr",
                "--sort-vars",
                "--make-pgen",
                "--out",
                str(staging),
            ],
            what=f"{genotypes}: import",
        )
        keep = (
            frozenset(plink_chrom(c).upper() for c in chromosomes)
            if chromosomes
            else STANDARD_CHROMS
        )
        counts = _import_counts(part(staging, ".pvar"), keep)
        _tool(
            [*plink, "--pfile", str(staging), "--allow-extra-chr",
             "--chr", *sorted(keep, key=chrom_sort_key),
             "--snps-only", "just-acgt", "--max-alleles", "2", "--set-all-var-ids", "@:#",
             "--rm-dup", "exclude-all", "--make-pgen", "--out", str(out_prefix)],
            what=f"{genotypes}: filter",
        )  # fmt: skip
        _tool(
            [*plink, "--pfile", str(out_prefix), "--freq", "--out", str(out_prefix)],
            what=f"{genotypes}: allele frequencies",
        )
    finally:
        for suffix in (".pgen", ".pvar", ".psam", ".log"):
            part(staging, suffix).unlink(missing_ok=True)
        concat.unlink(missing_ok=True)
    kept = _count_rows(part(out_prefix, ".pvar"))
    removed = sum(v for k, v in counts.items() if k != "variants")
    if counts["variants"] - removed != kept:
        raise ConfigError(
            f"{genotypes}: import counted {counts['variants']} variants and {removed} removed but "
            f"kept {kept}; the counts would not add up, so nothing is carried on"
        )
    table = ["step\tquantity\tcount", *(f"import\t{k}\t{v}" for k, v in counts.items())]
    write_text_atomic(part(out_prefix, ".import.counts.tsv"), _lines(table))
    return counts


# ------------------------------------------------------------------------------------------
# phenotypes: the site's table matched to its genotype samples
# ------------------------------------------------------------------------------------------


def match_phenotypes(pheno: Path, psam: Path, *, output: Path, counts: Path) -> dict[str, int]:
    """Match a phenotype table to the genotype samples and write it keyed as the genotypes are.

    The table is keyed by ``FID`` and ``IID`` or by ``IID`` alone (first columns, ``#`` optional).
    A row matches a sample with the same FID and IID, or, when that finds none, the one sample
    with its IID. Rows whose key appears twice are dropped (which one is right cannot be told).
    ``output`` is ``#FID IID`` (as in the ``.psam``) then ``sex`` (if present) and the other
    columns; ``counts`` holds the ``phenotypes`` step of the QC counts.
    """
    header, rows = _table(pheno)
    if header[:2] == ["FID", "IID"]:
        n_ids = 2
    elif header[:1] == ["IID"]:
        n_ids = 1
    else:
        raise ConfigError(
            f"{pheno}: line 1 must start with the sample ID columns 'FID IID' or 'IID' "
            f"(found {' '.join(header[:2])!r}); IID is the genotype sample ID (the VCF sample "
            "name, or the IID of a PLINK .fam/.psam)"
        )
    ph, prow = _table(psam)
    s_iid = _column(ph, "IID", psam)
    s_fid = ph.index("FID") if "FID" in ph else None
    samples = [(r[s_fid] if s_fid is not None else r[s_iid], r[s_iid]) for r in prow]
    by_pair = {s: s for s in samples}
    by_iid: dict[str, list[tuple[str, str]]] = {}
    for s in samples:
        by_iid.setdefault(s[1], []).append(s)
    keys = [tuple(r[:n_ids]) for r in rows]
    seen: dict[tuple[str, ...], int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    data_cols = list(range(n_ids, len(header)))
    if "sex" in header[n_ids:]:
        i_sex = header.index("sex")
        data_cols = [i_sex, *(i for i in data_cols if i != i_sex)]
    matched: dict[tuple[str, str], list[str]] = {}
    n_dup = n_unmatched = 0
    for key, row in zip(keys, rows, strict=True):
        if seen[key] > 1:
            n_dup += 1
            continue
        sample = by_pair.get(key) if n_ids == 2 else None  # type: ignore[arg-type]
        if sample is None:
            hits = by_iid.get(key[-1], [])
            sample = hits[0] if len(hits) == 1 else None
        if sample is None or sample in matched:
            n_unmatched += 1
            continue
        matched[sample] = [row[i] for i in data_cols]
    result = {
        "samples_genotyped": len(samples),
        "samples_matched": len(matched),
        "samples_without_phenotypes": len(samples) - len(matched),
        "rows_without_genotypes": n_unmatched,
        "rows_duplicated": n_dup,
    }
    assert tuple(result) == PHENOTYPE_QUANTITIES
    if not matched:
        raise ConfigError(
            f"{pheno}: none of its {len(rows)} rows matches one of the {len(samples)} genotype "
            f"samples by {'FID and IID or ' if n_ids == 2 else ''}IID. The IID column must hold "
            "the genotype sample IDs exactly (the VCF sample names, or the IIDs of the PLINK "
            "fileset); check the site's phenotypes dataset"
        )
    out = ["\t".join(["#FID", "IID", *(header[i] for i in data_cols)])]
    out += ["\t".join([*s, *matched[s]]) for s in samples if s in matched]
    write_text_atomic(output, _lines(out))
    table = ["step\tquantity\tcount", *(f"phenotypes\t{k}\t{v}" for k, v in result.items())]
    write_text_atomic(counts, _lines(table))
    return result
