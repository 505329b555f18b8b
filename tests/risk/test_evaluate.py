"""Federated evaluation: every pooled metric against an independent computation on pooled rows.

AUC against sklearn, Brier against sklearn, Nagelkerke R^2 against a pooled statsmodels Logit,
DeLong (co)variances against the paper's Mann-Whitney kernel written out here, NRI and decile
calibration against pandas on the pooled rows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, roc_auc_score
from snakemake_executor_plugin_fedgen.errors import SecureAggregationError, SiteDataError

from snakemake_fedgen.cli import main
from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.sums import add_sums, read_sums
from snakemake_fedgen.risk.evaluate import (
    BinSpec,
    EvalDesign,
    Predictions,
    count_sums,
    evaluate,
    placement_sums,
    read_summary,
    run_federated_evaluation,
    site_metrics,
    summarise_counts,
    write_summary,
)

SITES = ("A", "B", "C")
MODELS = ("clinical", "clinical_pgs")


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cohort(sizes=(700, 500, 400), seed=7) -> pd.DataFrame:
    """People at three sites: clinical factors, a score, an event; two pooled Logit fits."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, n, base in zip(SITES, sizes, (-2.6, -2.2, -2.9), strict=True):
        age = rng.normal(55, 8, n)
        sbp = rng.normal(130, 15, n) + 0.3 * (age - 55)
        smoke = rng.binomial(1, 0.25, n)
        pgs = rng.normal(0, 1, n)
        eta = base + 0.06 * (age - 55) + 0.02 * (sbp - 130) + 0.6 * smoke + 0.5 * pgs
        y = rng.binomial(1, _expit(eta))
        rows.append(pd.DataFrame({"site": s, "age": age, "sbp": sbp, "smoke": smoke, "pgs": pgs,
                                  "event": y}))  # fmt: skip
    df = pd.concat(rows, ignore_index=True)
    df["IID"] = [f"p{i}" for i in range(len(df))]
    for name, cols in (("clinical", ["age", "sbp", "smoke"]), ("clinical_pgs",
                                                               ["age", "sbp", "smoke", "pgs"])):  # fmt: skip
        fit = sm.Logit(df["event"], sm.add_constant(df[cols])).fit(disp=0)
        df[name] = fit.predict()
        df.attrs[name] = (fit.llf, fit.llnull)
    return df


def _preds(df: pd.DataFrame, models=MODELS) -> dict[str, Predictions]:
    return {
        s: Predictions(site=s, y=g["event"].to_numpy(), p={m: g[m].to_numpy() for m in models})
        for s, g in df.groupby("site", sort=False)
    }


def _quantise(df: pd.DataFrame, spec: BinSpec) -> pd.DataFrame:
    """Move each prediction to its bin's centre: distinct values <=> distinct bins (with ties)."""
    out = df.copy()
    for m in MODELS:
        idx = spec.index(out[m].to_numpy())
        out[m] = _expit(spec.lo + (idx + 0.5) * spec.width)
    return out


@pytest.fixture(scope="module")
def cohort():
    return _cohort()


@pytest.fixture(scope="module")
def keys():
    private = {s: X25519PrivateKey.generate() for s in SITES}
    return private, {s: secure.public_key_text(k) for s, k in private.items()}


def _direct_delong(y: np.ndarray, scores: list[np.ndarray]):
    """DeLong et al. (1988) from the Mann-Whitney kernel psi over all case x non-case pairs."""
    case = y == 1
    v10, v01 = [], []
    for s in scores:
        x, z = s[case][:, None], s[~case][None, :]
        psi = (x > z) + 0.5 * (x == z)  # shape (cases, non-cases)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    auc = np.array([v.mean() for v in v10])
    s10 = np.cov(np.vstack(v10))  # (k, k), denominator n_cases - 1
    s01 = np.cov(np.vstack(v01))
    return auc, s10 / case.sum() + s01 / (~case).sum()


# ---------------------------------------------------------------------------------------------


