"""Chunked vs whole-chromosome imputation, and how a site's wall time grows with its size.

Part 1 (one run, same machine): a simulated federation on several chromosomes goes through the
whole workflow twice on Snakemake's local executor (``dataset_access: local``), once with
``impute.chunk_mb: 0`` (one Beagle run per chromosome) and once chunked. Printed per mode: wall
time, and per site the Beagle seconds summed over all runs (the work) and the longest single
Beagle run (the imputation's critical path when every chunk has its own cores); then how far the
two meta-analyses differ (same variants? largest |z| difference). CPU seconds are printed next
to wall seconds: on a loaded machine they are the steadier measure of work.

Part 2 (``--scaling tiny,small,demo``): site A alone, chunked, at each scale: people x array
markers, wall time of its steps, Beagle work (wall and CPU seconds) and the longest chunk; and
Beagle CPU microseconds per (sample x panel variant), the figure the extrapolation to a
biobank-sized site uses.

Usage::

    .venv/bin/python benchmarks/chunked_imputation.py [--scale small] [--chromosomes 20,21,22]
        [--chunk-mb 20] [--overlap-mb 2] [--scaling tiny,small] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "federated-gwas"
BEAGLE_BENCH = re.compile(r"impute_beagle\.(\w+)\.(\d+)\.tsv$")


def simulate(out: Path, *, scale: str, chromosomes: str, seed: int = 42) -> dict:
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(out), "--seed",
         str(seed), "--scale", scale, "--chromosomes", chromosomes],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return yaml.safe_load((out / "truth.json").read_text())


def run_workflow(
    data: Path, work: Path, *, chromosomes: str, chunk_mb: float, overlap_mb: float,
    sites: list[str] | None = None, targets: list[str] | None = None, cores: int = 2,
) -> float:  # fmt: skip
    """Run the federated GWAS locally on ``data``; return the wall seconds."""
    work.mkdir(parents=True)
    shutil.copy(data / "sites.yaml", work / "sites.yaml")
    config = yaml.safe_load((WORKFLOW / "config" / "config.yaml").read_text())
    config["chromosomes"] = chromosomes.split(",")
    config["impute"].update(chunk_mb=chunk_mb, overlap_mb=overlap_mb)
    config.update(sites="sites.yaml", dataset_access="local", include_sites=sites or [])
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW / "workflow" / "Snakefile"),
        "--directory", str(work), "--configfile", str(work / "config.yaml"),
        "--cores", str(cores), *(targets or []),
    ]  # fmt: skip
    start = time.perf_counter()
    with (work / "snakemake.log").open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {work}; see {work / 'snakemake.log'}")
    return wall


def beagle_times(work: Path, site: str, column: str = "s") -> list[float]:
    """Wall seconds (``s``) or CPU seconds (``cpu_time``) of every Beagle run of ``site``
    (Snakemake benchmark files)."""
    times = []
    for path in sorted((work / "benchmarks" / site).glob("impute_beagle.*.tsv")):
        if BEAGLE_BENCH.search(path.name):
            with path.open() as f:
                times.append(float(next(csv.DictReader(f, delimiter="\t"))[column]))
    return times


def meta_rows(work: Path, trait: str = "qt") -> dict[tuple[str, str, str, str], float]:
    with gzip.open(work / "results" / "meta" / f"{trait}.tsv.gz", "rt") as f:
        return {
            (r["chromosome"], r["base_pair_location"], r["effect_allele"], r["other_allele"]):
            float(r["z"])
            for r in csv.DictReader(f, delimiter="\t")
        }  # fmt: skip


def part1(args: argparse.Namespace, base: Path) -> None:
    data = base / "federation"
    truth = simulate(data, scale=args.scale, chromosomes=args.chromosomes)
    sites = list(truth["sites"])
    print(
        f"federation: scale {args.scale}, chromosomes {args.chromosomes}, "
        + ", ".join(f"{s} {truth['sites'][s]['n_samples']} people" for s in sites)
        + f"; panel {truth['reference_panel']['n_samples']} x "
        f"{truth['reference_panel']['n_variants']} variants; {args.cores} cores"
    )
    modes = {"whole chromosomes": 0.0, f"chunks of {args.chunk_mb:g} Mb": args.chunk_mb}
    results = {}
    for label, chunk_mb in modes.items():
        work = base / f"run-{chunk_mb:g}"
        wall = run_workflow(
            data, work, chromosomes=args.chromosomes, chunk_mb=chunk_mb,
            overlap_mb=args.overlap_mb, cores=args.cores,
        )  # fmt: skip
        results[label] = (work, wall)
        print(f"\n{label}: wall time {wall:.0f} s")
        print(
            f"  {'site':<5}{'Beagle runs':>12}{'wall s (sum)':>14}{'CPU s (sum)':>13}"
            f"{'longest run s':>15}"
        )
        for site in sites:
            t, cpu = beagle_times(work, site), beagle_times(work, site, "cpu_time")
            print(f"  {site:<5}{len(t):>12}{sum(t):>14.1f}{sum(cpu):>13.1f}{max(t):>15.1f}")
    (w0, t0), (w1, t1) = results.values()
    a, b = meta_rows(w0), meta_rows(w1)
    common = a.keys() & b.keys()
    dz = max(abs(a[k] - b[k]) for k in common)
    print(
        f"\nchunked / whole wall time: {t1 / t0:.2f}; meta-analysis (qt): {len(a)} vs {len(b)} "
        f"variants, {len(common)} in both, largest |z| difference {dz:.3f}"
    )


def part2(args: argparse.Namespace, base: Path) -> None:
    print(f"\nscaling, site A alone, chunks of {args.chunk_mb:g} Mb, {args.cores} cores")
    print(
        f"  {'scale':<7}{'people':>8}{'markers':>9}{'panel vars':>11}{'wall s':>8}"
        f"{'chunks':>7}{'Beagle s':>10}{'CPU s':>8}{'longest':>9}{'us/(sample*var)':>16}"
    )
    for scale in args.scaling.split(","):
        data = base / f"scale-{scale}"
        truth = simulate(data, scale=scale, chromosomes=args.chromosomes)
        work = base / f"scaling-{scale}"
        wall = run_workflow(
            data, work, chromosomes=args.chromosomes, chunk_mb=args.chunk_mb,
            overlap_mb=args.overlap_mb, sites=["A"], targets=["results/sumstats/A/qt.tsv.gz"],
            cores=args.cores,
        )  # fmt: skip
        t, cpu = beagle_times(work, "A"), beagle_times(work, "A", "cpu_time")
        site = truth["sites"]["A"]
        n_panel = truth["reference_panel"]["n_samples"]
        variants = truth["reference_panel"]["n_variants"]
        # Beagle's work grows with the samples phased and imputed times the panel's variants.
        rate = sum(cpu) / ((site["n_samples"] + n_panel) * variants) * 1e6
        print(
            f"  {scale:<7}{site['n_samples']:>8}{site['n_variants']:>9}{variants:>11}"
            f"{wall:>8.0f}{len(t):>7}{sum(t):>10.1f}{sum(cpu):>8.1f}{max(t):>9.1f}{rate:>16.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--chromosomes", default="20,21,22")
    parser.add_argument("--chunk-mb", type=float, default=20)
    parser.add_argument("--overlap-mb", type=float, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--scaling", default="", help="scales for part 2, e.g. tiny,small,demo")
    parser.add_argument("--skip-comparison", action="store_true", help="part 2 only")
    parser.add_argument("--keep", type=Path, help="keep the runs here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="fedgen-chunks-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_comparison:
            part1(args, base)
        if args.scaling:
            part2(args, base)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
