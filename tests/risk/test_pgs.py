"""`fedgen pgs score`: allele matching and plink2 --score against a direct count of alleles.

A hand-made VCF of 40 people: every kind of match the weights can meet (same orientation, the
effect allele as REF, the other strand, an A/T variant, a variant the site lacks). The expected
score is computed from the VCF's genotype calls by counting effect alleles in Python, without
plink2.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from snakemake_executor_plugin_fedgen.errors import SiteDataError

from snakemake_fedgen.cli import main
from snakemake_fedgen.risk.pgs import Coverage, Weight, read_weights, score_site, write_weights

# (pos, REF, ALT) at the site
VARIANTS = [(1000, "A", "G"), (2000, "C", "T"), (3000, "A", "C"), (4000, "A", "T"),
            (5000, "G", "T"), (6000, "C", "G")]  # fmt: skip
WEIGHTS = [
    Weight("20", 1000, "G", "A", 0.5),  # same orientation: ALT is the effect allele
    Weight("20", 2000, "C", "T", -0.25),  # the effect allele is the site's REF
    Weight("20", 3000, "T", "G", 0.75),  # other strand: T/G is A/C complemented
    Weight("20", 4000, "A", "T", 2.0),  # A/T: matched on the strand given (REF here), counted
    Weight("20", 5000, "T", "G", 0.125),  # same orientation again
    Weight("20", 9000, "A", "G", 3.0),  # not at the site
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("pgs")
    rng = np.random.default_rng(11)
    n = 40
    gt = rng.integers(0, 2, size=(len(VARIANTS), n, 2))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=20,length=64444167>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                        *(f"P{i}" for i in range(n))])]  # fmt: skip
    for (pos, ref, alt), g in zip(VARIANTS, gt, strict=True):
        calls = [f"{a}|{b}" for a, b in g]
        lines.append("\t".join(["20", str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *calls]))
    (root / "site.vcf").write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["plink2", "--vcf", "site.vcf", "--set-all-var-ids", "@:#:$r:$a", "--make-pgen",
         "--out", "site"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    return root, gt


def _expected(gt: np.ndarray) -> np.ndarray:
    """Effect-allele counts x weights, from the calls (ALT = 1 in a GT field)."""
    alt = gt.sum(axis=2)  # (variants, people): ALT alleles per person
    ref = 2 - alt
    # The flipped effect allele T is A on the site's strand: its REF.
    return 0.5 * alt[0] + -0.25 * ref[1] + 0.75 * ref[2] + 2.0 * ref[3] + 0.125 * alt[4]


def test_score__equals_a_direct_count_of_effect_alleles(site, tmp_path):
    root, gt = site
    write_weights(tmp_path / "w.tsv", WEIGHTS, {"source": "test", "sites": "A,B"})
    out, coverage = tmp_path / "scores.tsv", tmp_path / "coverage.counts.tsv"
    argv = ["pgs", "score", "--pfile", str(root / "site"), "--weights", str(tmp_path / "w.tsv")]
    argv += ["--out", str(out), "--coverage", str(coverage), "--min-cell", "1"]
    assert main(argv) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["IID", "pgs"]
    assert [r[0] for r in rows[1:]] == [f"P{i}" for i in range(gt.shape[1])]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], _expected(gt), atol=1e-6)
    counts = {
        line.split("\t")[1]: line.split("\t")[2] for line in coverage.read_text().splitlines()[1:]
    }
    assert counts == {
        "variants_in_weights": "6", "variants_matched": "5", "variants_swap": "2",
        "variants_flip": "1", "variants_ambiguous": "1", "variants_effect_only": "0",
        "variants_effect_only_unresolved": "0", "variants_not_at_site": "1",
    }  # fmt: skip


def test_score__refuses_low_coverage_and_leaves_nothing(site, tmp_path):
    root, _ = site
    write_weights(tmp_path / "w.tsv", WEIGHTS, {"source": "test"})
    with pytest.raises(SiteDataError, match="min_coverage"):
        score_site(root / "site", tmp_path / "w.tsv", out=tmp_path / "s.tsv", min_coverage=0.9)
    assert not (tmp_path / "s.tsv").exists()


def test_weights_file_round_trip_keeps_the_sites(tmp_path):
    write_weights(tmp_path / "w.tsv", WEIGHTS[:2], {"sites": "A,C"})
    ws, meta = read_weights(tmp_path / "w.tsv")
    assert ws == WEIGHTS[:2] or [w.weight for w in ws] == [0.5, -0.25]
    assert meta["sites"] == "A,C"


def _panel(root, rng):
    """A phased panel of 200 people: blocks of variants in strong LD, blocks far apart."""
    n, rows = 200, []
    for block in range(4):
        base = rng.integers(0, 2, size=(n, 2))
        for k in range(5):
            noise = rng.random(size=(n, 2)) < 0.05 * k  # LD decays along the block
            hap = np.where(noise, rng.integers(0, 2, size=(n, 2)), base)
            rows.append((1_000_000 * (block + 1) + 1000 * k, hap))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=20,length=64444167>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                        *(f"R{i}" for i in range(n))])]  # fmt: skip
    for pos, hap in rows:
        calls = [f"{a}|{b}" for a, b in hap]
        lines.append("\t".join(["20", str(pos), ".", "A", "G", ".", "PASS", ".", "GT", *calls]))
    (root / "panel.vcf").write_text("\n".join(lines) + "\n")
    return rows


def test_clump__index_variants_equal_a_greedy_clumping_in_numpy(tmp_path):
    """C+T against an independent greedy clumping: smallest p first, drop the others within
    the window with r2 above the threshold, repeat. plink 1.9 estimates r2 from EM haplotype
    frequencies, the test from the genotype correlation; the panel's blocks put every pair far
    from the threshold (r2 near 1 inside a block's first variants, near 0 across blocks), so
    the two agree here, not by construction."""
    from snakemake_fedgen.risk.pgs import clump_meta

    rng = np.random.default_rng(3)
    rows = _panel(tmp_path, rng)
    p = rng.uniform(1e-8, 1e-2, size=len(rows))
    meta = ["chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tp_value"]
    meta += [
        f"20\t{pos}\tG\tA\t{0.1 * (i + 1)!r}\t{float(p[i])!r}" for i, (pos, _) in enumerate(rows)
    ]
    meta.append("20\t9999999\tG\tA\t0.5\t1e-9")  # not in the panel
    (tmp_path / "meta.tsv").write_text("\n".join(meta) + "\n")
    counts = clump_meta(
        tmp_path / "meta.tsv", tmp_path / "panel.vcf", tmp_path / "w.tsv", sites=["A", "B"],
        p_threshold=5e-3, r2=0.3, kb=250,
    )  # fmt: skip
    weights, header = read_weights(tmp_path / "w.tsv")
    # Independent: genotype correlation from the calls.
    dos = np.array([hap.sum(axis=1) for _, hap in rows], dtype=float)
    pos = np.array([pos for pos, _ in rows])
    live = [i for i in np.argsort(p) if p[i] <= 5e-3]
    kept = []
    while live:
        i = live.pop(0)
        kept.append(i)
        live = [
            j for j in live
            if abs(pos[j] - pos[i]) > 250_000 or np.corrcoef(dos[i], dos[j])[0, 1] ** 2 <= 0.3
        ]  # fmt: skip
    assert sorted(w.pos for w in weights) == sorted(int(pos[i]) for i in kept)
    assert {w.pos: w.weight for w in weights} == {int(pos[i]): 0.1 * (i + 1) for i in kept}
    assert counts["not_in_panel"] == 1 and header["sites"] == "A,B"
    assert counts["weights"] + counts["clumped_away"] + 1 == counts["meta_below_threshold"]


def test_coverage_counts__every_quantity_is_in_the_airlock_vocabulary():
    # At a site with registered datasets the airlock passes only the workflow's own
    # (step, quantity) labels: a coverage row it does not know would stop every site's score.
    from snakemake_fedgen.egress.airlock.kinds.counts import QUANTITIES, STEPS

    assert "pgs" in STEPS
    assert {q for q, _ in Coverage().counts()} <= QUANTITIES
