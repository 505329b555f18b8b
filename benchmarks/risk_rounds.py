"""The risk target's Newton rounds through real nodes, against a pooled in-memory fit.

Reads a finished run of the workflow with ``risk.enabled`` (``fedgen demo``, or the risk
workflow test's directory) and prints, per fit and model: rounds to convergence, wall time per
round (between the centre's consecutive states: every site's TES task, the airlock and the
node's masking, the download, the step and Snakemake's DAG update), bytes uploaded per site per
round, and the time of a pooled statsmodels Logit on the same rows (read at the sites, as their
admin would) with the largest relative difference of the coefficients. Then the evaluation's
delta AUC of the score with its confidence interval. Without ``--run`` it runs ``fedgen demo
--scale tiny`` first (about 10 minutes on 2 cores)::

    .venv/bin/python benchmarks/risk_rounds.py [--run demo-run]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import statsmodels.api as sm
import yaml
from snakemake_executor_plugin_fedgen.reference import read_reference

from snakemake_fedgen.node.areas import area_of
from snakemake_fedgen.node.auth import Caller

CALLER = "coordinator"


def _site_file(work: Path, rel: str) -> Path:
    """The file behind a reference on the coordinator, on the site's disk."""
    ref = read_reference(work / rel)
    if ref is None:
        raise SystemExit(f"{rel} is not a reference on the coordinator")
    site = yaml.safe_load((work / "sites.yaml").read_text())["sites"][ref.site]
    path = Path(unquote(urlparse(ref.url).path))
    roots = [Path(unquote(urlparse(site[k]).path)) for k in ("work_url", "egress_url")]
    for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
        if path.is_relative_to(root):
            return root / area_of(Caller(CALLER)) / path.relative_to(root)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    head = [h.lstrip("#") for h in lines[0].split("\t")]
    return [dict(zip(head, line.split("\t"), strict=False)) for line in lines[1:]]


def _pooled(work: Path, model: dict, sites: list[str], fit: str) -> tuple[np.ndarray, np.ndarray]:
    features = [f["name"] for f in model["features"]]
    outcome = model["outcome"]
    xs, ys = [], []
    for site in sites:
        pheno = {r["IID"]: r for r in _rows(_site_file(work, f"sites/{site}/qc/phenotypes.tsv"))}
        scores = {}
        if "pgs" in features:
            scores = {
                r["IID"]: r["pgs"]
                for r in _rows(_site_file(work, f"sites/{site}/risk/{fit}/scores.tsv"))
            }
        for iid, r in pheno.items():
            row = {**r, **({"pgs": scores[iid]} if iid in scores else {})}
            vals = [row.get(f, "NA") for f in features]
            if row.get(outcome, "NA") in ("NA", "0", "-9") or "NA" in vals:
                continue
            xs.append([float(v) for v in vals])
            ys.append(float(row[outcome]) - 1.0)
    return np.array(xs), np.array(ys)


def report(out: Path) -> None:
    work = out / "coordinator"
    risk = work / "results" / "risk"
    print(f"run: {out}")
    print(
        f"{'fit':<12}{'model':<14}{'rounds':>7}{'s/round':>9}{'(min-max)':>14}"
        f"{'bytes/site/round':>18}{'pooled fit s':>14}{'max rel diff':>14}"
    )
    for model_file in sorted(risk.glob("*/*/model.json")):
        fit, name = model_file.parent.parent.name, model_file.parent.name
        model = json.loads(model_file.read_text())
        states = sorted(
            model_file.parent.glob("state.*.json"), key=lambda p: int(p.name.split(".")[1])
        )
        times = [p.stat().st_mtime for p in states]
        per_round = np.diff(times)
        sizes = [
            p.stat().st_size
            for p in (work / "results" / "sumstats").glob(f"*/risk/{fit}.{name}.terms.*.sums.json")
        ]
        x, y = _pooled(work, model, list(model["training_sites"]), fit)
        t0 = time.perf_counter()
        ref = sm.Logit(y, sm.add_constant(x)).fit(method="newton", tol=1e-12, disp=False)
        pooled_s = time.perf_counter() - t0
        got = np.array([c["beta"] for c in model["coefficients"]["original"]])
        diff = float(np.max(np.abs(got - ref.params) / np.maximum(np.abs(ref.params), 1e-12)))
        print(
            f"{fit:<12}{name:<14}{model['iterations']:>7}{statistics.median(per_round):>9.1f}"
            f"{f'({per_round.min():.1f}-{per_round.max():.1f})':>14}"
            f"{statistics.median(sizes):>18.0f}{pooled_s:>14.4f}{diff:>14.2e}"
        )
    for evalset in ("insample", "loso"):
        path = risk / "eval" / f"{evalset}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        for c in result["comparisons"]:
            lo, hi = c["delta_auc_ci"]
            aucs = ", ".join(f"{m} {v['auc']:.3f}" for m, v in result["models"].items())
            print(
                f"{evalset}: AUC {aucs}; delta AUC {c['delta_auc']:+.4f} (95% CI {lo:+.4f} to "
                f"{hi:+.4f}, p={c['p']:.2g}), n={result['n']} ({result['n_cases']} events)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished fedgen demo directory")
    args = parser.parse_args()
    if args.run is not None:
        report(args.run)
        return 0
    with tempfile.TemporaryDirectory(prefix="risk-rounds-") as tmp:
        out = Path(tmp) / "demo"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake_fedgen", "demo", "--scale", "tiny", "--out",
             str(out)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"fedgen demo --scale tiny: {time.perf_counter() - t0:.0f} s")
        report(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
