"""`fedgen risk score` with several models (the evaluation's table) and `fedgen risk card`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snakemake_fedgen.cli import main
from snakemake_fedgen.risk.evaluate import (
    EvalDesign,
    read_predictions,
    run_federated_evaluation,
    write_evaluation,
)
from snakemake_fedgen.risk.model import fit_federated, predict, read_site_table, write_model
from tests.risk.test_model import FEATURES, SITES, _write_site

CLINICAL = tuple(f for f in FEATURES if f != "SCORE1_AVG")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    rng = np.random.default_rng(5)
    for s, n, off in zip(SITES, (500, 600, 450), (0.0, 0.3, -0.4), strict=True):
        _write_site(root, s, n, off, rng)
    models = {}
    for name, feats in (("clinical", CLINICAL), ("clinical_pgs", FEATURES)):
        tables = {
            s: read_site_table(
                root / f"{s}.pheno.tsv",
                features=feats,
                outcome="event",
                join=root / f"{s}.sscore",
            )
            for s in SITES
        }
        models[name], _ = fit_federated(tables, outcome="event", run_id=f"t.{name}")
        write_model(models[name], root / f"{name}.json")
    return root, models


def test_score__one_table_for_several_models_equals_predict(fitted):
    root, models = fitted
    out = root / "A.pred.tsv"
    argv = ["risk", "score", "--table", str(root / "A.pheno.tsv"), "--join", str(root / "A.sscore")]
    argv += ["--model", f"clinical={root / 'clinical.json'}"]
    argv += ["--model", f"clinical_pgs={root / 'clinical_pgs.json'}", "--outcome", "event"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["IID", "event", "clinical", "clinical_pgs"]
    # Only people with every feature of both models and an outcome: the clinical_pgs table.
    table = read_site_table(
        root / "A.pheno.tsv", features=FEATURES, outcome="event", join=root / "A.sscore"
    )
    assert [r[0] for r in rows[1:]] == table.ids
    _, p_full = predict(models["clinical_pgs"], table)
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], p_full, rtol=1e-12)
    clin = read_site_table(root / "A.pheno.tsv", features=CLINICAL, outcome="event")
    keep = [clin.ids.index(i) for i in table.ids]
    _, p_clin = predict(models["clinical"], clin)
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], p_clin[keep], rtol=1e-12)
    assert [int(r[1]) for r in rows[1:]] == table.y.astype(int).tolist()


def test_card__shows_the_coefficients_and_the_evaluation(fitted):
    root, models = fitted
    preds = {}
    for s in SITES:
        out = root / f"{s}.eval.tsv"
        argv = ["risk", "score", "--table", str(root / f"{s}.pheno.tsv")]
        argv += ["--join", str(root / f"{s}.sscore"), "--outcome", "event"]
        argv += ["--model", f"clinical={root / 'clinical.json'}"]
        argv += ["--model", f"clinical_pgs={root / 'clinical_pgs.json'}", "--out", str(out)]
        assert main(argv) == 0
        preds[s] = read_predictions(out, site=s, outcome="event")
    design = EvalDesign(("clinical", "clinical_pgs"), "clinical")
    result = run_federated_evaluation(preds, design, min_n=50)
    write_evaluation(result, json_path=root / "ev.json", plot=root / "ev.png")
    card = root / "card.html"
    argv = ["risk", "card", "--model", str(root / "clinical_pgs.json"), "--name", "clinical_pgs"]
    argv += [
        "--evaluation",
        f"insample={root / 'ev.json'}",
        "--plot",
        f"insample={root / 'ev.png'}",
    ]
    assert main([*argv, "--out", str(card)]) == 0
    text = card.read_text()
    auc = json.loads((root / "ev.json").read_text())["models"]["clinical_pgs"]["auc"]
    assert f"{auc:.3f}" in text
    beta = models["clinical_pgs"]["coefficients"]["standardised"][1]
    assert beta["term"] in text and f"{beta['beta']:.3f}" in text
    assert "data:image/png;base64," in text
    assert "delta AUC" in text
