"""Site cohorts: who is genotyped at a site, including the injected sample-level QC failures.

A cohort starts as unrelated individuals drawn from the coalescent simulation. Relatives are
then made by transmitting haplotypes through simulated meioses (parent-offspring pairs and
full sibling pairs whose parents are not in the cohort), duplicates re-genotype an existing
person under a new ID, contaminated samples get extra heterozygous calls at the genotype stage,
autozygous samples (offspring of a consanguineous union) carry two copies of one haplotype
on about 45% of the genome's units (whole loci, background SNPs), and
low-call-rate samples lose many calls at the genotype stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.simulate.scales import Scale

#: Share of the genome autozygous in an "autozygous" sample (inbreeding coefficient ~0.45).
AUTOZYGOUS_SHARE = 0.45


@dataclass
class Sample:
    """One genotyped sample of a cohort (column pair ``2i, 2i+1`` of :attr:`Cohort.haps`)."""

    population: str
    kind: str = "unrelated"  # unrelated | parent | offspring | sibling | duplicate
    partner: int | None = None  # index of the related sample / original of a duplicate
    qc: str | None = None  # contaminated | autozygous | low_call_rate
    iid: str = ""


@dataclass
class Cohort:
    """The true haplotypes of a site's samples at the variants the site needs.

    Attributes
    ----------
    site
        Site name.
    rows
        ``(n_rows,)`` indices into :class:`~snakemake_fedgen.simulate.genomes.Genomes` variants.
    haps
        ``(n_rows, 2 * n_samples)`` uint8 haplotypes (1 = ALT).
    samples
        One :class:`Sample` per individual, in VCF column order once :meth:`shuffle` ran.
    contaminant
        For contaminated samples: index -> ``(n_rows,)`` genotypes (0/1/2) of the contaminating
        DNA (a person outside every cohort).
    """

    site: str
    rows: np.ndarray
    haps: np.ndarray
    samples: list[Sample]
    contaminant: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def dosage(self) -> np.ndarray:
        """Return true ALT-allele counts, ``(n_rows, n_samples)`` int8."""
        return (self.haps[:, 0::2] + self.haps[:, 1::2]).astype(np.int8)

    def shuffle(self, rng: np.random.Generator) -> None:
        """Put samples in random order and name them ``<site><5 digits>`` in that order."""
        order = rng.permutation(self.n)
        new_index = np.empty(self.n, dtype=np.int64)
        new_index[order] = np.arange(self.n)
        cols = np.stack([2 * order, 2 * order + 1], axis=1).reshape(-1)
        self.haps = np.ascontiguousarray(self.haps[:, cols])
        samples = [self.samples[i] for i in order]
        for s in samples:
            if s.partner is not None:
                s.partner = int(new_index[s.partner])
        self.samples = samples
        self.contaminant = {int(new_index[i]): g for i, g in self.contaminant.items()}
        for i, s in enumerate(self.samples):
            s.iid = f"{self.site}{i + 1:05d}"


def meiosis(h0: np.ndarray, h1: np.ndarray, cm: np.ndarray, rng: np.random.Generator):
    """Return a gamete: a mosaic of haplotypes ``h0``/``h1`` with Poisson crossovers along ``cm``.

    Parameters
    ----------
    h0, h1
        ``(n_rows,)`` parental haplotypes.
    cm
        ``(n_rows,)`` increasing genetic positions in centimorgans.
    """
    n_cross = rng.poisson((cm[-1] - cm[0]) / 100.0)
    points = np.sort(rng.uniform(cm[0], cm[-1], size=n_cross))
    start = rng.integers(2)
    parity = (np.searchsorted(points, cm) + start) % 2
    return np.where(parity == 0, h0, h1)


class SparePool:
    """Individuals outside the panel and all cohorts: parents of relatives, contaminants."""

    def __init__(self, by_pop: dict[str, list[int]]) -> None:
        self.by_pop = {p: list(v) for p, v in by_pop.items()}

    def take(self, pop: str, *, what: str) -> int:
        if not self.by_pop.get(pop):
            raise SimulationError(
                f"no spare {pop} individual left for {what}; raise spares_per_population"
            )
        return self.by_pop[pop].pop()

    def take_any(self, rng: np.random.Generator, *, what: str) -> int:
        pops = sorted(p for p, v in self.by_pop.items() if v)
        if not pops:
            raise SimulationError(f"no spare individual left for {what}")
        return self.take(pops[int(rng.integers(len(pops)))], what=what)


def build_cohort(
    site: str,
    *,
    genome_haps: np.ndarray,
    cm: np.ndarray,
    locus: np.ndarray,
    population: np.ndarray,
    individuals: np.ndarray,
    rows: np.ndarray,
    spares: SparePool,
    scale: Scale,
    rng: np.random.Generator,
) -> Cohort:
    """Assemble a site's cohort with relatives, duplicates and sample QC failures.

    Parameters
    ----------
    site
        Site name.
    genome_haps
        ``(n_variants, 2 * n_individuals)`` haplotypes of the whole simulation.
    cm
        ``(n_variants,)`` genetic positions.
    locus
        ``(n_variants,)`` coalescent locus of each variant, -1 for background SNPs.
    population
        ``(n_individuals,)`` population names.
    individuals
        Indices of the cohort's unrelated founders.
    rows
        Variant rows the site needs (array markers and causal variants), increasing.
    spares
        Pool of individuals used only as unobserved parents and contaminants.
    scale
        Numbers of injected failures.
    rng
        Random source.
    """
    cols = np.stack([2 * individuals, 2 * individuals + 1], axis=1).reshape(-1)
    sub = genome_haps[rows]
    cm_rows = cm[rows]
    columns = [sub[:, c] for c in cols]
    samples = [Sample(population=str(population[i])) for i in individuals]
    unused = list(rng.permutation(len(samples)))

    def pick() -> int:
        if not unused:
            raise SimulationError(f"site {site}: too few samples to inject QC failures")
        return int(unused.pop())

    def spare_haps(idx: int) -> tuple[np.ndarray, np.ndarray]:
        return sub[:, 2 * idx], sub[:, 2 * idx + 1]

    def add(h0: np.ndarray, h1: np.ndarray, sample: Sample) -> int:
        columns.extend([h0, h1])
        samples.append(sample)
        return len(samples) - 1

    for k in range(scale.related_pairs):
        if k % 2 == 0:
            parent = pick()
            mate = spares.take(samples[parent].population, what=f"site {site} parent")
            child = add(
                meiosis(columns[2 * parent], columns[2 * parent + 1], cm_rows, rng),
                meiosis(*spare_haps(mate), cm_rows, rng),
                Sample(samples[parent].population, kind="offspring", partner=parent),
            )
            samples[parent].kind, samples[parent].partner = "parent", child
        else:
            # A sibling pair of one of the site's ancestries, in proportion to its founders.
            pop = samples[int(rng.integers(len(individuals)))].population
            father = spares.take(pop, what=f"site {site} sibling parent")
            mother = spares.take(pop, what=f"site {site} sibling parent")
            first = add(
                meiosis(*spare_haps(father), cm_rows, rng),
                meiosis(*spare_haps(mother), cm_rows, rng),
                Sample(pop, kind="sibling"),
            )
            second = add(
                meiosis(*spare_haps(father), cm_rows, rng),
                meiosis(*spare_haps(mother), cm_rows, rng),
                Sample(pop, kind="sibling", partner=first),
            )
            samples[first].partner = second
    for _ in range(scale.duplicates):
        orig = pick()
        add(
            columns[2 * orig].copy(),
            columns[2 * orig + 1].copy(),
            Sample(samples[orig].population, kind="duplicate", partner=orig),
        )
    contaminant: dict[int, np.ndarray] = {}
    for _ in range(scale.contaminated):
        victim = pick()
        other = spares.take_any(rng, what=f"site {site} contamination")
        h0, h1 = spare_haps(other)
        contaminant[victim] = (h0 + h1).astype(np.int8)
        samples[victim].qc = "contaminated"
    row_locus = locus[rows]
    n_loci = int(locus.max()) + 1
    for _ in range(scale.autozygous):
        idx = pick()
        ibd_locus = rng.random(n_loci) < AUTOZYGOUS_SHARE
        ibd = np.where(
            row_locus >= 0, ibd_locus[row_locus], rng.random(rows.size) < AUTOZYGOUS_SHARE
        )
        columns[2 * idx + 1] = np.where(ibd, columns[2 * idx], columns[2 * idx + 1])
        samples[idx].qc = "autozygous"
    for _ in range(scale.low_call_rate):
        samples[pick()].qc = "low_call_rate"

    haps = np.ascontiguousarray(np.stack(columns, axis=1))
    cohort = Cohort(site=site, rows=rows, haps=haps, samples=samples, contaminant=contaminant)
    cohort.shuffle(rng)
    return cohort
