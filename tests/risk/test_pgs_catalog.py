"""PGS Catalog scoring files as score weights: reading, refusals, and scoring at a site.

The scoring file is written in the Catalog's harmonised layout (its download documentation,
https://www.pgscatalog.org/downloads/#dl_ftp_scoring): the ``###PGS CATALOG SCORING FILE``
title, ``##`` section lines, ``#key=value`` metadata, then the author's columns followed by
``hm_source``, ``hm_rsID``, ``hm_chr``, ``hm_pos``, ``hm_inferOtherAllele``, ``hm_match_chr``,
``hm_match_pos``. A hand-made site VCF holds the harmonised positions; the expected score is a
count of effect alleles in the VCF's genotype calls times the weights, computed without plink2.
"""

from __future__ import annotations

import gzip
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from snakemake_executor_plugin_fedgen.errors import HarmonisationError, SumstatsError

from snakemake_fedgen.cli import main
from snakemake_fedgen.risk.pgs import read_pgs_catalog, read_weights

# (pos, REF, ALT) at the site, chromosome 20
VARIANTS = [(1000, "A", "G"), (2000, "C", "T"), (3000, "A", "C"), (4000, "A", "T"),
            (5000, "G", "T"), (6000, "C", "G"), (7000, "A", "G"),
            # a multi-allelic site split into biallelic rows (bcftools norm -m-)
            (8000, "A", "C"), (8000, "A", "G"), (10000, "T", "C")]  # fmt: skip

HEADER = """\
###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/#dl_ftp_scoring for additional information
#format_version=2.0
##POLYGENIC SCORE (PGS) INFORMATION
#pgs_id=PGS999999
#pgs_name=TEST_CAD
#trait_reported=Coronary artery disease
#trait_mapped=coronary artery disease
#trait_efo=EFO_0001645
#genome_build=GRCh37
#variants_number={n}
#weight_type={weight_type}
##SOURCE INFORMATION
#pgp_id=PGP999999
#citation=Test T et al. (2026)
##HARMONIZATION DETAILS
#HmPOS_build=GRCh38
#HmPOS_date=2026-01-01
#HmPOS_match_chr={{"True": 10, "False": 0}}
#HmPOS_match_pos={{"True": 10, "False": 0}}
"""
COLUMNS = ("rsID", "chr_name", "chr_position", "effect_allele", "other_allele", "effect_weight",
           "hm_source", "hm_rsID", "hm_chr", "hm_pos", "hm_inferOtherAllele", "hm_match_chr",
           "hm_match_pos")  # fmt: skip
# rsID, GRCh37 position, effect, other, weight, hm_chr, hm_pos, hm_inferOtherAllele
ROWS = [
    ("rs1", 900, "G", "A", "0.5", "20", "1000", ""),  # same orientation (ALT is the effect)
    ("rs2", 1900, "C", "T", "-0.25", "20", "2000", ""),  # the effect allele is the site's REF
    ("rs3", 2900, "T", "G", "0.75", "20", "3000", ""),  # other strand: T/G is A/C complemented
    ("rs4", 3900, "A", "", "2.0", "20", "4000", "T"),  # A/T; other allele inferred by the Catalog
    ("rs5", 4900, "T", "", "1.5", "20", "5000", "G/C"),  # inferred G or C: the site has G
    ("rs6", 5900, "G", "C", "0.3", "20", "6000", ""),  # C/G, matched on the strand given (ALT)
    ("rs7", 6500, "A", "G", "9.0", "", "", ""),  # not mapped to GRCh38: dropped
    ("rs8", 6600, "D", "I", "9.0", "20", "6600", ""),  # not an ACGT allele: dropped
    ("rs1", 900, "G", "A", "0.5", "20", "1000", ""),  # duplicate row: dropped
    ("rs10", 8900, "A", "G", "3.0", "20", "9000", ""),  # not at the site
    ("rs11", 6900, "A", "G", "0.125", "20", "7000", ""),  # effect allele is REF again
    # No other allele at all: matched on the effect allele alone.
    ("rs12", 9900, "C", "", "0.4", "20", "10000", ""),  # one site variant carries C (ALT)
    ("rs13", 7900, "C", "", "0.6", "20", "8000", ""),  # only A/C of the split site carries C
    ("rs14", 7901, "A", "", "0.5", "20", "8000", ""),  # both split rows carry A: left out
]


