"""The federated-gwas workflow's exact-linear mode as Snakemake plans it (dry runs, no sites).

The end-to-end runs are in tests/workflow/test_exact_workflow.py; these check the config
switch, the shell commands the sites would run and the configuration errors, in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.dry_run import dry_run, job_counts, shell_commands

from .exact_study import add_site_keys


@pytest.fixture(scope="module")
def registry(tiny_registry: Path) -> Path:
    return tiny_registry


def test_workflow_dag__default_method_is_meta(registry: Path, tmp_path: Path):
    proc = dry_run(tmp_path / "w", registry)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["meta_analysis"] == 2 and jobs["sumstats_export"] == 6
    assert not [rule for rule in jobs if rule.startswith("exact_")]


def test_workflow_dag__exact_linear_fits_qt_exactly_and_meta_analyses_bt(
    registry: Path, tmp_path: Path
):
    proc = dry_run(tmp_path / "w", registry, "method: exact-linear\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["exact_aggregate"] == 3 and jobs["exact_solve"] == 1
    # The binary trait is still meta-analysed; the quantitative one is not.
    assert jobs["meta_analysis"] == 1 and jobs["sumstats_export"] == 3
    assert "results/meta/bt.tsv.gz" in proc.stdout and "results/meta/qt.tsv.gz" not in proc.stdout
    commands = shell_commands(proc.stdout, "fedgen exact aggregate")
    assert len(commands) == 3
    for line in commands:
        # Raw shared covariates, each site's own PCs with a slope per site, registry order.
        assert "--covar-variance-standardize" not in line
        assert "--covar-name age,sex --site-covar-name PC1,PC2,PC3,PC4,PC5" in line
        assert "--sites A,B,C" in line and "--min-n 50 --min-mac 10" in line
        site = re.search(r"--site (\w)", line)[1]
        assert f"--covar sites/{site}/gwas/covariates.tsv" in line
        assert f"--out results/sumstats/{site}/qt.aggregates.tsv.gz" in line


def test_workflow_dag__secure_masks_at_the_node(registry: Path, tmp_path: Path):
    # The default: the task hands the node its plain aggregates and asks for the round.
    config = "method: exact-linear\nexact: {secure: true, round: r7}\n"
    proc = dry_run(tmp_path / "w", registry, config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["exact_mask"] == 3 and jobs["exact_panel_variants"] == 3
    assert "exact_key_reference" not in jobs and not shell_commands(
        proc.stdout, "fedgen exact mask"
    )
    copies = shell_commands(proc.stdout, "gzip -dc sites/")
    assert len(copies) == 3
    for line in copies:
        site = re.search(r"gzip -dc sites/(\w)/exact/qt.aggregates.tsv.gz", line)[1]
        assert f"> results/sumstats/{site}/qt.aggregates.masked.tsv" in line
    assert "fedgen_mask_round=r7.qt" in proc.stdout
    assert "fedgen_mask_participants=A,B,C" in proc.stdout


def test_workflow_dag__secure_masks_in_the_task(registry: Path, tmp_path: Path):
    reg = yaml.safe_load(registry.read_text())
    add_site_keys(reg, lambda name: tmp_path / f"{name}.key")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(yaml.safe_dump(reg, sort_keys=False))
    config = "method: exact-linear\nexact: {secure: true, round: r7, mask_at: task}\n"
    proc = dry_run(tmp_path / "w", keyed, config)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["exact_mask"] == 3 and jobs["exact_panel_variants"] == 3
    assert jobs["exact_key_reference"] == 3
    masks = shell_commands(proc.stdout, "fedgen exact mask")
    assert len(masks) == 3
    for line in masks:
        site = re.search(r"--aggregates sites/(\w)/exact/qt.aggregates.tsv.gz", line)[1]
        assert "--round r7.qt --participants A,B,C" in line
        assert f"--out results/sumstats/{site}/qt.aggregates.masked.tsv" in line
    (solve,) = shell_commands(proc.stdout, "fedgen exact solve")
    assert solve.startswith("fedgen exact solve --masked results/sumstats/A/qt.aggregates.masked")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("method: exact\n", "'exact' is not one of ['meta', 'exact-linear']"),
        ("method: exact-linear\nexact: {secure: true}\n", "exact.round is not set"),
        (
            "method: exact-linear\nexact: {secure: true, round: r1, mask_at: task}\n",
            "site A has no dataset 'x25519_key'",
        ),
        (
            "method: exact-linear\ninclude_sites: [A, B]\nexact: {secure: true, round: r1}\n",
            "only 2 site(s) (A, B); secure aggregation needs at least three",
        ),
    ],
)
def test_workflow_dag__bad_exact_config_is_one_clear_error(
    registry: Path, tmp_path: Path, config: str, message: str
):
    proc = dry_run(tmp_path / "w", registry, config)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_workflow_dag__include_sites_keeps_the_registry_columns(registry: Path, tmp_path: Path):
    # Without site A the indicators and PC columns still follow the registry (A, B, C): A's
    # columns are zero in every row and the solve drops them, as after a dropout rerun.
    proc = dry_run(tmp_path / "w", registry, "method: exact-linear\ninclude_sites: [B, C]\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    commands = shell_commands(proc.stdout, "fedgen exact aggregate")
    assert sorted(re.search(r"--site (\w)", c)[1] for c in commands) == ["B", "C"]
    assert all("--sites A,B,C" in c for c in commands)
    (solve,) = shell_commands(proc.stdout, "fedgen exact solve")
    assert "results/sumstats/A/" not in solve and solve.count(".aggregates.tsv.gz") == 2


def test_workflow_dag__studies_in_registry_order(registry: Path, tmp_path: Path):
    # The registry lists C first: the meta-analysis takes C as its first study (the reference
    # for palindromic alignment), not the alphabetically first site.
    reg = yaml.safe_load(registry.read_text())
    reg["sites"] = {name: reg["sites"][name] for name in ("C", "A", "B")}
    ordered = tmp_path / "ordered.yaml"
    ordered.write_text(yaml.safe_dump(reg, sort_keys=False))
    proc = dry_run(tmp_path / "w", ordered)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    meta = shell_commands(proc.stdout, "fedgen meta")
    assert meta and all(
        re.findall(r"results/sumstats/(\w)/\w+\.tsv\.gz", line) == ["C", "A", "B"] for line in meta
    )
    # include_sites keeps the registry's order and names an unknown site.
    proc = dry_run(tmp_path / "w2", ordered, "include_sites: [B, C]\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (line, *_) = shell_commands(proc.stdout, "fedgen meta")
    assert re.findall(r"results/sumstats/(\w)/\w+\.tsv\.gz", line) == ["C", "B"]
    proc = dry_run(tmp_path / "w3", ordered, "include_sites: [B, Z]\n")
    assert proc.returncode != 0
    assert "config include_sites: Z not in" in proc.stdout + proc.stderr


def test_workflow_dag__qc_counts_need_only_the_qc_chain(registry: Path, tmp_path: Path):
    """A site whose imputation or GWAS fails still returns its QC counts (with keep-going):
    asking for one site's counts plans no imputation, association or export job."""
    proc = dry_run(tmp_path / "w", registry, "", "--forceall", "results/sumstats/A/qc_counts.tsv")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    assert jobs["qc_counts"] == 1 and jobs["qc_samples"] == 1
    assert not {"impute_beagle", "gwas_glm", "sumstats_export"} & set(jobs), jobs
    # ... and the imputation counts come back on their own.
    proc = dry_run(tmp_path / "w2", registry)
    assert job_counts(proc.stdout)["imputation_counts"] == 3


