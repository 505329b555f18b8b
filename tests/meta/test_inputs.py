"""Bad inputs give one clear message naming file, line and column; or counted exclusions."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import HarmonisationError, SumstatsError

from snakemake_fedgen.meta.engine import MetaOptions, run_meta
from snakemake_fedgen.sumstats.columns import MANDATORY

# The mandatory GWAS-SSF columns plus `n`, which egress and meta-analysis need.
HEADER = [*MANDATORY, "n"]
GOOD = [
    ["1", "100", "A", "C", "0.1", "0.05", "0.3", "0.04", "1000"],
    ["1", "200", "G", "T", "-0.2", "0.04", "0.2", "1e-6", "1000"],
    ["1", "300", "A", "AT", "0.05", "0.02", "0.25", "0.01", "1000"],
    ["2", "150", "C", "T", "0.01", "0.03", "0.6", "0.7", "1000"],
]


def _write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    text = "\n".join("\t".join(r) for r in [header, *rows]) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _with(row: int, column: str, value: str) -> list[list[str]]:
    rows = [list(r) for r in GOOD]
    rows[row][HEADER.index(column)] = value
    return rows


def _meta(tmp_path: Path, bad: Path, **options):
    good = _write(tmp_path / "good.tsv.gz", GOOD)
    return run_meta([good, bad], out=tmp_path / "out" / "m", options=MetaOptions(**options))


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (1, "beta", "abc", "non-numeric value 'abc'"),
        (2, "standard_error", "0", "standard error 0.0 is not positive"),
        (0, "standard_error", "-0.1", "is not positive"),
        (3, "beta", "NA", "missing value"),
        (2, "beta", "nan", "missing value"),
        (1, "effect_allele", "N", "allele 'N' is not A/C/G/T"),
        (3, "other_allele", "<DEL>", "is not A/C/G/T"),
        (0, "chromosome", "chrUn", "unknown chromosome 'chrUn'"),
        (2, "base_pair_location", "3x", "non-numeric value '3x'"),
    ],
)
def test_run_meta__bad_value_names_file_line_column(tmp_path, row, column, value, message):
    bad = _write(tmp_path / "bad.tsv.gz", _with(row, column, value))
    with pytest.raises(SumstatsError) as err:
        _meta(tmp_path, bad)
    text = str(err.value)
    assert str(bad) in text
    assert f"line {row + 2}" in text
    assert f"column {HEADER.index(column) + 1} ({column})" in text
    assert message in text
    assert not (tmp_path / "out" / "m.tsv.gz").exists()


def test_run_meta__missing_column_names_it(tmp_path):
    header = [h for h in HEADER if h != "standard_error"]
    rows = [[v for h, v in zip(HEADER, r, strict=True) if h != "standard_error"] for r in GOOD]
    bad = _write(tmp_path / "bad.tsv", rows, header)
    with pytest.raises(
        SumstatsError, match=r"bad\.tsv, line 1: missing column\(s\) standard_error"
    ):
        _meta(tmp_path, bad)


def test_run_meta__duplicate_variant_names_both_lines(tmp_path):
    rows = [*GOOD[:2], ["1", "200", "T", "G", "0.2", "0.04", "0.8", "1e-6", "1000"], *GOOD[2:]]
    bad = _write(tmp_path / "dup.tsv.gz", rows)
    with pytest.raises(SumstatsError) as err:
        _meta(tmp_path, bad)
    text = str(err.value)
    assert "dup.tsv.gz, line 4" in text
    assert "duplicate variant 1:200" in text
    assert "already on line 3" in text


def test_run_meta__unsorted_positions_refused_unless_sort(tmp_path):
    rows = [GOOD[1], GOOD[0], *GOOD[2:]]
    bad = _write(tmp_path / "unsorted.tsv.gz", rows)
    with pytest.raises(SumstatsError) as err:
        _meta(tmp_path, bad)
    text = str(err.value)
    assert "unsorted.tsv.gz, line 3, column 2 (base_pair_location): rows are not sorted" in text
    assert "--sort" in text
    sorted_result = _meta(tmp_path, _write(tmp_path / "sorted.tsv.gz", GOOD))
    expected = pd.read_csv(sorted_result.outputs["sumstats"], sep="\t")
    result = _meta(tmp_path, bad, sort=True)
    assert pd.read_csv(result.outputs["sumstats"], sep="\t").equals(expected)


def test_run_meta__chromosomes_out_of_order_refused_unless_sort(tmp_path):
    rows = [GOOD[3], *GOOD[:3]]
    bad = _write(tmp_path / "chrom.tsv.gz", rows)
    with pytest.raises(SumstatsError, match=r"line 3, column 1 \(chromosome\): rows are not"):
        _meta(tmp_path, bad)
    result = _meta(tmp_path, bad, sort=True)
    out = pd.read_csv(result.outputs["sumstats"], sep="\t")
    assert list(out.chromosome) == [1, 1, 1, 2]
    assert list(out.n_studies) == [2, 2, 2, 2]


def test_run_meta__drop_invalid_counts_exclusions(tmp_path):
    rows = [
        *GOOD,
        ["2", "160", "C", "T", "x", "0.03", "0.6", "0.7", "1000"],
        ["2", "170", "C", "T", "0.1", "0", "0.6", "0.7", "1000"],
        ["2", "180", "N", "T", "0.1", "0.1", "0.6", "0.7", "1000"],
        ["2", "190", "C", "T", "NA", "0.1", "0.6", "0.7", "1000"],
        ["2", "190", "T", "C", "0.1", "0.1", "0.4", "0.7", "1000"],
        ["2", "190", "C", "T", "-0.1", "0.1", "0.6", "0.7", "1000"],
    ]
    bad = _write(tmp_path / "bad.tsv.gz", rows)
    result = _meta(tmp_path, bad, drop_invalid=True)
    studies = pd.read_csv(result.outputs["studies"], sep="\t").set_index("study")
    row = studies.loc["bad"]
    assert row.read == 10
    assert row.dropped_non_numeric == 1
    assert row.dropped_se_not_positive == 1
    assert row.dropped_invalid_allele == 1
    assert row.dropped_missing_value == 1
    assert row.dropped_duplicate_variant == 1
    assert row.kept == 5
    excl = pd.read_csv(result.outputs["exclusions"], sep="\t")
    assert sorted(excl.line) == [6, 7, 8, 9, 11]
    assert set(excl.reason) == {
        "non_numeric",
        "se_not_positive",
        "invalid_allele",
        "missing_value",
        "duplicate_variant",
    }


def _sidecar(path: Path, **fedgen) -> None:
    assembly = fedgen.pop("assembly", "GRCh38")
    meta = {
        "file_type": "GWAS-SSF v1.0",
        "genome_assembly": assembly,
        "samples": [{"sample_size": 1000, "sample_ancestry": "EUR"}],
        "fedgen": fedgen,
    }
    Path(str(path) + "-meta.yaml").write_text(yaml.safe_dump(meta))


def test_run_meta__different_assemblies_refused(tmp_path):
    a = _write(tmp_path / "a.tsv.gz", GOOD)
    b = _write(tmp_path / "b.tsv.gz", GOOD)
    _sidecar(a, site="A", assembly="GRCh38")
    _sidecar(b, site="B", assembly="GRCh37")
    with pytest.raises(HarmonisationError, match=r"A=GRCh38, B=GRCh37"):
        run_meta([a, b], out=tmp_path / "m")
    _sidecar(b, site="B", assembly="hg38")
    assert run_meta([a, b], out=tmp_path / "m").variants == 4


def test_run_meta__different_refget_digests_refused(tmp_path):
    a = _write(tmp_path / "a.tsv.gz", GOOD)
    b = _write(tmp_path / "b.tsv.gz", GOOD)
    _sidecar(a, site="A", refget_seqcol_digest="abc")
    _sidecar(b, site="B", refget_seqcol_digest="xyz")
    with pytest.raises(HarmonisationError, match=r"refget digests A=abc, B=xyz"):
        run_meta([a, b], out=tmp_path / "m")


def test_run_meta__sidecar_names_studies_and_output_sidecar(tmp_path):
    a = _write(tmp_path / "a.tsv.gz", GOOD)
    b = _write(tmp_path / "b.tsv.gz", GOOD)
    _sidecar(a, site="siteA")
    _sidecar(b, site="siteB")
    result = run_meta([a, b], out=tmp_path / "m")
    meta = yaml.safe_load(result.outputs["sidecar"].read_text())
    assert meta["genome_assembly"] == "GRCh38"
    assert meta["data_file_name"] == "m.tsv.gz"
    assert [s["name"] for s in meta["fedgen_meta"]["studies"]] == ["siteA", "siteB"]
    import hashlib

    assert meta["file_md5sum"] == hashlib.md5(result.outputs["sumstats"].read_bytes()).hexdigest()


def test_study_table__small_blocks_and_missing_final_newline_read_alike(tmp_path, monkeypatch):
    """Rows are parsed in text blocks cut at newlines; block edges must not change anything."""
    import numpy as np

    from snakemake_fedgen.sumstats import reader, sidecar

    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        chrom = "1" if i < 250 else "2"
        a, b = rng.choice(list("ACGT"), 2, replace=False)
        rows.append(
            [chrom, str(1000 + i * 7), a, b, f"{rng.normal():.5f}", "0.1", "0.3", "0.5", "900"]
        )
    text = "\n".join("\t".join(r) for r in [HEADER, *rows])  # no newline at the end
    path = tmp_path / "s.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    whole = [b for b in reader.StudyTable(sidecar.read_study_info(path)).chromosomes()]
    monkeypatch.setattr(reader, "_BLOCK_SIZE", 333)
    table = reader.StudyTable(sidecar.read_study_info(path))
    pieces = list(table.chromosomes())
    assert table.rows_read == 400
    assert [b.chrom for b in pieces] == [1, 2] == [b.chrom for b in whole]
    for x, y in zip(whole, pieces, strict=True):
        assert (x.pos == y.pos).all() and (x.beta == y.beta).all() and (x.line == y.line).all()
        assert list(x.ea) == list(y.ea)
    assert pieces[1].line[-1] == 401


def test_run_meta__header_only_study_contributes_nothing(tmp_path):
    empty = _write(tmp_path / "empty.tsv.gz", [])
    result = _meta(tmp_path, empty)
    studies = pd.read_csv(result.outputs["studies"], sep="\t").set_index("study")
    assert studies.loc["empty"].read == 0
    assert result.variants == 4


def test_run_meta__odds_ratio_column_is_taken_as_log(tmp_path):
    import math

    header = [("odds_ratio" if h == "beta" else h) for h in HEADER]
    rows = [list(r) for r in GOOD]
    for r in rows:
        r[4] = repr(math.exp(float(r[4])))
    with_or = _write(tmp_path / "or.tsv.gz", rows, header)
    with_beta = _write(tmp_path / "beta.tsv.gz", GOOD)
    a = run_meta([with_or], out=tmp_path / "a")
    b = run_meta([with_beta], out=tmp_path / "b")
    ta = pd.read_csv(a.outputs["sumstats"], sep="\t")
    tb = pd.read_csv(b.outputs["sumstats"], sep="\t")
    assert ta.beta.to_numpy() == pytest.approx(tb.beta.to_numpy(), rel=1e-6)
    bad = _write(tmp_path / "bad_or.tsv.gz", [[*GOOD[0][:4], "-1", *GOOD[0][5:]]], header)
    with pytest.raises(SumstatsError, match=r"line 2, column 5 \(odds_ratio\): ratio -1.0"):
        run_meta([bad], out=tmp_path / "c")


def test_run_meta__truncated_gzip_is_a_clear_error(tmp_path):
    good = _write(tmp_path / "full.tsv.gz", GOOD)
    data = good.read_bytes()
    broken = tmp_path / "broken.tsv.gz"
    broken.write_bytes(data[: len(data) - 12])  # cut the gzip trailer and some data
    with pytest.raises(SumstatsError, match=r"broken\.tsv\.gz: cannot be read"):
        run_meta([broken], out=tmp_path / "m")
    assert not (tmp_path / "m.tsv.gz").exists()