def test_auc__equals_sklearn_exactly_when_no_two_distinct_predictions_share_a_bin(cohort):
    spec = BinSpec()
    df = _quantise(cohort, spec)
    assert df["clinical"].duplicated().any()  # exact ties are there and must count half
    design = EvalDesign(MODELS, "clinical", bins=spec)
    result = run_federated_evaluation(_preds(df), design, min_n=20)
    for m in MODELS:
        expected = roc_auc_score(df["event"], df[m])
        assert result["models"][m]["auc"] == pytest.approx(expected, abs=1e-12)
        assert result["models"][m]["auc_bin_bound"] > 0  # a bound, not the error, here


def test_auc__within_the_stated_bound_when_bins_are_coarse(cohort):
    design = EvalDesign(MODELS, "clinical", bins=BinSpec(bins=40, lo=-6, hi=2))
    result = run_federated_evaluation(_preds(cohort), design, min_n=20)
    for m in MODELS:
        expected = roc_auc_score(cohort["event"], cohort[m])
        got, bound = result["models"][m]["auc"], result["models"][m]["auc_bin_bound"]
        assert got != pytest.approx(expected, abs=1e-6)  # coarse bins do change the AUC ...
        assert abs(got - expected) <= bound  # ... by no more than the published bound
        assert bound < 0.05
    # The default resolution on continuous predictions: the bound is small.
    fine = run_federated_evaluation(_preds(cohort), EvalDesign(MODELS, "clinical"), min_n=20)
    for m in MODELS:
        err = abs(fine["models"][m]["auc"] - roc_auc_score(cohort["event"], cohort[m]))
        assert err <= fine["models"][m]["auc_bin_bound"] < 2e-3


def test_masked__equals_plain_and_each_upload_is_noise(cohort, keys, tmp_path):
    private, public = keys
    design = EvalDesign(MODELS, "clinical")
    plain = run_federated_evaluation(_preds(cohort), design, min_n=20)
    masked = run_federated_evaluation(
        _preds(cohort), design, min_n=20, private_keys=private, public_keys=public,
        out_dir=tmp_path,
    )  # fmt: skip
    a = read_sums(tmp_path / "A.counts.json")
    assert a.masked and a.values is None
    for m in MODELS:
        for key in ("auc", "auc_se", "brier", "nagelkerke_r2"):
            assert masked["models"][m][key] == pytest.approx(plain["models"][m][key], abs=1e-9)
        for r1, r2 in zip(
            plain["calibration_deciles"][m], masked["calibration_deciles"][m], strict=True
        ):
            assert r1["n"] == r2["n"] and r1["observed"] == r2["observed"]
            if not r1["suppressed"]:
                assert r2["expected"] == pytest.approx(r1["expected"], abs=1e-8)
    c1, c2 = plain["comparisons"][0], masked["comparisons"][0]
    assert c2["delta_auc_se"] == pytest.approx(c1["delta_auc_se"], abs=1e-9)
    assert c2["nri"] == c1["nri"]


def test_brier_and_nagelkerke__match_sklearn_and_a_pooled_statsmodels_logit(cohort):
    result = run_federated_evaluation(_preds(cohort), EvalDesign(MODELS, "clinical"), min_n=20)
    n = len(cohort)
    for m in MODELS:
        got = result["models"][m]
        assert got["brier"] == pytest.approx(brier_score_loss(cohort["event"], cohort[m]), 1e-12)
        llf, llnull = cohort.attrs[m]
        cox_snell = 1 - math.exp(2 * (llnull - llf) / n)
        nagelkerke = cox_snell / (1 - math.exp(2 * llnull / n))
        assert got["loglik"] == pytest.approx(llf, rel=1e-10)
        assert got["nagelkerke_r2"] == pytest.approx(nagelkerke, rel=1e-8)
        # The fitted model is calibrated in the large on its own data.
        assert got["calibration_in_the_large"] == pytest.approx(0, abs=1e-6)


