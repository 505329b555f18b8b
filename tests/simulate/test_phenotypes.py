"""Phenotypes: the causal variants really drive the traits, and PLINK 2 reads the table."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from snakemake_fedgen.simulate.federation import build_federation

SITES = ("A", "B", "C")
SEED = 7  # the seed of the ``tiny`` fixture


@pytest.fixture(scope="module")
def federation():
    return build_federation(seed=SEED, scale="tiny")


def _phenotypes(tiny: Path, site: str) -> pd.DataFrame:
    return pd.read_csv(tiny / f"sites/{site}/phenotypes.tsv", sep="\t", na_values="NA")


def test_build_federation__matches_the_written_truth(federation, truth):
    assert federation.truth == truth


def test_simulate__phenotype_table_has_the_contract_columns(tiny: Path, truth):
    for s in SITES:
        ph = _phenotypes(tiny, s)
        assert list(ph.columns)[:6] == ["#FID", "IID", "sex", "age", "qt", "bt"]
        assert len(ph) == truth["sites"][s]["n_samples"]
        assert set(ph["sex"]) == {1, 2}
        assert set(ph["bt"]) == {1, 2}
        assert ph["age"].between(18, 90).all()
        assert ph["qt"].isna().sum() == truth["sites"][s]["n_qt_missing"]
    cases = sum(truth["sites"][s]["n_cases"] for s in SITES)
    total = sum(truth["sites"][s]["n_samples"] for s in SITES)
    assert 0.25 < cases / total < 0.35


def test_simulate__strong_causal_variant_drives_qt(tiny: Path, federation, truth):
    strong = max(truth["causal_variants"], key=lambda c: c["variance_explained"])
    row = int(np.flatnonzero(federation.genomes.pos == strong["pos"])[0])
    xs, ys = [], []
    for s in SITES:
        cohort = federation.cohorts[s]
        k = int(np.searchsorted(cohort.rows, row))
        dosage = cohort.dosage()[k].astype(float)
        ph = _phenotypes(tiny, s)
        assert list(ph["IID"]) == [x.iid for x in cohort.samples]
        # Remove the site's mean: a plain regression with site as a fixed effect.
        ok = ph["qt"].notna().to_numpy()
        xs.append(dosage[ok] - dosage[ok].mean())
        ys.append(ph["qt"].to_numpy()[ok] - ph["qt"].to_numpy()[ok].mean())
        # ALT frequency at the site matches the truth file.
        assert dosage.mean() / 2 == pytest.approx(strong["alt_freq"][s], abs=1e-4)
    fit = stats.linregress(np.concatenate(xs), np.concatenate(ys))
    assert fit.pvalue < 5e-8
    assert abs(fit.slope - strong["beta"]) < 3 * fit.stderr


def test_simulate__causal_variants_are_in_the_panel_but_not_on_any_array(tiny: Path, truth):
    def positions(vcf: Path) -> set[int]:
        out = subprocess.run(
            ["bcftools", "query", "-f", "%POS\t%REF\t%ALT\n", str(vcf)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return {(int(p), r, a) for p, r, a in (line.split("\t") for line in out.splitlines())}

    panel = positions(tiny / "reference/panel.vcf.gz")
    arrays = [{p for p, _, _ in positions(tiny / f"sites/{s}/genotypes.vcf.gz")} for s in SITES]
    assert len(truth["causal_variants"]) == 3
    for c in truth["causal_variants"]:
        assert (c["pos"], c["ref"], c["alt"]) in panel
        assert all(c["pos"] not in a for a in arrays)
        assert c["max_r2_with_array_marker"] > 0.5  # imputable from the array


def test_simulate__plink2_reads_phenotypes_and_covariates(tiny: Path, tmp_path: Path, truth):
    subprocess.run(
        [
            # --double-id: FID = IID, as in the table (plink2 would otherwise leave FID unset).
            *("plink2", "--threads", "1", "--vcf", str(tiny / "sites/A/genotypes.vcf.gz")),
            "--double-id",
            *("--pheno", str(tiny / "sites/A/phenotypes.tsv"), "--pheno-name", "qt", "bt"),
            *("--covar", str(tiny / "sites/A/phenotypes.tsv"), "--covar-name", "sex", "age"),
            *("--glm", "hide-covar", "--covar-variance-standardize", "--maf", "0.05"),
            *("--out", "a"),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    qt = pd.read_csv(tmp_path / "a.qt.glm.linear", sep="\t")
    bt = pd.read_csv(tmp_path / "a.bt.glm.logistic.hybrid", sep="\t")
    n = truth["sites"]["A"]["n_samples"]
    assert qt["OBS_CT"].max() == n - truth["sites"]["A"]["n_qt_missing"]
    assert bt["OBS_CT"].max() == n
    assert len(qt) > 1000
