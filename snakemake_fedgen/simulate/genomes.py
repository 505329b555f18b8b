"""Genomes of a simulated federation: coalescent loci plus genome-wide background markers.

Two kinds of variants, all biallelic SNPs on one or more autosomes (chromosome 20 unless
told otherwise; positions 1-based, sorted by chromosome then position):

* **Loci**: a few long stretches simulated with msprime under the stdpopsim human
  four-population American admixture model (Browning et al. 2018: AFR, EUR, ASIA and the
  admixed ADMIX), with a hotspot-style recombination map. They carry realistic haplotype
  structure (LD, rare variants) for phasing and imputation, and hold the causal variants. The
  loci are unlinked to each other (a one-base gap with recombination probability 1/2); the
  loci of every chromosome come from one msprime run and are then placed on their chromosomes.
  Sites with more than one mutation are dropped, so every variant is a clean biallelic SNP.
* **Background**: thousands of independent common SNPs between the loci, standing in for the
  rest of a genome. Their population allele frequencies are drawn from the coalescent loci's
  common variants (so the joint frequency spectrum across populations is realistic); ADMIX
  individuals draw each allele from a source population chosen with their own admixture
  proportions. Being unlinked, they let relatedness (KING), LD pruning, heterozygosity and PCA
  behave as on a genome-wide array, which one short stretch of one chromosome cannot.

REF is the allele of a simulated "reference genome" haplotype (an extra ADMIX individual, as
GRCh38 is largely one admixed donor), so REF is sometimes the minor or derived allele.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.simulate.chromosomes import DEFAULT_CHROMOSOMES, SPAN_START, span_end

#: stdpopsim species / model used for the demography.
SPECIES = "HomSap"
MODEL = "AmericanAdmixture_4B18"
SOURCE_POPULATIONS = ("AFR", "EUR", "ASIA")
#: Mean ADMIX ancestry in the model (1/6 AFR, 1/3 EUR, 1/2 ASIA; Browning et al. 2018).
ADMIX_PROPORTIONS = (1 / 6, 1 / 3, 1 / 2)
#: Dirichlet concentration of individual ADMIX ancestry around the mean.
ADMIX_CONCENTRATION = 15.0
MUTATION_RATE = 1.29e-8
#: Mean recombination rate inside loci (per bp per generation; chr20 is about 1.2 cM/Mb).
MEAN_RECOMBINATION_RATE = 1.2e-8
#: Genetic distance used when transmitting haplotypes across unlinked units (P(odd) ~ 1/2).
UNLINKED_MEIOSIS_CM = 300.0
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}
_BASES = np.array(["A", "C", "G", "T"])
_BLOCK = 1000
_ROW_BLOCK = 4096
#: Sort key stride: chromosome rank * stride + position (longer than any chromosome).
_CHROM_STRIDE = 1_000_000_000


@dataclass
class Genomes:
    """Phased haplotypes of every simulated individual.

    Attributes
    ----------
    chrom
        ``(n_variants,)`` chromosome names (``<U2``, e.g. ``"20"``), in numeric order.
    pos
        ``(n_variants,)`` int64, 1-based positions, strictly increasing within a chromosome.
    ref, alt
        ``(n_variants,)`` single-letter allele arrays (``<U1``); ``ref != alt``.
    haps
        ``(n_variants, 2 * n_individuals)`` uint8; 1 = ALT. Individual ``i`` owns columns
        ``2i`` and ``2i + 1``.
    locus
        ``(n_variants,)`` index of the coalescent locus holding the variant (over all
        chromosomes), -1 for background.
    cm
        ``(n_variants,)`` increasing genetic positions for transmitting haplotypes (cM):
        the real map inside loci, :data:`UNLINKED_MEIOSIS_CM` between units.
    locus_start
        ``(n_loci,)`` 1-based first base of each locus on its chromosome.
    locus_chrom
        ``(n_loci,)`` chromosome of each locus.
    population
        ``(n_individuals,)`` population name of each individual.
    admixture
        ``(n_individuals, 3)`` AFR/EUR/ASIA ancestry used for background alleles (one-hot for
        unadmixed individuals).
    map_bp, map_cm
        The genetic map written for Beagle (1-based bp, cM; one row per variant, so its
        chromosomes are :attr:`chrom`): the simulated map inside loci,
        :data:`MEAN_RECOMBINATION_RATE` between them, restarting on each chromosome.
    """

    chrom: np.ndarray
    pos: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    haps: np.ndarray
    locus: np.ndarray
    cm: np.ndarray
    locus_start: np.ndarray
    locus_chrom: np.ndarray
    population: np.ndarray
    admixture: np.ndarray
    map_bp: np.ndarray
    map_cm: np.ndarray

    @property
    def n_variants(self) -> int:
        """Number of biallelic SNPs."""
        return int(self.pos.shape[0])


def complement(alleles: np.ndarray) -> np.ndarray:
    """Return the complementary bases of an array of single-letter alleles."""
    return np.array([_COMPLEMENT[a] for a in alleles.tolist()], dtype="<U1")


def row_mean(haps: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Return ``haps[:, cols].mean(axis=1)`` (the same floats), a block of rows at a time.

    A whole-matrix gather of a large scale's haplotypes would need gigabytes.
    """
    out = np.empty(haps.shape[0])
    for lo in range(0, haps.shape[0], _ROW_BLOCK):
        out[lo : lo + _ROW_BLOCK] = haps[lo : lo + _ROW_BLOCK, cols].mean(axis=1)
    return out


