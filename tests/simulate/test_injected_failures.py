"""The injected QC failures are real: PLINK 2 finds exactly what truth.json records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

SITES = ("A", "B", "C")


@pytest.fixture(scope="module", params=["tiny", "tiny3"])
def fed_dir(request) -> Path:
    """The tiny federation on chromosome 20, then on chromosomes 20, 21 and 22."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def truth(fed_dir: Path) -> dict:
    return json.loads((fed_dir / "truth.json").read_text())


@pytest.fixture(scope="module")
def plink_qc(fed_dir: Path, tmp_path_factory) -> dict[str, dict[str, pd.DataFrame]]:
    """plink2 KING table, heterozygosity, missingness and HWE per site."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    work = tmp_path_factory.mktemp("plink")
    for s in SITES:
        subprocess.run(
            [
                *(
                    "plink2",
                    "--threads",
                    "1",
                    "--vcf",
                    str(fed_dir / f"sites/{s}/genotypes.vcf.gz"),
                ),
                *("--make-king-table", "--het", "--missing", "--hardy", "--out", s),
            ],
            cwd=work,
            check=True,
            capture_output=True,
        )
        out[s] = {
            ext: pd.read_csv(work / f"{s}.{ext}", sep="\t")
            for ext in ("kin0", "het", "smiss", "vmiss", "hardy")
        }
    return out


def _pair_kinship(kin: pd.DataFrame, a: str, b: str) -> float:
    hit = kin[
        ((kin["#IID1"] == a) & (kin["IID2"] == b)) | ((kin["#IID1"] == b) & (kin["IID2"] == a))
    ]
    assert len(hit) == 1, (a, b)
    return float(hit["KINSHIP"].iloc[0])


@pytest.mark.parametrize("site", SITES)
def test_simulate__king_finds_duplicates_and_first_degree_relatives(plink_qc, truth, site):
    kin = plink_qc[site]["kin0"]
    inj = truth["sites"][site]["injected"]
    pairs = set()
    for d in inj["duplicates"]:
        assert 0.45 < _pair_kinship(kin, d["original"], d["duplicate"]) <= 0.5
        pairs.add(frozenset((d["original"], d["duplicate"])))
    for r in inj["related_pairs"]:
        assert 0.177 < _pair_kinship(kin, r["iid1"], r["iid2"]) < 0.354  # first degree
        pairs.add(frozenset((r["iid1"], r["iid2"])))
    assert len(pairs) == len(inj["duplicates"]) + len(inj["related_pairs"]) >= 2
    # Nobody else is related at plink2's --king-cutoff 0.177 (contaminated samples excluded:
    # their extra heterozygous calls make KING-robust estimates meaningless).
    odd = set(inj["contaminated"])
    others = kin[
        [
            frozenset((a, b)) not in pairs and a not in odd and b not in odd
            for a, b in zip(kin["#IID1"], kin["IID2"], strict=True)
        ]
    ]
    assert others["KINSHIP"].max() < 0.12


@pytest.mark.parametrize("site", SITES)
def test_simulate__heterozygosity_outliers_are_beyond_3_sd(plink_qc, truth, site):
    het = plink_qc[site]["het"].set_index("#IID")
    z = (het["F"] - het["F"].mean()) / het["F"].std()
    inj = truth["sites"][site]["injected"]
    assert sorted(z.index[z.abs() > 3]) == sorted(inj["heterozygosity_outliers"])
    assert all(z[i] < -3 for i in inj["contaminated"])  # excess heterozygosity
    assert all(z[i] > 3 for i in inj["autozygous"])  # excess homozygosity


@pytest.mark.parametrize("site", SITES)
def test_simulate__low_call_rate_samples_and_variants_stand_out(plink_qc, truth, site):
    inj = truth["sites"][site]["injected"]
    smiss = plink_qc[site]["smiss"]
    assert sorted(smiss[smiss["F_MISS"] > 0.05]["#IID"]) == sorted(inj["low_call_rate"])
    vmiss = plink_qc[site]["vmiss"]
    # Injected variants lose ~25% of calls; ordinary ones ~1% (a few reach 5% by chance).
    assert sorted(vmiss[vmiss["F_MISS"] > 0.1]["ID"]) == sorted(
        v["id"] for v in inj["high_missingness"]
    )


@pytest.mark.parametrize("site", SITES)
def test_simulate__hwe_failures_are_extreme(plink_qc, truth, site):
    hardy = plink_qc[site]["hardy"].set_index("ID")
    injected = [v["id"] for v in truth["sites"][site]["injected"]["hwe_failure"]]
    assert injected and all(hardy.loc[i, "P"] < 1e-12 for i in injected)
    if truth["sites"][site]["populations"].keys() == {"EUR"}:
        # One ancestry: nothing else fails; mixed sites show Wahlund deficits as real ones do.
        assert sorted(hardy.index[hardy["P"] < 1e-6]) == sorted(injected)


def _site_alleles(vcf: Path, variants: list[dict]) -> dict[tuple[str, int], tuple[str, str]]:
    out = subprocess.run(
        ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\n", str(vcf)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wanted = {_where(v) for v in variants}
    rows = (line.split("\t") for line in out.splitlines())
    return {(c, int(p)): (r, a) for c, p, r, a in rows if (c, int(p)) in wanted}


def _where(variant: dict) -> tuple[str, int]:
    return variant["chrom"], variant["pos"]


def test_simulate__flipped_and_swapped_batches_differ_from_the_panel(fed_dir, truth):
    tiny = fed_dir
    comp = str.maketrans("ACGT", "TGCA")
    flipped = truth["sites"]["B"]["injected"]["strand_flipped"]
    swapped = truth["sites"]["C"]["injected"]["ref_alt_swapped"]
    assert len(flipped) >= 20 and len(swapped) >= 20
    assert truth["sites"]["A"]["injected"]["strand_flipped"] == []
    panel = _site_alleles(tiny / "reference/panel.vcf.gz", flipped + swapped)
    site_b = _site_alleles(tiny / "sites/B/genotypes.vcf.gz", flipped)
    site_c = _site_alleles(tiny / "sites/C/genotypes.vcf.gz", swapped)
    for v in flipped:
        ref, alt = panel[_where(v)]
        assert (
            site_b[_where(v)] == (ref.translate(comp), alt.translate(comp)) == (v["ref"], v["alt"])
        )
        assert ref.translate(comp) != alt  # not palindromic: the flip is detectable
    for v in swapped:
        ref, alt = panel[_where(v)]
        assert site_c[_where(v)] == (alt, ref) == (v["ref"], v["alt"])
    # Every other marker of B and C agrees with the panel where the panel has it.
    for site, batch in (("B", flipped), ("C", swapped)):
        marked = {_where(v) for v in batch}
        out = subprocess.run(
            [
                *("bcftools", "isec", "-n=2", "-w1", "-c", "none"),
                str(tiny / f"sites/{site}/genotypes.vcf.gz"),
                str(tiny / "reference/panel.vcf.gz"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        exact = {
            (f[0], int(f[1]))
            for f in (line.split("\t") for line in out.splitlines() if not line.startswith("#"))
        }
        assert not (exact & marked)
        n_markers = truth["sites"][site]["n_variants"]
        missing_from_panel = truth["sites"][site]["n_array_markers_not_in_panel"]
        assert len(exact) == n_markers - missing_from_panel - len(marked)
