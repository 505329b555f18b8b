"""``fedgen qc``: panel alignment decisions, heterozygosity outliers, covariates, counts table.

The alignment lists are applied by real PLINK 2 here, and the result is compared with the panel;
the counts table is checked by the real airlock.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import pytest

from snakemake_fedgen.cli import main
from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.qc import PanelVariant, classify_variant, withhold_totals

KW = {"max_af_diff": 0.2, "ambiguous_maf": 0.4}


@pytest.mark.parametrize(
    ("site", "panel", "expected"),
    [
        (("A", "G", 0.30), ("A", "G", 0.32), "match"),
        (("G", "A", 0.70), ("A", "G", 0.32), "swap"),
        (("T", "C", 0.30), ("A", "G", 0.32), "flip"),
        (("C", "T", 0.70), ("A", "G", 0.32), "flip_swap"),
        (("A", "C", 0.30), ("A", "G", 0.32), "allele_mismatch"),
        (("A", "G", 0.80), ("A", "G", 0.32), "af_mismatch"),
        (("A", "T", 0.10), ("A", "T", 0.12), "match"),
        (("A", "T", 0.88), ("A", "T", 0.12), "flip"),  # palindromic: told apart by frequency
        (("A", "T", 0.45), ("A", "T", 0.48), "ambiguous"),
        # An ancestry difference must not read as a strand flip: site MAF near 0.5.
        (("T", "A", 0.55), ("T", "A", 0.22), "ambiguous"),
        (("C", "G", 0.30), ("C", "G", 0.20), "match"),
        (("C", "G", 0.22), ("C", "G", 0.10), "match"),
    ],
)
def test_classify_variant__decides_from_alleles_and_frequency(site, panel, expected) -> None:
    ref, alt, freq = site
    assert classify_variant(ref, alt, freq, PanelVariant(*panel), **KW) == expected


def test_classify_variant__palindromic_fitting_both_strands_is_dropped() -> None:
    panel = PanelVariant("C", "G", 0.30)
    assert classify_variant("C", "G", 0.40, panel, max_af_diff=0.3, ambiguous_maf=0.4) == (
        "ambiguous"
    )


def test_classify_variant__absent_from_panel() -> None:
    assert classify_variant("A", "G", 0.3, None, **KW) == "not_in_panel"


def _vcf(path: Path, rows: list[tuple[int, str, str, list[str]]]) -> None:
    samples = [f"S{i}" for i in range(len(rows[0][3]))]
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=20,length=1000000>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    for pos, ref, alt, gts in rows:
        lines.append(f"20\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    path.write_text("\n".join(lines) + "\n")


def test_align__plink2_applies_the_lists_and_matches_the_panel(tmp_path: Path) -> None:
    gts = ["0/0"] * 14 + ["0/1"] * 5 + ["1/1"]  # ALT frequency 0.175
    swapped = ["1/1"] * 14 + ["0/1"] * 5 + ["0/0"]
    panel = {100: ("A", "G"), 200: ("C", "T"), 300: ("A", "C"), 400: ("G", "T")}
    _vcf(
        tmp_path / "site.vcf",
        [
            (100, "A", "G", gts),  # as in the panel
            (200, "G", "A", gts),  # strand flipped
            (300, "C", "A", swapped),  # REF/ALT swapped (genotypes recoded accordingly)
            (400, "G", "C", gts),  # other alleles: excluded
        ],
    )
    (tmp_path / "panel.tsv").write_text(
        "".join(f"20\t{p}\t{r}\t{a}\t0.18\n" for p, (r, a) in panel.items())
    )
    plink = ["plink2", "--threads", "1", "--silent"]
    subprocess.run(
        [*plink, "--vcf", str(tmp_path / "site.vcf"), "--set-all-var-ids", "@:#",
         "--make-pgen", "--out", str(tmp_path / "raw")],
        check=True,
    )  # fmt: skip
    subprocess.run([*plink, "--pfile", str(tmp_path / "raw"), "--freq", "--out",
                    str(tmp_path / "raw")], check=True)  # fmt: skip
    code = main(
        ["qc", "align", "--afreq", str(tmp_path / "raw.afreq"), "--panel-alleles",
         str(tmp_path / "panel.tsv"), "--out-prefix", str(tmp_path / "al"), "--max-af-diff",
         "0.2"]
    )  # fmt: skip
    assert code == 0
    subprocess.run(
        [*plink, "--pfile", str(tmp_path / "raw"), "--update-alleles",
         str(tmp_path / "al.update_alleles"), "--ref-allele", "force",
         str(tmp_path / "al.ref_allele"), "2", "1", "--exclude", str(tmp_path / "al.exclude"),
         "--make-pgen", "--out", str(tmp_path / "aligned")],
        check=True,
    )  # fmt: skip
    subprocess.run([*plink, "--pfile", str(tmp_path / "aligned"), "--freq", "--out",
                    str(tmp_path / "aligned")], check=True)  # fmt: skip
    rows = [ln.split("\t") for ln in (tmp_path / "aligned.afreq").read_text().splitlines()[1:]]
    got = {int(r[1].split(":")[1]): (r[2], r[3], float(r[4])) for r in rows}
    assert set(got) == {100, 200, 300}
    for pos, (ref, alt, freq) in got.items():
        assert (ref, alt) == panel[pos]
        assert freq == pytest.approx(0.175)  # the swap recoded genotypes, not only labels
    counts = (tmp_path / "al.counts.tsv").read_text()
    assert "align\tvariants_flip\t1\n" in counts and "align\tvariants_swap\t1\n" in counts


def test_het_outliers__flags_beyond_three_sd(tmp_path: Path) -> None:
    fs = [0.01 * ((i % 7) - 3) for i in range(60)] + [0.9]
    lines = ["#FID\tIID\tO(HOM)\tE(HOM)\tOBS_CT\tF"]
    lines += [f"S{i}\tS{i}\t1\t1\t100\t{f}" for i, f in enumerate(fs)]
    (tmp_path / "x.het").write_text("\n".join(lines) + "\n")
    assert main(["qc", "het-outliers", "--het", str(tmp_path / "x.het"), "--output",
                 str(tmp_path / "out")]) == 0  # fmt: skip
    out = (tmp_path / "out").read_text().splitlines()
    mean, sd = statistics.mean(fs), statistics.stdev(fs)
    expected = [f"S{i}\tS{i}" for i, f in enumerate(fs) if abs(f - mean) > 3 * sd]
    assert out == ["#FID\tIID", *expected] and expected == ["S60\tS60"]


def test_withhold_totals__hides_the_input_total_when_a_sample_count_is_small() -> None:
    rows = [("input", "samples", 200), ("dups", "samples_removed", 2), ("final", "samples", 198)]
    assert ("input", "samples", 200) not in withhold_totals(rows, min_cell=5, first_step="input")
    big = [("input", "samples", 200), ("dups", "samples_removed", 9), ("final", "samples", 191)]
    assert withhold_totals(big, min_cell=5, first_step="input") == big


def test_counts__table_passes_the_airlock(tmp_path: Path) -> None:
    for name, samples, variants in (("raw", 120, 50), ("qc", 117, 41)):
        (tmp_path / f"{name}.psam").write_text(
            "#FID\tIID\n" + "".join(f"S{i}\tS{i}\n" for i in range(samples))
        )
        (tmp_path / f"{name}.pvar").write_text(
            "##fileformat=PVAR\n#CHROM\tPOS\tID\tREF\tALT\n"
            + "".join(f"20\t{i + 1}\t20:{i + 1}\tA\tG\n" for i in range(variants))
        )
    out, full = tmp_path / "qc_counts.tsv", tmp_path / "qc_counts.full.tsv"
    assert main(["qc", "counts", "--min-cell", "5", "--output", str(out), "--full-output",
                 str(full), "--fileset", f"input={tmp_path / 'raw'}",
                 "--fileset", f"qc={tmp_path / 'qc'}"]) == 0  # fmt: skip
    decision = inspect(out, AirlockPolicy(min_cell=5))
    assert decision.accepted and decision.kind == "counts", decision.reason
    text = out.read_text()
    assert "qc\tsamples_removed\t<5\n" in text and "qc\tvariants_removed\t9\n" in text
    assert "input\tsamples" not in text and "final\tsamples\t117\n" in text
    assert "input\tsamples\t120\n" in full.read_text()


def test_het_outliers__adjusts_for_ancestry_with_principal_components(tmp_path: Path) -> None:
    # Two populations with different heterozygosity; one sample of the first population is an
    # outlier only relative to its own population.
    f_values = [0.01 * ((i % 5) - 2) for i in range(40)] + [
        0.3 + 0.01 * ((i % 5) - 2) for i in range(40)
    ]
    f_values[7] = 0.12
    pc1 = [-1.0 + 0.001 * i for i in range(40)] + [1.0 + 0.001 * i for i in range(40)]
    het = ["#FID\tIID\tO(HOM)\tE(HOM)\tOBS_CT\tF"]
    het += [f"S{i}\tS{i}\t1\t1\t100\t{f}" for i, f in enumerate(f_values)]
    vec = ["#FID\tIID\tPC1"] + [f"S{i}\tS{i}\t{p}" for i, p in enumerate(pc1)]
    (tmp_path / "x.het").write_text("\n".join(het) + "\n")
    (tmp_path / "x.eigenvec").write_text("\n".join(vec) + "\n")
    args = ["qc", "het-outliers", "--het", str(tmp_path / "x.het")]
    assert main([*args, "--output", str(tmp_path / "plain")]) == 0
    assert main([*args, "--eigenvec", str(tmp_path / "x.eigenvec"), "--output",
                 str(tmp_path / "adjusted")]) == 0  # fmt: skip
    assert (tmp_path / "plain").read_text().splitlines()[1:] == []
    # Independent check: residuals of an ordinary least-squares line (statistics module).
    slope, intercept = statistics.linear_regression(pc1, f_values)
    resid = [f - (intercept + slope * p) for f, p in zip(f_values, pc1, strict=True)]
    mean, sd = statistics.mean(resid), statistics.stdev(resid)
    expected = [f"S{i}\tS{i}" for i, r in enumerate(resid) if abs(r - mean) > 3 * sd]
    assert (tmp_path / "adjusted").read_text().splitlines()[1:] == expected == ["S7\tS7"]
