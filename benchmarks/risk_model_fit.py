"""The federated risk model's fit against a pooled in-memory statsmodels fit.

Three simulated sites (a polygenic score and six clinical features, site-specific baseline
risk) are fitted four ways, single-threaded: the in-process driver plain and masked
(:func:`snakemake_fedgen.risk.model.fit_federated`), the file-based CLI steps run in-process
(``fedgen risk moments/init/terms/step/finish``, plain; what a workflow's rules run, minus
transfer), and a pooled ``statsmodels`` Logit on all rows. It prints rounds to convergence,
wall time, the upload size per site and round, and the largest relative difference of the
coefficients and SEs to statsmodels. Run by hand::

    .venv/bin/python benchmarks/risk_model_fit.py --per-site 5000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import statsmodels.api as sm
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from snakemake_fedgen.cli import main
from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.sums import add_sums, mask_with_ledger, write_sums
from snakemake_fedgen.risk.model import (
    SiteTable,
    fit_federated,
    init_state,
    site_moments,
    site_terms,
)

FEATURES = ("score", "age", "sex", "ldl", "sbp", "smoking", "diabetes")
SITES = ("A", "B", "C")


def make_site(n: int, offset: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    score = rng.normal(0, 1, n)
    age = rng.normal(55, 10, n)
    sex = rng.integers(0, 2, n).astype(float)
    ldl = rng.normal(3.5, 1.0, n) + 0.02 * (age - 55)
    sbp = rng.normal(130, 15, n) + 0.5 * (age - 55)
    smoking = (rng.random(n) < 0.2).astype(float)
    diabetes = (rng.random(n) < 0.1).astype(float)
    x = np.column_stack([score, age, sex, ldl, sbp, smoking, diabetes])
    eta = -2.5 + offset + x @ np.array([0.4, 0.05, 0.5, 0.3, 0.02, 0.6, 0.7]) - 0.05 * 55
    eta -= 0.3 * 3.5 + 0.02 * 130
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return x, y


def write_table(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    lines = ["IID\tevent\t" + "\t".join(FEATURES)]
    lines += [
        f"p{i}\t{int(y[i])}\t" + "\t".join(repr(float(v)) for v in x[i]) for i in range(len(y))
    ]
    path.write_text("\n".join(lines) + "\n")


def cli(*args: str) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["risk", *args])
    if code != 0:
        raise SystemExit(err.getvalue())


def run_cli(root: Path) -> tuple[dict, float, int]:
    t0 = time.perf_counter()
    feats = ",".join(FEATURES)
    for s in SITES:
        cli("moments", "--table", str(root / f"{s}.tsv"), "--outcome", "event", "--features",
            feats, "--site", s, "--run", "bench",
            "--out", str(root / f"{s}.moments.json"))  # fmt: skip
    cli("init", "--moments", *(str(root / f"{s}.moments.json") for s in SITES),
        "--out", str(root / "state.0.json"))  # fmt: skip
    it = 0
    while not json.loads((root / f"state.{it}.json").read_text())["stopped"]:
        for s in SITES:
            cli("terms", "--state", str(root / f"state.{it}.json"), "--table",
                str(root / f"{s}.tsv"), "--site", s,
                "--out", str(root / f"{s}.terms.{it}.json"))  # fmt: skip
        cli("step", "--state", str(root / f"state.{it}.json"), "--terms",
            *(str(root / f"{s}.terms.{it}.json") for s in SITES),
            "--out", str(root / f"state.{it + 1}.json"))  # fmt: skip
        it += 1
    cli("finish", "--state", str(root / f"state.{it}.json"), "--out", str(root / "model.json"))
    wall = time.perf_counter() - t0
    size = (root / "A.terms.0.json").stat().st_size
    return json.loads((root / "model.json").read_text()), wall, size


def worst(model: dict, ref) -> tuple[float, float]:
    rows = model["coefficients"]["standardised"]
    b = np.array([r["beta"] for r in rows])
    se = np.array([r["se"] for r in rows])
    return (
        float(np.max(np.abs(b - ref.params) / np.abs(ref.params))),
        float(np.max(np.abs(se - ref.bse) / ref.bse)),
    )


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-site", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    data = {
        s: make_site(args.per_site, off, rng) for s, off in zip(SITES, (0, 0.3, -0.4), strict=True)
    }
    tables = {
        s: SiteTable(source=s, id_column="IID", ids=[f"p{i}" for i in range(len(y))],
                     features=FEATURES, x=x, y=y, coding="0/1", n_read=len(y))
        for s, (x, y) in data.items()
    }  # fmt: skip
    x = np.vstack([d[0] for d in data.values()])
    y = np.concatenate([d[1] for d in data.values()])
    print(f"{len(SITES)} sites x {args.per_site} people, {len(FEATURES)} features, "
          f"{int(y.sum())} events")  # fmt: skip

    t0 = time.perf_counter()
    z = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
    ref = sm.Logit(y, sm.add_constant(z)).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    t_sm = time.perf_counter() - t0
    print(f"pooled statsmodels Logit (newton): {ref.mle_retvals['iterations']} iterations, "
          f"{t_sm * 1e3:.1f} ms")  # fmt: skip

    t0 = time.perf_counter()
    model, _ = fit_federated(tables, run_id="bench")
    t_plain = time.perf_counter() - t0
    print(f"federated, plain, in-process: {model['iterations']} rounds + 1 moments round, "
          f"{t_plain * 1e3:.1f} ms; max rel diff beta {worst(model, ref)[0]:.1e}, "
          f"se {worst(model, ref)[1]:.1e}")  # fmt: skip

    keys = {s: X25519PrivateKey.generate() for s in SITES}
    public = {s: secure.public_key_text(k) for s, k in keys.items()}
    t0 = time.perf_counter()
    masked, _ = fit_federated(tables, run_id="bench-m", keys=keys, public_keys=public)
    t_masked = time.perf_counter() - t0
    print(f"federated, masked, in-process: {masked['iterations']} rounds + 1 moments round, "
          f"{t_masked * 1e3:.1f} ms; max rel diff beta {worst(masked, ref)[0]:.1e}, "
          f"se {worst(masked, ref)[1]:.1e}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = init_state(
            add_sums([site_moments(t, site=s, run_id="b") for s, t in tables.items()]),
            sites=SITES, outcome="event",
        )  # fmt: skip
        up = mask_with_ledger(site_terms(tables["A"], state, site="A"), private_key=keys["A"],
                         public_keys=public, participants=SITES, ledger=None)  # fmt: skip
        write_sums(up, root / "masked.json")
        print(f"masked terms upload: {(root / 'masked.json').stat().st_size} bytes per site "
              "and round")  # fmt: skip
        for s, (xs, ys) in data.items():
            write_table(root / f"{s}.tsv", xs, ys)
        via_cli, t_cli, size = run_cli(root)
    print(f"federated, plain, CLI steps (files, in-process): {via_cli['iterations']} rounds, "
          f"{t_cli:.2f} s ({t_cli / (via_cli['iterations'] + 1):.2f} s per round incl. "
          f"reading the tables); terms upload {size} bytes per site and round; max rel diff "
          f"beta {worst(via_cli, ref)[0]:.1e}")  # fmt: skip


if __name__ == "__main__":
    main_bench()
