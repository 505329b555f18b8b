"""refget sequence-collection digests, checked against the seqcol spec's published examples."""

from __future__ import annotations

import subprocess

import pytest
from snakemake_executor_plugin_fedgen.errors import HarmonisationError

from snakemake_fedgen.governance import refget

# Published values from the GA4GH seqcol specification's demo collections (ga4gh/refget
# compliance tests and refget package fixtures for test_fasta/base.fa).
SPEC_NAMES = ["chrX", "chr1", "chr2"]
SPEC_NAMES_DIGEST = "Fw1r9eRxfOZD98KKrhlYQNEdSRHoVxAG"
SPEC_LENGTHS_DIGEST = "cGRMZIb3AVgkcAfNv39RN7hnT5Chk7RX"  # [8, 4, 4]
SPEC_SEQUENCES = [
    "SQ.iYtREV555dUFKg2_agSJW6suquUyPpMw",
    "SQ.YBbVX0dLKG1ieEDCiMmkrTZFt_Z5Vdaj",
    "SQ.AcLxtBuKEPk_7PGE_H4dGElwZHCujwH6",
]


def test_sha512t24u__refget_sequence_example():
    # refget v2 example: the sequence "ACGT" has digest SQ.aKF498dAxcJAqme6QYQ7EZ07-fiw8Kw2.
    assert refget.sha512t24u(b"ACGT") == "aKF498dAxcJAqme6QYQ7EZ07-fiw8Kw2"


def test_digest_json__spec_attribute_digests():
    assert refget.digest_json(SPEC_NAMES) == SPEC_NAMES_DIGEST
    assert refget.digest_json([8, 4, 4]) == SPEC_LENGTHS_DIGEST
    assert refget.digest_json([8, 4]) == "7-_HdxYiRf-AJLBKOTaJUdxXrUkIXs6T"
    assert refget.digest_json(SPEC_SEQUENCES) == "0uDQVLuHaOZi1u76LjV__yrVUIz9Bwhr"


def test_seqcol_level1__spec_pairs_digests():
    level1 = refget.SeqCol(("X", "1", "2"), (8, 4, 4)).level1()
    assert level1 == {
        "lengths": "cGRMZIb3AVgkcAfNv39RN7hnT5Chk7RX",
        "names": "lrCv6NNXom7AC9tKFWqhcLLZsrcgJIqq",
        "name_length_pairs": "m88geMfgGBZ7VpYgQKCB4P9z-mhKJ-nj",
        "sorted_name_length_pairs": "1FQEGOQQ-m0NmZ0R-eeJEfnH1ayqJQ0T",
    }


def test_level0__spec_collection_digest():
    level1 = {
        "names": "lrCv6NNXom7AC9tKFWqhcLLZsrcgJIqq",
        "sequences": "0uDQVLuHaOZi1u76LjV__yrVUIz9Bwhr",
    }
    assert refget.level0(level1) == "QvT5tAQ0B8Vkxd-qFftlzEk2QyfPtgOv"


def test_canonical_json__rfc8785_key_order_and_no_whitespace():
    assert (
        refget.canonical_json({"b": 1, "a": [True, None, "é"]})
        == '{"a":[true,null,"é"],"b":1}'.encode()
    )
    with pytest.raises(TypeError):
        refget.canonical_json([1.5])


def _vcf(tmp_path, name, contigs):
    text = "##fileformat=VCFv4.2\n"
    text += "".join(f"##contig=<ID={c},length={n},assembly=GRCh38>\n" for c, n in contigs)
    text += "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    text += f"{contigs[0][0]}\t100\t.\tA\tG\t.\tPASS\t.\n"
    plain = tmp_path / f"{name}.vcf"
    plain.write_text(text)
    out = tmp_path / f"{name}.vcf.gz"
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(out), str(plain)], check=True)
    return out


def test_vcf_digest__bgzipped_vcf_from_bcftools(tmp_path):
    vcf = _vcf(tmp_path, "a", [("chrX", 8), ("chr1", 4), ("chr2", 4)])
    col = refget.vcf_seqcol(vcf)
    assert col.names == tuple(SPEC_NAMES) and col.lengths == (8, 4, 4)
    assert col.level1()["names"] == SPEC_NAMES_DIGEST
    assert refget.vcf_digest(vcf) == refget.level0(
        {"lengths": SPEC_LENGTHS_DIGEST, "names": SPEC_NAMES_DIGEST}
    )


def test_vcf_digest__differs_for_other_naming_and_length(tmp_path):
    a = refget.vcf_digest(_vcf(tmp_path, "a", [("20", 64444167)]))
    b = refget.vcf_digest(_vcf(tmp_path, "b", [("chr20", 64444167)]))
    c = refget.vcf_digest(_vcf(tmp_path, "c", [("20", 63025520)]))  # GRCh37 length
    assert len({a, b, c}) == 3
    assert a == refget.vcf_digest(_vcf(tmp_path, "a2", [("20", 64444167)]))


def test_vcf_seqcol__header_without_contigs_names_the_fix(tmp_path):
    path = tmp_path / "x.vcf"
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    with pytest.raises(HarmonisationError, match=r"no ##contig lines.*reheader"):
        refget.vcf_seqcol(path)
    path.write_text("##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\n")
    with pytest.raises(HarmonisationError, match="line 2"):
        refget.vcf_seqcol(path)
