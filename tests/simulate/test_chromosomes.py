"""``fedgen simulate --chromosomes``: several chromosomes in valid multi-contig files."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from snakemake_executor_plugin_fedgen.errors import SimulationError

from snakemake_fedgen.simulate.chromosomes import (
    GRCH38_LENGTHS,
    parse_chromosomes,
    span_end,
    split_sizes,
)
from snakemake_fedgen.simulate.federation import build_federation
from snakemake_fedgen.simulate.scales import SCALES

SEED = 7  # the seed of the ``tiny`` fixture
CHROMS = ("20", "21", "22")
SITES = ("A", "B", "C")


def _query(vcf: Path, fmt: str = "%CHROM\t%POS\t%REF\t%ALT\n") -> list[list[str]]:
    out = subprocess.run(
        ["bcftools", "query", "-f", fmt, str(vcf)], check=True, capture_output=True, text=True
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


def _vcfs(root: Path) -> list[Path]:
    return [root / "reference/panel.vcf.gz", *(root / f"sites/{s}/genotypes.vcf.gz" for s in SITES)]


def test_parse_chromosomes__numeric_order_and_ranges():
    assert parse_chromosomes("22,20,21") == CHROMS
    assert parse_chromosomes(" 3 , 1-2 ") == ("1", "2", "3")
    assert parse_chromosomes("1-22") == tuple(str(i) for i in range(1, 23))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chr20", "'chr20' is not a simulated chromosome"),
        ("X", "'X' is not a simulated chromosome"),
        ("23", "'23' is not a simulated chromosome"),
        ("20,21,20", "chromosome 20 is given twice"),
        ("22-20", "range 22-20 runs backwards"),
        (" , ", "no chromosome given"),
    ],
)
def test_parse_chromosomes__refuses_bad_lists_with_the_fix(text, message):
    with pytest.raises(SimulationError, match=re.escape(message)):
        parse_chromosomes(text)


def test_split_sizes__loci_even_at_least_one_background_by_length():
    loci, bg = split_sizes(CHROMS, n_loci=3, n_background=3000)
    assert loci.tolist() == [1, 1, 1]
    assert bg.sum() == 3000
    share = np.array([GRCH38_LENGTHS[c] for c in CHROMS]) / sum(GRCH38_LENGTHS[c] for c in CHROMS)
    assert np.abs(bg - 3000 * share).max() < 1
    assert split_sizes(CHROMS, n_loci=5, n_background=10)[0].tolist() == [2, 2, 1]
    loci, bg = split_sizes(tuple(str(i) for i in range(1, 23)), n_loci=3, n_background=1000)
    assert loci.tolist() == [1] * 22 and bg.sum() == 1000 and bg[0] > bg[20]
    assert split_sizes(("20",), n_loci=3, n_background=3000)[1].tolist() == [3000]


def test_span_end__keeps_chromosome_20_as_it_was():
    assert span_end("20") == 63_000_000
    assert all(1_000_000 < span_end(c) < GRCH38_LENGTHS[c] for c in GRCH38_LENGTHS)


def test_simulate__chromosomes_20_is_the_default_byte_for_byte(tiny: Path, tmp_path, simulate_cli):
    again = tmp_path / "chr20"
    proc = simulate_cli(again, "--chromosomes", "20")
    assert proc.returncode == 0, proc.stderr
    first = {str(p.relative_to(tiny)): p for p in tiny.rglob("*") if p.is_file()}
    second = {str(p.relative_to(again)): p for p in again.rglob("*") if p.is_file()}
    assert sorted(first) == sorted(second)
    for name, path in first.items():
        other = second[name].read_bytes()
        if name.endswith(".yaml"):  # absolute paths differ by construction
            other = other.replace(str(again).encode(), str(tiny).encode())
        assert path.read_bytes() == other, f"{name} differs between the default and chr20"


def test_simulate__multi_chromosome_vcfs_are_valid_and_sorted(tiny3: Path, truth3: dict):
    for vcf in _vcfs(tiny3):
        header = subprocess.run(
            ["bcftools", "view", "-h", str(vcf)], check=True, capture_output=True, text=True
        ).stdout
        contigs = re.findall(r"##contig=<ID=(\w+),length=(\d+),assembly=GRCh38>", header)
        assert contigs == [(c, str(GRCH38_LENGTHS[c])) for c in CHROMS]
        # The tabix index covers every contig (bcftools reads it) ...
        index = subprocess.run(
            ["bcftools", "index", "-s", str(vcf)], check=True, capture_output=True, text=True
        ).stdout
        counted = {line.split("\t")[0]: int(line.split("\t")[2]) for line in index.splitlines()}
        assert list(counted) == list(CHROMS) and all(counted.values())
        # ... and a region query of one chromosome returns its records only.
        only21 = subprocess.run(
            ["bcftools", "view", "-H", "-r", "21", str(vcf)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        assert len(only21) == counted["21"] and {r.split("\t")[0] for r in only21} == {"21"}
        rows = _query(vcf)
        assert [c for c, _ in itertools.groupby(r[0] for r in rows)] == list(CHROMS)
        for chrom in CHROMS:
            pos = [int(r[1]) for r in rows if r[0] == chrom]
            assert pos == sorted(set(pos)), f"{vcf}: chr{chrom} unsorted or duplicated"
            assert pos[0] > 1_000_000 and pos[-1] < span_end(chrom)
    n_panel = len(_query(_vcfs(tiny3)[0]))
    assert n_panel == truth3["reference_panel"]["n_variants"]


def test_simulate__map_has_every_chromosome_monotone_within_each(tiny3: Path):
    rows = [r.split("\t") for r in (tiny3 / "reference/genetic_map.map").read_text().splitlines()]
    assert [c for c, _ in itertools.groupby(r[0] for r in rows)] == list(CHROMS)
    panel = {(r[0], int(r[1])) for r in _query(_vcfs(tiny3)[0])}
    mapped = {(r[0], int(r[3])) for r in rows}
    assert panel <= mapped  # Beagle interpolates every panel position
    for chrom in CHROMS:
        bp = [int(r[3]) for r in rows if r[0] == chrom]
        cm = [float(r[2]) for r in rows if r[0] == chrom]
        assert bp == sorted(set(bp))
        assert all(b >= a for a, b in itertools.pairwise(cm))
        # Each chromosome's map starts afresh (~1.2 cM at 1 Mb), at ~1.2 cM/Mb.
        assert cm[0] < 1.2 + 1.2 * (bp[0] - 1_000_000) / 1e6 + 1e-6
        assert 0.8 < (cm[-1] - cm[0]) / ((bp[-1] - bp[0]) / 1e6) < 1.6


def test_simulate__truth_lists_each_chromosome_and_its_split(truth3: dict):
    region = truth3["region"]
    loci, background = split_sizes(CHROMS, n_loci=3, n_background=SCALES["tiny"].n_background)
    assert [c["chrom"] for c in region["chromosomes"]] == list(CHROMS)
    for entry, n_loci, n_bg in zip(region["chromosomes"], loci, background, strict=True):
        assert entry["length"] == GRCH38_LENGTHS[entry["chrom"]]
        assert len(entry["loci"]) == n_loci
        assert entry["n_background_snps"] == n_bg
        for locus in entry["loci"]:
            assert locus["end"] - locus["start"] + 1 == SCALES["tiny"].locus_bp
            assert locus["start"] > 1_000_000 and locus["end"] < span_end(entry["chrom"])
    assert region["n_background_snps"] == sum(c["n_background_snps"] for c in region["chromosomes"])
    assert region["n_locus_variants"] == sum(c["n_locus_variants"] for c in region["chromosomes"])


def test_simulate__causal_variants_lie_on_different_chromosomes_in_the_panel(
    tiny3: Path, truth3: dict
):
    panel = {tuple(r) for r in _query(_vcfs(tiny3)[0])}
    arrays = [{(r[0], r[1]) for r in _query(v)} for v in _vcfs(tiny3)[1:]]
    causal = truth3["causal_variants"]
    assert sorted(c["chrom"] for c in causal) == list(CHROMS)
    for c in causal:
        assert (c["chrom"], str(c["pos"]), c["ref"], c["alt"]) in panel
        assert all((c["chrom"], str(c["pos"])) not in a for a in arrays)
    for s in SITES:  # injected variant failures name their chromosome too
        injected = truth3["sites"][s]["injected"]
        assert all(v["chrom"] in CHROMS for v in injected["hwe_failure"])


def test_simulate__strong_causal_variant_drives_qt_on_several_chromosomes(tiny3: Path, truth3):
    fed = build_federation(seed=SEED, scale="tiny", chromosomes=["22", "21", "20"])
    assert fed.truth["causal_variants"] == truth3["causal_variants"]
    strong = max(truth3["causal_variants"], key=lambda c: c["variance_explained"])
    g = fed.genomes
    row = int(np.flatnonzero((g.chrom == strong["chrom"]) & (g.pos == strong["pos"]))[0])
    xs, ys = [], []
    for s in SITES:
        cohort = fed.cohorts[s]
        dosage = cohort.dosage()[int(np.searchsorted(cohort.rows, row))].astype(float)
        qt = fed.phenotypes[s].qt
        ok = ~np.isnan(qt)
        xs.append(dosage[ok] - dosage[ok].mean())
        ys.append(qt[ok] - qt[ok].mean())
    fit = stats.linregress(np.concatenate(xs), np.concatenate(ys))
    assert fit.pvalue < 5e-8


def test_simulate__help_lists_every_scale_and_the_chromosomes_option():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(proc.stdout.split())
    for sc in SCALES.values():
        assert " ".join(sc.summary().split()) in text
    assert "--chromosomes LIST" in text and "too slow for tests" in text


def test_simulate__bad_chromosomes_give_one_clear_message(tmp_path: Path, simulate_cli):
    proc = simulate_cli(tmp_path / "x", "--chromosomes", "20,chr21")
    assert proc.returncode == 1
    assert "'chr21' is not a simulated chromosome" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()
