"""Clinical data and the incident CVD event: realistic, recoverable, and nothing else changed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from scipy import stats

from snakemake_fedgen.governance import phenopackets as pheno
from snakemake_fedgen.simulate import clinical as cl
from snakemake_fedgen.simulate.federation import build_federation
from snakemake_fedgen.simulate.phenotypes import AGE_MEAN, CLINICAL_COLUMNS

SITES = ("A", "B", "C")
SEED = 7
CONFIG = Path(__file__).parents[2] / "workflows/federated-gwas/config/config.yaml"
#: Digests of every pre-existing output of `fedgen simulate --seed 7 --phenopackets-sites C`
#: (tiny) and of `--seed 7 --chromosomes 22,20,21`, computed with the code before the clinical
#: data existed (commit 36c512a), new content stripped by :func:`_legacy_digest`. A change of
#: msprime/stdpopsim/htslib also changes them: re-pin from that commit, never from new code.
LEGACY_TINY_PP = ("6a1fa49716da3a6a9cc75bebad41fa9898df5ac435307336ef04bb4d8a9a3f55", 143)
LEGACY_TINY3 = ("5ed193b42e1ef99f5fa564006a7f4eba0fe74041c301db66a2392d606b08139c", 18)


def _legacy_digest(out: Path) -> tuple[str, int]:
    """One digest over every file as it was before the clinical data: phenotype tables cut to
    their first six columns, ``clinical_model`` dropped from the truth, packets without the new
    measurements, features, diseases and resources, node.yaml without its Beacon block, absolute
    paths replaced."""
    root = str(out.resolve()).encode()
    digests = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        data = p.read_bytes()
        if rel == "truth.json":
            t = json.loads(data)
            t.pop("clinical_model", None)
            data = json.dumps(t, sort_keys=True).encode()
        elif rel.endswith("phenotypes.tsv"):
            data = b"\n".join(b"\t".join(x.split(b"\t")[:6]) for x in data.splitlines())
        elif rel.endswith("node.yaml"):
            # The Beacon block came with issue 18 (every simulated node serves one).
            node = yaml.safe_load(data)
            node.pop("beacon", None)
            data = yaml.safe_dump(node, sort_keys=False).encode().replace(root, b"OUT")
        elif "/phenopackets/" in rel:
            j = json.loads(data)
            ms = [m for m in j.get("measurements", []) if m["assay"]["id"] == "LOINC:22748-8"]
            j.pop("measurements", None)
            if ms:
                j["measurements"] = ms
            j["phenotypicFeatures"] = [
                f for f in j["phenotypicFeatures"] if f["type"]["id"] == "HP:0000822"
            ]
            j.pop("diseases", None)
            res = j["metaData"]["resources"]
            j["metaData"]["resources"] = [r for r in res if r["id"] in ("hp", "loinc")]
            data = json.dumps(j, sort_keys=True).encode()
        else:
            data = data.replace(root, b"OUT")
        digests[rel] = hashlib.sha256(data).hexdigest()
    total = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    return total, len(digests)


@pytest.fixture(scope="module")
def tiny_pp(tmp_path_factory, simulate_cli) -> Path:
    """The tiny federation of seed 7 with site C as Phenopackets."""
    out = tmp_path_factory.mktemp("clin") / "sim"
    proc = simulate_cli(out, "--phenopackets-sites", "C", seed=SEED)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def federation():
    return build_federation(seed=SEED, scale="tiny")


@pytest.fixture(scope="module")
def large() -> dict[str, pd.DataFrame]:
    """60,000 people per site from the real clinical model, with a N(0, 0.4^2) genetic score."""
    out = {}
    for k, s in enumerate(SITES):
        rng = np.random.default_rng([2026, k])
        n = 60_000
        age = np.clip(rng.normal(AGE_MEAN[s], 10.0, size=n), 18, 90).round(1)
        sex = rng.integers(1, 3, size=n)
        g = rng.normal(0, 0.4, size=n)
        c = cl.simulate_clinical(s, age=age, sex=sex, genetic=g, rng=rng)
        out[s] = pd.DataFrame(
            {
                "site": s,
                "age": age,
                "sex": sex,
                "G": g,
                "ldl": c.ldl,
                "sbp": c.sbp,
                "smoking": c.smoking,
                "diabetes": c.diabetes,
                "cvd": c.cvd,
                "followup": c.followup,
            }
        )
    return out


def _table(out: Path, site: str) -> pd.DataFrame:
    return pd.read_csv(out / f"sites/{site}/phenotypes.tsv", sep="\t", na_values="NA")


def test_simulate__existing_outputs_unchanged(tiny_pp: Path, tiny3: Path):
    assert _legacy_digest(tiny_pp) == LEGACY_TINY_PP
    assert _legacy_digest(tiny3) == LEGACY_TINY3


def test_simulate__clinical_columns_follow_the_existing_ones(tiny_pp: Path, truth: dict):
    for s in SITES:
        t = _table(tiny_pp, s)
        assert list(t.columns) == ["#FID", "IID", "sex", "age", "qt", "bt", *CLINICAL_COLUMNS]
        assert not t[list(CLINICAL_COLUMNS)].isna().any().any()
        assert set(t["smoking"]) == set(t["diabetes"]) == {0, 1}
        assert set(t["cvd"]) == {1, 2}  # plink2 case/control, as bt
        assert (t["sbp"] == t["sbp"].round()).all()
        assert (t["ldl"] == t["ldl"].round(2)).all()
        events = t["cvd"] == 2
        assert (t.loc[~events, "cvd_followup_years"] == cl.CENSOR_YEARS).all()
        assert t.loc[events, "cvd_followup_years"].between(0.01, cl.CENSOR_YEARS).all()
        model = json.loads((tiny_pp / "truth.json").read_text())["clinical_model"]["sites"][s]
        assert model["n_events"] == events.sum()
        assert model["event_rate"] == round(events.mean(), 4)
        # A duplicate sample is the same person: the same clinical record.
        for d in truth["sites"][s]["injected"]["duplicates"]:
            rows = t.set_index("IID").loc[[d["original"], d["duplicate"]], list(CLINICAL_COLUMNS)]
            assert (rows.iloc[0] == rows.iloc[1]).all()


def test_simulate__plink2_gwas_inputs_unaffected_by_the_new_columns(tiny_pp: Path, tmp_path):
    # The workflow names its phenotype (--pheno-name) and covariates: plink2 reads the same
    # numbers from the wide table as from its first six columns.
    t = tiny_pp / "sites/A/phenotypes.tsv"
    narrow = tmp_path / "narrow.tsv"
    narrow.write_text(
        "".join("\t".join(x.split("\t")[:6]) + "\n" for x in t.read_text().split("\n")[:-1])
    )
    got = {}
    for name, table in (("wide", t), ("narrow", narrow)):
        subprocess.run(
            [
                *("plink2", "--threads", "1", "--vcf", str(tiny_pp / "sites/A/genotypes.vcf.gz")),
                *("--double-id", "--pheno", str(table), "--pheno-name", "bt"),
                *("--covar", str(table), "--covar-name", "sex", "age"),
                *("--glm", "hide-covar", "--covar-variance-standardize", "--maf", "0.05"),
                *("--out", name),
            ],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
        got[name] = (tmp_path / f"{name}.bt.glm.logistic.hybrid").read_text()
    assert got["wide"] == got["narrow"]


def test_clinical__distributions_and_correlations(large: dict[str, pd.DataFrame]):
    df = pd.concat(large.values())
    assert 3.2 < df["ldl"].mean() < 3.7 and 0.8 < df["ldl"].std() < 1.0
    assert 125 < df["sbp"].mean() < 136 and 15 < df["sbp"].std() < 19
    assert 0.17 < df["smoking"].mean() < 0.23
    assert 0.06 < df["diabetes"].mean() < 0.10
    assert 0.10 < (df["cvd"] == 2).mean() < 0.20
    # Rising with age; smoking site-specific (A < B < C); diabetes rising with age.
    assert np.corrcoef(df["age"], df["ldl"])[0, 1] > 0.1
    assert np.corrcoef(df["age"], df["sbp"])[0, 1] > 0.2
    smoking = {s: large[s]["smoking"].mean() for s in SITES}
    assert smoking["A"] < smoking["B"] < smoking["C"]
    old = df["age"] >= df["age"].median()
    assert df.loc[old, "diabetes"].mean() > 1.5 * df.loc[~old, "diabetes"].mean()
    # LDL and SBP correlate beyond age and sex by the model's residual correlation.
    x = np.column_stack([np.ones(len(df)), df["age"], df["sex"] == 1]).astype(float)
    res = [y - x @ np.linalg.lstsq(x, y, rcond=None)[0] for y in (df["ldl"], df["sbp"])]
    assert np.corrcoef(*res)[0, 1] == pytest.approx(cl.LDL_SBP_CORRELATION, abs=0.015)


def test_clinical__event_rate_per_site_in_range(tiny_pp: Path):
    model = json.loads((tiny_pp / "truth.json").read_text())["clinical_model"]
    rates = [model["sites"][s]["event_rate"] for s in SITES]
    assert all(0.05 < r < 0.30 for r in rates)
    n = sum(model["sites"][s]["n_samples"] for s in SITES)
    events = sum(model["sites"][s]["n_events"] for s in SITES)
    assert 0.10 < events / n < 0.20


def test_clinical__statsmodels_logit_recovers_the_truth_file(large, tiny_pp: Path):
    model = json.loads((tiny_pp / "truth.json").read_text())["clinical_model"]
    df = pd.concat(large.values(), ignore_index=True)
    cols = {}
    for s in SITES:
        cols[f"site_{s}"] = (df["site"] == s).astype(float)
    for f in model["features"]:
        x = (df["sex"] == 1).astype(float) if f["name"] == "male" else df[f["column"]]
        cols[f["name"]] = (x - f["centre"]) / f["unit"]
    cols["G"] = df["G"]
    fit = sm.Logit((df["cvd"] == 2).astype(float), pd.DataFrame(cols)).fit(disp=0)
    truth = {f"site_{s}": v for s, v in model["site_intercepts"].items()}
    truth |= {f["name"]: f["log_odds"] for f in model["features"]} | {"G": 1.0}
    z = (fit.params - pd.Series(truth)) / fit.bse
    assert (z.abs() < 4).all(), pd.DataFrame({"fit": fit.params, "truth": truth, "z": z})
    # The follow-up is consistent with the same predictor: events come earlier at higher risk.
    ev = df[df["cvd"] == 2]
    assert np.corrcoef(ev["G"] + 0.65 * ev["smoking"], ev["followup"])[0, 1] < 0


def test_clinical__event_times_follow_the_truncated_weibull(large, tiny_pp: Path):
    """Given an event, F(T | eta) / F(10 | eta) is uniform (eta from the truth file's numbers),
    checked with scipy's Kolmogorov-Smirnov test; the follow-up is 2-decimal years. (At 10-20%
    risks the timing within 10 years depends on eta only weakly, as under any proportional-hazards
    model: the test pins the shape; who has an event carries the predictor.)"""
    model = json.loads((tiny_pp / "truth.json").read_text())["clinical_model"]
    fu = model["followup"]
    df = pd.concat(large.values(), ignore_index=True)
    ev = df[df["cvd"] == 2]
    eta = ev["site"].map(model["site_intercepts"]) + ev["G"]
    for f in model["features"]:
        x = (ev["sex"] == 1).astype(float) if f["name"] == "male" else ev[f["column"]]
        eta = eta + f["log_odds"] * (x - f["centre"]) / f["unit"]

    def cdf(t):
        return 1 - np.exp(-((t / fu["weibull_scale_years"]) ** fu["weibull_shape"]) * np.exp(eta))

    u = cdf(ev["followup"]) / cdf(fu["censor_years"])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert ev["followup"].max() <= fu["censor_years"] and ev["followup"].min() >= 0.01
    assert (df.loc[df["cvd"] == 1, "followup"] == fu["censor_years"]).all()


def test_truth__rebuilds_every_linear_predictor(federation, tiny_pp: Path, tmp_path: Path):
    """truth.json + the tables + true genotypes give back each person's predictor exactly,
    and the recorded panel frequencies are plink2's on the written panel."""
    truth = json.loads((tiny_pp / "truth.json").read_text())
    model = truth["clinical_model"]
    g = federation.genomes
    effects = model["genetics"]["causal"] + model["genetics"]["polygenic"]
    assert len(model["genetics"]["polygenic"]) == cl.N_POLYGENIC
    rows = [int(np.flatnonzero((g.pos == e["pos"]) & (g.chrom == e["chrom"]))[0]) for e in effects]
    for s in SITES:
        t = _table(tiny_pp, s)
        cohort = federation.cohorts[s]
        d = cohort.dosage()[np.searchsorted(cohort.rows, rows)].astype(float)
        genetic = sum(
            e["log_odds"] * (d[k] - 2 * e["panel_alt_freq"]) for k, e in enumerate(effects)
        )
        eta = model["site_intercepts"][s] + genetic
        for f in model["features"]:
            x = (t["sex"] == 1).astype(float) if f["name"] == "male" else t[f["column"]]
            eta = eta + f["log_odds"] * (x.to_numpy() - f["centre"]) / f["unit"]
        np.testing.assert_allclose(eta, federation.clinical[s].eta, atol=1e-9)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{e['id']}\n" for e in effects))
    subprocess.run(
        ["plink2", "--threads", "1", "--vcf", str(tiny_pp / "reference/panel.vcf.gz"),
         "--extract", str(ids), "--freq", "--out", str(tmp_path / "panel")],
        check=True, capture_output=True,
    )  # fmt: skip
    freq = pd.read_csv(tmp_path / "panel.afreq", sep="\t").set_index("ID")
    assert len(freq) == len(effects)  # every effect variant is in the reference panel
    for e in effects:
        assert freq.loc[e["id"], "ALT"] == e["alt"]
        assert freq.loc[e["id"], "ALT_FREQS"] == pytest.approx(e["panel_alt_freq"], abs=1e-6)
    # The polygenic background is typed at every site.
    for s in SITES:
        out = subprocess.run(
            ["bcftools", "query", "-f", "%ID\n", str(tiny_pp / f"sites/{s}/genotypes.vcf.gz")],
            check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        assert {e["id"] for e in model["genetics"]["polygenic"]} <= set(out)


def test_truth__polygenic_background_spreads_over_chromosomes(truth3: dict):
    poly = truth3["clinical_model"]["genetics"]["polygenic"]
    per_chrom = pd.Series([e["chrom"] for e in poly]).value_counts()
    assert set(per_chrom.index) == {"20", "21", "22"}
    assert per_chrom.min() >= 30
    freq = np.array([e["panel_alt_freq"] for e in poly])
    beta = np.array([e["log_odds"] for e in poly])
    variance = np.sum(beta**2 * 2 * freq * (1 - freq))
    assert variance == pytest.approx(cl.POLYGENIC_VARIANCE, rel=1e-3)


def test_phenopackets__to_table_equals_the_table_site(tiny_pp: Path, tmp_path: Path):
    made = tmp_path / "C.tsv"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "phenopackets", "to-table",
         str(tiny_pp / "sites/C/phenopackets"), "--out", str(made), "--qt", "LOINC:22748-8",
         "--bt", "HP:0000822", "--columns", str(CONFIG)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "columns ldl, sbp, smoking, diabetes, cvd, cvd_followup_years" in proc.stderr
    table = (tiny_pp / "sites/C/phenotypes.tsv").read_text().splitlines()
    got = made.read_text().splitlines()
    # Text-identical but for qt, which the converter writes as %.6g (the table: 4 decimals).
    assert [x.split("\t")[:4] + x.split("\t")[5:] for x in got] == [
        x.split("\t")[:4] + x.split("\t")[5:] for x in table
    ]
    a = pd.read_csv(made, sep="\t", na_values="NA")
    b = pd.read_csv(tiny_pp / "sites/C/phenotypes.tsv", sep="\t", na_values="NA")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-12)
    # Events exist among the packets (the follow-up path from onset ages is exercised).
    assert (b["cvd"] == 2).sum() >= 5


