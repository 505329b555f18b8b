"""The truth file (``truth.json``): what a correct analysis of the simulated federation finds.

Top-level keys: ``fedgen_truth`` (format version 1), ``seed``, ``scale``, ``model`` (simulator,
demography, rates, how loci/background/map were made), ``region`` (assembly, loci and variant
counts: one chromosome gives ``chrom`` and ``loci``, several a ``chromosomes`` list of
``chrom``, ``length``, ``loci`` and counts), ``reference_panel`` (counts per population), ``array`` (design, error rates),
``causal_variants`` (id, chrom, pos, ref, alt, beta and liability_beta per ALT allele,
variance_explained, alt_freq per site and in the panel, best tag r2), ``phenotype_model`` and
``sites`` (per site: counts, populations, DUO codes, the allele-coding fault, and ``injected``:
duplicates, related_pairs, contaminated, autozygous, heterozygosity_outliers, low_call_rate,
high_missingness, hwe_failure, strand_flipped, ref_alt_swapped) and ``clinical_model``: the
risk-factor and CVD event model of :mod:`~snakemake_fedgen.simulate.clinical` (``features``
with centre, unit and log-odds, ``site_intercepts``, the genetic effects ``causal`` and
``polygenic`` with their centring panel frequencies, follow-up, and per site the drawn counts
and event rate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.simulate import genomes as gen
from snakemake_fedgen.simulate.array import SITE_PROBE_FAILURE
from snakemake_fedgen.simulate.chromosomes import GRCH38_LENGTHS
from snakemake_fedgen.simulate.registry import SITE_DUO
from snakemake_fedgen.simulate.scales import SITE_BATCH

if TYPE_CHECKING:
    from snakemake_fedgen.simulate.clinical import GeneticEffect
    from snakemake_fedgen.simulate.federation import Federation

#: Expected KING-robust kinship coefficients of the injected pairs.
KINSHIP = {"duplicate": 0.5, "parent-offspring": 0.25, "siblings": 0.25}


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """Write ``truth`` as stable, sorted JSON (byte-identical for the same seed and scale)."""
    write_text_atomic(path, json.dumps(truth, indent=2, sort_keys=True) + "\n")


def read_truth(path: Path) -> dict[str, Any]:
    """Read a ``truth.json`` written by :func:`write_truth`."""
    return json.loads(Path(path).read_text())


def _variant(fed: Federation, row: int, *, site: str | None = None) -> dict[str, Any]:
    g = fed.genomes
    ref, alt = str(g.ref[row]), str(g.alt[row])
    if site is not None:  # alleles as written in the site's VCF (after flips/swaps)
        calls = fed.calls[site]
        k = int(np.searchsorted(calls.rows, row))
        ref, alt = str(calls.ref[k]), str(calls.alt[k])
    return {
        "id": fed.ids[row],
        "chrom": str(g.chrom[row]),
        "pos": int(g.pos[row]),
        "ref": ref,
        "alt": alt,
    }


def _region(fed: Federation) -> dict[str, Any]:
    """Where the variants lie: one chromosome keeps the original flat layout (``chrom``,
    ``loci``); several list each under ``chromosomes`` with its length, loci and counts."""
    g, sc = fed.genomes, fed.scale

    def loci(chrom: str) -> list[dict[str, int]]:
        starts = g.locus_start[g.locus_chrom == chrom]
        return [{"start": int(st), "end": int(st + sc.locus_bp - 1)} for st in starts.tolist()]

    names = list(dict.fromkeys(g.locus_chrom.tolist()))
    totals = {
        "n_locus_variants": int((g.locus >= 0).sum()),
        "n_background_snps": int((g.locus < 0).sum()),
    }
    if len(names) == 1:
        return {"chrom": names[0], "assembly": "GRCh38", "loci": loci(names[0]), **totals}
    per_chrom = [
        {
            "chrom": c,
            "length": GRCH38_LENGTHS[c],
            "loci": loci(c),
            "n_locus_variants": int(((g.chrom == c) & (g.locus >= 0)).sum()),
            "n_background_snps": int(((g.chrom == c) & (g.locus < 0)).sum()),
        }
        for c in names
    ]
    return {"assembly": "GRCh38", "chromosomes": per_chrom, **totals}


def build_truth(
    fed: Federation,
    *,
    seed: int,
    tag_r2: dict[int, float],
    threshold: float,
    panel_missing: float,
) -> dict[str, Any]:
    """Return the ``truth.json`` mapping of a simulated federation (see the module doc).

    Parameters
    ----------
    fed
        The simulated federation.
    seed
        Its seed.
    tag_r2
        Best r2 between each causal variant (by row) and an array marker.
    threshold
        Liability threshold of the binary trait.
    panel_missing
        Share of array markers left out of the panel.
    """
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
        "region": _region(fed),
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
            f"random {panel_missing:.0%} of the markers",
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


def clinical_truth(fed: Federation, *, causal_effects: list[GeneticEffect]) -> dict[str, Any]:
    """The ``clinical_model`` entry: the true CVD model and what was drawn per site."""
    from snakemake_fedgen.simulate import clinical as cl

    def effects(items: list[GeneticEffect]) -> list[dict[str, Any]]:
        return [
            {**_variant(fed, e.row), "log_odds": e.log_odds, "panel_alt_freq": e.panel_freq}
            for e in items
        ]

    sites: dict[str, Any] = {}
    for s, c in fed.clinical.items():
        n = int(c.cvd.size)
        sites[s] = {
            "intercept": cl.INTERCEPT[s],
            "n_samples": n,
            "n_events": int((c.cvd == 2).sum()),
            "event_rate": round(float((c.cvd == 2).mean()), 4),
            "smoking_rate": round(float(c.smoking.mean()), 4),
            "diabetes_rate": round(float(c.diabetes.mean()), 4),
            "ldl_mean": round(float(c.ldl.mean()), 3),
            "sbp_mean": round(float(c.sbp.mean()), 2),
            "risk_factor_shifts": {
                "ldl": cl.LDL_SHIFT[s],
                "sbp": cl.SBP_SHIFT[s],
                "smoking_rate_parameter": cl.SMOKING[s],
                "diabetes_intercept": cl.DIABETES[s],
            },
        }
    return {
        "columns": {
            "ldl": "LDL cholesterol, mmol/L (2 decimals)",
            "sbp": "systolic blood pressure, mmHg (whole)",
            "smoking": "current smoker, 0/1",
            "diabetes": "diabetes mellitus, 0/1",
            "cvd": "incident cardiovascular event within the follow-up, 1 = no, 2 = yes",
            "cvd_followup_years": "years to the event, or to censoring (2 decimals)",
        },
        "risk_factors": {
            "ldl": "3.4 + ldl_shift + 0.15*(age-50)/10 + 0.85*z1, clipped 0.5-9",
            "sbp": "130 + sbp_shift + 5*(age-50)/10 + 3*male + 16*(0.2*z1 + sqrt(0.96)*z2), "
            "clipped 80-230",
            "smoking": "Bernoulli(expit(logit(smoking_rate_parameter) + 0.35*male "
            "- 0.25*(age-50)/10))",
            "diabetes": "Bernoulli(expit(diabetes_intercept + 0.45*(age-50)/10 + 0.30*male))",
        },
        "event": "P(cvd = 2) = expit(eta); eta = site intercept + sum(log_odds * (value - "
        "centre) / unit) + sum(genetic log_odds * (alt_count - 2 * panel_alt_freq))",
        "features": [
            {"name": name, "column": col, "centre": centre, "unit": unit, "log_odds": coef}
            for name, (col, centre, unit, coef) in cl.LOG_ODDS.items()
        ],
        "male": "sex == 1 (plink2 coding)",
        "site_intercepts": dict(cl.INTERCEPT),
        "genetics": {
            "causal": effects(causal_effects),
            "causal_log_odds": f"{cl.CAUSAL_LOG_ODDS_SCALE} * beta of qt",
            "polygenic": effects(fed.polygenic),
            "polygenic_variance": cl.POLYGENIC_VARIANCE,
            "polygenic_selection": f"{len(fed.polygenic)} array markers of every site, in the "
            f"panel, panel MAF >= {cl.POLYGENIC_MIN_MAF}, not palindromic, no injected QC "
            "failure; effects N(0,1) scaled to the panel variance",
        },
        "followup": {
            "censor_years": cl.CENSOR_YEARS,
            "event_time": "Weibull PH S(t) = exp(-(t/scale)^shape * exp(eta)) conditioned on "
            "t <= censor_years",
            "weibull_shape": cl.WEIBULL_SHAPE,
            "weibull_scale_years": cl.WEIBULL_SCALE_YEARS,
        },
        "sites": sites,
    }
