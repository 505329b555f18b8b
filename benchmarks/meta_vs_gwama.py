"""Benchmark: ``fedgen meta`` against GWAMA 2.2.2 on the same machine in the same run.

Part 1 generates S studies x M variants (sorted GWAS-SSF tsv.gz for us, GWAMA's text format for
GWAMA; swapped alleles, strand flips, palindromic SNPs and missing variants included), runs
``GWAMA -qt`` and ``fedgen meta``, and prints wall time and peak RSS of each (from
``/usr/bin/time -v``) and their ratio. Part 2 runs ``fedgen meta`` alone on a larger set.

Usage::

    python benchmarks/meta_vs_gwama.py --workdir /tmp/metabench            # 5x1M, then 10x5M
    python benchmarks/meta_vs_gwama.py --studies 5 --variants 200000 --large-studies 0
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GWAMA = "/usr/bin/GWAMA"
TIME = "/usr/bin/time"
BASES = np.array(list("ACGT"))
# Approximate GRCh38 chromosome lengths (Mb) so variants spread like a real genome.
CHROM_MB = [248, 242, 198, 190, 181, 171, 159, 145, 138, 134, 135, 133, 114, 107, 102, 90, 83,
            80, 59, 64, 47, 51]  # fmt: skip


def simulate_variants(m: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """True variants: sorted by chromosome and position, 8% palindromic, 3% indels."""
    share = np.array(CHROM_MB, dtype=float) / sum(CHROM_MB)
    counts = rng.multinomial(m, share)
    chrom = np.repeat(np.arange(1, 23), counts)
    pos = np.concatenate(
        [
            np.sort(rng.choice(mb * 1_000_000, c, replace=False)) + 1
            for mb, c in zip(CHROM_MB, counts, strict=True)
        ]
    )
    a = rng.integers(0, 4, m)
    b = (a + rng.integers(1, 4, m)) % 4  # any other base; 1/3 of these pairs are palindromic
    pal = b == 3 - a
    # Keep about 8% palindromic by re-drawing most of them as non-palindromic pairs.
    redraw = pal & (rng.random(m) > 0.25)
    b[redraw] = np.where(a[redraw] % 2 == 0, (a[redraw] + 1) % 4, (a[redraw] + 3) % 4)
    ea = BASES[a].astype(object)
    oa = BASES[b].astype(object)
    indel = rng.random(m) < 0.03
    oa[indel] = ea[indel] + BASES[rng.integers(0, 4, indel.sum())].astype(object)
    freq = rng.uniform(0.02, 0.5, m)
    return {"chrom": chrom, "pos": pos, "ea": ea, "oa": oa, "freq": freq, "indel": indel}


def write_study(
    truth: dict[str, np.ndarray],
    study: int,
    *,
    ssf: Path,
    gwama: Path | None,
    rng: np.random.Generator,
) -> None:
    """Write one study's rows (95% of the variants) as GWAS-SSF tsv.gz and GWAMA text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from snakemake_fedgen.sumstats.writer import AtomicTsvGzWriter

    m = len(truth["pos"])
    keep = rng.random(m) >= 0.05
    idx = np.flatnonzero(keep)
    n = int(rng.integers(2000, 20000))
    f = np.clip(truth["freq"][idx] + rng.normal(0, 0.01, len(idx)), 0.01, 0.99)
    se = 1.0 / np.sqrt(2 * n * f * (1 - f))
    beta = rng.normal(0, se)
    ea, oa = truth["ea"][idx].copy(), truth["oa"][idx].copy()
    swap = rng.random(len(idx)) < 0.3
    ea[swap], oa[swap] = oa[swap], ea[swap].copy()
    beta[swap] = -beta[swap]
    f[swap] = 1 - f[swap]
    snp = ~truth["indel"][idx]
    pal = snp & np.array([x + y in ("AT", "TA", "CG", "GC") for x, y in zip(ea, oa, strict=True)])
    flip = snp & ~pal & (rng.random(len(idx)) < 0.1)
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    ea[flip] = [comp[x] for x in ea[flip]]
    oa[flip] = [comp[x] for x in oa[flip]]
    z = np.abs(beta / se)
    from scipy.special import log_ndtr

    p = np.exp(np.log(2) + log_ndtr(-z))
    ids = np.char.add("v", idx.astype(str))
    table = pa.table(
        {
            "chromosome": pa.array(truth["chrom"][idx].astype(str)),
            "base_pair_location": pa.array(truth["pos"][idx]),
            "effect_allele": pa.array(ea, type=pa.string()),
            "other_allele": pa.array(oa, type=pa.string()),
            "beta": pa.array(np.round(beta, 6)),
            "standard_error": pa.array(np.round(se, 6)),
            "effect_allele_frequency": pa.array(np.round(f, 4)),
            "p_value": pa.array(p),
            "n": pa.array(np.full(len(idx), n)),
            "rsid": pa.array(ids),
        }
    )
    with AtomicTsvGzWriter(ssf) as writer:
        writer.write_table(table)
    if gwama is not None:
        gw = pa.table(
            {
                "MARKERNAME": table["rsid"],
                "EA": table["effect_allele"],
                "NEA": table["other_allele"],
                "BETA": table["beta"],
                "SE": table["standard_error"],
                "N": table["n"],
                "EAF": table["effect_allele_frequency"],
                "STRAND": pa.array(np.full(len(idx), "+")),
            }
        )
        with open(gwama, "wb") as fh:
            fh.write(b"\t".join(c.encode() for c in gw.column_names) + b"\n")
            pacsv.write_csv(
                gw,
                fh,
                write_options=pacsv.WriteOptions(
                    include_header=False, delimiter="\t", quoting_style="none"
                ),
            )


