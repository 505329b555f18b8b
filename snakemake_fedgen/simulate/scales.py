"""Sizes of a simulated federation: region length, panel, sites and injected QC failures."""

from __future__ import annotations

from dataclasses import dataclass

from snakemake_executor_plugin_fedgen.errors import SimulationError

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
        ``tiny`` (tests), ``small`` or ``demo``.
    n_loci, locus_bp
        Long chunks of chromosome 20 holding the causal variants (realistic LD for imputation).
    n_background
        Independent common background SNPs between the loci (all on the array), so KING
        relatedness, LD pruning, heterozygosity and PCA behave as on a genome-wide array.
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

    @property
    def region_bp(self) -> int:
        """Total length of the coalescent loci in bp."""
        return self.n_loci * self.locus_bp


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
}


def get_scale(name: str) -> Scale:
    """Return the scale called ``name``; raise :class:`SimulationError` naming the choices."""
    try:
        return SCALES[name]
    except KeyError:
        raise SimulationError(
            f"unknown scale {name!r}; choose one of {', '.join(SCALES)}"
        ) from None