def _scoring_file(path: Path, rows=ROWS, *, weight_type: str = "beta", header: str = HEADER):
    lines = [header.format(n=len(rows), weight_type=weight_type).rstrip("\n"), "\t".join(COLUMNS)]
    for rsid, pos37, ea, oa, w, hm_chr, hm_pos, infer in rows:
        lines.append("\t".join([rsid, "20", str(pos37), ea, oa, w, "ENSEMBL" if hm_chr else "",
                                rsid if hm_chr else "", hm_chr, hm_pos, infer,
                                "True" if hm_chr else "", "True" if hm_chr else ""]))  # fmt: skip
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-site")
    rng = np.random.default_rng(17)
    n = 50
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


def test_read_pgs_catalog__harmonised_gzip_counts_every_dropped_row(tmp_path):
    weights, meta = read_pgs_catalog(_scoring_file(tmp_path / "s.txt.gz"), assembly="GRCh38")
    # hm_pos, not the author's GRCh37 chr_position
    assert [w.pos for w in weights] == [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 8000,
                                        9000, 10000]  # fmt: skip
    alleles = {w.pos: (w.effect, w.other) for w in weights}
    assert alleles[4000] == ("A", "T")  # from hm_inferOtherAllele
    assert alleles[5000] == ("T", "C/G")  # candidates, for the site match
    assert alleles[10000] == ("C", "")  # unknown
    assert all(math.isnan(w.p) for w in weights)
    assert meta["source"] == "pgs-catalog" and meta["pgs_id"] == "PGS999999"
    assert meta["assembly"] == "GRCh38" and meta["HmPOS_build"] == "GRCh38"
    assert {k: v for k, v in meta.items() if k.startswith("rows_")} == {
        "rows_read": "14", "rows_kept": "11", "rows_effect_allele_only": "4",
        "rows_dropped_unmapped": "1", "rows_dropped_non_acgt_allele": "1",
        "rows_dropped_duplicate": "1",
    }  # fmt: skip


def _expected(gt: np.ndarray) -> np.ndarray:
    """Effect-allele counts x weights from the calls (ALT = 1 in a GT field)."""
    alt = gt.sum(axis=2)  # (variants, people)
    ref = 2 - alt
    # rs3's effect allele T is A on the site's strand: REF.
    return (0.5 * alt[0] - 0.25 * ref[1] + 0.75 * ref[2] + 2.0 * ref[3] + 1.5 * alt[4]
            + 0.3 * alt[5] + 0.125 * ref[6] + 0.6 * alt[7] + 0.4 * alt[9])  # fmt: skip


def test_from_catalog__then_score_equals_a_direct_count_of_effect_alleles(site, tmp_path, capsys):
    root, gt = site
    scoring = _scoring_file(tmp_path / "PGS999999_hmPOS_GRCh38.txt.gz")
    weights = tmp_path / "w.tsv"
    assert main(["pgs", "from-catalog", "--scoring-file", str(scoring), "--assembly", "GRCh38",
                 "--out", str(weights)]) == 0  # fmt: skip
    report = capsys.readouterr().err
    assert "PGS999999" in report and "14 rows, 11 kept" in report and "1 duplicate" in report
    assert "4 with the effect allele only" in report
    _, meta = read_weights(weights)
    assert meta["pgs_id"] == "PGS999999" and meta["rows_kept"] == "11"
    out, coverage = tmp_path / "scores.tsv", tmp_path / "coverage.tsv"
    assert main(["pgs", "score", "--pfile", str(root / "site"), "--weights", str(weights),
                 "--out", str(out), "--coverage", str(coverage), "--min-cell", "1"]) == 0  # fmt: skip
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [f"P{i}" for i in range(gt.shape[1])]
    np.testing.assert_allclose([float(r[1]) for r in rows], _expected(gt), atol=1e-6)
    counts = {ln.split("\t")[1]: ln.split("\t")[2] for ln in coverage.read_text().splitlines()[1:]}
    assert counts == {
        "variants_in_weights": "11", "variants_matched": "9", "variants_swap": "3",
        "variants_flip": "1", "variants_ambiguous": "2", "variants_effect_only": "3",
        "variants_effect_only_unresolved": "1", "variants_not_at_site": "1",
    }  # fmt: skip