def timed(cmd: list[str], *, cwd: Path) -> tuple[float, float, float]:
    """Run ``cmd`` under /usr/bin/time -v; return (wall s, CPU s (user+sys), peak RSS MB)."""
    log = cwd / ".time.log"
    start = time.perf_counter()
    proc = subprocess.run(
        [TIME, "-v", "-o", str(log), *cmd],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    text = log.read_text()
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    cpu = sum(
        float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", text).group(1))
        for kind in ("User", "System")
    )
    return wall, cpu, rss_kb / 1024


def fedgen_cmd(files: list[Path], out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake_fedgen", "meta", *extra, "--out", str(out),
        *map(str, files),
    ]  # fmt: skip


# Reading the inputs and nothing else: ISA-L decompression and Arrow's CSV parser for the eight
# columns a meta-analysis needs, one study per thread on every core. No harmonisation, no
# statistics, no output: a floor for any implementation that reads these gzip text files.
_READ_FLOOR = """
import sys
from concurrent.futures import ThreadPoolExecutor
import pyarrow as pa, pyarrow.csv as pacsv
from isal import igzip
cols = ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
        "standard_error", "effect_allele_frequency", "n"]
def parse(chunk):
    return pacsv.read_csv(
        pa.py_buffer(chunk),
        read_options=pacsv.ReadOptions(use_threads=False, column_names=names),
        parse_options=pacsv.ParseOptions(delimiter="\\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(include_columns=cols),
    ).num_rows
def read(path):
    rows, carry = 0, b""
    with igzip.open(path, "rb") as fh:
        fh.readline()
        while data := fh.read(1 << 24):
            buf = carry + data
            cut = buf.rfind(b"\\n") + 1
            rows += parse(buf[:cut])
            carry = buf[cut:]
    return rows + (parse(carry) if carry.strip() else 0)
with igzip.open(sys.argv[1], "rt") as fh:
    names = fh.readline().rstrip("\\n").split("\\t")
with ThreadPoolExecutor() as pool:
    print(sum(pool.map(read, sys.argv[1:])))
"""


def read_floor_cmd(files: list[Path]) -> list[str]:
    return [sys.executable, "-c", _READ_FLOOR, *map(str, files)]


def generate(workdir: Path, studies: int, variants: int, *, seed: int, gwama: bool) -> list[Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = simulate_variants(variants, rng)
    files = []
    for s in range(studies):
        ssf = workdir / f"study{s}.tsv.gz"
        gw = workdir / f"study{s}.gwama.txt" if gwama else None
        if not ssf.exists() or (gw is not None and not gw.exists()):
            write_study(truth, s, ssf=ssf, gwama=gw, rng=np.random.default_rng(seed * 100 + s))
        files.append(ssf)
    if gwama:
        (workdir / "gwama.in").write_text("".join(f"study{s}.gwama.txt\n" for s in range(studies)))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fedgen-meta-bench"))
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--variants", type=int, default=1_000_000)
    parser.add_argument("--large-studies", type=int, default=10, help="0 skips part 2")
    parser.add_argument("--large-variants", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip-small", action="store_true", help="only part 2 (fedgen meta on the large set)"
    )
    args = parser.parse_args()

    if not args.skip_small:
        compare(args)
    if args.large_studies:
        large_run(args)
    return 0


def compare(args: argparse.Namespace) -> None:
    """Part 1: GWAMA and fedgen meta on the same studies."""
    small = args.workdir / f"{args.studies}x{args.variants}"
    t0 = time.perf_counter()
    files = generate(small, args.studies, args.variants, seed=args.seed, gwama=True)
    print(
        f"generated {args.studies} x {args.variants:,} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    load = os.getloadavg()[0]
    gw_wall, gw_cpu, gw_rss = timed([GWAMA, "-qt", "-i", "gwama.in", "-o", "gwama"], cwd=small)
    fg_wall, fg_cpu, fg_rss = timed(fedgen_cmd(files, small / "fedgen"), cwd=small)
    np_wall, np_cpu, np_rss = timed(
        fedgen_cmd(files, small / "fedgen-noplots", "--no-plots"), cwd=small
    )
    rd_wall, rd_cpu, rd_rss = timed(read_floor_cmd(files), cwd=small)
    with open(small / "gwama.out") as fh:
        rows = sum(1 for _ in fh) - 1
    print(f"\n== {args.studies} studies x {args.variants:,} variants (same machine, same run)")
    print(f"load average before the runs: {load:.1f} on {os.cpu_count()} cores")
    print(
        f"GWAMA 2.2.2 -qt : wall {gw_wall:7.1f} s  cpu {gw_cpu:7.1f} s  "
        f"peak RSS {gw_rss:6.0f} MB  ({rows:,} SNPs out)"
    )
    print(
        f"fedgen meta     : wall {fg_wall:7.1f} s  cpu {fg_cpu:7.1f} s  peak RSS {fg_rss:6.0f} MB"
    )
    print(
        f"  --no-plots    : wall {np_wall:7.1f} s  cpu {np_cpu:7.1f} s  peak RSS {np_rss:6.0f} MB"
    )
    print(
        f"reading only    : wall {rd_wall:7.1f} s  cpu {rd_cpu:7.1f} s  peak RSS {rd_rss:6.0f} MB"
        "  (decompress + parse the inputs, nothing else)"
    )
    print(
        f"speed-up: wall {gw_wall / fg_wall:.1f}x ({gw_wall / np_wall:.1f}x without plots), "
        f"cpu {gw_cpu / fg_cpu:.1f}x; peak memory GWAMA/fedgen {gw_rss / fg_rss:.2f}; "
        f"reading the inputs alone is GWAMA/{gw_wall / rd_wall:.1f}"
    )


def large_run(args: argparse.Namespace) -> None:
    """Part 2: fedgen meta alone on the large set."""
    large = args.workdir / f"{args.large_studies}x{args.large_variants}"
    t0 = time.perf_counter()
    files = generate(
        large, args.large_studies, args.large_variants, seed=args.seed + 1, gwama=False
    )
    print(
        f"\ngenerated {args.large_studies} x {args.large_variants:,} in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    load = os.getloadavg()[0]
    wall, cpu, rss = timed(fedgen_cmd(files, large / "fedgen"), cwd=large)
    print(f"== {args.large_studies} studies x {args.large_variants:,} variants, fedgen meta")
    print(f"load average before the run: {load:.1f} on {os.cpu_count()} cores")
    print(f"fedgen meta     : wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak RSS {rss:6.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
