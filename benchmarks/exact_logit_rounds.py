"""The binary-trait exact GWAS's Newton rounds through real nodes, against an in-memory fit.

Runs (or reads, with ``--run``) the tiny federation's workflow with ``method: exact-linear``,
``exact.binary: logistic`` and node-masked secure aggregation on three loopback nodes, and
prints: rounds to convergence, wall time per round (between the centre's consecutive states:
every site's TES task with the state uploaded to its ingress, the airlock and the node's
masking, the download, the step and Snakemake's DAG update), bytes uploaded per site per round,
the state's size, and the same site and centre steps in one process on the sites' files (read as their admins
would), unmasked, with the largest relative difference of beta and SE::

    .venv/bin/python benchmarks/exact_logit_rounds.py [--run DIR]

``DIR`` holds ``coordinator/`` (the workflow's directory) as this script or
``tests/workflow/test_exact_workflow.py`` leaves it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from risk_rounds import _rows, _site_file

from snakemake_fedgen import demo
from snakemake_fedgen.exact.aggregates import read_variant_table
from snakemake_fedgen.exact.logistic import (
    LogisticSite,
    centre_step,
    init_state,
    site_round_terms,
    state_result,
)
from snakemake_fedgen.exact.secure import generate_key

SITES = ("A", "B", "C")
CONFIG = "method: exact-linear\nexact:\n  secure: true\n  round: bench.1\n  binary: logistic\n"
TARGET = "results/exact/bt.tsv.gz"


def run_workflow(out: Path) -> float:
    """Simulate the tiny federation, start its nodes, run the binary exact target; seconds."""
    data, work = out / "data", out / "coordinator"
    demo.simulate(data, seed=7, scale="tiny")
    keys = {}
    for site in SITES:
        keys[site] = out / "keys" / site / "x25519.key"
        generate_key(keys[site])
    extra = out / "logit.yaml"
    extra.write_text(CONFIG)
    with demo.federation(data, out / "nodes", work / "sites.yaml", masking_keys=keys) as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        cmd = demo.snakemake_command(work)
        at = cmd.index("--config")
        cmd = [*cmd[:at], TARGET, "--configfile", str(demo.CONFIGFILE), str(extra), *cmd[at:]]
        t0 = time.perf_counter()
        demo.run_snakemake(cmd, env=env, log_path=out / "snakemake.log", show=False)
        return time.perf_counter() - t0


def report(out: Path) -> None:
    work = out / "coordinator"
    logit = work / "results" / "exact" / "bt" / "logit"
    states = sorted(logit.glob("state.*.json"), key=lambda p: int(p.name.split(".")[1]))
    final = json.loads(states[-1].read_text())
    per_round = np.diff([p.stat().st_mtime for p in states])
    uploads = sorted(work.glob("results/sumstats/*/bt.logit.*.sums.json"))
    sizes = [p.stat().st_size for p in uploads]
    # The same fit in memory, on the files each site analysed.
    loaded = []
    for site in SITES:
        prefix = _site_file(work, f"sites/{site}/impute/imputed.pgen").with_suffix("")
        for ext in (".pvar", ".psam"):
            _site_file(work, f"sites/{site}/impute/imputed{ext}")
        covar = _site_file(work, f"sites/{site}/gwas/covariates.tsv")
        pheno = _site_file(work, f"sites/{site}/qc/phenotypes.tsv")
        pcs = [c for c in _rows(covar)[0] if c.startswith("PC")]
        loaded.append(
            LogisticSite.load(
                prefix, pheno, pheno_name="bt", covar=covar, covar_names=("age", "sex", *pcs),
                site=site, sites=SITES, min_n=50, min_mac=10,
            )
        )  # fmt: skip
    layout = read_variant_table(_site_file(work, "sites/A/exact/panel_variants.tsv"))
    t0 = time.perf_counter()
    state = init_state(round_id="memory", sites=SITES)
    while not state["stopped"]:
        state = centre_step(state, [site_round_terms(s, state, layout)[0] for s in loaded])
    result, _ = state_result(state)
    memory_s = time.perf_counter() - t0
    mine = {v: (b, se) for v, b, se in zip(result.vid, result.beta, result.se, strict=True)}
    got = [r for r in _gz_rows(work / TARGET) if r["beta"] != "NA"]
    rel = [
        max(abs(float(r["beta"]) / mine[r["variant_id"]][0] - 1),
            abs(float(r["standard_error"]) / mine[r["variant_id"]][1] - 1))
        for r in got if r["variant_id"] in mine and np.isfinite(mine[r["variant_id"]][0])
    ]  # fmt: skip
    print(f"run: {out}")
    print(
        f"rounds {final['iteration']}; s/round {statistics.median(per_round):.1f} "
        f"({per_round.min():.1f}-{per_round.max():.1f}); bytes/site/round "
        f"{statistics.median(sizes):.0f} (masked fedgen-sums/1); state {states[-1].stat().st_size}"
        f" bytes (via ingress); panel variants {len(final['variants'])}, solved {len(got)}"
    )
    print(
        f"in memory (the same site and centre steps in one process, plain): "
        f"{state['iteration']} rounds, "
        f"{memory_s:.2f} s; max relative difference of beta/SE: {max(rel):.2e} over "
        f"{len(rel)} variants"
    )


def _gz_rows(path: Path) -> list[dict[str, str]]:
    import gzip

    with gzip.open(path, "rt") as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("##")]
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"), strict=True)) for ln in lines[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run's directory")
    args = parser.parse_args()
    if args.run is not None:
        report(args.run)
        return 0
    with tempfile.TemporaryDirectory(prefix="exact-logit-") as tmp:
        seconds = run_workflow(Path(tmp))
        print(f"workflow (simulation excluded): {seconds:.0f} s")
        report(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