def test_read_pgs_catalog__other_build_is_refused(tmp_path, capsys):
    scoring = _scoring_file(tmp_path / "PGS999999_hmPOS_GRCh38.txt")
    with pytest.raises(HarmonisationError, match=r"#HmPOS_build=GRCh38.*study assembly is GRCh37"):
        read_pgs_catalog(scoring, assembly="GRCh37")
    assert main(["pgs", "from-catalog", "--scoring-file", str(scoring), "--assembly", "GRCh37",
                 "--out", str(tmp_path / "w.tsv")]) == 1  # fmt: skip
    assert "PGS999999_hmPOS_GRCh37.txt.gz" in capsys.readouterr().err
    assert not (tmp_path / "w.tsv").exists()
    # An author-reported file whose build is not reported.
    author = HEADER.split("##HARMONIZATION")[0].replace("#genome_build=GRCh37", "#genome_build=NR")
    unknown = _scoring_file(tmp_path / "PGS999999.txt", header=author)
    with pytest.raises(HarmonisationError, match=r"#genome_build=NR.*hmPOS_GRCh38"):
        read_pgs_catalog(unknown, assembly="GRCh38")


def test_read_pgs_catalog__author_reported_file_on_the_study_build(tmp_path):
    author = HEADER.split("##HARMONIZATION")[0]
    rows = [r for r in ROWS if r[0] in ("rs1", "rs2", "rs4")]
    weights, meta = read_pgs_catalog(
        _scoring_file(tmp_path / "PGS999999.txt", rows, header=author), assembly="hg19"
    )
    # chr_name/chr_position; no hm_inferOtherAllele to fill rs4's other allele: unknown.
    assert [(w.pos, w.other) for w in weights] == [(900, "A"), (1900, "T"), (3900, "")]
    assert meta["assembly"] == "GRCh37" and meta["rows_effect_allele_only"] == "1"
    assert "HmPOS_build" not in meta


def test_read_pgs_catalog__odds_ratios_are_logged(tmp_path):
    rows = [(*r[:4], str(or_), *r[5:]) for r, or_ in zip(ROWS[:3], (1.5, 0.8, 2.25), strict=True)]
    weights, meta = read_pgs_catalog(
        _scoring_file(tmp_path / "or.txt", rows, weight_type="OR"), assembly="GRCh38"
    )
    np.testing.assert_allclose([w.weight for w in weights], np.log([1.5, 0.8, 2.25]))
    assert meta["weights_logged"] == "true"
    bad = [(*ROWS[0][:4], "-0.2", *ROWS[0][5:])]
    with pytest.raises(SumstatsError, match=r"weight_type=OR.*not a positive ratio"):
        read_pgs_catalog(_scoring_file(tmp_path / "bad.txt", bad, weight_type="OR"),
                         assembly="GRCh38")  # fmt: skip
    # log(OR) weights are used as they are.
    weights, meta = read_pgs_catalog(
        _scoring_file(tmp_path / "logor.txt", ROWS[:3], weight_type="log(OR)"), assembly="GRCh38"
    )
    assert [w.weight for w in weights] == [0.5, -0.25, 0.75] and meta["weights_logged"] == "false"


@pytest.mark.parametrize("column", ["is_dominant", "is_recessive", "is_haplotype",
                                    "is_interaction"])  # fmt: skip
def test_read_pgs_catalog__non_additive_rows_are_refused(tmp_path, column):
    path = _scoring_file(tmp_path / "s.txt", ROWS[:3])
    lines = path.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("rsID"))
    lines[i] += f"\t{column}"
    lines[i + 1 :] = [ln + ("\tTrue" if k == 1 else "\tFalse") for k, ln in
                      enumerate(lines[i + 1 :])]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SumstatsError, match=f"1 row\\(s\\) with {column}=True"):
        read_pgs_catalog(path, assembly="GRCh38")


def test_read_pgs_catalog__dosage_weights_and_truncated_files_are_refused(tmp_path):
    path = _scoring_file(tmp_path / "s.txt", ROWS[:3])
    text = path.read_text()
    path.write_text(text.replace("hm_match_pos", "hm_match_pos\tdosage_2_weight"))
    with pytest.raises(SumstatsError, match="per-dosage weights"):
        read_pgs_catalog(path, assembly="GRCh38")
    path.write_text(text.replace("#variants_number=3", "#variants_number=4"))
    with pytest.raises(SumstatsError, match="#variants_number=4 but 3 rows"):
        read_pgs_catalog(path, assembly="GRCh38")
