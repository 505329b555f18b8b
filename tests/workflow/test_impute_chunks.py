"""Chunked imputation: the chunk grid, the chunk windows and the ligation (``fedgen impute``).

The files are real bgzipped VCFs handled by real bcftools/tabix; ligation is checked against the
unchunked file record by record (every position once, nothing lost at a boundary).
"""

from __future__ import annotations

import itertools
import random
import subprocess
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.assemblies import CHROM_LENGTHS, chrom_length, chrom_sort_key, plink_chrom
from snakemake_fedgen.cli import main
from snakemake_fedgen.impute import Chunk, ChunkStatus, chunk_grid, extract_window, ligate

SAMPLES = ("s1", "s2", "s3")


def write_vcf(
    path: Path, records: dict[str, list[int]], *, contigs: bool = True, seed: int = 1
) -> Path:
    """A bgzipped, indexed VCF with GT:DS of three samples at the given positions."""
    rng = random.Random(seed)
    lines = ["##fileformat=VCFv4.2"]
    if contigs:
        lines += [f"##contig=<ID={c},length=70000000>" for c in records]
    lines += [
        '##INFO=<ID=DR2,Number=A,Type=Float,Description="dosage r2">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DS,Number=A,Type=Float,Description="dosage">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES]
        ),
    ]
    for chrom, positions in records.items():
        for pos in positions:
            calls = []
            for _ in SAMPLES:
                a, b = rng.randint(0, 1), rng.randint(0, 1)
                calls.append(f"{a}|{b}:{a + b}")
            lines.append(
                f"{chrom}\t{pos}\t{chrom}:{pos}\tA\tG\t.\tPASS\tDR2=0.9\tGT:DS\t" + "\t".join(calls)
            )
    text = path.with_suffix("")
    text.write_text("\n".join(lines) + "\n")
    subprocess.run(["bgzip", "-f", str(text)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(path)], check=True)
    return path


def records(vcf: Path) -> list[str]:
    return subprocess.run(
        ["bcftools", "view", "-H", str(vcf)], capture_output=True, text=True, check=True
    ).stdout.splitlines()


# -- the grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "overlap"), [(20_000_000, 2_000_000), (7_000_000, 0), (64_444_167, 5)]
)
def test_chunk_grid__tiles_the_chromosome_with_clipped_flanks(size: int, overlap: int) -> None:
    length = chrom_length("GRCh38", "20")
    chunks = chunk_grid("20", length, size_bp=size, overlap_bp=overlap)
    assert chunks[0].start == 1 and chunks[-1].end == length
    assert [c.index for c in chunks] == list(range(1, len(chunks) + 1))
    assert len(chunks) == -(-length // size)
    for a, b in itertools.pairwise(chunks):
        assert b.start == a.end + 1  # no gap, no shared position
    for c in chunks:
        assert c.end - c.start + 1 <= size
        assert c.window_start == max(1, c.start - overlap)
        assert c.window_end == min(length, c.end + overlap)


def test_chunk_grid__size_zero_is_one_chunk_without_flank() -> None:
    (only,) = chunk_grid("21", 46_709_983, size_bp=0, overlap_bp=3)
    assert (only.start, only.end, only.window_start, only.window_end) == (
        1,
        46_709_983,
        1,
        46_709_983,
    )


def test_assemblies__known_lengths_names_and_order() -> None:
    assert chrom_length("GRCh37", "chr21") == 48_129_895
    assert chrom_length("GRCh38", "X") == chrom_length("GRCh38", "23") == 156_040_895
    # With chrY (57,227,415 bp) these add up to GRCh38's published primary total, 3,088,269,832.
    assert sum(CHROM_LENGTHS["GRCh38"].values()) + 57_227_415 == 3_088_269_832
    assert plink_chrom("chrX") == "X" and plink_chrom("chr7") == "7"
    assert sorted(["X", "10", "chr2", "1"], key=chrom_sort_key) == ["1", "chr2", "10", "X"]
    with pytest.raises(ConfigError, match="chunk_mb: 0"):
        chrom_length("T2T-CHM13v2.0", "1")
    with pytest.raises(ConfigError, match="config `chromosomes`"):
        chrom_length("GRCh38", "Y")


def test_cli_chunks__prints_the_grid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["impute", "chunks", "--assembly", "GRCh38", "--chromosomes", "21,20",
                 "--chunk-mb", "20", "--overlap-mb", "2"]) == 0  # fmt: skip
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["20"] * 4 + ["21"] * 3  # genome order
    assert rows[1] == ["20", "2", "20000001", "40000000", "18000001", "42000000"]
    assert rows[-1][3] == "46709983"