def is_palindromic(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """True where REF/ALT are complementary (A/T or C/G): strand cannot be told from alleles."""
    return complement(ref) == alt


def locus_starts(n_loci: int, locus_bp: int, *, chrom: str = "20") -> np.ndarray:
    """1-based first base of each locus: loci centred in equal slices of the chromosome's span."""
    slice_bp = (span_end(chrom) - SPAN_START) / n_loci
    centres = SPAN_START + slice_bp * (np.arange(n_loci) + 0.5)
    return (centres - locus_bp // 2).astype(np.int64) + 1


def recombination_map(n_loci: int, locus_bp: int, rng: np.random.Generator):
    """Return the :class:`msprime.RateMap` of the concatenated loci.

    Inside a locus about 70% of crossovers fall into 1-3 kb hotspots (one per ~50 kb,
    human-like) around a mean of :data:`MEAN_RECOMBINATION_RATE`; the one-base gap between
    loci has rate ``ln 2`` (recombination probability 1/2: unlinked, as msprime documents for
    multiple chromosomes).
    """
    import msprime

    c = locus_bp
    edges: list[float] = [0.0]
    rates: list[float] = []
    for k in range(n_loci):
        base = k * (c + 1)
        n_hot = max(1, int(rng.poisson(c / 50_000)))
        background = 0.3 * MEAN_RECOMBINATION_RATE
        centres = np.sort(rng.uniform(2_000, c - 2_000, size=n_hot))
        widths = rng.uniform(1_000, 3_000, size=n_hot)
        weights = rng.gamma(shape=1.5, size=n_hot)
        mass = 0.7 * MEAN_RECOMBINATION_RATE * c * weights / weights.sum()
        for centre, w, m in zip(centres, widths, mass, strict=True):
            left = base + float(np.floor(centre - w / 2))
            right = base + float(np.floor(centre + w / 2))
            if left <= edges[-1]:
                continue  # overlapping hotspot: skipped, the map stays valid
            rates.extend([background, background + m / (right - left)])
            edges.extend([left, right])
        rates.append(background)
        edges.append(float(base + c))
        if k < n_loci - 1:
            rates.append(math.log(2))
            edges.append(float(base + c + 1))
    return msprime.RateMap(position=edges, rate=rates)


def _simulate_loci(samples: dict[str, int], *, n_loci: int, locus_bp: int, rng):
    """Run msprime; return biallelic sites as (x, alleles, genotypes, node populations, map)."""
    import msprime
    import stdpopsim

    demography = stdpopsim.get_species(SPECIES).get_demographic_model(MODEL).model
    ratemap = recombination_map(n_loci, locus_bp, rng)
    seeds = rng.integers(1, 2**31 - 1, size=2)
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(n, population=pop) for pop, n in samples.items()],
        demography=demography,
        sequence_length=n_loci * (locus_bp + 1) - 1,
        recombination_rate=ratemap,
        random_seed=int(seeds[0]),
    )
    ts = msprime.sim_mutations(ts, rate=MUTATION_RATE, random_seed=int(seeds[1]))
    pop_names = [p.metadata["name"] for p in ts.populations()]
    node_pops = np.array([pop_names[p] for p in ts.tables.nodes.population[ts.samples()]])
    xs, alleles, rows = [], [], []
    for var in ts.variants(copy=False):
        if len(var.site.mutations) != 1 or len(var.alleles) != 2:
            continue  # recurrent or back mutation: not a clean biallelic SNP
        if int(var.site.position) % (locus_bp + 1) == locus_bp:
            continue  # the one-base gap between loci is not part of the genome
        xs.append(int(var.site.position))
        alleles.append(var.alleles)
        rows.append(var.genotypes.astype(np.uint8))
    return np.array(xs, dtype=np.int64), alleles, np.array(rows), node_pops, ratemap


