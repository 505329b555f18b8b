"""Chunked imputation end to end: a two-chromosome tiny federation imputed whole and in chunks.

Beagle's result depends on the stretch of genome it sees (it phases and imputes in windows, with
random starting haplotypes), so chunked and whole-chromosome imputation cannot give the same
bytes; neither do two whole-chromosome runs with different seeds. The honest check is that the
chunks cost no more than the imputation's own run-to-run variation: the workflow runs three
times on Snakemake's local executor (``dataset_access: local``, the same rules the sites run),
whole with seed 1, whole with seed 2 and chunked with seed 1, and the chunked meta-analysis must
differ from the first no more than the second does. What must be exact is exact: the same panel
variants are imputed (every position in exactly one chunk), the chunks tile each chromosome with
the configured flanks, and both chromosomes reach the meta-analysis.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from snakemake_fedgen import demo
from snakemake_fedgen.assemblies import chrom_length
from snakemake_fedgen.impute import ChunkStatus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMOSOMES = ["20", "22"]
CHUNK_MB, OVERLAP_MB = 25, 2
RUNS = {"whole": (0, 1), "whole_seed2": (0, 2), "chunked": (CHUNK_MB, 1)}


def _snakemake(work: Path, config: dict[str, Any]) -> None:
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(demo.SNAKEFILE),
        "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "2",
    ]  # fmt: skip
    with (work / "snakemake.log").open("a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, f"snakemake failed; see {work / 'snakemake.log'}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("chunked")
    data, work = root / "data", root / "work"
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(data), "--seed",
         "11", "--scale", "tiny", "--chromosomes", ",".join(CHROMOSOMES)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    work.mkdir()
    shutil.copy(data / "sites.yaml", work / "sites.yaml")
    config = yaml.safe_load(demo.CONFIGFILE.read_text())
    config.update(
        sites="sites.yaml",
        dataset_access="local",
        chromosomes=CHROMOSOMES,
        traits={"qt": config["traits"]["qt"]},
    )
    out: dict[str, Any] = {
        "work": work,
        "sites": list(yaml.safe_load((work / "sites.yaml").read_text())["sites"]),
    }
    # One working directory: QC runs once, each run redoes imputation and what follows it.
    for name, (chunk_mb, seed) in RUNS.items():
        config["impute"].update(chunk_mb=chunk_mb, overlap_mb=OVERLAP_MB, seed=seed)
        _snakemake(work, config)
        keep = root / name
        keep.mkdir()
        shutil.copy(work / "results" / "meta" / "qt.tsv.gz", keep / "qt.tsv.gz")
        for site in out["sites"]:
            shutil.copy(
                work / "sites" / site / "impute" / "imputed.counts.tsv",
                keep / f"{site}.imputed.counts.tsv",
            )
        out[name] = keep
    return out


def _z(path: Path) -> dict[tuple[str, ...], float]:
    with gzip.open(path, "rt") as f:
        return {
            (r["chromosome"], r["base_pair_location"], r["effect_allele"], r["other_allele"]):
            float(r["z"])
            for r in csv.DictReader(f, delimiter="\t")
        }  # fmt: skip


def _counts(path: Path) -> dict[str, int]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {q: int(c) for _, q, c in rows}


def test_chunks__tile_each_chromosome_with_their_flanks(runs: dict[str, Any]) -> None:
    for site in runs["sites"]:
        for chrom in CHROMOSOMES:
            length = chrom_length("GRCh38", chrom)
            statuses = sorted(
                (
                    ChunkStatus.read(p)
                    for p in (runs["work"] / "sites" / site / "impute" / chrom).glob(
                        "chunk*.status.tsv"
                    )
                ),
                key=lambda s: s.chunk.start,
            )
            assert len(statuses) == -(-length // (CHUNK_MB * 10**6))
            assert statuses[0].chunk.start == 1 and statuses[-1].chunk.end == length
            for a, b in itertools.pairwise(statuses):
                assert b.chunk.start == a.chunk.end + 1
            for s in statuses:
                assert s.chunk.window_start == max(1, s.chunk.start - OVERLAP_MB * 10**6)
                assert s.chunk.window_end == min(length, s.chunk.end + OVERLAP_MB * 10**6)


def test_chunks__impute_exactly_the_panel_variants_the_whole_run_imputes(
    runs: dict[str, Any],
) -> None:
    for site in runs["sites"]:
        whole = _counts(runs["whole"] / f"{site}.imputed.counts.tsv")
        chunked = _counts(runs["chunked"] / f"{site}.imputed.counts.tsv")
        assert whole["chunks"] == len(CHROMOSOMES)
        assert chunked["chunks"] == sum(
            -(-chrom_length("GRCh38", c) // (CHUNK_MB * 10**6)) for c in CHROMOSOMES
        )
        assert whole["variants_imputed"] == chunked["variants_imputed"] > 0
        # A chunk may be skipped only where the panel has nothing in it: no variant is lost.
        assert chunked["variants_chunk_skipped"] == 0
        skipped = [
            status
            for chrom in CHROMOSOMES
            for path in (runs["work"] / "sites" / site / "impute" / chrom).glob("chunk*.status.tsv")
            if not (status := ChunkStatus.read(path)).impute
        ]
        assert len(skipped) == chunked["chunks_skipped"]
        assert all(s.panel_variants_in_chunk == 0 for s in skipped)


def test_chunks__differ_from_whole_no_more_than_another_seed_does(runs: dict[str, Any]) -> None:
    whole, seed2, chunked = (_z(runs[n] / "qt.tsv.gz") for n in RUNS)
    assert {k[0] for k in chunked} == set(CHROMOSOMES)  # the whole genome is meta-analysed

    def diff(a: dict[tuple[str, ...], float], b: dict[tuple[str, ...], float]) -> tuple[int, float]:
        common = a.keys() & b.keys()
        return len(common), statistics.mean(abs(a[k] - b[k]) for k in common)

    n_seed, dz_seed = diff(seed2, whole)
    n_chunk, dz_chunk = diff(chunked, whole)
    print(f"shared variants / mean |dz|: other seed {n_seed} / {dz_seed:.4f}, "
          f"chunks {n_chunk} / {dz_chunk:.4f}")  # fmt: skip
    assert dz_seed > 0  # the imputation really does vary from run to run
    assert dz_chunk <= 1.5 * dz_seed
    assert n_chunk >= 0.99 * n_seed
    top = max(whole, key=lambda k: abs(whole[k]))
    assert abs(chunked.get(top, 0.0)) > 5.45  # p < 5e-8 in both