# -- windows and ligation ----------------------------------------------------------------------


def test_extract_window__cuts_by_position_and_names_the_target_as_the_panel(tmp_path: Path) -> None:
    positions = list(range(1000, 100_001, 1000))
    panel = write_vcf(tmp_path / "panel.vcf.gz", {"20": positions})
    typed = positions[::4]
    target = write_vcf(tmp_path / "target.vcf.gz", {"chr20": typed}, seed=2)
    chunk = Chunk("20", 2, 30_001, 60_000, 25_001, 65_000)
    status = extract_window(
        target=target,
        panel=panel,
        chunk=chunk,
        out_target=tmp_path / "t.vcf.gz",
        out_panel=tmp_path / "p.vcf.gz",
        status=tmp_path / "status.tsv",
        min_markers=3,
    )
    in_window = [p for p in positions if 25_001 <= p <= 65_000]
    assert [int(r.split("\t")[1]) for r in records(tmp_path / "p.vcf.gz")] == in_window
    target_rows = records(tmp_path / "t.vcf.gz")
    assert [int(r.split("\t")[1]) for r in target_rows] == [
        p for p in typed if 25_001 <= p <= 65_000
    ]
    assert {r.split("\t")[0] for r in target_rows} == {"20"}  # Beagle needs one contig name
    assert status.panel_variants_in_chunk == len([p for p in positions if 30_001 <= p <= 60_000])
    assert status.impute
    assert ChunkStatus.read(tmp_path / "status.tsv") == status


def test_extract_window__too_few_typed_markers_is_not_imputed(tmp_path: Path) -> None:
    panel = write_vcf(tmp_path / "panel.vcf.gz", {"20": list(range(1000, 50_001, 1000))})
    target = write_vcf(tmp_path / "target.vcf.gz", {"20": [2000, 40_000]})
    status = extract_window(
        target=target, panel=panel, chunk=Chunk("20", 1, 1, 30_000, 1, 31_000),
        out_target=tmp_path / "t.vcf.gz", out_panel=tmp_path / "p.vcf.gz",
        status=tmp_path / "s.tsv", min_markers=2,
    )  # fmt: skip
    assert status.target_markers == 1 and not status.impute


