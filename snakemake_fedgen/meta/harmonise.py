"""Allele harmonisation of several studies' rows on one chromosome.

Variants are matched on position and alleles, never on names. The first study (in input order)
that carries a variant fixes its effect allele; other studies' rows are aligned to it:

* swap (effect and other allele exchanged): beta changes sign, EAF becomes 1 - EAF;
* strand flip of a non-palindromic SNP (A/C reported as T/G): complemented, then as above;
* palindromic SNPs (A/T, C/G) cannot show a strand flip in their alleles. When the study and the
  variant's reference study declare the same reference panel (both aligned their genotypes'
  strand to it before the GWAS, sidecar ``fedgen.aligned_panel``), there is no strand to guess:
  the alleles as given decide (same or swapped) at any frequency. Otherwise the allele
  frequencies decide when both studies' minor allele frequency is below a threshold (0.4 by
  default), and the row is dropped as ``palindromic_ambiguous`` when either is not;
* a SNP whose alleles match no other study's at a position where every study has one SNP is an
  ``allele_mismatch`` and dropped (the first study's alleles win); several SNPs at one position
  in one study are a multi-allelic site and each allele pair is its own variant;
* indels match on their exact alleles (a swap is allowed, no strand flip).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SumstatsError

from snakemake_fedgen.sumstats.columns import CHROM_LABELS
from snakemake_fedgen.sumstats.reader import ChromBlock, Exclusion

_KEY_BITS = 24

#: Reasons a row is dropped during harmonisation.
HARMONISATION_REASONS: tuple[str, ...] = (
    "duplicate_variant",
    "allele_mismatch",
    "palindromic_ambiguous",
)


@dataclass
class Harmonised:
    """Aligned rows of all studies on one chromosome.

    Row arrays (``variant``, ``study``, ``beta``, ``se``, ``eaf``, ``n``) are sorted by variant;
    variant arrays (``pos``, ``effect_allele``, ``other_allele``) by position.
    """

    chrom: int
    n_variants: int
    pos: np.ndarray
    effect_allele: np.ndarray
    other_allele: np.ndarray
    variant: np.ndarray
    study: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    eaf: np.ndarray
    n: np.ndarray
    flipped: np.ndarray  # per study: rows whose sign was flipped
    strand_flipped: np.ndarray  # per study: rows complemented
    # Per study: palindromic rows aligned by their alleles under the reference study's panel,
    # and those of them the frequency rule would have dropped (MAF at or above the threshold).
    palindromic_panel_aligned: np.ndarray
    palindromic_panel_kept: np.ndarray
    exclusions: list[Exclusion] = field(default_factory=list)


def _allele_keys(ea_code, oa_code, ea, oa) -> tuple[np.ndarray, np.ndarray]:
    """Orientation- and strand-independent key of each row's allele pair (and SNP mask)."""
    snp = (ea_code >= 0) & (oa_code >= 0)
    key = np.empty(len(ea_code), dtype=np.int64)
    e = ea_code[snp].astype(np.int64)
    o = oa_code[snp].astype(np.int64)
    # A=0 C=1 G=2 T=3, so the complement of b is 3 - b.
    pair = np.minimum(e, o) * 4 + np.maximum(e, o)
    comp = np.minimum(3 - e, 3 - o) * 4 + np.maximum(3 - e, 3 - o)
    key[snp] = np.minimum(pair, comp)
    indel = ~snp
    if indel.any():
        # Number each distinct allele string, then each unordered pair of numbers (C hashing).
        m = int(indel.sum())
        alleles, ids = np.unique(np.concatenate([ea[indel], oa[indel]]), return_inverse=True)
        a, b = ids[:m].astype(np.int64), ids[m:].astype(np.int64)
        uniques, codes = np.unique(
            np.minimum(a, b) * len(alleles) + np.maximum(a, b), return_inverse=True
        )
        if len(uniques) >= (1 << _KEY_BITS) - 16:
            raise SumstatsError("more than 16 million distinct indel allele pairs on a chromosome")
        key[indel] = 16 + codes
    return key, snp