def test_phenopackets__simulated_packets_are_valid(tiny_pp: Path):
    folder = tiny_pp / "sites/C/phenopackets"
    files = sorted(folder.glob("*.json"))
    assert files
    for path in files:
        p = pheno.read_phenopacket(path)  # protobuf schema; unknown fields are refused
        declared = {r.namespace_prefix for r in p.meta_data.resources}
        used = {m.assay.id for m in p.measurements} | {
            m.value.quantity.unit.id for m in p.measurements
        }
        used |= {f.type.id for f in p.phenotypic_features} | {d.term.id for d in p.diseases}
        assert {u.split(":")[0] for u in used} <= declared, path
        assays = {m.assay.id: m.value.quantity.unit.id for m in p.measurements}
        assert assays["LOINC:39469-2"] == "UCUM:mmol/L"
        assert assays["LOINC:8480-6"] == "UCUM:mm[Hg]"
        diseases = {d.term.id: d for d in p.diseases}
        assert set(diseases) == {"MONDO:0005015", "MONDO:0004995"}
        cvd = diseases["MONDO:0004995"]
        assert cvd.HasField("onset") != cvd.excluded


def test_simulate__clinical_data_same_seed_same_bytes(tiny_pp: Path, tmp_path, simulate_cli):
    again = tmp_path / "again"
    assert simulate_cli(again, "--phenopackets-sites", "C", seed=SEED).returncode == 0
    for rel in ["truth.json", *(f"sites/{s}/phenotypes.tsv" for s in SITES)]:
        assert (again / rel).read_bytes() == (tiny_pp / rel).read_bytes(), rel
    for p in (tiny_pp / "sites/C/phenopackets").glob("*.json"):
        assert (again / "sites/C/phenopackets" / p.name).read_bytes() == p.read_bytes()


def test_config__phenopackets_columns_match_what_simulate_writes():
    from snakemake_fedgen.simulate import phenopackets as sim

    columns = yaml.safe_load(CONFIG.read_text())["phenopackets"]["columns"]
    assert list(columns) == list(CLINICAL_COLUMNS)
    assert columns["ldl"]["assay"] == sim.LDL_ASSAY[0]
    assert columns["sbp"]["assay"] == sim.SBP_ASSAY[0]
    assert columns["smoking"]["terms"] == [sim.SMOKING_TERM[0]]
    assert columns["diabetes"]["terms"] == [sim.DIABETES_TERM[0]]
    assert columns["cvd"]["terms"] == columns["cvd_followup_years"]["onset_of"] == [sim.CVD_TERM[0]]
    assert columns["cvd_followup_years"]["censor_years"] == cl.CENSOR_YEARS