def test_delong__variances_and_ci_equal_the_direct_kernel_computation(cohort):
    spec = BinSpec()
    df = _quantise(cohort, spec)
    result = run_federated_evaluation(_preds(df), EvalDesign(MODELS, "clinical", bins=spec))
    auc, cov = _direct_delong(df["event"].to_numpy(), [df[m].to_numpy() for m in MODELS])
    for i, m in enumerate(MODELS):
        got = result["models"][m]
        assert got["auc"] == pytest.approx(auc[i], abs=1e-12)
        assert got["auc_se"] == pytest.approx(math.sqrt(cov[i, i]), rel=1e-9)
        se = math.sqrt(cov[i, i])
        assert got["auc_ci"] == pytest.approx([auc[i] - 1.959964 * se, auc[i] + 1.959964 * se])
    cmp = result["comparisons"][0]
    delta = auc[1] - auc[0]
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert cmp["delta_auc"] == pytest.approx(delta, abs=1e-12)
    assert cmp["delta_auc_se"] == pytest.approx(se, rel=1e-8)
    assert cmp["delta_auc_ci"] == pytest.approx([delta - 1.959964 * se, delta + 1.959964 * se])
    assert cmp["p"] == pytest.approx(2 * norm.sf(abs(delta / se)), rel=1e-8)
    assert cmp["delta_auc"] > 0 and cmp["p"] < 0.05  # the score adds to the clinical model


def test_nri__equals_the_pooled_computation(cohort):
    cutoffs = (0.05, 0.075, 0.2)
    result = run_federated_evaluation(_preds(cohort), EvalDesign(MODELS, "clinical"), min_n=20)
    y = cohort["event"].to_numpy() == 1
    old, new = cohort["clinical"].to_numpy(), cohort["clinical_pgs"].to_numpy()
    cat_old = pd.cut(old, [0, *cutoffs, 1], right=False, labels=False)
    cat_new = pd.cut(new, [0, *cutoffs, 1], right=False, labels=False)
    nri = result["comparisons"][0]["nri"]
    for kind, up, down in (
        ("categorical", cat_new > cat_old, cat_new < cat_old),
        ("continuous", new > old, new < old),
    ):
        ev = (up[y].sum() - down[y].sum()) / y.sum()
        nonev = (down[~y].sum() - up[~y].sum()) / (~y).sum()
        assert nri[kind]["events"] == pytest.approx(ev, abs=1e-12)
        assert nri[kind]["nonevents"] == pytest.approx(nonev, abs=1e-12)
        assert nri[kind]["total"] == pytest.approx(ev + nonev, abs=1e-12)
        assert nri[kind]["total"] != 0


def test_calibration_deciles__equal_pandas_groups_on_the_same_cut_points(cohort):
    result = run_federated_evaluation(_preds(cohort), EvalDesign(MODELS, "clinical"), min_n=1,
                                      min_cell=1)  # fmt: skip
    for m in MODELS:
        rows = result["calibration_deciles"][m]
        assert len(rows) == 10 and not any(r["suppressed"] for r in rows)
        edges = [0.0] + [r["p_to"] for r in rows]
        groups = pd.cut(cohort[m], edges, right=False, labels=False)
        table = cohort.groupby(groups).agg(n=("event", "size"), obs=("event", "sum"),
                                           exp=(m, "sum"))  # fmt: skip
        assert len(table) == 10
        for g, r in enumerate(rows):
            assert r["n"] == table.loc[g, "n"]
            assert r["observed"] == table.loc[g, "obs"]
            assert r["expected"] == pytest.approx(table.loc[g, "exp"], rel=1e-10)
            # Pooled deciles: about a tenth of everybody each (bins are 1% in odds wide).
            assert abs(r["n"] - len(cohort) / 10) <= 0.02 * len(cohort)
        # Each cut is the first bin edge with at least k/10 of everybody below it.
        spec = BinSpec()
        for k, r in enumerate(rows[:-1], start=1):
            edge = (math.log(r["p_to"] / (1 - r["p_to"])) - spec.lo) / spec.width
            previous = _expit(spec.lo + (round(edge) - 1) * spec.width)
            assert (cohort[m] < r["p_to"]).sum() >= k * len(cohort) / 10
            assert (cohort[m] < previous).sum() < k * len(cohort) / 10