def harmonise(
    blocks: list[ChromBlock | None],
    *,
    studies: list[str],
    paths: list[Path],
    maf_palindromic: float = 0.4,
    drop_duplicates: bool = False,
    panels: list[str | None] | None = None,
) -> Harmonised:
    """Match and align the rows of every study on one chromosome.

    Parameters
    ----------
    blocks : list of ChromBlock or None
        One entry per study, in input order (None: the study has no row on this chromosome).
        The blocks are consumed: their arrays are released as they are copied.
    studies, paths : list
        Study names and files, for exclusion records and error messages.
    maf_palindromic : float
        Palindromic SNPs are aligned by frequency only when every minor allele frequency
        involved is below this value.
    drop_duplicates : bool
        Drop repeated variants within a study (counted) instead of raising.
    panels : list of str or None, optional
        One entry per study: the digest of the reference panel it aligned its genotypes to, or
        None. A palindromic row of a study that declares the same panel as the variant's
        reference study is aligned by its alleles as given and kept at any frequency.

    Raises
    ------
    SumstatsError
        A study lists the same variant (position and alleles) twice.
    """
    n_studies = len(studies)
    panels = panels if panels is not None else [None] * n_studies
    if len(panels) != n_studies:
        raise ValueError(f"panels has {len(panels)} entries for {n_studies} studies")
    parts = [(s, b) for s, b in enumerate(blocks) if b is not None and len(b)]
    chrom = next(b.chrom for _, b in parts)
    study = np.concatenate([np.full(len(b), s, dtype=np.int32) for s, b in parts])

    def cat(name: str) -> np.ndarray:
        # Each study's array is dropped once copied, so the rows are never held twice.
        out = np.concatenate([getattr(b, name) for _, b in parts])
        for _, b in parts:
            setattr(b, name, None)
        return out

    pos, ea_code, oa_code = cat("pos"), cat("ea_code"), cat("oa_code")
    ea, oa, line = cat("ea"), cat("oa"), cat("line")
    beta, se, eaf, n = cat("beta"), cat("se"), cat("eaf"), cat("n")
    key, snp = _allele_keys(ea_code, oa_code, ea, oa)
    comb = (pos << _KEY_BITS) | key
    del key
    keep = np.ones(len(pos), dtype=bool)
    drops: dict[str, list[np.ndarray]] = {}

    # One sort by (position, allele pair, study) serves every step below. Each study's rows
    # arrive sorted by position, so a stable sort merges a few long runs.
    study_bits = max(1, int(n_studies - 1).bit_length())
    if int(pos.max(initial=0)) < (1 << (62 - _KEY_BITS - study_bits)):
        order = np.argsort((comb << study_bits) | study, kind="stable")
    else:
        order = np.lexsort((study, comb))

    # Duplicates within a study: same position and allele pair (in any orientation).
    same = (np.diff(comb[order]) == 0) & (np.diff(study[order]) == 0)
    if same.any():
        second = order[1:][same]
        first = order[:-1][same]
        if not drop_duplicates:
            i, j = int(first[0]), int(second[0])
            raise SumstatsError(
                f"{paths[study[j]]}, line {line[j]}, columns chromosome/base_pair_location/"
                f"effect_allele/other_allele: duplicate variant {CHROM_LABELS[chrom]}:{pos[j]} "
                f"{ea[j]}/{oa[j]} (already on line {line[i]}); remove one of the rows or pass "
                "--drop-invalid to count repeats as exclusions"
            )
        keep[second] = False
        drops["duplicate_variant"] = [second]

    # Allele mismatches: several SNP allele pairs at a position where no study is multi-allelic.
    snp_order = order[(keep & snp)[order]]
    sp, sc = pos[snp_order], comb[snp_order]
    clash = (np.diff(sp) == 0) & (np.diff(sc) != 0)
    del sc
    if clash.any():
        import pandas as pd

        clash_pos = np.unique(sp[1:][clash])
        rows = snp_order[np.isin(sp, clash_pos)]
        df = pd.DataFrame({"pos": pos[rows], "study": study[rows], "comb": comb[rows], "row": rows})
        per_study = df.groupby(["pos", "study"]).size().groupby(level=0).max()
        biallelic = per_study.index[per_study.to_numpy() == 1]
        sub = df[df["pos"].isin(biallelic)].sort_values(["pos", "study"])
        ref_comb = sub.groupby("pos")["comb"].transform("first")
        bad = sub["row"].to_numpy()[(sub["comb"] != ref_comb).to_numpy()]
        keep[bad] = False
        drops["allele_mismatch"] = [bad]

    # Group the kept rows into variants; the first study carrying a variant is its reference.
    del sp, snp_order
    order = order[keep[order]]
    sc = comb[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sc)) + 1]) if len(sc) else sc[:0]
    variant = np.cumsum(np.concatenate([[0], (np.diff(sc) != 0).astype(np.int64)]))
    del sc
    ref = order[starts][variant]  # reference row of each sorted row
    row = order

    # int8 codes (A=0 C=1 G=2 T=3): 3 - code is the complement and stays int8.
    e, o = ea_code[row], oa_code[row]
    re_, ro = ea_code[ref], oa_code[ref]
    is_snp = snp[row]
    pal = is_snp & (e == 3 - o)
    is_ref = row == ref
    sign = np.ones(len(row), dtype=np.int8)
    strand = np.zeros(len(row), dtype=bool)

    # Non-palindromic SNPs: the alleles alone say how to align.
    swap = (e == ro) & (o == re_)
    comp = (e == 3 - re_) & (o == 3 - ro)
    comp_swap = (e == 3 - ro) & (o == 3 - re_)
    plain = is_snp & ~pal
    sign[plain & (swap | comp_swap)] = -1
    strand[plain & (comp | comp_swap)] = True
    del swap, comp, comp_swap, plain

    # Palindromic SNPs: identity looks like complement+swap, swap like complement. Under one
    # shared panel both studies' alleles are on the panel's strand, so the labels say it all;
    # otherwise ask the EAFs.
    drop_pal = np.zeros(len(row), dtype=bool)
    by_panel = np.zeros(len(row), dtype=bool)
    panel_kept = np.zeros(len(row), dtype=bool)
    if pal.any():
        f, rf = eaf[row], eaf[ref]
        with np.errstate(invalid="ignore"):
            maf = np.minimum(f, 1 - f)
            rmaf = np.minimum(rf, 1 - rf)
            clear = (maf < maf_palindromic) & (rmaf < maf_palindromic)
            agree = (f > 0.5) == (rf > 0.5)
        codes = {d: i for i, d in enumerate(dict.fromkeys(d for d in panels if d is not None))}
        if codes:
            panel_code = np.array([-1 if d is None else codes[d] for d in panels], dtype=np.int32)
            cand = np.flatnonzero(pal & ~is_ref)
            mine = panel_code[study[row[cand]]]
            by_panel[cand[(mine >= 0) & (mine == panel_code[study[ref[cand]]])]] = True
            del cand, mine
        sign[by_panel & (e != re_)] = -1  # swap; the strand is the panel's in both
        panel_kept = by_panel & ~clear
        drop_pal = pal & ~is_ref & ~by_panel & ~clear
        p = pal & ~is_ref & ~by_panel & clear
        same_label = e == re_
        sign[p & same_label & ~agree] = -1  # complement + swap
        strand[p & same_label & ~agree] = True
        sign[p & ~same_label & ~agree] = -1  # swap
        strand[p & ~same_label & agree] = True  # complement
    panel_aligned = np.bincount(study[row[by_panel]], minlength=n_studies)
    panel_kept_n = np.bincount(study[row[panel_kept]], minlength=n_studies)
    del by_panel, panel_kept
    # Indels: exact alleles, possibly swapped.
    indel = np.flatnonzero(~is_snp)
    if len(indel):
        sign[indel[ea[row[indel]] != ea[ref[indel]]]] = -1

    if drop_pal.any():
        drops["palindromic_ambiguous"] = [row[drop_pal]]
        ok = ~drop_pal
        row, ref, variant, sign, strand = row[ok], ref[ok], variant[ok], sign[ok], strand[ok]

    n_variants = len(starts)
    ref_rows = order[starts]
    s = study[row]
    flipped = np.bincount(s[sign < 0], minlength=n_studies)
    strand_flipped = np.bincount(s[strand], minlength=n_studies)
    aligned_eaf = np.where(sign < 0, 1.0 - eaf[row], eaf[row])

    exclusions: list[Exclusion] = []
    chrom_arr = np.full(1, chrom, dtype=np.int8)
    for reason, groups in drops.items():
        rows_ = np.concatenate(groups)
        for st in np.unique(study[rows_]):
            r = rows_[study[rows_] == st]
            exclusions.append(
                Exclusion(
                    studies[st],
                    reason,
                    np.repeat(chrom_arr, len(r)),
                    pos[r],
                    ea[r],
                    oa[r],
                    line[r],
                )
            )
    return Harmonised(
        chrom=chrom,
        n_variants=n_variants,
        pos=pos[ref_rows],
        effect_allele=ea[ref_rows],
        other_allele=oa[ref_rows],
        variant=variant,
        study=s,
        beta=beta[row] * sign,
        se=se[row],
        eaf=aligned_eaf,
        n=n[row],
        flipped=flipped,
        strand_flipped=strand_flipped,
        palindromic_panel_aligned=panel_aligned,
        palindromic_panel_kept=panel_kept_n,
        exclusions=exclusions,
    )
