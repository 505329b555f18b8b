"""Palindromic SNPs of sites aligned to one reference panel are kept (issue 15, "nothing silent").

Every site aligns its genotypes' strand to its reference panel before the GWAS (workflow rule
qc_align). When two studies' sidecars declare the same panel digest (``fedgen.aligned_panel``),
an A/T or C/G SNP has no strand ambiguity: its alleles as given say whether it is swapped, at
any allele frequency. Without a shared digest the frequency rule stays (near MAF 0.5: dropped).
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import SumstatsError

from snakemake_fedgen.meta.engine import run_meta
from snakemake_fedgen.sumstats.columns import MANDATORY

HEADER = [*MANDATORY, "n"]
PANEL = "sha256:" + hashlib.sha256(b"reference panel v1").hexdigest()
OTHER_PANEL = "sha256:" + hashlib.sha256(b"reference panel v2").hexdigest()

# Site A is the reference study. Position 200 is an A/T SNP near MAF 0.5 that site B reports
# with its alleles swapped (effect T, EAF 1 - 0.48); position 300 a C/G SNP at MAF 0.2 that B
# reports with the same labels and a frequency on the other side of 0.5, which the frequency
# rule reads as a strand flip (complement + swap) but which, on one panel's strand, is not.
A_ROWS = [
    ["1", "100", "A", "C", "0.10", "0.05", "0.30", "0.04", "1000"],
    ["1", "200", "A", "T", "0.20", "0.05", "0.48", "1e-4", "1000"],
    ["1", "300", "C", "G", "0.15", "0.05", "0.20", "3e-3", "1000"],
]
B_ROWS = [
    ["1", "100", "A", "C", "0.12", "0.04", "0.31", "0.01", "1500"],
    ["1", "200", "T", "A", "-0.30", "0.04", "0.52", "1e-6", "1500"],
    ["1", "300", "C", "G", "0.25", "0.04", "0.80", "1e-9", "1500"],
]


def _study(path: Path, rows: list[list[str]], *, site: str, panel: str | None) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join("\t".join(r) for r in [HEADER, *rows]) + "\n")
    fedgen: dict[str, object] = {"site": site}
    if panel is not None:
        fedgen["aligned_panel"] = panel
    meta = {"file_type": "GWAS-SSF v1.0", "genome_assembly": "GRCh38", "fedgen": fedgen}
    Path(str(path) + "-meta.yaml").write_text(yaml.safe_dump(meta))
    return path


def _run(tmp_path: Path, panel_a: str | None, panel_b: str | None):
    a = _study(tmp_path / "A.tsv.gz", A_ROWS, site="A", panel=panel_a)
    b = _study(tmp_path / "B.tsv.gz", B_ROWS, site="B", panel=panel_b)
    result = run_meta([a, b], out=tmp_path / "out" / "m")
    table = pd.read_csv(result.outputs["sumstats"], sep="\t").set_index("base_pair_location")
    studies = pd.read_csv(result.outputs["studies"], sep="\t").set_index("study")
    excl = pd.read_csv(result.outputs["exclusions"], sep="\t")
    return result, table, studies, excl


def _ivw(betas: list[float], ses: list[float]) -> float:
    w = [1 / s**2 for s in ses]
    return sum(wi * b for wi, b in zip(w, betas, strict=True)) / sum(w)


def test_run_meta__palindromic_near_half_kept_when_both_declare_the_same_panel(tmp_path):
    result, table, studies, excl = _run(tmp_path, PANEL, PANEL)
    assert list(table.index) == [100, 200, 300]
    assert table.loc[200, "n_studies"] == 2 and table.loc[200, "direction"] == "++"
    # B's T/A row is A's A/T swapped: its beta changes sign, nothing is complemented.
    assert table.loc[200, "beta"] == pytest.approx(_ivw([0.20, 0.30], [0.05, 0.04]), rel=1e-6)
    # Same labels on the panel's strand: taken as given, although the frequencies disagree.
    assert table.loc[300, "beta"] == pytest.approx(_ivw([0.15, 0.25], [0.05, 0.04]), rel=1e-6)
    assert "palindromic_ambiguous" not in set(excl.reason)
    assert studies.loc["B", "palindromic_panel_aligned"] == 2
    assert studies.loc["B", "palindromic_panel_kept"] == 1  # only 200 would have been dropped
    assert studies.loc["B", "flipped"] == 1 and studies.loc["B", "strand_flipped"] == 0
    assert studies.loc["A", "palindromic_panel_aligned"] == 0  # the reference is not aligned
    assert list(studies.aligned_panel) == [PANEL, PANEL]
    [b] = [s for s in result.studies if s.name == "B"]
    assert (b.palindromic_panel_aligned, b.palindromic_panel_kept) == (2, 1)
    meta = yaml.safe_load(result.outputs["sidecar"].read_text())
    [b_meta] = [s for s in meta["fedgen_meta"]["studies"] if s["name"] == "B"]
    assert b_meta["aligned_panel"] == PANEL and b_meta["palindromic_panel_kept"] == 1


@pytest.mark.parametrize(
    ("panel_a", "panel_b"),
    [(PANEL, OTHER_PANEL), (None, None), (PANEL, None), (None, PANEL)],
    ids=["different", "absent", "absent-at-B", "absent-at-reference"],
)
def test_run_meta__palindromic_near_half_dropped_without_a_shared_panel(tmp_path, panel_a, panel_b):
    _, table, studies, excl = _run(tmp_path, panel_a, panel_b)
    assert table.loc[200, "n_studies"] == 1 and table.loc[200, "direction"] == "+?"
    dropped = excl[excl.reason == "palindromic_ambiguous"]
    assert list(zip(dropped.study, dropped.base_pair_location, strict=True)) == [("B", 200)]
    assert studies.loc["B", "dropped_palindromic_ambiguous"] == 1
    assert studies.loc["B", "palindromic_panel_aligned"] == 0
    assert studies.loc["B", "palindromic_panel_kept"] == 0
    # The low-MAF C/G SNP is aligned by frequency as before: complement + swap.
    assert table.loc[300, "beta"] == pytest.approx(_ivw([0.15, -0.25], [0.05, 0.04]), rel=1e-6)
    assert studies.loc["B", "strand_flipped"] == 1


def test_read_study_info__malformed_panel_digest_names_the_fix(tmp_path):
    a = _study(tmp_path / "A.tsv.gz", A_ROWS, site="A", panel=PANEL.upper())
    b = _study(tmp_path / "B.tsv.gz", B_ROWS, site="B", panel=PANEL)
    with pytest.raises(SumstatsError, match=r"fedgen\.aligned_panel must be 'sha256:'"):
        run_meta([a, b], out=tmp_path / "m")


def test_panel_digest__is_the_sha256_of_the_file(tmp_path):
    from snakemake_fedgen.sumstats.sidecar import panel_digest

    panel = tmp_path / "panel.vcf.gz"
    panel.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 5000)
    assert panel_digest(panel) == "sha256:" + hashlib.sha256(panel.read_bytes()).hexdigest()


def test_fedgen_meta__log_names_the_panel_and_the_palindromic_variants_kept(tmp_path):
    a = _study(tmp_path / "A.tsv.gz", A_ROWS, site="A", panel=PANEL)
    b = _study(tmp_path / "B.tsv.gz", B_ROWS, site="B", panel=PANEL)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "meta", "--no-plots", "--out", "m", a, b],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("  B:")]
    assert f"panel {PANEL}: 2 palindromic aligned by their alleles (1 kept" in line