def _chunk_outputs(
    whole: Path, chunks: list[Chunk], tmp: Path, skip: set[int] = frozenset()
) -> list[tuple[Path, Path]]:
    """What Beagle hands back per chunk: the window's records (flanks included), no ##contig."""
    out = []
    for c in chunks:
        vcf = tmp / f"chunk{c.index}.vcf.gz"
        body = subprocess.run(
            ["bcftools", "view", "--regions-overlap", "0", "-r",
             f"{c.chrom}:{c.window_start}-{c.window_end}", str(whole)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        no_contigs = "".join(
            line + "\n" for line in body.splitlines() if not line.startswith("##contig")
        )
        plain = tmp / f"chunk{c.index}.vcf"
        plain.write_text(no_contigs)
        subprocess.run(["bgzip", "-f", str(plain)], check=True)
        panel_in_chunk = sum(1 for r in records(whole) if c.start <= int(r.split("\t")[1]) <= c.end)
        status = ChunkStatus(c, 10, 0, panel_in_chunk, c.index not in skip)
        status.write(tmp / f"chunk{c.index}.status.tsv")
        out.append((vcf, tmp / f"chunk{c.index}.status.tsv"))
    return out


def test_ligate__chunks_with_flanks_give_back_the_unchunked_records(tmp_path: Path) -> None:
    rng = random.Random(5)
    positions = sorted(rng.sample(range(1, 64_000_000), 3000))
    # Records exactly at every boundary and at the edges of the flanks.
    positions = sorted(
        set(positions) | {20_000_000, 20_000_001, 18_000_001, 42_000_000, 40_000_000}
    )
    whole = write_vcf(tmp_path / "whole.vcf.gz", {"20": positions})
    chunks = chunk_grid("20", 64_444_167, size_bp=20_000_000, overlap_bp=2_000_000)
    parts = _chunk_outputs(whole, chunks, tmp_path)
    shuffled = [parts[2], parts[0], parts[3], parts[1]]  # the order given does not matter
    counts = ligate(shuffled, output=tmp_path / "ligated.vcf.gz", counts=tmp_path / "c.tsv")
    assert records(tmp_path / "ligated.vcf.gz") == records(whole)
    assert counts == {"chunks": 4, "chunks_skipped": 0, "variants_chunk_skipped": 0}
    assert not (tmp_path / "ligated.vcf.gz.parts").exists()


def test_ligate__a_skipped_chunk_is_counted_not_silently_lost(tmp_path: Path) -> None:
    positions = list(range(500_000, 64_000_000, 500_000))
    whole = write_vcf(tmp_path / "whole.vcf.gz", {"20": positions})
    chunks = chunk_grid("20", 64_444_167, size_bp=20_000_000, overlap_bp=1_000_000)
    parts = _chunk_outputs(whole, chunks, tmp_path, skip={2})
    counts = ligate(parts, output=tmp_path / "out.vcf.gz", counts=tmp_path / "c.tsv")
    kept = [int(r.split("\t")[1]) for r in records(tmp_path / "out.vcf.gz")]
    lost = [p for p in positions if 20_000_001 <= p <= 40_000_000]
    assert kept == [p for p in positions if p not in lost]
    assert counts["chunks_skipped"] == 1 and counts["variants_chunk_skipped"] == len(lost)
    assert (tmp_path / "c.tsv").read_text().splitlines()[
        3
    ] == f"imputation\tvariants_chunk_skipped\t{len(lost)}"


def test_ligate__refuses_chunks_that_do_not_tile(tmp_path: Path) -> None:
    whole = write_vcf(tmp_path / "whole.vcf.gz", {"20": [100, 200]})
    chunks = chunk_grid("20", 64_444_167, size_bp=20_000_000, overlap_bp=0)
    parts = _chunk_outputs(whole, chunks, tmp_path)
    with pytest.raises(ConfigError, match="must tile the chromosome"):
        ligate([parts[0], parts[2]], output=tmp_path / "o.vcf.gz", counts=tmp_path / "c.tsv")
    assert not (tmp_path / "o.vcf.gz").exists()


def test_split_panel__one_pass_equals_region_queries(tmp_path: Path) -> None:
    panel = write_vcf(
        tmp_path / "panel.vcf.gz",
        {"chr20": list(range(100, 5000, 100)), "chr21": list(range(50, 900, 50)), "chr22": [7]},
    )
    assert main(["impute", "split-panel", "--panel", str(panel), "--chromosomes", "21,20",
                 "--out-dir", str(tmp_path / "split")]) == 0  # fmt: skip
    for chrom in ("20", "21"):
        part = tmp_path / "split" / f"{chrom}.vcf.gz"
        assert (tmp_path / "split" / f"{chrom}.vcf.gz.tbi").exists()
        expected = subprocess.run(
            ["bcftools", "view", "-H", "-r", f"chr{chrom}", str(panel)],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        assert records(part) == expected
    assert not (tmp_path / "split" / "22.vcf.gz").exists()


def test_split_panel__a_chromosome_the_panel_lacks_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel = write_vcf(tmp_path / "panel.vcf.gz", {"20": [100, 200]})
    code = main(["impute", "split-panel", "--panel", str(panel), "--chromosomes", "20,22",
                 "--out-dir", str(tmp_path / "split")])  # fmt: skip
    assert code != 0
    assert "the reference panel has no chromosome 22 (its contigs: 20)" in capsys.readouterr().err


def test_sum_counts__adds_per_chromosome_tables(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_text("step\tquantity\tcount\nimputation\tchunks\t4\nimputation\tvariants_imputed\t10\n")
    b.write_text("step\tquantity\tcount\nimputation\tchunks\t3\nimputation\tvariants_imputed\t5\n")
    assert main(["impute", "sum-counts", "--output", str(tmp_path / "sum.tsv"), str(a), str(b)]) == 0  # fmt: skip
    assert (tmp_path / "sum.tsv").read_text().splitlines()[1:] == [
        "imputation\tchunks\t7",
        "imputation\tvariants_imputed\t15",
    ]
