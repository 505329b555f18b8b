"""Site-side cost of exact mode against plain summary statistics, per 100k variants.

One simulated site (dosages written with pgenlib) is analysed two ways, single-threaded:

* exact mode: ``fedgen exact aggregate`` (aggregates table, the plain egress file), then
  ``fedgen exact mask`` (the secure-aggregation upload for a three-site round);
* summary statistics: ``plink2 --glm`` followed by ``fedgen sumstats export`` (GWAS-SSF
  ``.tsv.gz`` + ``-meta.yaml``, the egress files of the meta-analysis route).

It prints wall and CPU time and egress bytes (as written, and gzip -6 for comparison) scaled to 100k
variants. Run by hand::

    .venv/bin/python benchmarks/exact_vs_sumstats.py --samples 2000 --variants 100000
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pgenlib
import yaml

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_site(root: Path, n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(0.01, 0.5, m)
    writer = pgenlib.PgenWriter(bytes(root / "site.pgen"), n, variant_ct=m, dosage_present=True)
    chunk = 2000
    for start in range(0, m, chunk):
        f = freqs[start : start + chunk]
        dos = np.clip(
            rng.binomial(2, f[:, None], (len(f), n)) + rng.normal(0, 0.1, (len(f), n)), 0, 2
        )
        for row in dos:
            writer.append_dosages(np.ascontiguousarray(row))
    writer.close()
    with (root / "site.pvar").open("w") as out:
        out.write("#CHROM\tPOS\tID\tREF\tALT\n")
        for j in range(m):
            pos = 60000 + 50 * j
            out.write(f"20\t{pos}\t20:{pos}:A:G\tA\tG\n")
    iids = [f"S{i}" for i in range(n)]
    (root / "site.psam").write_text("#FID\tIID\n" + "".join(f"{i}\t{i}\n" for i in iids))
    age = rng.normal(55, 9, n)
    sex = rng.integers(1, 3, n)
    y = 0.03 * age + rng.normal(0, 1, n)
    (root / "pheno.tsv").write_text(
        "#FID\tIID\tage\tsex\tqt\n"
        + "".join(
            f"{i}\t{i}\t{a:.3f}\t{s}\t{v:.5f}\n"
            for i, a, s, v in zip(iids, age, sex, y, strict=True)
        )
    )


class Cost(float):
    """Wall seconds of a command, with its CPU seconds (user + system) in ``cpu``."""

    cpu: float = 0.0

    def __add__(self, other):
        out = Cost(float(self) + float(other))
        out.cpu = self.cpu + getattr(other, "cpu", 0.0)
        return out


def timed(cmd: list[str], cwd: Path) -> Cost:
    # CPU time of the child as well as wall time: on a shared machine wall time is noisy.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    elapsed = Cost(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    return elapsed


def gz_size(path: Path) -> int:
    data = path.read_bytes()
    return len(data) if data[:2] == b"\x1f\x8b" else len(gzip.compress(data, 6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fedgen-exact-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    fedgen = [sys.executable, "-m", "snakemake_fedgen"]
    t0 = time.perf_counter()
    make_site(root, args.samples, args.variants, args.seed)
    print(f"simulated {args.samples} samples x {args.variants} variants in "
          f"{time.perf_counter() - t0:.1f} s under {root}")  # fmt: skip

    # Three-site registry so the aggregates carry site indicators and the mask is a real round.
    registry = {"version": 1, "sites": {}}
    for s in ("A", "B", "C"):
        key = root / f"{s}.key"
        key.unlink(missing_ok=True)
        out = subprocess.run(
            [*fedgen, "exact", "keygen", "--out", str(key)], capture_output=True, text=True,
            check=True, env=ENV,
        ).stdout  # fmt: skip
        registry["sites"][s] = {
            "tes_url": "http://127.0.0.1:1",
            "work_url": f"file://{root}",
            "public_key_x25519": out.split(":", 1)[1].strip(),
        }
    (root / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))

    t_agg = timed(
        [*fedgen, "exact", "aggregate", "--pfile", "site", "--pheno", "pheno.tsv",
         "--pheno-name", "qt", "--covar-name", "age,sex", "--site", "A",
         "--registry", "sites.yaml", "--out", "A.aggregates.tsv"],
        root,
    )  # fmt: skip
    t_agg_gz = timed(
        [*fedgen, "exact", "aggregate", "--pfile", "site", "--pheno", "pheno.tsv",
         "--pheno-name", "qt", "--covar-name", "age,sex", "--site", "A",
         "--registry", "sites.yaml", "--out", "A.aggregates.tsv.gz"],
        root,
    )  # fmt: skip
    (root / "A.key.rounds").unlink(missing_ok=True)
    t_mask = timed(
        [*fedgen, "exact", "mask", "--aggregates", "A.aggregates.tsv", "--key", "A.key",
         "--registry", "sites.yaml", "--round", "bench", "--participants", "A,B,C",
         "--variants", "site.pvar", "--out", "A.aggregates.masked.tsv"],
        root,
    )  # fmt: skip
    t_glm = timed(
        ["plink2", "--threads", "1", "--pfile", "site", "--pheno", "pheno.tsv",
         "--pheno-name", "qt", "--covar", "pheno.tsv", "--covar-name", "age,sex",
         "--glm", "hide-covar", "omit-ref", "cols=+a1freq", "--out", "glm"],
        root,
    )  # fmt: skip
    t_export = timed(
        [*fedgen, "sumstats", "export", "--glm", "glm.qt.glm.linear", "--out",
         "A.sumstats.tsv.gz", "--site", "A", "--assembly", "GRCh38"],
        root,
    )  # fmt: skip
    scale = 100_000 / args.variants
    agg = root / "A.aggregates.tsv"
    agg_gz = root / "A.aggregates.tsv.gz"
    masked = root / "A.aggregates.masked.tsv"
    ss = root / "A.sumstats.tsv.gz"
    ss_meta = root / "A.sumstats.tsv.gz-meta.yaml"
    rows = [
        ("exact: aggregate", t_agg, agg.stat().st_size, gz_size(agg)),
        ("exact: aggregate .tsv.gz", t_agg_gz, agg_gz.stat().st_size, agg_gz.stat().st_size),
        ("exact: aggregate + mask", t_agg + t_mask, masked.stat().st_size, gz_size(masked)),
        (
            "sumstats: glm + export",
            t_glm + t_export,
            ss.stat().st_size + ss_meta.stat().st_size,
            ss.stat().st_size + gz_size(ss_meta),
        ),
    ]
    print(f"\none site, n={args.samples}, {args.variants} variants, 1 thread; per 100k variants:")
    print(f"{'route':<26}{'wall s':>9}{'cpu s':>9}{'egress MB':>12}{'gzip MB':>10}")
    for name, secs, size, gz in rows:
        print(
            f"{name:<26}{secs * scale:>9.2f}{secs.cpu * scale:>9.2f}"
            f"{size * scale / 1e6:>12.2f}{gz * scale / 1e6:>10.2f}"
        )
    print(
        f"(cpu s of parts: plink2 --glm {t_glm.cpu * scale:.2f}, sumstats export "
        f"{t_export.cpu * scale:.2f}, exact mask {t_mask.cpu * scale:.2f}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
