"""The risk target with PGS Catalog weights as Snakemake plans it (dry runs, no sites, seconds).

The end-to-end risk run (meta-analysis weights) is tests/workflow/test_risk_workflow.py; this
checks that ``risk.pgs.source: catalog`` builds the DAG: one conversion of the scoring file at
the centre, its weights scored by every fit (leave-one-site-out included), no meta-analysis or
clumping for the score, and the configuration error without a scoring file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.dry_run import dry_run, job_counts

SCORING_FILE = """\
###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/#dl_ftp_scoring for additional information
#format_version=2.0
#pgs_id=PGS999999
#genome_build=GRCh37
#variants_number=1
#weight_type=beta
#HmPOS_build=GRCh38
rsID\tchr_name\tchr_position\teffect_allele\tother_allele\teffect_weight\thm_chr\thm_pos
rs1\t20\t900\tG\tA\t0.5\t20\t1000
"""


@pytest.fixture(scope="module")
def registry(tiny_registry: Path) -> Path:
    return tiny_registry


def _dry_run(workdir: Path, registry: Path, pgs: dict) -> subprocess.CompletedProcess[str]:
    risk = {"enabled": True, "secure": True, "pgs": {"min_coverage": 0.5, **pgs}}
    return dry_run(workdir, registry, {"risk": risk})


def test_risk_dag__catalog_weights_score_every_fit(registry: Path, tmp_path: Path):
    scoring = tmp_path / "PGS999999_hmPOS_GRCh38.txt"
    scoring.write_text(SCORING_FILE)
    proc = _dry_run(tmp_path / "w", registry, {"source": "catalog", "scoring_file": str(scoring)})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["risk_catalog_weights"] == 1
    assert "risk_weights" not in jobs and "risk_meta_loso" not in jobs
    # One scoring per site: every fit (all, without-A, ...) has the same weights and reads it.
    assert jobs["risk_score"] == 3
    lines = (ln.strip().removeprefix("Shell command: ") for ln in proc.stdout.splitlines())
    commands = [ln for ln in lines if ln.startswith("fedgen pgs")]
    assert [c for c in commands if "from-catalog" in c] == [
        f"fedgen pgs from-catalog --scoring-file {scoring} --assembly GRCh38 --out "
        "results/risk/weights/catalog.weights.tsv 2> logs/risk/weights.catalog.log"
    ]
    scores = [c for c in commands if c.startswith("fedgen pgs score")]
    assert len(scores) == 3
    assert all("--weights results/risk/weights/catalog.weights.tsv" in c for c in scores)
    assert all("--out sites/" in c and "/risk/all/scores.tsv" in c for c in scores)
    # Every fit's model reads that table: leave-one-site-out fits too.
    moments = [c for c in (ln.removeprefix("Shell command: ") for ln in proc.stdout.splitlines())
               if c.startswith("fedgen risk moments") and "--join sites/" in c]  # fmt: skip
    assert {c.split("--run ")[1].split(".")[1] for c in moments} == {
        "all", "without-A", "without-B", "without-C"
    }  # fmt: skip
    assert all(re.search(r"--join sites/\w/risk/all/scores\.tsv", c) for c in moments)


def test_risk_dag__catalog_without_a_scoring_file_is_refused(registry: Path, tmp_path: Path):
    proc = _dry_run(tmp_path / "w", registry, {"source": "catalog"})
    assert proc.returncode != 0
    assert "risk.pgs.scoring_file is not set" in proc.stderr + proc.stdout
