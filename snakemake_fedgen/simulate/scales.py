"""Sizes of a simulated federation: loci, background SNPs, panel, sites and injected QC failures.

Loci and background SNPs are totals for the federation, spread over its chromosomes
(:func:`~snakemake_fedgen.simulate.chromosomes.split_sizes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.simulate.chromosomes import AUTOSOMES, DEFAULT_CHROMOSOMES

#: Site names, in registry order (ports base_port + 0, 1, 2).
SITE_NAMES: tuple[str, ...] = ("A", "B", "C")
#: Allele-coding fault injected per site (one site flips strands, another swaps REF/ALT).
SITE_BATCH: dict[str, str | None] = {"A": None, "B": "strand_flipped", "C": "ref_alt_swapped"}


@dataclass(frozen=True)
class Scale:
    """One simulation size.

    Attributes
    ----------
    name
        ``tiny`` (tests), ``small``, ``demo``, ``large`` or ``genome`` (benchmarks).
    n_loci, locus_bp
        Long chunks of chromosome holding the causal variants (realistic LD for imputation):
        ``n_loci`` in all, at least one per chromosome.
    n_background
        Independent common background SNPs between the loci (all on the array), so KING
        relatedness, LD pruning, heterozygosity and PCA behave as on a genome-wide array;
        in all, shared over the chromosomes in proportion to their length.
    array_rate
        Share of common (MAF >= 5%) locus variants on the array backbone.
    panel
        Reference-panel individuals per population (each contributes two haplotypes).
    sites
        Per site, clean (unrelated) individuals per population before QC failures are added.
    h2_strong
        Share of the phenotype's non-covariate variance explained by the strong causal variant;
        larger at small scales so that the causal variant stays genome-wide significant.
    duplicates, related_pairs, contaminated, autozygous, low_call_rate
        Injected sample-level QC failures per site.
    bad_missingness, bad_hwe
        Injected variant-level QC failures per site.
    chromosomes
        Chromosomes simulated when ``--chromosomes`` is not given.
    spares_per_population
        Individuals per population outside panel and sites: unobserved parents of injected
        relatives and contaminating DNA.
    """

    name: str
    n_loci: int
    locus_bp: int
    n_background: int
    array_rate: float
    panel: dict[str, int]
    sites: dict[str, dict[str, int]]
    h2_strong: float
    duplicates: int
    related_pairs: int
    contaminated: int
    autozygous: int
    low_call_rate: int
    bad_missingness: int
    bad_hwe: int
    spares_per_population: int = 20
    #: Fraction of a site's eligible array markers in the strand-flipped / REF-ALT-swapped batch.
    batch_fraction: float = 0.05
    chromosomes: tuple[str, ...] = DEFAULT_CHROMOSOMES

    @property
    def region_bp(self) -> int:
        """Total length of the coalescent loci in bp (one chromosome per locus at most)."""
        return max(self.n_loci, len(self.chromosomes)) * self.locus_bp

    @property
    def n_site_samples(self) -> int:
        """Unrelated site founders over all sites, before injected relatives and duplicates."""
        return sum(n for comp in self.sites.values() for n in comp.values())

    @property
    def n_panel(self) -> int:
        """Reference-panel individuals."""
        return sum(self.panel.values())

    def summary(self) -> str:
        """One line for ``--help``: people, chromosomes, loci and background SNPs."""
        chroms = self.chromosomes
        where = f"chr{chroms[0]}" if len(chroms) == 1 else f"chr{chroms[0]}-{chroms[-1]}"
        return (
            f"{self.name} ({self.n_site_samples:,} site samples, panel {self.n_panel:,}; "
            f"{self.n_loci} x {self.locus_bp // 1000} kb loci, {self.n_background:,} "
            f"background SNPs; default {where})"
        )


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        name="tiny",
        n_loci=3,
        locus_bp=100_000,
        n_background=3_000,
        array_rate=0.3,
        panel={"AFR": 100, "EUR": 120, "ASIA": 80},
        sites={
            "A": {"EUR": 200},
            "B": {"ADMIX": 90, "EUR": 60},
            "C": {"AFR": 70, "ASIA": 50},
        },
        h2_strong=0.12,
        duplicates=2,
        related_pairs=2,
        contaminated=2,
        autozygous=1,
        low_call_rate=2,
        bad_missingness=3,
        bad_hwe=3,
    ),
    "small": Scale(
        name="small",
        n_loci=5,
        locus_bp=200_000,
        n_background=8_000,
        array_rate=0.3,
        panel={"AFR": 300, "EUR": 350, "ASIA": 250},
        sites={
            "A": {"EUR": 500},
            "B": {"ADMIX": 220, "EUR": 130},
            "C": {"AFR": 150, "ASIA": 100},
        },
        h2_strong=0.06,
        duplicates=3,
        related_pairs=3,
        contaminated=2,
        autozygous=1,
        low_call_rate=3,
        bad_missingness=5,
        bad_hwe=5,
    ),
    "demo": Scale(
        name="demo",
        n_loci=6,
        locus_bp=250_000,
        n_background=12_000,
        array_rate=0.3,
        panel={"AFR": 500, "EUR": 600, "ASIA": 400},
        sites={
            "A": {"EUR": 1200},
            "B": {"ADMIX": 500, "EUR": 300},
            "C": {"AFR": 300, "ASIA": 200},
        },
        h2_strong=0.04,
        duplicates=5,
        related_pairs=4,
        contaminated=3,
        autozygous=2,
        low_call_rate=4,
        bad_missingness=8,
        bad_hwe=8,
    ),
    # Benchmarks: sizes of a mid-sized biobank site and a consortium, too slow for tests.
    "large": Scale(
        name="large",
        n_loci=8,
        locus_bp=250_000,
        n_background=20_000,
        array_rate=0.3,
        panel={"AFR": 700, "EUR": 1000, "ASIA": 800},
        sites={
            "A": {"EUR": 2500},
            "B": {"ADMIX": 900, "EUR": 600},
            "C": {"AFR": 600, "ASIA": 400},
        },
        h2_strong=0.02,
        duplicates=8,
        related_pairs=6,
        contaminated=4,
        autozygous=3,
        low_call_rate=6,
        bad_missingness=12,
        bad_hwe=12,
        spares_per_population=40,
    ),
    "genome": Scale(
        name="genome",
        n_loci=22,
        locus_bp=100_000,
        n_background=33_000,
        array_rate=0.3,
        panel={"AFR": 700, "EUR": 1000, "ASIA": 800},
        sites={
            "A": {"EUR": 8000},
            "B": {"ADMIX": 3000, "EUR": 2000},
            "C": {"AFR": 2500, "ASIA": 2000},
        },
        h2_strong=0.01,
        duplicates=20,
        related_pairs=16,
        contaminated=8,
        autozygous=6,
        low_call_rate=16,
        bad_missingness=30,
        bad_hwe=30,
        spares_per_population=100,
        chromosomes=AUTOSOMES,
    ),
}


def get_scale(name: str) -> Scale:
    """Return the scale called ``name``; raise :class:`SimulationError` naming the choices."""
    try:
        return SCALES[name]
    except KeyError:
        raise SimulationError(
            f"unknown scale {name!r}; choose one of {', '.join(SCALES)}"
        ) from None
