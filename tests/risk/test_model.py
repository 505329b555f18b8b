"""The federated risk model equals pooled statsmodels / sklearn fits; the CLI rounds equal the
in-process driver; stale, incomplete and reused rounds are refused."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sklearn.linear_model import LogisticRegression
from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    EgressRefused,
    FedgenError,
    SecureAggregationError,
)

from snakemake_fedgen.cli import main
from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.sums import add_sums, mask_with_ledger
from snakemake_fedgen.risk.model import (
    _digest,
    finish_model,
    fit_federated,
    init_state,
    newton_step,
    predict,
    read_site_table,
    read_state,
    site_moments,
    site_terms,
    sum_terms,
    write_state,
)

SITES = ("A", "B", "C")
FEATURES = ("SCORE1_AVG", "age", "sex", "ldl", "sbp", "smoking", "diabetes")
REL = 1e-6


def _write_site(root: Path, site: str, n: int, offset: float, rng: np.random.Generator):
    """A phenotype table and a plink2-style score table; returns the number of rows to drop."""
    score = rng.normal(0.001, 0.0002, n)
    age = rng.normal(55, 10, n)
    sex = rng.integers(0, 2, n).astype(float)
    ldl = rng.normal(3.5, 1.0, n) + 0.02 * (age - 55)
    sbp = rng.normal(130, 15, n) + 0.5 * (age - 55)
    smoking = (rng.random(n) < 0.2).astype(float)
    diabetes = (rng.random(n) < 0.1).astype(float)
    eta = (
        -2.0 + offset + 0.4 * (score - 0.001) / 0.0002 + 0.04 * (age - 55) + 0.5 * sex
        + 0.3 * (ldl - 3.5) + 0.02 * (sbp - 130) + 0.6 * smoking + 0.7 * diabetes
    )  # fmt: skip
    event = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    ids = [f"{site}_{i}" for i in range(n)]
    plink = site == "B"  # site B codes the outcome as plink2 does (1 control, 2 case)
    ev = [str(e + 1) if plink else str(e) for e in event]
    ev[3] = "NA"
    ev[5] = "-9"
    ldl_tok = [repr(float(v)) for v in ldl]
    ldl_tok[7] = "NA"
    lines = ["IID\tevent\tage\tsex\tldl\tsbp\tsmoking\tdiabetes"]
    for i in range(n):
        lines.append(
            f"{ids[i]}\t{ev[i]}\t{float(age[i])!r}\t{sex[i]:g}\t{ldl_tok[i]}\t{float(sbp[i])!r}\t"
            f"{smoking[i]:g}\t{diabetes[i]:g}"
        )
    (root / f"{site}.pheno.tsv").write_text("\n".join(lines) + "\n")
    score_lines = ["#FID\tIID\tALLELE_CT\tNAMED_ALLELE_DOSAGE_SUM\tSCORE1_AVG"]
    score_lines += [
        f"{ids[i]}\t{ids[i]}\t200\t{float(score[i]) * 200!r}\t{float(score[i])!r}"
        for i in range(n)
        if i != 9
    ]
    (root / f"{site}.sscore").write_text("\n".join(score_lines) + "\n")
    return 4  # rows 3 and 5 (outcome), 7 (ldl), 9 (no score)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("risk")
    rng = np.random.default_rng(17)
    sizes = {"A": 400, "B": 600, "C": 350}
    offsets = {"A": 0.0, "B": 0.3, "C": -0.4}
    for s in SITES:
        _write_site(root, s, sizes[s], offsets[s], rng)
    tables = {
        s: read_site_table(
            root / f"{s}.pheno.tsv", features=FEATURES, outcome="event", join=root / f"{s}.sscore"
        )
        for s in SITES
    }
    x = np.vstack([tables[s].x for s in SITES])
    y = np.concatenate([tables[s].y for s in SITES])
    return root, tables, x, y, sizes


def _keys():
    keys = {s: X25519PrivateKey.generate() for s in SITES}
    return keys, {s: secure.public_key_text(k) for s, k in keys.items()}


def _coefs(model, scale):
    rows = model["coefficients"][scale]
    return np.array([r["beta"] for r in rows]), np.array([r["se"] for r in rows])


def _pooled_logit(x, y):
    return sm.Logit(y, sm.add_constant(x)).fit(method="newton", tol=1e-12, maxiter=100, disp=0)


def test_read_site_table__drops_and_counts_rows_and_detects_coding(federation):
    _, tables, _, _, sizes = federation
    for s in SITES:
        t = tables[s]
        assert t.n_read == sizes[s] and len(t.ids) == sizes[s] - 4 and t.n_dropped == 4
        assert t.dropped == {"not in joined table": 1, "outcome missing": 2, "feature missing": 1}
        assert set(np.unique(t.y)) == {0.0, 1.0}
    assert tables["A"].coding == "0/1" and tables["B"].coding.startswith("plink2")


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_fit_federated__equals_pooled_statsmodels_logit(federation, masked, tmp_path):
    _, tables, x, y, _ = federation
    keys, public = _keys() if masked else (None, None)
    model, _ = fit_federated(
        tables, keys=keys, public_keys=public, ledger_dir=tmp_path if masked else None
    )
    assert model["converged"] and model["stopped"] == "converged" and model["iterations"] < 12
    assert model["secure_aggregation"] is masked
    assert model["n"] == len(y) and model["n_cases"] == int(y.sum()) and model["n_dropped"] == 12
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    np.testing.assert_allclose([f["mean"] for f in model["features"]], mean, rtol=1e-12)
    np.testing.assert_allclose([f["sd"] for f in model["features"]], sd, rtol=1e-10)
    ref = _pooled_logit((x - mean) / sd, y)
    beta, se = _coefs(model, "standardised")
    np.testing.assert_allclose(beta, ref.params, rtol=REL)
    np.testing.assert_allclose(se, ref.bse, rtol=REL)
    assert model["deviance"] == pytest.approx(-2 * ref.llf, rel=1e-9)
    raw = _pooled_logit(x, y)
    beta_o, se_o = _coefs(model, "original")
    np.testing.assert_allclose(beta_o, raw.params, rtol=REL)
    np.testing.assert_allclose(se_o, raw.bse, rtol=REL)
    p = np.array([r["p"] for r in model["coefficients"]["original"]])
    np.testing.assert_allclose(p, raw.pvalues, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:scipy.optimize.*iprint:DeprecationWarning")
def test_fit_federated__ridge_equals_sklearn_l2(federation):
    _, tables, x, y, _ = federation
    lam = 25.0
    model, _ = fit_federated(tables, ridge=lam, tol=1e-12)
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    ref = LogisticRegression(penalty="l2", C=1 / lam, solver="lbfgs", tol=1e-14, max_iter=10000)
    ref.fit((x - mean) / sd, y)
    beta, _ = _coefs(model, "standardised")
    np.testing.assert_allclose(beta[0], ref.intercept_[0], rtol=1e-6)
    np.testing.assert_allclose(beta[1:], ref.coef_[0], rtol=1e-6)
    unpenalised, _ = _coefs(fit_federated(tables)[0], "standardised")
    assert np.abs(beta[1:]).sum() < 0.95 * np.abs(unpenalised[1:]).sum()


def test_predict__equals_statsmodels_predict(federation):
    _, tables, x, y, _ = federation
    model, _ = fit_federated(tables)
    raw = _pooled_logit(x, y)
    lp, prob = predict(model, tables["B"])
    np.testing.assert_allclose(prob, raw.predict(sm.add_constant(tables["B"].x)), rtol=1e-7)
    np.testing.assert_allclose(lp, sm.add_constant(tables["B"].x) @ raw.params, rtol=1e-6)


def _state0(tables, **kw):
    moments = add_sums([site_moments(tables[s], site=s, run_id="r1") for s in SITES])
    return init_state(moments, sites=SITES, outcome="event", **kw)


def test_newton_step__refuses_terms_of_a_stale_state(federation):
    _, tables, _, _, _ = federation
    s0 = _state0(tables)
    s1 = newton_step(s0, sum_terms(s0, [site_terms(tables[s], s0, site=s) for s in SITES]))
    stale = [site_terms(tables["A"], s0, site="A")] + [
        site_terms(tables[s], s1, site=s) for s in ("B", "C")
    ]
    with pytest.raises(ConfigError, match=r"site A: terms computed for state .* stale state"):
        sum_terms(s1, stale)
    with pytest.raises(SecureAggregationError, match="missing A"):
        sum_terms(s1, stale[1:])


def test_masked_round_with_a_site_missing_is_refused(federation, tmp_path):
    _, tables, _, _, _ = federation
    keys, public = _keys()
    s0 = _state0(tables)
    ups = [
        mask_with_ledger(
            site_terms(tables[s], s0, site=s),
            private_key=keys[s],
            public_keys=public,
            participants=SITES,
            ledger=tmp_path / f"{s}.rounds",
        )
        for s in SITES
    ]
    with pytest.raises(SecureAggregationError, match=r"run r1 is plain .* some terms are masked"):
        sum_terms(s0, ups)
    s0m = _state0(tables, masked=True)
    ups = [
        mask_with_ledger(
            site_terms(tables[s], s0m, site=s), private_key=keys[s], public_keys=public,
            participants=SITES, ledger=tmp_path / f"{s}.rounds",
        )
        for s in SITES
    ]  # fmt: skip
    with pytest.raises(SecureAggregationError, match="no upload from site"):
        sum_terms(s0m, ups[:2])
    with pytest.raises(SecureAggregationError, match=r"site\(s\) C sent plain terms"):
        sum_terms(s0m, [*ups[:2], site_terms(tables["C"], s0m, site="C")])
    assert sum_terms(s0m, ups).as_dict()["n"] == s0m["n"]
    # A site never masks different terms under the same round id.
    other = site_terms(tables["A"], {**s0m, "coef": [0.1] * len(s0m["coef"])}, site="A")
    with pytest.raises(SecureAggregationError, match="already used"):
        mask_with_ledger(
            other, private_key=keys["A"], public_keys=public, participants=SITES,
            ledger=tmp_path / "A.rounds",
        )  # fmt: skip


def test_max_iter_reached_is_marked_and_finish_refuses(federation):
    _, tables, _, _, _ = federation
    model, state = fit_federated(tables, max_iter=2)
    assert state["stopped"] == "max_iter" and state["converged"] is False
    assert model["converged"] is False and model["iterations"] == 2
    with pytest.raises(FedgenError, match="has not converged"):
        finish_model(state)


def test_site_moments__refuses_small_sites(federation):
    _, tables, _, _, _ = federation
    with pytest.raises(EgressRefused, match=r"site A: .* min_n=1000"):
        site_moments(tables["A"], site="A", run_id="r1", min_n=1000)


def _fedgen_code(*args: str, cwd: Path) -> tuple[int, str]:
    """``fedgen risk ARGS`` in-process (the real parser and commands; a subprocess costs ~1 s)."""
    err = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err):
            code = main(["risk", *args])
    finally:
        os.chdir(old)
    return code, err.getvalue()


def _fedgen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code, err = _fedgen_code(*args, cwd=cwd)
    assert code == 0, err
    return subprocess.CompletedProcess(args, code, "", err)


def _registry(root: Path, public: dict[str, str]) -> Path:
    lines = ["version: 1", "sites:"]
    for s in SITES:
        lines += [
            f"  {s}:",
            f"    tes_url: http://127.0.0.1:1/{s}",
            f"    work_url: file:///tmp/{s}",
            f"    public_key_x25519: {public[s]}",
        ]
    path = root / "sites.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_cli_round_trip__equals_in_process_driver(federation, tmp_path, masked):
    root, tables, _, _, _ = federation
    feats = ",".join(FEATURES)
    site_args = {s: ["--table", str(root / f"{s}.pheno.tsv"), "--join", str(root / f"{s}.sscore")]
                 for s in SITES}  # fmt: skip
    mask = {s: [] for s in SITES}
    if masked:
        public = {}
        for s in SITES:
            out = _fedgen_exact_keygen(tmp_path / f"{s}.key", cwd=tmp_path)
            public[s] = out
        reg = _registry(tmp_path, public)
        mask = {s: ["--key", str(tmp_path / f"{s}.key"), "--registry", str(reg)] for s in SITES}
    for s in SITES:
        extra = ["--participants", "A,B,C"] if masked else []
        proc = _fedgen(
            "moments", *site_args[s], "--outcome", "event", "--features", feats, "--site", s,
            "--run", "cvd1", *mask[s], *extra, "--out", f"{s}.moments.json", cwd=tmp_path,
        )  # fmt: skip
        assert "dropped: 1 not in joined table, 2 outcome missing, 1 feature missing" in proc.stderr
    doc = json.loads((tmp_path / "A.moments.json").read_text())
    assert ("masked" in doc) is masked and ("values" in doc) is not masked
    _fedgen("init", "--moments", *(f"{s}.moments.json" for s in SITES), "--out", "state.0.json",
            cwd=tmp_path)  # fmt: skip
    it = 0
    while True:
        for s in SITES:
            _fedgen("terms", "--state", f"state.{it}.json", *site_args[s], "--site", s, *mask[s],
                    "--out", f"{s}.terms.{it}.json", cwd=tmp_path)  # fmt: skip
        _fedgen("step", "--state", f"state.{it}.json",
                "--terms", *(f"{s}.terms.{it}.json" for s in SITES),
                "--out", f"state.{it + 1}.json", cwd=tmp_path)  # fmt: skip
        it += 1
        if json.loads((tmp_path / f"state.{it}.json").read_text())["stopped"]:
            break
    # A stale state's terms are refused by the CLI too, with the reason.
    stale = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "risk", "step", "--state", f"state.{it}.json",
         "--terms", *(f"{s}.terms.0.json" for s in SITES), "--out", "x.json"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert stale.returncode != 0 and "stale state" in stale.stderr
    _fedgen("finish", "--state", f"state.{it}.json", "--provenance", "weights_sha256=abc",
            "--out", "model.json", cwd=tmp_path)  # fmt: skip
    model = json.loads((tmp_path / "model.json").read_text())
    ref, _ = fit_federated(tables, run_id="cvd1")
    assert model["iterations"] == ref["iterations"] == it
    assert model["provenance"] == {"weights_sha256": "abc"}
    assert model["training_sites"] == list(SITES) and model["secure_aggregation"] is masked
    for scale in ("standardised", "original"):
        b, se = _coefs(model, scale)
        b_ref, se_ref = _coefs(ref, scale)
        np.testing.assert_allclose(b, b_ref, rtol=1e-9)
        np.testing.assert_allclose(se, se_ref, rtol=1e-9)
    proc = _fedgen("score", "--model", "model.json", *site_args["C"], "--out", "pred.tsv",
                   cwd=tmp_path)  # fmt: skip
    assert "1 not in joined table" in proc.stderr and "1 feature missing" in proc.stderr
    rows = [x.split("\t") for x in (tmp_path / "pred.tsv").read_text().splitlines()]
    assert rows[0] == ["IID", "linear_predictor", "probability"]
    _, prob = predict(ref, read_site_table(root / "C.pheno.tsv", features=FEATURES,
                                           join=root / "C.sscore"))  # fmt: skip
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], prob, rtol=1e-9)


def _fedgen_exact_keygen(path: Path, *, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "exact", "keygen", "--out", str(path)],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout.split(":", 1)[1].strip()


def test_read_site_table__refuses_bad_values_naming_file_and_column(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("IID\tevent\tage\nx1\t3\t50\nx2\t1\t60\n")
    with pytest.raises(ConfigError, match=r"t.tsv: outcome 'event' has value\(s\) \[3.0\]"):
        read_site_table(path, features=["age"], outcome="event")
    path.write_text("IID\tevent\tsex\nx1\t1\tM\n")
    with pytest.raises(ConfigError, match="ID x1 column 'sex': 'M' is not a number"):
        read_site_table(path, features=["sex"], outcome="event")
    with pytest.raises(ConfigError, match="column 'ldl' is in neither"):
        read_site_table(path, features=["ldl"], outcome="event")


def test_read_state__refuses_an_edited_state(federation, tmp_path):
    _, tables, _, _, _ = federation
    state = _state0(tables)
    write_state(state, tmp_path / "s.json")
    assert read_state(tmp_path / "s.json") == state
    doc = json.loads((tmp_path / "s.json").read_text())
    doc["coef"][1] = 0.5
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="digest does not match"):
        read_state(tmp_path / "s.json")


def test_cli_max_iter__warns_loudly_and_finish_refuses(federation, tmp_path):
    root, _, _, _, _ = federation
    table = ["--table", str(root / "A.pheno.tsv"), "--join", str(root / "A.sscore")]
    for s in SITES:
        _fedgen("moments", "--table", str(root / f"{s}.pheno.tsv"), "--join",
                str(root / f"{s}.sscore"), "--outcome", "event", "--features", ",".join(FEATURES),
                "--site", s, "--run", "short", "--out", f"{s}.m.json", cwd=tmp_path)  # fmt: skip
    _fedgen("init", "--moments", *(f"{s}.m.json" for s in SITES), "--max-iter", "1",
            "--out", "s0.json", cwd=tmp_path)  # fmt: skip
    for s in SITES:
        t = ["--table", str(root / f"{s}.pheno.tsv"), "--join", str(root / f"{s}.sscore")]
        _fedgen("terms", "--state", "s0.json", *t, "--site", s, "--out", f"{s}.t.json",
                cwd=tmp_path)  # fmt: skip
    proc = _fedgen("step", "--state", "s0.json", "--terms", *(f"{s}.t.json" for s in SITES),
                   "--out", "s1.json", cwd=tmp_path)  # fmt: skip
    assert "WARNING: run short did NOT converge in max_iter=1 rounds" in proc.stderr
    state = json.loads((tmp_path / "s1.json").read_text())
    assert state["stopped"] == "max_iter" and state["converged"] is False
    code, err = _fedgen_code("finish", "--state", "s1.json", "--out", "m.json", cwd=tmp_path)
    assert code == 1 and "has not converged (stopped: max_iter" in err
    assert not (tmp_path / "m.json").exists()
    code, err = _fedgen_code("terms", "--state", "s1.json", *table, "--site", "A",
                             "--out", "x.json", cwd=tmp_path)  # fmt: skip
    assert code == 1 and "has stopped (max_iter); no more rounds" in err
    code, err = _fedgen_code("terms", "--state", "s0.json", *table, "--site", "A", "--key",
                             "k", "--registry", "r", "--out", "x.json", cwd=tmp_path)  # fmt: skip
    assert code == 1 and "run short is plain" in err


def test_newton_step__halves_an_overshooting_step_and_still_converges(federation):
    """Plain Newton from b = 2 (per SD) diverges on these data (the information becomes
    singular by round 2); with step halving it reaches the statsmodels fit."""
    _, tables, x, y, _ = federation
    state = _state0(tables, max_iter=40)
    state["coef"] = [2.0] * len(state["coef"])
    state["digest"] = _digest(state)
    while not state["stopped"]:
        terms = [site_terms(tables[s], state, site=s) for s in SITES]
        state = newton_step(state, sum_terms(state, terms))
    model = finish_model(state)
    assert model["converged"] and model["step_halvings"] > 0
    assert any(h["halved"] for h in state["deviance_history"])
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    ref = _pooled_logit((x - mean) / sd, y)
    beta, se = _coefs(model, "standardised")
    np.testing.assert_allclose(beta, ref.params, rtol=REL)
    np.testing.assert_allclose(se, ref.bse, rtol=REL)


def test_attack__a_score_on_one_persons_variant_is_refused(federation):
    """A coordinator's weights on a variant only one person carries: the score is 0 for all but
    that person, so the gradient of the next round would carry their outcome. Without the
    check the moments leave (control); with it the site refuses."""
    from snakemake_executor_plugin_fedgen.errors import EgressRefused

    from snakemake_fedgen.risk.model import check_features

    _, tables, _, _, _ = federation
    data = tables["A"]
    x = data.x.copy()
    x[:, 0] = 0.0
    x[17, 0] = 1.0  # person 17 alone has the score
    crafted = dataclasses.replace(data, x=x)
    # Control: the sums themselves would single the person out.
    sums = site_moments(crafted, site="A", run_id="atk", outcome="event", min_cell=1)
    assert sums.as_dict()["sum:SCORE1_AVG"] == 1.0
    with pytest.raises(EgressRefused, match="singles out 1 people"):
        check_features(crafted, site="A", min_cell=5)
    with pytest.raises(EgressRefused, match="singles out"):
        site_moments(crafted, site="A", run_id="atk", outcome="event")


def test_attack__a_state_with_a_step_function_coefficient_is_refused(federation):
    """A state with 1000 log-odds per SD of age makes p a step at one age: the gradients of two
    such rounds at nearby cut-points, differenced, isolate the people between them."""
    from snakemake_executor_plugin_fedgen.errors import EgressRefused

    _, tables, _, _, _ = federation
    state = _state0(tables)
    state["coef"] = [0.0] * len(state["coef"])
    state["coef"][2] = 1000.0
    with pytest.raises(EgressRefused, match="per SD"):
        site_terms(tables["A"], state, site="A")
