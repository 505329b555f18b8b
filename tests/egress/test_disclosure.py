"""Small-cell suppression (DataSHIELD nfilter.tab rule) and the counts-table writer."""

from __future__ import annotations

import pytest
from snakemake_executor_plugin_fedgen.errors import EgressRefused

from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.egress.disclosure import suppress_small_counts, write_counts_table


def test_suppress_small_counts__nonzero_below_threshold_become_literal():
    rows = [("qc", f"q{c}", c) for c in range(0, 8)]
    out = suppress_small_counts(rows, min_cell=5)
    assert [c for _, _, c in out] == [0, "<5", "<5", "<5", "<5", 5, 6, 7]
    assert [(s, q) for s, q, _ in out] == [(s, q) for s, q, _ in rows]


def test_suppress_small_counts__accepts_mappings_and_stricter_prior_suppression():
    rows = [
        {"step": "qc", "quantity": "a", "count": 2},
        {"step": "qc", "quantity": "b", "count": "<10"},
        {"step": "qc", "quantity": "c", "count": 12.0},
    ]
    assert suppress_small_counts(rows, min_cell=5) == [
        ("qc", "a", "<5"),
        ("qc", "b", "<5"),
        ("qc", "c", 12),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("qc", "a", -1), "count -1 is negative"),
        (("qc", "a", 2.5), "count 2.5 is not an integer"),
        (("qc", "a", "<3"), "suppressed with a threshold below min_cell=5"),
        (("qc", "sample per1 failed", 10), "use a short token"),
        (("QC", "a", 10), "use a short token"),
        (("qc", "a"), "expected (step, quantity, count)"),
    ],
)
def test_suppress_small_counts__bad_rows_raise(row, message):
    with pytest.raises(EgressRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        suppress_small_counts([row], min_cell=5)


def test_write_counts_table__output_passes_airlock_and_is_exact(tmp_path):
    path = write_counts_table(
        tmp_path / "sub" / "qc_counts.tsv",
        [("sample_qc", "samples_in", 412), ("sample_qc", "duplicates", 3), ("hwe", "fail", 0)],
        min_cell=5,
    )
    assert path.read_text() == (
        "step\tquantity\tcount\n"
        "sample_qc\tsamples_in\t412\n"
        "sample_qc\tduplicates\t<5\n"
        "hwe\tfail\t0\n"
    )
    decision = inspect(path, AirlockPolicy(min_cell=5))
    assert decision.accepted and decision.kind == "counts", decision
    # "<5" is at least as coarse as a laxer site asks; a stricter site refuses the table.
    assert inspect(path, AirlockPolicy(min_cell=3)).accepted
    assert (
        "'<5' was suppressed below min_cell=10" in inspect(path, AirlockPolicy(min_cell=10)).reason
    )


def test_write_counts_table__error_leaves_nothing_behind(tmp_path):
    target = tmp_path / "qc_counts.tsv"
    with pytest.raises(EgressRefused, match="max_count_rows=1000"):
        write_counts_table(target, [("qc", f"q{i}", 10) for i in range(1001)], min_cell=5)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EgressRefused, match=r"is a '\.tsv' file"):
        write_counts_table(tmp_path / "qc_counts.csv", [("qc", "a", 10)], min_cell=5)
    assert list(tmp_path.iterdir()) == []


def test_write_counts_table__replaces_existing_file_atomically(tmp_path):
    target = tmp_path / "qc_counts.tsv"
    target.write_text("old\n")
    with pytest.raises(EgressRefused):
        write_counts_table(target, [("qc", "bad label", 10)], min_cell=5)
    assert target.read_text() == "old\n"
    write_counts_table(target, [("qc", "a", 10)], min_cell=5)
    assert target.read_text().endswith("qc\ta\t10\n")
