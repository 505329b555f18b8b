"""The airlock's ``sums`` kind: risk-model round sums leave only as aggregates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snakemake_fedgen.egress.airlock.gate import inspect
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.exact.sums import SiteSums, write_sums

POLICY = AirlockPolicy(min_n=50, min_cell=5, min_cases=10)


def _write(tmp_path, names, values, *, name="A.terms.sums.json", **kw):
    sums = SiteSums(
        site="A", round_id="run1.it3", kind="risk.terms", names=tuple(names),
        values=np.asarray(values, dtype=float), **kw,
    )  # fmt: skip
    path = tmp_path / name
    write_sums(sums, path)
    return path


def test_plain_sums_with_enough_people_pass(tmp_path):
    path = _write(tmp_path, ["n", "n_cases", "u:age", "h:age:age"], [400, 60, 1.5, 88.25])
    d = inspect(path, POLICY)
    assert d.accepted and d.kind == "sums", d.reason


@pytest.mark.parametrize(
    ("names", "values", "why"),
    [
        (["n", "u:age"], [12, 0.5], "below min_n"),
        (["n", "n_cases", "u:age"], [400, 3, 0.5], "min_cases"),
        (["n", "n_cases", "u:age"], [400, 398, 0.5], "min_cases"),
        (["u:age"], [0.5], "entry 'n'"),
        # A histogram cell holding one person: a per-person value in plain sight.
        (["n", "count:clinical:case:0417"], [400, 1], "min_cell"),
        (["n", "count:clinical:case:0417"], [400, 7.5], "whole number"),
        # Entry names are tokens: a sample ID or free text in a name is refused.
        (["n", "HG00096 was a case"], [400, 1.0], "machine token"),
        (["n", "u:age"], [400, float("nan")], "not finite"),
    ],
)
def test_the_airlock_refuses_disclosive_or_malformed_sums(tmp_path, names, values, why):
    d = inspect(_write(tmp_path, names, values), POLICY)
    assert not d.accepted
    assert why in d.reason


def test_masked_sums_need_the_sites_secure_aggregation_policy(tmp_path):
    path = _write(tmp_path, ["n", "u:age"], [400, 1.0])
    doc = json.loads(path.read_text())
    doc.pop("values")
    doc |= {"masked": ["0" * 32, "f" * 32], "participants": ["A", "B", "C"], "frac_bits": 40,
            "context": "risk.terms"}  # fmt: skip
    path.write_text(json.dumps(doc))
    assert "secure_aggregation: false" in inspect(path, POLICY).reason
    secure = AirlockPolicy(min_n=50, min_cell=5, min_cases=10, secure_aggregation=True)
    assert inspect(path, secure).accepted
    doc["participants"] = ["A", "B"]
    path.write_text(json.dumps(doc))
    assert "at least 3" in inspect(path, secure).reason


def test_extra_keys_cannot_carry_data(tmp_path):
    path = _write(tmp_path, ["n", "u:age"], [400, 1.0])
    doc = json.loads(path.read_text())
    doc["notes"] = "HG00096 HG00097"
    path.write_text(json.dumps(doc))
    assert "unexpected key" in inspect(path, POLICY).reason


def test_evaluation_uploads__plain_histograms_with_small_cells_are_refused(tmp_path):
    """Round 1 of the evaluation, plain: a histogram cell of one person leaves only masked."""
    from snakemake_fedgen.risk.evaluate import BinSpec, EvalDesign, Predictions, count_sums

    rng = np.random.default_rng(4)
    n = 300
    y = (rng.random(n) < 0.2).astype(float)
    p = {"clinical": rng.uniform(0.02, 0.6, n), "clinical_pgs": rng.uniform(0.02, 0.6, n)}
    pred = Predictions(site="A", y=y, p=p)
    design = EvalDesign(("clinical", "clinical_pgs"), "clinical", bins=BinSpec(bins=200))
    sums = count_sums(pred, design, round_id="risk1.eval1")
    write_sums(sums, tmp_path / "A.counts.sums.json")
    d = inspect(tmp_path / "A.counts.sums.json", POLICY)
    assert not d.accepted and "min_cell" in d.reason, d.reason


def test_evaluation_uploads__site_metrics_pass_and_a_suppressed_report_passes(tmp_path):
    from snakemake_fedgen.risk.evaluate import EvalDesign, Predictions, site_metrics

    rng = np.random.default_rng(5)
    design = EvalDesign(("clinical",), "clinical")
    for n, rate, suppressed in ((400, 0.3, False), (400, 0.02, True)):
        y = (rng.random(n) < rate).astype(float)
        pred = Predictions(site="A", y=y, p={"clinical": rng.uniform(0.02, 0.6, n)})
        sums = site_metrics(pred, design, round_id="risk1.site", min_n=50)
        assert (not sums.names) == suppressed
        write_sums(sums, tmp_path / "A.site.sums.json")
        d = inspect(tmp_path / "A.site.sums.json", POLICY)
        assert d.accepted, d.reason


def test_model_uploads__moments_and_terms_pass_the_airlock(tmp_path):
    """What `fedgen risk moments`/`terms` write is what the airlock admits (labels included)."""
    from snakemake_fedgen.risk.model import init_state, read_site_table, site_moments, site_terms

    rng = np.random.default_rng(6)
    lines = ["IID\tcvd\tage\tsbp"]
    for i in range(300):
        lines.append(
            f"P{i}\t{1 + (rng.random() < 0.2)}\t{rng.normal(55, 9):.1f}\t{rng.normal(130, 15):.0f}"
        )
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    data = read_site_table(tmp_path / "t.tsv", features=("age", "sbp"), outcome="cvd")
    moments = site_moments(data, site="A", run_id="r.all.clinical", outcome="cvd")
    write_sums(moments, tmp_path / "m.sums.json")
    assert inspect(tmp_path / "m.sums.json", POLICY).accepted, inspect(
        tmp_path / "m.sums.json", POLICY
    ).reason
    state = init_state(moments, sites=("A",), outcome="cvd")
    write_sums(site_terms(data, state, site="A"), tmp_path / "t.sums.json")
    d = inspect(tmp_path / "t.sums.json", POLICY)
    assert d.accepted, d.reason
