"""Simulate a whole federation: reference panel, three sites, registry and truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import SimulationError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.simulate import genomes as gen
from snakemake_fedgen.simulate.array import (
    SiteCalls,
    call_genotypes,
    design_backbone,
    site_markers,
)
from snakemake_fedgen.simulate.causal import choose_causal
from snakemake_fedgen.simulate.chromosomes import parse_chromosomes, split_sizes
from snakemake_fedgen.simulate.clinical import (
    CAUSAL_LOG_ODDS_SCALE,
    N_POLYGENIC,
    POLYGENIC_MIN_MAF,
    GeneticEffect,
    SiteClinical,
    genetic_log_odds,
    polygenic_effects,
    simulate_clinical,
)
from snakemake_fedgen.simulate.cohort import Cohort, SparePool, build_cohort
from snakemake_fedgen.simulate.phenopackets import write_phenopackets
from snakemake_fedgen.simulate.phenotypes import (
    CausalVariant,
    SitePhenotypes,
    assign_cases,
    phenotype_table,
    simulate_phenotypes,
)
from snakemake_fedgen.simulate.registry import site_dir, write_registry
from snakemake_fedgen.simulate.scales import SITE_BATCH, SITE_NAMES, Scale, get_scale
from snakemake_fedgen.simulate.truth import build_truth, clinical_truth, write_truth
from snakemake_fedgen.simulate.vcf import write_plink_map, write_vcf

#: Share of array markers the reference panel lacks (failed the panel's own QC).
PANEL_MISSING_MARKERS = 0.01
#: Independent random streams (SeedSequence children, by position): new ones go at the end, so
#: the earlier ones, and every output drawn from them, stay the same for a seed.
_STREAMS = ("genomes", "design", "causal", "ids", "sites", "polygenic", "clinical")


@dataclass
class Federation:
    """Everything simulated, in memory (tests use it to check outputs against true genotypes)."""

    scale: Scale
    genomes: gen.Genomes
    ids: list[str]
    panel: np.ndarray  # individual indices
    in_panel: np.ndarray  # (n_variants,) bool: the variant is in the panel VCF
    backbone: np.ndarray
    causal: list[CausalVariant]
    cohorts: dict[str, Cohort]
    calls: dict[str, SiteCalls]
    phenotypes: dict[str, SitePhenotypes]
    truth: dict[str, Any]
    clinical: dict[str, SiteClinical] = field(default_factory=dict)
    polygenic: list[GeneticEffect] = field(default_factory=list)


def _cvd_genetics(
    g: gen.Genomes,
    *,
    causal: list[CausalVariant],
    calls: dict[str, SiteCalls],
    in_panel: np.ndarray,
    panel_cols: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[GeneticEffect], list[GeneticEffect]]:
    """The causal variants' and the polygenic background's effects on the CVD event.

    Background candidates are array markers of every site that the panel holds, common in the
    panel (MAF >= POLYGENIC_MIN_MAF), not palindromic, not causal and not injected QC failures;
    :data:`N_POLYGENIC` of them (all, if fewer) are drawn at random, so they spread over the
    chromosomes in proportion to their markers.
    """
    common = calls[SITE_NAMES[0]].rows
    for s in SITE_NAMES[1:]:
        common = np.intersect1d(common, calls[s].rows)
    injected = ("high_missingness", "hwe_failure")
    bad = [r for c in calls.values() for k in injected for r in c.injected.get(k, [])]
    rows = common[
        in_panel[common]
        & ~gen.is_palindromic(g.ref[common], g.alt[common])
        & ~np.isin(common, [c.row for c in causal])
        & ~np.isin(common, bad)
    ]

    def panel_freq(r: np.ndarray) -> np.ndarray:
        # A block of rows at a time: a gather of every candidate row would copy gigabytes at
        # the genome scale.
        out = np.empty(r.size)
        for lo in range(0, r.size, 2048):
            out[lo : lo + 2048] = g.haps[r[lo : lo + 2048]][:, panel_cols].mean(axis=1)
        return out.round(6)

    freq = panel_freq(rows)
    rows = rows[np.minimum(freq, 1 - freq) >= POLYGENIC_MIN_MAF]
    chosen = np.sort(rng.permutation(rows)[:N_POLYGENIC])

    p_bg = panel_freq(chosen)
    background = [
        GeneticEffect(row=int(r), log_odds=float(b), panel_freq=float(p))
        for r, b, p in zip(chosen, polygenic_effects(p_bg, rng=rng), p_bg, strict=True)
    ]
    p_causal = panel_freq(np.array([c.row for c in causal]))
    major = [
        GeneticEffect(
            row=c.row, log_odds=round(CAUSAL_LOG_ODDS_SCALE * c.beta, 6), panel_freq=float(p)
        )
        for c, p in zip(causal, p_causal, strict=True)
    ]
    return major, background


def _allocate(
    population: np.ndarray, scale: Scale, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray], SparePool]:
    pools = {
        p: list(rng.permutation(np.flatnonzero(population == p))) for p in sorted(set(population))
    }

    def take(pop: str, n: int) -> list[int]:
        got, pools[pop] = pools[pop][:n], pools[pop][n:]
        return got

    panel = np.sort([i for pop, n in scale.panel.items() for i in take(pop, n)])
    sites = {
        s: np.sort([i for pop, n in comp.items() for i in take(pop, n)])
        for s, comp in scale.sites.items()
    }
    return panel, sites, SparePool({p: sorted(v) for p, v in pools.items()})


def _rsids(n: int, rng: np.random.Generator) -> list[str]:
    numbers = 1_000_000 + np.cumsum(rng.integers(1, 400, size=n))
    return [f"rs{x}" for x in rng.permutation(numbers).tolist()]


def build_federation(
    *, seed: int, scale: str = "tiny", chromosomes: Sequence[str] | None = None
) -> Federation:
    """Simulate a federation in memory (no files): see :func:`simulate`."""
    sc = get_scale(scale)
    if seed < 0:
        raise SimulationError(f"seed must be a non-negative integer; got seed={seed}")
    chroms = parse_chromosomes(",".join(sc.chromosomes if chromosomes is None else chromosomes))
    loci, background = split_sizes(chroms, n_loci=sc.n_loci, n_background=sc.n_background)
    streams = dict(
        zip(
            _STREAMS,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS))),
            strict=True,
        )
    )
    counts: dict[str, int] = {}
    for comp in [sc.panel, *sc.sites.values()]:
        for pop, n in comp.items():
            counts[pop] = counts.get(pop, 0) + n
    for pop in ("AFR", "EUR", "ASIA", "ADMIX"):
        counts[pop] = counts.get(pop, 0) + sc.spares_per_population
    g = gen.simulate_genomes(
        counts,
        chromosomes=chroms,
        n_loci=loci,
        locus_bp=sc.locus_bp,
        n_background=background,
        rng=streams["genomes"],
    )

    rng = streams["design"]
    panel, founders, spares = _allocate(g.population, sc, rng)
    panel_cols = np.stack([2 * panel, 2 * panel + 1], axis=1).reshape(-1)
    site_cols = {s: np.stack([2 * f, 2 * f + 1], axis=1).reshape(-1) for s, f in founders.items()}
    panel_ac = g.haps[:, panel_cols].sum(axis=1)
    panel_poly = (panel_ac > 0) & (panel_ac < panel_cols.size)
    design_cols = np.concatenate([panel_cols, *site_cols.values()])
    freq = gen.row_mean(g.haps, design_cols)
    # Every background SNP is array content; loci get a realistic share of common variants.
    rate = np.where(g.locus >= 0, sc.array_rate, 1.0)
    backbone = design_backbone(np.minimum(freq, 1 - freq), rate=rate, rng=rng)
    causal, tag_r2 = choose_causal(
        g,
        panel_poly=panel_poly,
        backbone=backbone,
        site_cols=site_cols,
        scale=sc,
        rng=streams["causal"],
    )
    ids = _rsids(g.n_variants, streams["ids"])
    # The panel lacks a few array markers (failed the panel's own QC), as real panels do:
    # the sites' alignment step must drop them.
    in_panel = panel_poly.copy()
    in_panel[backbone[rng.random(backbone.size) < PANEL_MISSING_MARKERS]] = False

    site_rngs = {
        s: np.random.default_rng(x)
        for s, x in zip(
            SITE_NAMES, streams["sites"].integers(0, 2**63 - 1, size=len(SITE_NAMES)), strict=True
        )
    }
    causal_rows = np.array([c.row for c in causal])
    cohorts: dict[str, Cohort] = {}
    calls: dict[str, SiteCalls] = {}
    phenos: dict[str, SitePhenotypes] = {}
    for s in SITE_NAMES:
        r = site_rngs[s]
        markers = site_markers(backbone, rng=r)
        rows = np.union1d(markers, causal_rows)
        cohorts[s] = build_cohort(
            s,
            genome_haps=g.haps,
            cm=g.cm,
            locus=g.locus,
            population=g.population,
            individuals=founders[s],
            rows=rows,
            spares=spares,
            scale=sc,
            rng=r,
        )
        calls[s] = call_genotypes(
            cohorts[s],
            markers,
            ref=g.ref,
            alt=g.alt,
            in_panel=in_panel,
            n_missing_variants=sc.bad_missingness,
            n_hwe_variants=sc.bad_hwe,
            batch=SITE_BATCH[s],
            batch_fraction=sc.batch_fraction,
            rng=r,
        )
        phenos[s] = simulate_phenotypes(cohorts[s], causal, rng=r)
    threshold = assign_cases(phenos)
    major, polygenic = _cvd_genetics(
        g,
        causal=causal,
        calls=calls,
        in_panel=in_panel,
        panel_cols=panel_cols,
        rng=streams["polygenic"],
    )
    clinical_rngs = {
        s: np.random.default_rng(x)
        for s, x in zip(
            SITE_NAMES,
            streams["clinical"].integers(0, 2**63 - 1, size=len(SITE_NAMES)),
            strict=True,
        )
    }
    clinical: dict[str, SiteClinical] = {}
    for s in SITE_NAMES:
        p = phenos[s]
        clinical[s] = simulate_clinical(
            s,
            age=p.age,
            sex=p.sex,
            genetic=genetic_log_odds(cohorts[s], major + polygenic),
            rng=clinical_rngs[s],
        )
        for i, x in enumerate(cohorts[s].samples):
            if x.kind == "duplicate" and x.partner is not None:
                clinical[s].copy_person(i, x.partner)
    fed = Federation(
        scale=sc,
        genomes=g,
        ids=ids,
        panel=panel,
        in_panel=in_panel,
        backbone=backbone,
        causal=causal,
        cohorts=cohorts,
        calls=calls,
        phenotypes=phenos,
        truth={},
        clinical=clinical,
        polygenic=polygenic,
    )
    fed.truth = build_truth(
        fed, seed=seed, tag_r2=tag_r2, threshold=threshold, panel_missing=PANEL_MISSING_MARKERS
    )
    fed.truth["clinical_model"] = clinical_truth(fed, causal_effects=major)
    # Every site holds a phenotype table until write_federation turns some into Phenopackets.
    fed.truth["phenopackets_sites"] = []
    return fed


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out} exists and is not a directory; choose a new path")
    if out.is_dir() and any(out.iterdir()) and not (out / "truth.json").exists():
        raise SimulationError(
            f"--out {out} is not empty and holds no earlier simulation (no truth.json); "
            "choose an empty or new directory"
        )


def simulate(
    out: Path,
    *,
    seed: int,
    scale: str = "tiny",
    chromosomes: Sequence[str] | None = None,
    base_port: int = 8101,
    phenopackets_sites: Sequence[str] = (),
) -> Federation:
    """Simulate a federation and write it under ``out``.

    Writes ``reference/panel.vcf.gz`` (+ ``.tbi``, phased), ``reference/panel_populations.tsv``,
    ``reference/genetic_map.map`` (PLINK map), per site ``sites/<S>/genotypes.vcf.gz`` (+ ``.tbi``,
    unphased array calls), ``sites/<S>/phenotypes.tsv``, ``sites/<S>/node.yaml`` and empty
    ``work/``/``egress/`` dirs, plus ``sites.yaml`` and ``truth.json``. Each VCF and the map
    cover every chromosome (one ``##contig`` each, in numeric order).

    Parameters
    ----------
    out
        Output directory (created; must be empty or hold an earlier simulation).
    seed
        Random seed; the same seed and scale give byte-identical files.
    scale
        A name in :data:`~snakemake_fedgen.simulate.scales.SCALES`; its loci and background
        SNPs are totals, spread over the chromosomes
        (:func:`~snakemake_fedgen.simulate.chromosomes.split_sizes`).
    chromosomes
        Autosome names in numeric order (``parse_chromosomes``); default the scale's own
        (chromosome 20 except for ``genome``).
    base_port
        Port of site A's node; B and C use the next two.
    phenopackets_sites
        Sites that also hold their phenotypes as Phenopacket v2 files
        (``sites/<S>/phenopackets/<IID>.json``); their registry ``phenotypes`` dataset is that
        folder (``format: phenopackets``). ``phenotypes.tsv`` is written for every site (the
        values the packets hold).
    """
    out = Path(out).resolve()
    _check_out_dir(out)
    if not 1 <= base_port <= 65533:
        raise SimulationError(f"--base-port must be in 1..65533; got {base_port}")
    unknown = sorted(set(phenopackets_sites) - set(SITE_NAMES))
    if unknown:
        raise SimulationError(
            f"--phenopackets-sites {','.join(unknown)}: no such site; sites are "
            f"{', '.join(SITE_NAMES)}"
        )
    fed = build_federation(seed=seed, scale=scale, chromosomes=chromosomes)
    g = fed.genomes
    ref_dir = out / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    panel_rows = np.flatnonzero(fed.in_panel)
    panel_ids = [f"REF{i + 1:05d}" for i in range(fed.panel.size)]
    h = g.haps[np.ix_(panel_rows, np.stack([2 * fed.panel, 2 * fed.panel + 1], axis=1).ravel())]
    write_vcf(
        ref_dir / "panel.vcf.gz",
        samples=panel_ids,
        chrom=g.chrom[panel_rows],
        pos=g.pos[panel_rows],
        ids=[fed.ids[r] for r in panel_rows.tolist()],
        ref=g.ref[panel_rows],
        alt=g.alt[panel_rows],
        codes=(2 * h[:, 0::2] + h[:, 1::2]).astype(np.uint8),
        phased=True,
        source="fedgen-simulate reference panel",
    )
    write_text_atomic(
        ref_dir / "panel_populations.tsv",
        "sample\tpopulation\n"
        + "".join(
            f"{sid}\t{pop}\n"
            for sid, pop in zip(panel_ids, g.population[fed.panel].tolist(), strict=True)
        ),
    )
    write_plink_map(ref_dir / "genetic_map.map", chrom=g.chrom, bp=g.map_bp, cm=g.map_cm)
    for s in SITE_NAMES:
        d = site_dir(out, s)
        d.mkdir(parents=True, exist_ok=True)
        calls = fed.calls[s]
        write_vcf(
            d / "genotypes.vcf.gz",
            samples=[x.iid for x in fed.cohorts[s].samples],
            chrom=g.chrom[calls.rows],
            pos=g.pos[calls.rows],
            ids=[fed.ids[r] for r in calls.rows.tolist()],
            ref=calls.ref,
            alt=calls.alt,
            codes=calls.calls,
            phased=False,
            source=f"fedgen-simulate site {s} array calls",
        )
        write_text_atomic(
            d / "phenotypes.tsv",
            phenotype_table(fed.cohorts[s], fed.phenotypes[s], fed.clinical[s]),
        )
        if s in phenopackets_sites:
            write_phenopackets(
                d / "phenopackets", fed.cohorts[s], fed.phenotypes[s], fed.clinical[s]
            )
    packets = sorted(set(phenopackets_sites))
    write_registry(out, base_port=base_port, phenopackets_sites=packets)
    fed.truth["phenopackets_sites"] = packets
    write_truth(out / "truth.json", fed.truth)
    return fed