def test_suppression__hides_small_calibration_cells_and_small_sites(cohort):
    small = cohort[(cohort["site"] != "C") | (cohort.index % 8 == 0)]  # C keeps 50 people
    min_n, min_cell = 60, 12
    result = run_federated_evaluation(_preds(small), EvalDesign(MODELS, "clinical"),
                                      min_n=min_n, min_cell=min_cell)  # fmt: skip
    hidden = 0
    for m in MODELS:
        rows = result["calibration_deciles"][m] + result["calibration_categories"][m]
        for r in rows[: len(result["calibration_deciles"][m])]:
            sel = (small[m] >= r["p_from"]) & (small[m] < r["p_to"])
            n, obs = int(sel.sum()), int(small.loc[sel, "event"].sum())
            small_cell = n < min_n or 0 < obs < min_cell or 0 < n - obs < min_cell
            assert r["suppressed"] == small_cell
            if small_cell:
                assert r["n"] is None and r["observed"] is None and r["expected"] is None
        hidden += sum(r["suppressed"] for r in rows)
    assert 0 < result["suppressed_cells"] == hidden
    sites = {s["site"]: s for s in result["per_site"]}
    assert "suppressed" in sites["C"] and "models" not in sites["C"]
    a = small[small["site"] == "A"]
    assert sites["A"]["models"]["clinical"]["auc"] == pytest.approx(
        roc_auc_score(a["event"], a["clinical"]), abs=5e-5
    )
    assert sites["A"]["models"]["clinical"]["brier"] == pytest.approx(
        brier_score_loss(a["event"], a["clinical"]), abs=5e-5
    )


def test_rounds__a_site_whose_data_changed_between_rounds_is_refused(cohort):
    design = EvalDesign(MODELS, "clinical")
    preds = _preds(cohort)
    total1 = add_sums([count_sums(preds[s], design, round_id="r1") for s in SITES])
    summary = summarise_counts(total1)
    changed = dict(preds)
    b = preds["B"]
    changed["B"] = Predictions("B", b.y, {m: np.sqrt(v) for m, v in b.p.items()})
    total2 = add_sums([placement_sums(changed[s], summary, round_id="r2") for s in SITES])
    with pytest.raises(SiteDataError, match="changed between"):
        evaluate(total1, total2)
    with pytest.raises(Exception, match="new round id"):
        placement_sums(preds["A"], summary, round_id="r1")


def test_read_summary__refuses_a_crafted_placement_vector(cohort, tmp_path):
    design = EvalDesign(MODELS, "clinical")
    preds = _preds(cohort)
    summary = summarise_counts(
        add_sums([count_sums(preds[s], design, round_id="r1") for s in SITES])
    )
    write_summary(summary, tmp_path / "ok.json")
    assert read_summary(tmp_path / "ok.json").digest() == summary.digest()
    spike = np.zeros(design.bins.bins)
    spike[1234] = 1.0  # would return, per site, the cases in one bin of the reference model
    summary.case_placement["clinical"] = spike
    write_summary(summary, tmp_path / "crafted.json")
    with pytest.raises(SiteDataError, match="order"):
        read_summary(tmp_path / "crafted.json")


def _fedgen(*args) -> int:
    return main(["risk", *[str(a) for a in args]])


