"""Simulate a whole federation: reference panel, three sites, registry and truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snakemake_fedgen.errors import SimulationError
from snakemake_fedgen.simulate import genomes as gen
from snakemake_fedgen.simulate.array import (
    SITE_PROBE_FAILURE,
    SiteCalls,
    call_genotypes,
    design_backbone,
    site_markers,
)
from snakemake_fedgen.simulate.cohort import Cohort, SparePool, build_cohort
from snakemake_fedgen.simulate.phenotypes import (
    CausalVariant,
    SitePhenotypes,
    assign_cases,
    effect_sizes,
    phenotype_table,
    simulate_phenotypes,
)
from snakemake_fedgen.simulate.registry import SITE_DUO, site_dir, write_registry
from snakemake_fedgen.simulate.scales import SITE_NAMES, Scale, get_scale
from snakemake_fedgen.simulate.truth import KINSHIP, write_truth
from snakemake_fedgen.simulate.vcf import write_plink_map, write_text, write_vcf

#: Allele-coding fault injected per site (one site flips strands, another swaps REF/ALT).
SITE_BATCH = {"A": None, "B": "strand_flipped", "C": "ref_alt_swapped"}
#: Variance shares of the two weaker causal variants (the strong one's comes from the scale).
WEAK_SHARES = (0.015, 0.008)
TAG_WINDOW_BP = 100_000
PANEL_MISSING_MARKERS = 0.01
MIN_CAUSAL_SPACING_BP = 150_000
_STREAMS = ("genomes", "design", "causal", "ids", "sites")


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


def _max_r2(x: np.ndarray, ys: np.ndarray) -> float:
    """Largest squared correlation between dosage vector ``x`` and the rows of ``ys``."""
    if ys.shape[0] == 0:
        return 0.0
    x = x - x.mean()
    y = ys - ys.mean(axis=1, keepdims=True)
    denom = np.sqrt((x * x).sum() * (y * y).sum(axis=1))
    r = np.divide(y @ x, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(np.max(r * r))


def _choose_causal(
    g: gen.Genomes,
    *,
    panel_poly: np.ndarray,
    backbone: np.ndarray,
    site_cols: dict[str, np.ndarray],
    scale: Scale,
    rng: np.random.Generator,
) -> tuple[list[CausalVariant], dict[int, float]]:
    """Pick one strong and two weaker causal variants and give them effects.

    Candidates are panel variants off the array, not palindromic, in a locus away from its
    edges; the strong one is common at every site, and each is preferably tagged by an array
    marker (r2 >= 0.8 / 0.6) so imputation can recover it. Returns the variants and their
    best tag r2.
    """
    all_cols = np.sort(np.concatenate(list(site_cols.values())))
    on_array = np.zeros(g.n_variants, dtype=bool)
    on_array[backbone] = True
    base = panel_poly & ~on_array & ~gen.is_palindromic(g.ref, g.alt)
    site_maf = np.stack(
        [np.minimum(f, 1 - f) for f in (g.haps[:, c].mean(axis=1) for c in site_cols.values())]
    ).min(axis=0)
    pooled = g.haps[:, all_cols].mean(axis=1)
    pooled_maf = np.minimum(pooled, 1 - pooled)
    # In a long locus and away from its edges, so imputation has flanking markers.
    offset = g.pos - g.locus_start[np.maximum(g.locus, 0)]
    edge = (g.locus >= 0) & (offset > 0.2 * scale.locus_bp) & (offset < 0.8 * scale.locus_bp)
    cache: dict[int, np.ndarray] = {}  # pooled founder dosages, only for rows looked at

    def dosage(rows: np.ndarray) -> np.ndarray:
        for r in rows.tolist():
            if r not in cache:
                h = g.haps[r, all_cols]
                cache[r] = (h[0::2] + h[1::2]).astype(float)
        return np.array([cache[r] for r in rows.tolist()])

    chosen: list[int] = []
    r2: dict[int, float] = {}
    specs = [(0.15, 0.8, scale.h2_strong), (0.05, 0.6, WEAK_SHARES[0]), (0.05, 0.6, WEAK_SHARES[1])]
    for k, (min_maf, min_r2, _) in enumerate(specs):
        ok = base & edge & ((site_maf if k == 0 else pooled_maf) >= min_maf)
        for c in chosen:
            ok &= np.abs(g.pos - g.pos[c]) >= MIN_CAUSAL_SPACING_BP
        candidates = rng.permutation(np.flatnonzero(ok))[:400]
        best, best_r2 = None, -1.0
        for c in candidates.tolist():
            near = backbone[
                (g.locus[backbone] == g.locus[c])
                & (np.abs(g.pos[backbone] - g.pos[c]) <= TAG_WINDOW_BP)
            ]
            d = dosage(np.concatenate([[c], near]).astype(np.int64))
            value = _max_r2(d[0], d[1:])
            if value > best_r2:
                best, best_r2 = c, value
            if value >= min_r2:
                break
        if best is None:
            raise SimulationError(
                f"no candidate causal variant with MAF >= {min_maf}; the region is too small"
            )
        chosen.append(best)
        r2[best] = best_r2
    freqs = [float(pooled[c]) for c in chosen]
    shares = [s[2] for s in specs]
    betas = effect_sizes(freqs, shares, rng=rng)
    causal = [
        CausalVariant(row=c, beta=b, variance_explained=h)
        for c, b, h in zip(chosen, betas, shares, strict=True)
    ]
    return sorted(causal, key=lambda c: c.row), r2


def _rsids(n: int, rng: np.random.Generator) -> list[str]:
    numbers = 1_000_000 + np.cumsum(rng.integers(1, 400, size=n))
    return [f"rs{x}" for x in rng.permutation(numbers).tolist()]


def build_federation(*, seed: int, scale: str = "tiny") -> Federation:
    """Simulate a federation in memory (no files): see :func:`simulate`."""
    sc = get_scale(scale)
    if seed < 0:
        raise SimulationError(f"seed must be a non-negative integer; got seed={seed}")
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
        n_loci=sc.n_loci,
        locus_bp=sc.locus_bp,
        n_background=sc.n_background,
        rng=streams["genomes"],
    )

    rng = streams["design"]
    panel, founders, spares = _allocate(g.population, sc, rng)
    panel_cols = np.stack([2 * panel, 2 * panel + 1], axis=1).reshape(-1)
    site_cols = {s: np.stack([2 * f, 2 * f + 1], axis=1).reshape(-1) for s, f in founders.items()}
    panel_ac = g.haps[:, panel_cols].sum(axis=1)
    panel_poly = (panel_ac > 0) & (panel_ac < panel_cols.size)
    design_cols = np.concatenate([panel_cols, *site_cols.values()])
    freq = g.haps[:, design_cols].mean(axis=1)
    # Every background SNP is array content; loci get a realistic share of common variants.
    rate = np.where(g.locus >= 0, sc.array_rate, 1.0)
    backbone = design_backbone(np.minimum(freq, 1 - freq), rate=rate, rng=rng)
    causal, tag_r2 = _choose_causal(
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
    )
    fed.truth = _truth(fed, seed=seed, tag_r2=tag_r2, threshold=threshold)
    return fed


def _variant(fed: Federation, row: int, *, site: str | None = None) -> dict[str, Any]:
    g = fed.genomes
    ref, alt = str(g.ref[row]), str(g.alt[row])
    if site is not None:  # alleles as written in the site's VCF (after flips/swaps)
        calls = fed.calls[site]
        k = int(np.searchsorted(calls.rows, row))
        ref, alt = str(calls.ref[k]), str(calls.alt[k])
    return {"id": fed.ids[row], "chrom": gen.CHROM, "pos": int(g.pos[row]), "ref": ref, "alt": alt}


def _truth(
    fed: Federation,
    *,
    seed: int,
    tag_r2: dict[int, float],
    threshold: float,
) -> dict[str, Any]:
    import msprime
    import stdpopsim

    from snakemake_fedgen.simulate import phenotypes as ph

    g, sc = fed.genomes, fed.scale
    panel_cols = np.stack([2 * fed.panel, 2 * fed.panel + 1], axis=1).reshape(-1)
    causal = []
    for c in fed.causal:
        freq = {}
        for s, cohort in fed.cohorts.items():
            k = int(np.searchsorted(cohort.rows, c.row))
            freq[s] = round(float(cohort.haps[k].mean()), 4)
        freq["reference_panel"] = round(float(g.haps[c.row, panel_cols].mean()), 4)
        causal.append(
            {
                **_variant(fed, c.row),
                "beta": round(c.beta, 6),
                "liability_beta": round(c.liability_beta, 6),
                "variance_explained": c.variance_explained,
                "alt_freq": freq,
                "on_array": False,
                "max_r2_with_array_marker": round(tag_r2[c.row], 4),
            }
        )
    sites: dict[str, Any] = {}
    for s, cohort in fed.cohorts.items():
        smp = cohort.samples
        pheno = fed.phenotypes[s]
        calls = fed.calls[s]
        pops: dict[str, int] = {}
        for x in smp:
            pops[x.population] = pops.get(x.population, 0) + 1
        related = []
        for i, x in enumerate(smp):
            if x.kind in ("parent", "sibling") and x.partner is not None and i < x.partner:
                rel = "parent-offspring" if x.kind == "parent" else "siblings"
                related.append(
                    {
                        "iid1": x.iid,
                        "iid2": smp[x.partner].iid,
                        "relationship": rel,
                        "expected_kinship": KINSHIP[rel],
                    }
                )
            elif x.kind == "offspring" and x.partner is not None and i < x.partner:
                related.append(
                    {
                        "iid1": x.iid,
                        "iid2": smp[x.partner].iid,
                        "relationship": "parent-offspring",
                        "expected_kinship": KINSHIP["parent-offspring"],
                    }
                )
        injected = {
            "duplicates": [
                {
                    "original": smp[x.partner].iid,
                    "duplicate": x.iid,
                    "expected_kinship": KINSHIP["duplicate"],
                }
                for x in smp
                if x.kind == "duplicate"
            ],
            "related_pairs": sorted(related, key=lambda r: r["iid1"]),
            "contaminated": [x.iid for x in smp if x.qc == "contaminated"],
            "autozygous": [x.iid for x in smp if x.qc == "autozygous"],
            "heterozygosity_outliers": [
                x.iid for x in smp if x.qc in ("contaminated", "autozygous")
            ],
            "low_call_rate": [x.iid for x in smp if x.qc == "low_call_rate"],
        }
        for kind in ("high_missingness", "hwe_failure", "strand_flipped", "ref_alt_swapped"):
            injected[kind] = [_variant(fed, r, site=s) for r in calls.injected.get(kind, [])]
        in_panel = fed.in_panel[calls.rows]
        sites[s] = {
            "n_samples": cohort.n,
            "n_variants": int(calls.rows.size),
            "n_array_markers_not_in_panel": int((~in_panel).sum()),
            "populations": dict(sorted(pops.items())),
            "allele_coding_fault": SITE_BATCH[s],
            "duo": SITE_DUO[s],
            "n_cases": int((pheno.bt == 2).sum()),
            "n_controls": int((pheno.bt == 1).sum()),
            "n_qt_missing": int(np.isnan(pheno.qt).sum()),
            "injected": injected,
        }
    panel_pops: dict[str, int] = {}
    for p in g.population[fed.panel].tolist():
        panel_pops[p] = panel_pops.get(p, 0) + 1
    return {
        "fedgen_truth": 1,
        "seed": seed,
        "scale": sc.name,
        "model": {
            "simulator": f"msprime {msprime.__version__}",
            "demography": f"stdpopsim {stdpopsim.__version__} {gen.SPECIES}/{gen.MODEL}",
            "populations": ["AFR", "EUR", "ASIA", "ADMIX"],
            "mutation_rate": gen.MUTATION_RATE,
            "mean_recombination_rate": gen.MEAN_RECOMBINATION_RATE,
            "loci": "coalescent stretches (msprime) with a simulated hotspot recombination map, "
            "unlinked to each other; the causal variants lie in them",
            "background": "independent common SNPs between the loci with allele frequencies "
            "drawn from the loci's common variants per population; ADMIX individuals draw each "
            "allele from AFR/EUR/ASIA with their own Dirichlet admixture proportions",
            "genetic_map": "reference/genetic_map.map: the simulated map inside loci, "
            "1.2 cM/Mb between them (background SNPs are simulated unlinked)",
            "variants": "biallelic SNPs only (sites with one mutation); REF from a simulated "
            "reference-genome haplotype",
        },
        "region": {
            "chrom": gen.CHROM,
            "assembly": "GRCh38",
            "loci": [
                {"start": int(st), "end": int(st + sc.locus_bp - 1)}
                for st in g.locus_start.tolist()
            ],
            "n_locus_variants": int((g.locus >= 0).sum()),
            "n_background_snps": int((g.locus < 0).sum()),
        },
        "reference_panel": {
            "n_samples": int(fed.panel.size),
            "n_haplotypes": int(2 * fed.panel.size),
            "n_variants": int(fed.in_panel.sum()),
            "populations": dict(sorted(panel_pops.items())),
        },
        "array": {
            "backbone_markers": int(fed.backbone.size),
            "design": f"in the loci {sc.array_rate:.0%} of variants with pooled MAF >= 0.05 and "
            f"{sc.array_rate / 5:.0%} with 0.01 <= MAF < 0.05; every common background SNP; "
            f"each site's array lacks a random {SITE_PROBE_FAILURE:.0%}; the panel lacks a "
            f"random {PANEL_MISSING_MARKERS:.0%} of the markers",
            "missingness": 0.01,
            "error_rate": 0.001,
        },
        "causal_variants": causal,
        "phenotype_model": {
            "qt": "intercept + site_offset + ancestry_offset + age_effect*(age-50) "
            "+ female_effect*[sex==2] + sum(beta*alt_count) + N(0,1)",
            "intercept": ph.INTERCEPT,
            "age_effect": ph.AGE_EFFECT,
            "female_effect": ph.FEMALE_EFFECT,
            "site_offsets": ph.SITE_OFFSET,
            "ancestry_offsets": ph.ANCESTRY_OFFSET,
            "noise_sd": 1.0,
            "bt": "liability = 0.5*(site_offset+ancestry_offset) + covariates "
            "+ sum(liability_beta*alt_count) + N(0,1); case (2) if above the pooled threshold",
            "bt_prevalence": ph.PREVALENCE,
            "bt_threshold": round(threshold, 6),
            "qt_missing_rate": ph.QT_MISSING,
        },
        "sites": sites,
    }


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out} exists and is not a directory; choose a new path")
    if out.is_dir() and any(out.iterdir()) and not (out / "truth.json").exists():
        raise SimulationError(
            f"--out {out} is not empty and holds no earlier simulation (no truth.json); "
            "choose an empty or new directory"
        )


def simulate(out: Path, *, seed: int, scale: str = "tiny", base_port: int = 8101) -> Federation:
    """Simulate a federation and write it under ``out``.

    Writes ``reference/panel.vcf.gz`` (+ ``.tbi``, phased), ``reference/panel_populations.tsv``,
    ``reference/genetic_map.map`` (PLINK map), per site ``sites/<S>/genotypes.vcf.gz`` (+ ``.tbi``,
    unphased array calls), ``sites/<S>/phenotypes.tsv``, ``sites/<S>/node.yaml`` and empty
    ``work/``/``egress/`` dirs, plus ``sites.yaml`` and ``truth.json``.

    Parameters
    ----------
    out
        Output directory (created; must be empty or hold an earlier simulation).
    seed
        Random seed; the same seed and scale give byte-identical files.
    scale
        ``tiny``, ``small`` or ``demo``.
    base_port
        Port of site A's node; B and C use the next two.
    """
    out = Path(out).resolve()
    _check_out_dir(out)
    if not 1 <= base_port <= 65533:
        raise SimulationError(f"--base-port must be in 1..65533; got {base_port}")
    fed = build_federation(seed=seed, scale=scale)
    g = fed.genomes
    ref_dir = out / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    panel_rows = np.flatnonzero(fed.in_panel)
    panel_ids = [f"REF{i + 1:05d}" for i in range(fed.panel.size)]
    h = g.haps[panel_rows][:, np.stack([2 * fed.panel, 2 * fed.panel + 1], axis=1).reshape(-1)]
    write_vcf(
        ref_dir / "panel.vcf.gz",
        samples=panel_ids,
        pos=g.pos[panel_rows],
        ids=[fed.ids[r] for r in panel_rows.tolist()],
        ref=g.ref[panel_rows],
        alt=g.alt[panel_rows],
        codes=(2 * h[:, 0::2] + h[:, 1::2]).astype(np.uint8),
        phased=True,
        source="fedgen-simulate reference panel",
    )
    write_text(
        ref_dir / "panel_populations.tsv",
        "sample\tpopulation\n"
        + "".join(
            f"{sid}\t{pop}\n"
            for sid, pop in zip(panel_ids, g.population[fed.panel].tolist(), strict=True)
        ),
    )
    write_plink_map(ref_dir / "genetic_map.map", bp=g.map_bp, cm=g.map_cm)
    for s in SITE_NAMES:
        d = site_dir(out, s)
        d.mkdir(parents=True, exist_ok=True)
        calls = fed.calls[s]
        write_vcf(
            d / "genotypes.vcf.gz",
            samples=[x.iid for x in fed.cohorts[s].samples],
            pos=g.pos[calls.rows],
            ids=[fed.ids[r] for r in calls.rows.tolist()],
            ref=calls.ref,
            alt=calls.alt,
            codes=calls.calls,
            phased=False,
            source=f"fedgen-simulate site {s} array calls",
        )
        write_text(d / "phenotypes.tsv", phenotype_table(fed.cohorts[s], fed.phenotypes[s]))
    write_registry(out, base_port=base_port)
    write_truth(out / "truth.json", fed.truth)
    return fed
