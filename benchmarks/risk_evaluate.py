"""Cost of the federated evaluation: bytes per site upload and wall time, plain and masked.

Three simulated sites of ``--people`` each (two models: a clinical one and one with a polygenic
score, both pooled logistic fits), evaluated in process by
:func:`snakemake_fedgen.risk.evaluate.run_federated_evaluation` with every upload written to and
read from its file, as between a site and the centre. Run by hand::

    .venv/bin/python benchmarks/risk_evaluate.py --people 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sklearn.metrics import roc_auc_score

from snakemake_fedgen.exact import secure
from snakemake_fedgen.risk.evaluate import EvalDesign, Predictions, run_federated_evaluation

SITES = ("A", "B", "C")


def simulate(people: int, seed: int) -> dict[str, Predictions]:
    """Per site: outcome and two models' probabilities from known logistic models."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, base in zip(SITES, (-2.6, -2.2, -2.9), strict=True):
        clinical = rng.normal(0, 0.7, people)
        pgs = rng.normal(0, 1, people)
        y = rng.binomial(1, 1 / (1 + np.exp(-(base + clinical + 0.5 * pgs))))
        p = {
            "clinical": 1 / (1 + np.exp(-(-2.5 + clinical))),
            "clinical_pgs": 1 / (1 + np.exp(-(-2.6 + clinical + 0.5 * pgs))),
        }
        out[s] = Predictions(site=s, y=y, p=p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=5000, help="people per site")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    preds = simulate(args.people, args.seed)
    design = EvalDesign(("clinical", "clinical_pgs"), "clinical")
    keys = {s: X25519PrivateKey.generate() for s in SITES}
    public = {s: secure.public_key_text(k) for s, k in keys.items()}
    for label, kw in (("plain", {}), ("masked", {"private_keys": keys, "public_keys": public})):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = run_federated_evaluation(preds, design, out_dir=Path(tmp), **kw)
            wall = time.perf_counter() - t0
        t = result["transfer"]
        print(f"== {label}: 3 sites x {args.people} people, wall {wall:.2f} s")
        for s in SITES:
            sizes = ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in t["bytes"][s].items())
            print(f"  site {s}: {sizes}")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in t["seconds"].items()))
    y = np.concatenate([preds[s].y for s in SITES])
    for m, v in result["models"].items():
        exact = roc_auc_score(y, np.concatenate([preds[s].p[m] for s in SITES]))
        print(
            f"  {m}: federated AUC {v['auc']:.6f}, pooled sklearn {exact:.6f}, |diff| "
            f"{abs(v['auc'] - exact):.1e} <= bound {v['auc_bin_bound']:.1e}"
        )
    c = result["comparisons"][0]
    print(
        f"  delta AUC {c['delta_auc']:+.4f} (95% CI {c['delta_auc_ci'][0]:+.4f} to "
        f"{c['delta_auc_ci'][1]:+.4f}, p={c['p']:.2g})"
    )


if __name__ == "__main__":
    main()