def test_cli__masked_rounds_match_the_driver_and_refuse_a_missing_site(cohort, tmp_path, capsys):
    registry = {"version": 1, "sites": {}}
    for s in SITES:
        (tmp_path / s).mkdir()
        assert main(["exact", "keygen", "--out", str(tmp_path / s / "x25519.key")]) == 0
        public = capsys.readouterr().out.split("public_key_x25519:")[1].strip()
        registry["sites"][s] = {"tes_url": f"http://127.0.0.1:1/{s}",
                                "work_url": f"file://{tmp_path / s}", "public_key_x25519": public}  # fmt: skip
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    for s, g in cohort.groupby("site"):
        t = g[["IID", "event", *MODELS]].copy()
        if s == "B":  # plink2 coding: 1 = control, 2 = case; a missing outcome is dropped
            t["event"] = t["event"] + 1
            t.loc[t.index[:3], "event"] = -9
        t.to_csv(tmp_path / s / "pred.tsv", sep="\t", index=False)
    mask = ["--key", None, "--registry", tmp_path / "sites.yaml", "--participants", "C,A,B"]
    for s in SITES:
        mask[1] = tmp_path / s / "x25519.key"
        assert _fedgen("eval-counts", "--predictions", tmp_path / s / "pred.tsv", "--site", s,
                       "--round", "ev1", "--min-n", 20, "--out", tmp_path / f"{s}.counts.json",
                       "--site-metrics", tmp_path / f"{s}.site.json", *mask) == 0  # fmt: skip
    counts = [tmp_path / f"{s}.counts.json" for s in SITES]
    assert _fedgen("eval-summary", "--counts", *counts, "--out", tmp_path / "summary.json") == 0
    for s in SITES:
        mask[1] = tmp_path / s / "x25519.key"
        assert _fedgen("eval-placements", "--predictions", tmp_path / s / "pred.tsv", "--site", s,
                       "--summary", tmp_path / "summary.json", "--round", "ev2",
                       "--out", tmp_path / f"{s}.placements.json", *mask) == 0  # fmt: skip
    out = tmp_path / "out"
    assert _fedgen("evaluate", "--counts", *counts,
                   "--placements", *[tmp_path / f"{s}.placements.json" for s in SITES],
                   "--site-metrics", *[tmp_path / f"{s}.site.json" for s in SITES],
                   "--out", out / "eval.json", "--metrics-tsv", out / "eval.tsv",
                   "--calibration-tsv", out / "calibration.tsv", "--sites-tsv", out / "sites.tsv",
                   "--plot", out / "calibration.png") == 0  # fmt: skip
    got = json.loads((out / "eval.json").read_text())
    kept = cohort.drop(cohort[cohort["site"] == "B"].index[:3])
    expected = run_federated_evaluation(_preds(kept), EvalDesign(MODELS, "clinical"), min_n=20)
    assert got["n"] == len(kept) and got["n_cases"] == kept["event"].sum()
    for m in MODELS:
        assert got["models"][m]["auc"] == pytest.approx(expected["models"][m]["auc"], abs=1e-9)
    assert got["comparisons"][0]["delta_auc_se"] == pytest.approx(
        expected["comparisons"][0]["delta_auc_se"], abs=1e-9
    )
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "eval.tsv", sep="\t")
    assert set(table["metric"]) >= {"auc", "delta_auc", "nri_categorical_total", "brier"}
    assert len(pd.read_csv(out / "sites.tsv", sep="\t")) == 6
    # A masked round with a site missing: the masks do not cancel and the centre refuses.
    capsys.readouterr()
    assert _fedgen("eval-summary", "--counts", *counts[:2], "--out", tmp_path / "bad.json") != 0
    assert "no upload from site(s) C" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(SecureAggregationError, match="no upload from site"):
        add_sums([read_sums(p) for p in counts[1:]])
    # A site reusing a round id for different data is refused by its ledger.
    mask[1] = tmp_path / "A" / "x25519.key"
    assert _fedgen("eval-counts", "--predictions", tmp_path / "B" / "pred.tsv", "--site", "A",
                   "--round", "ev1", "--out", tmp_path / "again.json", *mask) != 0  # fmt: skip
    assert "already used" in capsys.readouterr().err


def test_site_metrics__released_only_above_min_n(cohort):
    design = EvalDesign(MODELS, "clinical")
    pred = _preds(cohort)["C"]
    n1 = int(pred.y.sum())
    assert site_metrics(pred, design, round_id="r", min_n=n1).names
    hidden = site_metrics(pred, design, round_id="r", min_n=n1 + 1)
    assert hidden.names == () and "min_n" in hidden.meta["suppressed"]
    # Few non-cases identify people as much as few cases do.
    flipped = Predictions("C", 1 - pred.y, pred.p)
    assert site_metrics(flipped, design, round_id="r", min_n=n1 + 1).names == ()


def test_suppression__a_cell_of_exactly_min_n_people_is_published(cohort):
    design = EvalDesign(MODELS, "clinical")
    first = run_federated_evaluation(_preds(cohort), design, min_n=1, min_cell=1)
    size = first["calibration_deciles"]["clinical"][4]["n"]
    at = run_federated_evaluation(_preds(cohort), design, min_n=size, min_cell=1)
    above = run_federated_evaluation(_preds(cohort), design, min_n=size + 1, min_cell=1)
    assert not at["calibration_deciles"]["clinical"][4]["suppressed"]
    assert above["calibration_deciles"]["clinical"][4]["suppressed"]
