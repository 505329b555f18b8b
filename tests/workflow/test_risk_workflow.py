"""End to end: the risk target of the federated-gwas workflow on three loopback nodes.

A tiny simulated federation with clinical data runs ``snakemake --executor fedgen`` to the risk
targets with secure aggregation (each node masks its site's round sums): the GWAS of ``cvd``
and its meta-analysis over all sites and over each pair (leave-one-site-out), clumped weights,
scores at each site, the federated Newton rounds of both models (a checkpoint chain), and the
two-round evaluation. The results are checked against independent computations on the very
files the sites used (read as each site's admin would): a pooled ``statsmodels`` Logit for the
coefficients and standard errors, ``sklearn`` for the pooled AUC, and the weights' headers for
leave-one-site-out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml
from snakemake_executor_plugin_fedgen.reference import read_reference

from snakemake_fedgen import demo
from snakemake_fedgen.exact.secure import generate_key
from snakemake_fedgen.risk.pgs import read_weights
from tests.site_paths import held_file
from tests.workflow.coordinator_scan import assert_no_individual_level_data, table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Seed 5: site C (125 people) has 21 events, enough for its own GWAS of cvd (min_cases 10).
SEED = 5
SITES = ("A", "B", "C")
CLINICAL = ("age", "sex", "ldl", "sbp", "smoking", "diabetes")
TARGETS = (
    "results/risk/all/clinical/model.json",
    "results/risk/all/clinical_pgs/model.json",
    "results/risk/eval/insample.metrics.tsv",
    "results/risk/eval/loso.metrics.tsv",
    "results/risk/clinical_pgs.model_card.html",
)


@dataclass
class Run:
    out: Path
    data: Path
    work: Path

    def site_file(self, path: str) -> Path:
        """The site-side file behind a reference on the coordinator (the site admin's view)."""
        ref = read_reference(self.work / path)
        assert ref is not None, f"{path} should be a reference on the coordinator"
        site = yaml.safe_load((self.work / "sites.yaml").read_text())["sites"][ref.site]
        roots = [Path(unquote(urlparse(site[k]).path)) for k in ("work_url", "egress_url")]
        return held_file(ref.url, roots)

    def json(self, path: str) -> dict:
        return json.loads((self.work / path).read_text())


def _config(out: Path, data: Path) -> Path:
    """The workflow's config with the event as the binary trait and the risk target on."""
    config = yaml.safe_load(demo.CONFIGFILE.read_text())
    config["traits"] = {
        "qt": config["traits"]["qt"],
        "cvd": {"type": "binary", "description": "incident CVD (1 no event, 2 event)"},
    }
    # Site C holds phenopackets: its event comes from the disease term the simulator writes.
    config["phenopackets"]["traits"] = {
        "qt": config["phenopackets"]["traits"]["qt"],
        "cvd": {"terms": config["phenopackets"]["columns"]["cvd"]["terms"]},
    }
    config["risk"].update(
        enabled=True,
        secure=True,
        run="e2e-risk.1",
        pgs={**config["risk"]["pgs"], "ld_panel": str(data / "reference" / "panel.vcf.gz"),
             "p_threshold": 0.05},
    )  # fmt: skip
    path = out / "risk.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("risk-workflow")
    data, work = out / "data", out / "coordinator"
    demo.simulate(data, seed=SEED, scale="tiny")
    keys = {}
    for site in SITES:
        keys[site] = out / "keys" / site / "x25519.key"
        generate_key(keys[site])
    config = _config(out, data)
    with demo.federation(data, out / "nodes", work / "sites.yaml", masking_keys=keys) as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        cmd = demo.snakemake_command(work, configfile=config, targets=TARGETS)
        demo.run_snakemake(cmd, env=env, log_path=out / "snakemake.log", show=False)
    yield Run(out, data, work)


def _pooled(run: Run, fit: str, features: tuple[str, ...]):
    """Every site's rows of a fit as the sites read them: phenotype table joined to scores."""
    xs, ys = [], []
    for site in SITES:
        if fit == f"without-{site}":
            continue
        pheno = {r["IID"]: r for r in table_rows(run.site_file(f"sites/{site}/qc/phenotypes.tsv"))}
        scores = {}
        if "pgs" in features:
            scores = {
                r["IID"]: r["pgs"]
                for r in table_rows(run.site_file(f"sites/{site}/risk/{fit}/scores.tsv"))
            }
        for iid, r in pheno.items():
            row = {**r, **({"pgs": scores[iid]} if iid in scores else {})}
            values = [row.get(f, "NA") for f in features]
            if row.get("cvd", "NA") in ("NA", "0", "-9") or "NA" in values:
                continue
            xs.append([float(v) for v in values])
            ys.append(float(row["cvd"]) - 1.0)
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize("model", ["clinical", "clinical_pgs"])
def test_risk__masked_federated_fit_equals_pooled_statsmodels(run, model):
    import statsmodels.api as sm

    features = CLINICAL if model == "clinical" else ("pgs", *CLINICAL)
    fitted = run.json(f"results/risk/all/{model}/model.json")
    assert fitted["converged"] and fitted["secure_aggregation"]
    x, y = _pooled(run, "all", features)
    assert fitted["n"] == len(y)
    ref = sm.Logit(y, sm.add_constant(x)).fit(method="newton", tol=1e-12, disp=False)
    got = fitted["coefficients"]["original"]
    np.testing.assert_allclose([c["beta"] for c in got], ref.params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([c["se"] for c in got], ref.bse, rtol=1e-6)
    # The chain of rounds stopped where the fit converged: one state per round, no more.
    states = sorted((run.work / f"results/risk/all/{model}").glob("state.*.json"))
    assert len(states) == fitted["iterations"] + 1


def test_risk__leave_one_site_out_weights_exclude_the_held_out_site(run):
    for site in SITES:
        _, meta = read_weights(run.work / f"results/risk/weights/without-{site}.weights.tsv")
        assert meta["sites"] == ",".join(s for s in SITES if s != site)
    _, meta = read_weights(run.work / "results/risk/weights/all.weights.tsv")
    assert meta["sites"] == ",".join(SITES)


def test_risk__pooled_auc_equals_sklearn_on_the_sites_predictions(run):
    from sklearn.metrics import roc_auc_score

    result = run.json("results/risk/eval/loso.json")
    y, p = [], {"clinical": [], "clinical_pgs": []}
    for site in SITES:
        for r in table_rows(run.site_file(f"sites/{site}/risk/eval/loso/predictions.tsv")):
            y.append(int(r["cvd"]))
            for m in p:
                p[m].append(float(r[m]))
    assert result["n"] == len(y)
    for m, v in result["models"].items():
        assert abs(v["auc"] - roc_auc_score(y, p[m])) <= v["auc_bin_bound"] + 1e-12


def test_risk__nothing_individual_level_reaches_the_coordinator(run):
    sample_ids = set()
    for site in SITES:
        sample_ids |= {r["IID"] for r in table_rows(run.data / "sites" / site / "phenotypes.tsv")}
    assert len(sample_ids) > 300
    assert_no_individual_level_data(run.work, sample_ids, min_files=50)
    # Every round sum came back masked (three participants) or plain where only two trained.
    for path in (run.work / "results" / "sumstats").rglob("*.sums.json"):
        doc = json.loads(path.read_text())
        two = any(f"without-{s}." in path.name for s in SITES)
        kind = doc["kind"]
        assert ("masked" in doc) == (not two and kind != "risk-eval-site"), path