def test_workflow_dag__exports_declare_their_panel_and_the_solve_counts_unsolved(
    registry: Path, tmp_path: Path
):
    proc = dry_run(tmp_path / "w", registry, "method: exact-linear\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    exports = shell_commands(proc.stdout, "fedgen sumstats export")
    assert len(exports) == 3
    for line in exports:
        site = re.search(r"--site (\w)", line)[1]
        assert f"--aligned-to-panel sites/{site}/datasets/reference_panel.vcf.gz" in line
    (solve,) = shell_commands(proc.stdout, "fedgen exact solve")
    assert "--out results/exact/qt.tsv.gz --unsolved results/exact/qt.unsolved.tsv" in solve


def test_workflow_dag__pcs_zero_and_no_covariates(registry: Path, tmp_path: Path):
    """pcs: 0 (no PCs: a site-provided PC column goes under covariates instead) and an empty
    covariate list still give every site command a value (approved templates need one)."""
    proc = dry_run(tmp_path / "w", registry, "pcs: 0\nmethod: exact-linear\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (cov, *_) = shell_commands(proc.stdout, "fedgen qc covariates")
    assert "--pcs 0" in cov and "--columns age,sex" in cov
    (agg, *_) = shell_commands(proc.stdout, "fedgen exact aggregate")
    assert "--site-covar-name none" in agg
    proc = dry_run(tmp_path / "w2", registry, "pcs: 0\ncovariates: []\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (cov, *_) = shell_commands(proc.stdout, "fedgen qc covariates")
    assert "--columns none --pcs 0" in cov
    # The panel PCA still runs: the heterozygosity check uses its PCs (qc.het_pcs).
    assert job_counts(proc.stdout)["qc_project_pcs"] == 3


def test_workflow_dag__binary_logistic_runs_rounds_as_checkpoints(registry: Path, tmp_path: Path):
    proc = dry_run(tmp_path / "w", registry, "method: exact-linear\nexact:\n  binary: logistic\n")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = job_counts(proc.stdout)
    # Nothing is meta-analysed: qt by aggregates, bt by Newton rounds whose number the
    # checkpoints decide (the dry run plans the first state only).
    assert "meta_analysis" not in jobs and "sumstats_export" not in jobs
    assert jobs["exact_aggregate"] == 3 and jobs["exact_logit_init"] == 1
    assert "results/exact/bt/logit/state.0.json" in proc.stdout
    (init,) = shell_commands(proc.stdout, "fedgen exact logit-init")
    assert "--round plain.bt.logit --sites A,B,C --max-iter 25 --tol 1e-10" in init


def test_workflow_dag__binary_logistic_with_task_masking_is_refused(registry: Path, tmp_path: Path):
    config = (
        "method: exact-linear\nexact:\n  binary: logistic\n  secure: true\n  round: r1\n"
        "  mask_at: task\n"
    )
    proc = dry_run(tmp_path / "w", registry, config)
    assert proc.returncode != 0
    assert "exact.mask_at: node" in proc.stderr + proc.stdout