def _background(
    n_snps: int,
    *,
    source_freq: np.ndarray,
    admixture: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Independent background SNP haplotypes, ``(n_snps, 2 * n_individuals)`` uint8.

    Each SNP takes the AFR/EUR/ASIA allele frequencies of a random common coalescent variant,
    perturbed slightly (Beta with concentration 200) so no two SNPs are copies; each allele of
    each person comes from a source population drawn from that person's ``admixture``.
    """
    pick = rng.integers(0, source_freq.shape[0], size=n_snps)
    p = np.clip(source_freq[pick], 0.002, 0.998)
    p = rng.beta(200 * p, 200 * (1 - p))  # (n_snps, 3)
    hap_admix = np.repeat(admixture, 2, axis=0)  # (2 * n_ind, 3)
    mixed = np.flatnonzero(hap_admix.max(axis=1) < 1.0)
    fixed = np.setdiff1d(np.arange(hap_admix.shape[0]), mixed)
    fixed_source = hap_admix[fixed].argmax(axis=1)
    cum = np.cumsum(hap_admix[mixed], axis=1)[:, :2]  # (n_mixed, 2)
    out = np.empty((n_snps, hap_admix.shape[0]), dtype=np.uint8)
    # In blocks of SNPs: the random draws are float64, so a whole demo matrix would be ~1 GB.
    for lo in range(0, n_snps, _BLOCK):
        hi = min(lo + _BLOCK, n_snps)
        pb = p[lo:hi]
        # Unadmixed haplotypes: one frequency per population.
        out[lo:hi, fixed] = rng.random((hi - lo, fixed.size)) < pb[:, fixed_source]
        if mixed.size:
            u = rng.random((hi - lo, mixed.size))
            source = (u[:, :, None] > cum[None, :, :]).sum(axis=2)
            freq = np.take_along_axis(pb, source, axis=1)
            out[lo:hi, mixed] = rng.random((hi - lo, mixed.size)) < freq
    return out


def _background_positions(
    n: int, *, starts: np.ndarray, locus_bp: int, end: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` distinct sorted positions in ``(SPAN_START, end)``, >= 20 kb from every locus."""
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < n:
        draw = rng.integers(SPAN_START + 1, end, size=2 * n)
        rel = draw[:, None] - starts[None, :]
        near = ((rel > -20_000) & (rel < locus_bp + 20_000)).any(axis=1)
        chosen = np.unique(np.concatenate([chosen, draw[~near]]))
    return np.sort(rng.choice(chosen, size=n, replace=False))


def simulate_genomes(
    counts: dict[str, int],
    *,
    chromosomes: Sequence[str] = DEFAULT_CHROMOSOMES,
    n_loci: Sequence[int],
    locus_bp: int,
    n_background: Sequence[int],
    rng: np.random.Generator,
) -> Genomes:
    """Simulate ``counts[pop]`` diploid individuals per population.

    Parameters
    ----------
    counts
        Individuals to sample per population (``AFR``, ``EUR``, ``ASIA``, ``ADMIX``).
    chromosomes
        Chromosome names in numeric order (``parse_chromosomes``).
    n_loci
        Coalescent loci per chromosome (at least one each), ``len(chromosomes)`` counts.
    locus_bp
        Length of every locus (bp).
    n_background
        Independent background SNPs per chromosome.
    rng
        Source of every random choice (msprime seeds are drawn from it). The loci of all
        chromosomes come from one msprime run; with one chromosome the draws are those of the
        one-chromosome simulator this generalises (same seed, same genomes).

    Returns
    -------
    Genomes
        Individuals in the order of ``counts`` (population by population).
    """
    chroms = np.array(chromosomes, dtype="<U2")
    loci_counts = np.asarray(n_loci, dtype=np.int64)
    bg_counts = np.asarray(n_background, dtype=np.int64)
    if not chroms.size == loci_counts.size == bg_counts.size or (loci_counts < 1).any():
        raise SimulationError(
            f"one locus count (>= 1) and one background count per chromosome; got "
            f"chromosomes={list(chromosomes)}, n_loci={list(n_loci)}, "
            f"n_background={list(n_background)}"
        )
    total_bg = int(bg_counts.sum())
    samples = {pop: n for pop, n in counts.items() if n > 0}
    # One extra ADMIX individual whose first haplotype is the reference genome.
    samples["ADMIX"] = samples.get("ADMIX", 0) + 1
    x, alleles, geno, node_pops, ratemap = _simulate_loci(
        samples, n_loci=int(loci_counts.sum()), locus_bp=locus_bp, rng=rng
    )
    ind_pop = node_pops[::2]
    n_ind = ind_pop.shape[0]
    ref_ind = int(np.flatnonzero(ind_pop == "ADMIX")[-1])

    # Background: frequencies from common coalescent variants of the unadmixed populations.
    pop_freq = np.stack(
        [geno[:, np.repeat(ind_pop == p, 2)].mean(axis=1) for p in SOURCE_POPULATIONS], axis=1
    )
    overall = pop_freq.mean(axis=1)
    common = pop_freq[np.minimum(overall, 1 - overall) >= 0.05]
    admixture = np.zeros((n_ind, 3))
    for k, p in enumerate(SOURCE_POPULATIONS):
        admixture[ind_pop == p, k] = 1.0
    is_admix = ind_pop == "ADMIX"
    admixture[is_admix] = rng.dirichlet(
        ADMIX_CONCENTRATION * np.array(ADMIX_PROPORTIONS), size=int(is_admix.sum())
    )
    bg = _background(total_bg, source_freq=common, admixture=admixture, rng=rng)

    # Positions: loci where they lie; background SNPs uniformly between them (not inside).
    # Loci are numbered over all chromosomes, the first chromosome's first.
    locus_chrom = np.repeat(chroms, loci_counts)
    first_locus = np.cumsum(loci_counts) - loci_counts
    starts = np.concatenate(
        [
            locus_starts(int(n), locus_bp, chrom=str(c))
            for c, n in zip(chroms, loci_counts, strict=True)
        ]
    )
    locus_idx, offset = np.divmod(x, locus_bp + 1)
    loci_pos = starts[locus_idx] + offset
    bg_pos = np.concatenate(
        [
            _background_positions(
                int(n),
                starts=starts[f : f + k],
                locus_bp=locus_bp,
                end=span_end(str(c)),
                rng=rng,
            )
            for c, n, f, k in zip(chroms, bg_counts, first_locus, loci_counts, strict=True)
        ]
    )
    bg_bases = np.array([rng.choice(_BASES, size=2, replace=False) for _ in range(total_bg)])
    bg_bases = bg_bases.reshape(total_bg, 2)

    rank = np.arange(chroms.size)
    chrom_rank = np.concatenate(
        [np.repeat(rank, loci_counts)[locus_idx], np.repeat(rank, bg_counts)]
    )
    pos = np.concatenate([loci_pos, bg_pos]).astype(np.int64)
    anc = np.concatenate([np.array([a[0] for a in alleles], dtype="<U1"), bg_bases[:, 0]])
    der = np.concatenate([np.array([a[1] for a in alleles], dtype="<U1"), bg_bases[:, 1]])
    haps = np.concatenate([geno, bg], axis=0)
    del geno, bg
    locus = np.concatenate([locus_idx, np.full(total_bg, -1)]).astype(np.int64)
    within = ratemap.get_cumulative_mass(x) - ratemap.get_cumulative_mass(
        locus_idx * (locus_bp + 1)
    )
    local_cm = np.concatenate([100 * within, np.zeros(total_bg)])
    # Chromosome by chromosome (numeric order), by position within each.
    order = np.argsort(chrom_rank * _CHROM_STRIDE + pos, kind="stable")

    # REF is the reference haplotype's allele; drop it and its partner from the samples, and
    # monomorphic variants. One gather of the kept rows and columns, then REF/ALT swaps in
    # place (the whole matrix is the largest thing simulated: copies of it cost the most).
    ref_hap = haps[order, 2 * ref_ind]
    keep_cols = np.ones(haps.shape[1], dtype=bool)
    keep_cols[2 * ref_ind : 2 * ref_ind + 2] = False
    n_haps = int(keep_cols.sum())
    ac = haps.sum(axis=1, dtype=np.int64)[order] - ref_hap - haps[order, 2 * ref_ind + 1]
    poly = (ac > 0) & (ac < n_haps)
    haps = haps[np.ix_(order[poly], np.flatnonzero(keep_cols))]
    swap = ref_hap[poly] == 1
    np.bitwise_xor(haps, swap[:, None].astype(np.uint8), out=haps)
    keep = order[poly]
    chrom = chroms[chrom_rank[keep]]
    pos, locus, local_cm = pos[keep], locus[keep], local_cm[keep]
    ref = np.where(swap, der[keep], anc[keep])
    alt = np.where(swap, anc[keep], der[keep])

    # Transmission map: real cM inside a locus, a large step between unlinked units.
    new_unit = np.ones(pos.shape[0], dtype=bool)
    new_unit[1:] = (locus[1:] < 0) | (locus[1:] != locus[:-1])
    step = np.where(new_unit, UNLINKED_MEIOSIS_CM, np.diff(local_cm, prepend=0.0))
    cm = np.cumsum(step)
    # Beagle map: one line per variant; the simulated map inside loci and the chromosome's
    # mean rate between units (as a real chr20 map would say; a large nominal step there
    # would split Beagle's 40 cM windows into hundreds of slow tiny ones). Each chromosome's
    # map starts afresh at SPAN_START.
    chrom_first = np.ones(pos.shape[0], dtype=bool)
    chrom_first[1:] = chrom[1:] != chrom[:-1]
    previous = np.concatenate([[SPAN_START], pos[:-1]])
    previous[chrom_first] = SPAN_START
    bp_step = (pos - previous) * MEAN_RECOMBINATION_RATE * 100
    map_step = np.where(new_unit, bp_step, np.diff(local_cm, prepend=0.0))
    map_cm = np.empty(pos.shape[0])
    bounds = [*np.flatnonzero(chrom_first).tolist(), pos.shape[0]]
    for lo, hi in itertools.pairwise(bounds):
        map_cm[lo:hi] = SPAN_START * MEAN_RECOMBINATION_RATE * 100 + np.cumsum(map_step[lo:hi])
    ind_keep = np.ones(n_ind, dtype=bool)
    ind_keep[ref_ind] = False
    return Genomes(
        chrom=chrom,
        pos=pos,
        ref=ref.astype("<U1"),
        alt=alt.astype("<U1"),
        haps=np.ascontiguousarray(haps),
        locus=locus,
        cm=cm,
        locus_start=starts,
        locus_chrom=locus_chrom,
        population=ind_pop[ind_keep],
        admixture=admixture[ind_keep],
        map_bp=pos.copy(),
        map_cm=map_cm,
    )
