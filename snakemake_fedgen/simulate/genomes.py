"""Coalescent genomes for a simulated federation (msprime + the stdpopsim human demography).

Samples come from the four-population American admixture model (Browning et al. 2018:
AFR, EUR, ASIA and the admixed ADMIX). The genome is a set of short chunks spread evenly along
chromosome 20 with a hotspot-style recombination map inside each chunk; the gap between two
chunks is simulated as a single base carrying the whole gap's recombination rate, so linkage
between chunks is exactly that of the real distance while only the chunks are sequenced. Only sites with exactly one mutation are kept, so every
variant is a biallelic SNP; REF is the allele of a simulated "reference genome" haplotype,
so (as in GRCh38) REF is sometimes the minor or derived allele.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: stdpopsim species / model used for the demography.
SPECIES = "HomSap"
MODEL = "AmericanAdmixture_4B18"
#: Chromosome name written to every output; chunks lie between these 1-based positions.
CHROM = "20"
CHROM_LENGTH = 64_444_167
SPAN_START = 1_000_000
SPAN_END = 63_000_000
MUTATION_RATE = 1.29e-8
#: Mean recombination rate (per bp per generation; chr20 is about 1.2 cM/Mb).
MEAN_RECOMBINATION_RATE = 1.2e-8
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


@dataclass
class Genomes:
    """Phased haplotypes of every simulated individual.

    Attributes
    ----------
    pos
        ``(n_variants,)`` int64, 1-based positions on chromosome 20, strictly increasing.
    ref, alt
        ``(n_variants,)`` single-letter allele arrays (``<U1``); ``ref != alt``.
    haps
        ``(n_variants, 2 * n_individuals)`` uint8; 1 = ALT. Individual ``i`` owns columns
        ``2i`` and ``2i + 1``.
    cm
        ``(n_variants,)`` float64 genetic position in centimorgans.
    chunk
        ``(n_variants,)`` index of the chunk holding each variant.
    chunk_start
        ``(n_chunks,)`` 1-based position of each chunk's first base.
    population
        ``(n_individuals,)`` population name of each individual.
    map_bp, map_cm
        Breakpoints of the recombination map (1-based bp) and their cumulative cM.
    """

    pos: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    haps: np.ndarray
    cm: np.ndarray
    chunk: np.ndarray
    chunk_start: np.ndarray
    population: np.ndarray
    map_bp: np.ndarray
    map_cm: np.ndarray

    @property
    def n_variants(self) -> int:
        """Number of biallelic SNPs."""
        return int(self.pos.shape[0])


def complement(alleles: np.ndarray) -> np.ndarray:
    """Return the complementary bases of an array of single-letter alleles."""
    return np.array([_COMPLEMENT[a] for a in alleles.tolist()], dtype="<U1")


def is_palindromic(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """True where REF/ALT are complementary (A/T or C/G): strand cannot be told from alleles."""
    return complement(ref) == alt


@dataclass(frozen=True)
class Layout:
    """Where simulated chunks lie on chromosome 20.

    Simulation coordinate ``x`` falls in chunk ``x // (chunk_bp + 1)`` at offset
    ``x % (chunk_bp + 1)``; offset ``chunk_bp`` is the one-base gap to the next chunk.
    """

    n_chunks: int
    chunk_bp: int

    @property
    def spacing(self) -> int:
        """Distance in bp between the starts of two neighbouring chunks."""
        return (SPAN_END - SPAN_START) // self.n_chunks

    @property
    def sequence_length(self) -> int:
        """Length of the simulated sequence (chunks plus one base per gap)."""
        return self.n_chunks * (self.chunk_bp + 1) - 1

    def chunk_starts(self) -> np.ndarray:
        """1-based chromosome position of every chunk's first base."""
        return SPAN_START + self.spacing * np.arange(self.n_chunks, dtype=np.int64) + 1

    def to_chromosome(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map simulation coordinates to ``(chunk, 1-based position, in_gap)``."""
        x = np.asarray(x, dtype=np.int64)
        chunk, offset = np.divmod(x, self.chunk_bp + 1)
        return chunk, self.chunk_starts()[chunk] + offset, offset == self.chunk_bp


def recombination_map(layout: Layout, rng: np.random.Generator):
    """Return the :class:`msprime.RateMap` of the simulated sequence.

    Inside a chunk about 70% of crossovers fall into 1-3 kb hotspots (on average one per
    50 kb, human-like); each one-base gap carries the recombination of the real distance
    between the chunks at :data:`MEAN_RECOMBINATION_RATE`.
    """
    import msprime

    c = layout.chunk_bp
    gap_rate = MEAN_RECOMBINATION_RATE * (layout.spacing - c)
    edges: list[float] = [0.0]
    rates: list[float] = []
    for k in range(layout.n_chunks):
        base = k * (c + 1)
        n_hot = int(rng.poisson(c / 50_000))
        background = MEAN_RECOMBINATION_RATE * (0.3 if n_hot else 1.0)
        if n_hot:
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
        if k < layout.n_chunks - 1:
            rates.append(gap_rate)
            edges.append(float(base + c + 1))
    return msprime.RateMap(position=edges, rate=rates)


def mutation_map(layout: Layout):
    """Mutation :class:`msprime.RateMap`: :data:`MUTATION_RATE` in chunks, zero in gaps."""
    import msprime

    c = layout.chunk_bp
    edges: list[float] = [0.0]
    rates: list[float] = []
    for k in range(layout.n_chunks):
        base = k * (c + 1)
        rates.append(MUTATION_RATE)
        edges.append(float(base + c))
        if k < layout.n_chunks - 1:
            rates.append(0.0)
            edges.append(float(base + c + 1))
    return msprime.RateMap(position=edges, rate=rates)


def simulate_genomes(
    counts: dict[str, int], *, layout: Layout, rng: np.random.Generator
) -> Genomes:
    """Simulate ``counts[pop]`` diploid individuals per population plus a reference haplotype.

    Parameters
    ----------
    counts
        Individuals to sample per population (``AFR``, ``EUR``, ``ASIA``, ``ADMIX``).
    layout
        Number and length of the chunks.
    rng
        Source of every random choice (msprime seeds are drawn from it).

    Returns
    -------
    Genomes
        Individuals in the order of ``counts`` (population by population).
    """
    import msprime
    import stdpopsim

    species = stdpopsim.get_species(SPECIES)
    demography = species.get_demographic_model(MODEL).model
    ratemap = recombination_map(layout, rng)
    samples = {pop: n for pop, n in counts.items() if n > 0}
    # One extra ADMIX individual: its first haplotype plays the reference genome (GRCh38 is
    # itself largely one admixed donor), so REF is not always the ancestral or major allele.
    samples["ADMIX"] = samples.get("ADMIX", 0) + 1
    seeds = rng.integers(1, 2**31 - 1, size=2)
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(n, population=pop) for pop, n in samples.items()],
        demography=demography,
        sequence_length=layout.sequence_length,
        recombination_rate=ratemap,
        random_seed=int(seeds[0]),
    )
    ts = msprime.sim_mutations(ts, rate=mutation_map(layout), random_seed=int(seeds[1]))

    pop_names = [p.metadata["name"] for p in ts.populations()]
    node_pop = ts.tables.nodes.population
    sample_nodes = ts.samples()
    # Sample nodes come in sample-set order; locate the reference haplotype (last ADMIX node).
    node_pops = np.array([pop_names[node_pop[n]] for n in sample_nodes])
    ref_col = int(np.flatnonzero(node_pops == "ADMIX")[-1]) - 1  # first hap of last ADMIX ind
    keep_cols = np.ones(sample_nodes.shape[0], dtype=bool)
    keep_cols[ref_col : ref_col + 2] = False

    n_sites = ts.num_sites
    x = np.empty(n_sites, dtype=np.int64)
    ref = np.empty(n_sites, dtype="<U1")
    alt = np.empty(n_sites, dtype="<U1")
    haps = np.empty((n_sites, int(keep_cols.sum())), dtype=np.uint8)
    k = 0
    for var in ts.variants(copy=False):
        if len(var.site.mutations) != 1 or len(var.alleles) != 2:
            continue  # recurrent or back mutations: not a clean biallelic SNP
        g = var.genotypes
        row = g[keep_cols].astype(np.uint8)
        if g[ref_col] == 1:  # the reference genome carries the derived allele
            ref[k], alt[k] = var.alleles[1], var.alleles[0]
            row = 1 - row
        else:
            ref[k], alt[k] = var.alleles[0], var.alleles[1]
        x[k] = int(var.site.position)
        haps[k] = row
        k += 1
    ac = haps[:k].sum(axis=1)
    keep = (ac > 0) & (ac < haps.shape[1])  # the reference haplotype alone may differ
    x, ref, alt, haps = x[:k][keep], ref[:k][keep], alt[:k][keep], haps[:k][keep]
    chunk, pos, _ = layout.to_chromosome(x)

    cm_offset = SPAN_START * MEAN_RECOMBINATION_RATE * 100
    cm = cm_offset + 100 * ratemap.get_cumulative_mass(x)
    population = node_pops[keep_cols][::2]
    # Map lines at every rate change inside chunks; a gap's start is written at its chunk's
    # last base, so Beagle interpolates the gap's genetic distance linearly across it.
    bx = np.asarray(ratemap.position[:-1], dtype=np.int64)
    _, bp, in_gap = layout.to_chromosome(bx)
    bp = np.where(in_gap, bp - 1, bp)
    bcm = cm_offset + 100 * ratemap.get_cumulative_mass(bx)
    last_x = layout.sequence_length - 1
    bp = np.append(bp, layout.to_chromosome(np.array([last_x]))[1])
    bcm = np.append(bcm, cm_offset + 100 * ratemap.get_cumulative_mass(last_x))
    map_bp, first = np.unique(bp, return_index=True)
    map_cm = bcm[first]
    return Genomes(
        pos=pos,
        ref=ref,
        alt=alt,
        haps=np.ascontiguousarray(haps),
        cm=cm,
        chunk=chunk,
        chunk_start=layout.chunk_starts(),
        population=population,
        map_bp=map_bp,
        map_cm=map_cm,
    )
