"""Variant answers (exists, count) against bcftools run directly on the same file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from snakemake_fedgen.beacon.variants import VariantQuery, chromosome_code, query_variants

SAMPLES = ["s1", "s2", "s3", "s4", "s5", "s6"]
RECORDS = [
    # POS REF ALT genotypes: multi-allelic, deletion, missing and haploid calls, insertion
    ("100", "A", "C,G", ["0/1", "1/2", "2/2", "0/0", "./.", "0|2"]),
    ("200", "AT", "A", ["0/0", "0/1", "0/0", "1/1", "0/0", "./1"]),
    ("300", "C", "T", ["./.", "0/0", "1", "0", "0/1", "."]),
    ("400", "G", "GCA", ["0/0", "0/0", "0/0", "0/0", "0/0", "0/1"]),
]


@pytest.fixture(scope="module")
def vcf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vcf")
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=20,length=64444167>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES]
        ),
    ]
    for pos, ref, alt, gts in RECORDS:
        lines.append("\t".join(["20", pos, ".", ref, alt, ".", "PASS", ".", "GT", *gts]))
    (d / "t.vcf").write_text("\n".join(lines) + "\n")
    out = d / "t.vcf.gz"
    subprocess.run(["bcftools", "view", "-Oz", "-o", out, d / "t.vcf"], check=True)
    subprocess.run(["bcftools", "index", "-t", out], check=True)
    return out


def bcftools_carriers(
    path: Path, region: str, alt: str | None = None, ref: str | None = None
) -> int:
    """Samples calling the allele, by bcftools: multi-allelic records split with ``norm -m-``
    (every split record has the one ALT as allele 1), records selected with ``-i``; a sample
    carries when a called allele is 1 (a half-missing ``./1`` counts, as documented)."""
    split = subprocess.run(
        ["bcftools", "norm", "-m-", "-r", region, "-Ou", path], check=True, capture_output=True
    ).stdout
    cond = " && ".join(
        c for c in (f'ALT="{alt}"' if alt else "", f'REF="{ref}"' if ref else "") if c
    )
    args = ["bcftools", "query", "-f", "[%SAMPLE\t%GT\n]", *(["-i", cond] if cond else []), "-"]
    out = subprocess.run(args, input=split, check=True, capture_output=True).stdout.decode()
    rows = [line.split("\t") for line in out.splitlines() if line]
    return len({s for s, gt in rows if "1" in re.split(r"[/|]", gt)})


@pytest.mark.parametrize(("pos", "ref", "alt"), [
    (100, "A", "C"), (100, "A", "G"), (100, "A", "T"), (200, "AT", "A"), (300, "C", "T"),
    (400, "G", "GCA"), (150, "A", "C"),
])  # fmt: skip
def test_sequence_query__matches_bcftools(vcf: Path, pos: int, ref: str, alt: str) -> None:
    expected = bcftools_carriers(vcf, f"20:{pos}-{pos}", alt, ref)
    got = query_variants(
        vcf,
        VariantQuery("chr20", pos - 1, reference_bases=ref, alternate_bases=alt),
        assembly="GRCh38",
    )
    assert (got.exists, got.carriers) == (expected > 0, expected)
    assert got.n_individuals == len(SAMPLES)


def test_multiallelic_and_missing__counted_as_documented(vcf: Path) -> None:
    g = query_variants(
        vcf, VariantQuery("20", 99, reference_bases="A", alternate_bases="G"), assembly="GRCh38"
    )
    # s2 (1/2), s3 (2/2), s6 (0|2): three carriers, four copies; s5 (./.) is not counted.
    assert (g.carriers, g.alt_allele_counts) == (3, [4])
    t = query_variants(vcf, VariantQuery("20", 299, alternate_bases="T"), assembly="GRCh38")
    assert t.carriers == 2  # haploid 1 and 0/1; missing calls never count
    d = query_variants(vcf, VariantQuery("20", 199, alternate_bases="A"), assembly="GRCh38")
    assert (d.carriers, d.alt_allele_counts) == (3, [4])  # 0/1, 1/1 and the half-missing ./1


@pytest.mark.parametrize(("start", "end", "alt", "kind"), [
    (0, 1000, None, None), (150, 450, None, None), (0, 1000, "G", None), (0, 1000, None, "DEL"),
    (500, 900, None, None),
])  # fmt: skip
def test_range_query__matches_bcftools(
    vcf: Path, start: int, end: int, alt: str | None, kind: str | None
) -> None:
    got = query_variants(
        vcf,
        VariantQuery("20", start, end, alternate_bases=alt, variant_type=kind),
        assembly="GRCh38",
    )
    if kind == "DEL":
        expected = bcftools_carriers(vcf, f"20:{start + 1}-{end}", "A", "AT")
    else:
        expected = bcftools_carriers(vcf, f"20:{start + 1}-{end}", alt)
    assert (got.exists, got.carriers) == (expected > 0, expected)


def test_simulated_site__first_variants_and_a_range_match_bcftools(federation: Path) -> None:
    path = federation / "sites" / "A" / "genotypes.vcf.gz"
    listed = subprocess.run(
        ["bcftools", "query", "-f", "%POS\t%REF\t%ALT\n", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for line in listed[:5] + listed[-2:]:
        pos, ref, alt = line.split("\t")
        got = query_variants(
            path,
            VariantQuery("NC_000020.11", int(pos) - 1, reference_bases=ref, alternate_bases=alt),
            assembly="GRCh38",
        )
        assert got.carriers == bcftools_carriers(path, f"20:{pos}-{pos}", alt, ref)
    first, last = int(listed[10].split("\t")[0]), int(listed[40].split("\t")[0])
    got = query_variants(path, VariantQuery("20", first - 1, last), assembly="GRCh38")
    assert got.carriers == bcftools_carriers(path, f"20:{first}-{last}") > 0
    assert got.variants == 31


def test_chromosome_names() -> None:
    assert {chromosome_code(n, "GRCh38") for n in ("21", "chr21", "NC_000021.9")} == {"21"}
    assert chromosome_code("NC_000023.11", "GRCh38") == "X"
    with pytest.raises(Exception, match="not a GRCh38 sequence"):
        chromosome_code("NC_000021.8", "GRCh38")


# NCBI's accessions of the primary chromosomes, written out as the assembly reports list them.
GRCH38_REFSEQ = [
    "NC_000001.11",
    "NC_000002.12",
    "NC_000003.12",
    "NC_000004.12",
    "NC_000005.10",
    "NC_000006.12",
    "NC_000007.14",
    "NC_000008.11",
    "NC_000009.12",
    "NC_000010.11",
    "NC_000011.10",
    "NC_000012.12",
    "NC_000013.11",
    "NC_000014.9",
    "NC_000015.10",
    "NC_000016.10",
    "NC_000017.11",
    "NC_000018.10",
    "NC_000019.10",
    "NC_000020.11",
    "NC_000021.9",
    "NC_000022.11",
    "NC_000023.11",
    "NC_000024.10",
]
GRCH37_REFSEQ = [
    "NC_000001.10",
    "NC_000002.11",
    "NC_000003.11",
    "NC_000004.11",
    "NC_000005.9",
    "NC_000006.11",
    "NC_000007.13",
    "NC_000008.10",
    "NC_000009.11",
    "NC_000010.10",
    "NC_000011.9",
    "NC_000012.11",
    "NC_000013.10",
    "NC_000014.8",
    "NC_000015.9",
    "NC_000016.9",
    "NC_000017.10",
    "NC_000018.9",
    "NC_000019.9",
    "NC_000020.10",
    "NC_000021.8",
    "NC_000022.10",
    "NC_000023.10",
    "NC_000024.9",
]


@pytest.mark.parametrize(
    ("assembly", "accessions", "other"),
    [("GRCh38", GRCH38_REFSEQ, GRCH37_REFSEQ), ("GRCh37", GRCH37_REFSEQ, GRCH38_REFSEQ)],
)
def test_chromosome_names__every_refseq_accession_of_the_assembly(assembly, accessions, other):
    codes = [*map(str, range(1, 23)), "X", "Y"]
    assert [chromosome_code(a, assembly) for a in accessions] == codes
    for accession in other:  # the same chromosome of the other assembly is refused
        with pytest.raises(Exception, match=f"not a {assembly} sequence"):
            chromosome_code(accession, assembly)
