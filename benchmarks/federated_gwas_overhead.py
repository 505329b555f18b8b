"""Federated GWAS: the workflow through three loopback fedgen nodes vs Snakemake's local executor.

Same simulated federation, same workflow, same machine, one run:

  1. ``snakemake --executor fedgen --profile profiles/demo`` with one ``fedgen node`` per site;
  2. ``snakemake --cores N`` (local executor) with ``dataset_access=local`` (the data are linked).

Prints the wall time of each and the per-rule times from the benchmark files (seconds summed over
sites). Usage: ``python benchmarks/federated_gwas_overhead.py [--scale tiny|small|demo] [--seed N]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from snakemake_fedgen import demo


def rule_seconds(workdir: Path) -> dict[str, float]:
    """Seconds per rule, summed over sites, from ``benchmarks/**/*.tsv``."""
    out: dict[str, float] = defaultdict(float)
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        # benchmarks/{site}/{rule}[.{trait}...].tsv; the central meta-analysis is
        # benchmarks/meta/{trait}.tsv.
        rule = "meta_analysis" if path.parent.name == "meta" else path.name.split(".")[0]
        with path.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        if row["s"] not in ("NA", ""):
            out[rule] += float(row["s"])
    return dict(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="tiny", choices=("tiny", "small", "demo"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the run in this directory")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="fedgen-bench-"))
    data = base / "data"
    demo.simulate(data, seed=args.seed, scale=args.scale)

    fed_work, local_work = base / "federated", base / "local"
    with demo.federation(data, base / "nodes", fed_work / "sites.yaml") as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        fed_s = demo.run_snakemake(
            demo.snakemake_command(fed_work), env=env, log_path=base / "federated.log", show=False
        )
    local_work.mkdir(parents=True, exist_ok=True)
    (local_work / "sites.yaml").write_text((data / "sites.yaml").read_text())
    local_s = demo.run_snakemake(
        demo.snakemake_command(local_work, executor="local", cores=args.cores),
        env=demo.tool_env(),
        log_path=base / "local.log",
        show=False,
    )

    fed_rules, local_rules = rule_seconds(fed_work), rule_seconds(local_work)
    print(f"federated GWAS, scale {args.scale}, seed {args.seed}, {args.cores} local cores")
    print(f"{'':<22}{'fedgen (3 nodes)':>18}{'local executor':>18}")
    print(f"{'wall time (s)':<22}{fed_s:>18.1f}{local_s:>18.1f}")
    print(f"{'ratio':<22}{fed_s / local_s:>18.2f}")
    print("per-rule seconds (summed over sites; fedgen: TES task start to end)")
    for rule in sorted(set(fed_rules) | set(local_rules)):
        print(f"  {rule:<20}{fed_rules.get(rule, 0):>18.1f}{local_rules.get(rule, 0):>18.1f}")
    print(f"run kept in {base}" if args.keep else f"scratch: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
