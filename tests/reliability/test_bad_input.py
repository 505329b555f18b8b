"""Bad input corpus: every wrong file gives one clear message naming file, site and line, and
no partial output is left at an output path.

The corpus is made from real tools in the test: ``fedgen simulate`` genotypes and phenotypes,
``plink2 --glm`` reports, ``fedgen sumstats export`` tables, bcftools/plink2 files, then
corrupted the way real files break (cut, a short line, NaN, a sign flip, a repeated row).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.executor.conftest import start_site
from tests.reliability.scenarios import observed

pytestmark = pytest.mark.slow

FEDGEN = [sys.executable, "-m", "snakemake_fedgen"]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _one_error(proc: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one message line and no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _nothing_left(directory: Path, stem: str) -> None:
    """No output and no temporary file named after ``stem`` in ``directory``."""
    assert [p.name for p in directory.iterdir() if stem in p.name] == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated sites A and B, their plink2 --glm reports and exported GWAS-SSF tables."""
    d = tmp_path_factory.mktemp("corpus")
    sim = _run(*FEDGEN, "simulate", "--out", "sim", "--seed", "11", "--scale", "tiny", cwd=d)
    assert sim.returncode == 0, sim.stderr
    for site, assembly in (("A", "GRCh38"), ("B", "GRCh38"), ("B", "GRCh37")):
        sdir = d / "sim" / "sites" / site
        glm = d / f"{site}.qt.glm.linear"
        if not glm.exists():
            plink = _run(
                "plink2", "--vcf", str(sdir / "genotypes.vcf.gz"), "--double-id",
                "--pheno", str(sdir / "phenotypes.tsv"), "--pheno-name", "qt",
                "--covar", str(sdir / "phenotypes.tsv"), "--covar-name", "sex", "age",
                "--glm", "hide-covar", "cols=+a1freq", "--maf", "0.05", "--out", site, cwd=d,
            )  # fmt: skip
            assert plink.returncode == 0, plink.stdout[-2000:]
        export = _run(
            *FEDGEN, "sumstats", "export", "--glm", glm.name, "--out", f"{site}_{assembly}",
            "--site", site, "--assembly", assembly, "--min-n", "5", "--min-mac", "1", cwd=d,
        )  # fmt: skip
        assert export.returncode == 0, export.stderr
    return d


def _edit_lines(src: Path, dest: Path, edit) -> None:
    """Copy a (gzipped) text file line by line through ``edit(lineno, fields) -> [fields]``."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as fin:
        lines = fin.read().splitlines()
    out = []
    for lineno, line in enumerate(lines, start=1):
        out.extend("\t".join(f) for f in edit(lineno, line.split("\t")))
    text = "\n".join(out) + "\n"
    if dest.suffix == ".gz":
        with gzip.open(dest, "wt") as f:
            f.write(text)
    else:
        dest.write_text(text)


def _set(lineno_wanted: int, column: int, value: str):
    def edit(lineno, fields):
        if lineno == lineno_wanted:
            fields = [*fields[:column], value, *fields[column + 1 :]]
        return [fields]

    return edit


def _repeat(lineno_wanted: int):
    def edit(lineno, fields):
        return [fields, fields] if lineno == lineno_wanted else [fields]

    return edit


# -- fedgen sumstats export ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "edit", "fragment"),
    [
        ("neg_se", _set(5, 10, "-0.2"), "line 5: standard error -0.2 is not positive"),
        ("dup", _repeat(6), "line 7: duplicate variant"),
        ("cut", None, "fields but the header has"),
        ("empty", None, "no variant left to export"),
        ("missing", None, "cannot read the report (No such file or directory)"),
    ],
)
def test_sumstats_export__corrupt_report_one_message_no_output(corpus, case, edit, fragment):
    glm = corpus / "A.qt.glm.linear"
    bad = corpus / f"{case}.qt.glm.linear"
    if case == "cut":
        bad.write_bytes(glm.read_bytes()[:5000])
    elif case == "empty":
        bad.write_text(glm.read_text().splitlines()[0] + "\n")
    elif edit is not None:
        assert glm.read_text().splitlines()[0].split("\t")[10] == "SE"
        _edit_lines(glm, bad, edit)
    proc = _run(
        *FEDGEN, "sumstats", "export", "--glm", bad.name, "--out", f"out_{case}", "--site", "A",
        "--assembly", "GRCh38", "--min-n", "5", "--min-mac", "1", cwd=corpus,
    )  # fmt: skip
    message = _one_error(proc)
    assert bad.name in message and fragment in message, message
    _nothing_left(corpus, f"out_{case}")
    observed("sumstats_export_corrupt", message)


def test_sumstats_export__nan_estimate_is_withheld_and_counted(corpus):
    glm = corpus / "A.qt.glm.linear"
    _edit_lines(glm, corpus / "nan.qt.glm.linear", _set(4, 10, "nan"))
    proc = _run(
        *FEDGEN, "sumstats", "export", "--glm", "nan.qt.glm.linear", "--out", "out_nan",
        "--site", "A", "--assembly", "GRCh38", "--min-n", "5", "--min-mac", "1", cwd=corpus,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = yaml.safe_load((corpus / "out_nan.tsv.gz-meta.yaml").read_text())
    # The one nan row is dropped and counted under its reason; no disclosure suppression.
    assert meta["fedgen"]["variants_dropped"] == {"missing_estimate": 1}
    assert meta["fedgen"]["variants_suppressed"] == 0
    with gzip.open(corpus / "out_nan.tsv.gz", "rt") as f:
        assert not any("nan" in line.lower().split("\t") for line in f)
    observed("sumstats_export_nan", proc.stdout)


# -- fedgen meta -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("nan", "line 4, column 6 (standard_error): missing value"),
        ("neg_se", "line 5, column 6 (standard_error): standard error -0.1 is not positive"),
        ("dup", "line 7, columns chromosome/base_pair_location/effect_allele/other_allele"),
        ("empty", "line 1: empty file"),
        ("assembly", "different genome assemblies (A=GRCh38, B=GRCh37)"),
    ],
)
def test_meta__bad_study_one_message_no_output(corpus, case, fragment):
    good = corpus / "A_GRCh38.tsv.gz"
    bad = corpus / f"meta_{case}.tsv.gz"
    other = "B_GRCh37.tsv.gz" if case == "assembly" else "B_GRCh38.tsv.gz"
    if case == "nan":
        _edit_lines(good, bad, _set(4, 5, "nan"))
    elif case == "neg_se":
        _edit_lines(good, bad, _set(5, 5, "-0.1"))
    elif case == "dup":
        _edit_lines(good, bad, _repeat(6))
    elif case == "empty":
        with gzip.open(bad, "wt"):
            pass
    else:
        bad = good
    if bad != good:
        bad.with_name(bad.name + "-meta.yaml").write_bytes(
            good.with_name(good.name + "-meta.yaml").read_bytes()
        )
    proc = _run(
        *FEDGEN, "meta", "--out", f"metaout_{case}", "--no-plots", bad.name, other, cwd=corpus
    )
    message = _one_error(proc)
    assert fragment in message, message
    if case != "assembly":
        assert bad.name in message
    _nothing_left(corpus, f"metaout_{case}")
    observed("meta_bad_study", message)


# -- phenotypes ------------------------------------------------------------------------------


def test_qc_covariates__phenotypes_of_another_cohort_are_refused(corpus):
    sdir = corpus / "sim" / "sites" / "A"
    pca = _run(
        "plink2", "--vcf", str(sdir / "genotypes.vcf.gz"), "--double-id", "--maf", "0.05",
        "--pca", "3", "--out", "pcaA", cwd=corpus,
    )  # fmt: skip
    assert pca.returncode == 0, pca.stdout[-2000:]
    # Site B's phenotype file given to site A's genotypes: no ID matches.
    proc = _run(
        *FEDGEN, "qc", "covariates", "--pheno", str(corpus / "sim/sites/B/phenotypes.tsv"),
        "--eigenvec", "pcaA.eigenvec", "--output", "covA.tsv", "--columns", "sex,age",
        "--pcs", "3", cwd=corpus,
    )  # fmt: skip
    message = _one_error(proc)
    assert "sites/B/phenotypes.tsv" in message and "pcaA.eigenvec" in message
    _nothing_left(corpus, "covA")
    observed("phenotype_ids", message)
    # Some IDs missing or unknown: those samples are left out, the rest kept.
    rows = (sdir / "phenotypes.tsv").read_text().splitlines()
    # An unknown person, every column after sex and age missing (the table has clinical columns).
    unknown = ["ZZ1", "ZZ1", "1", "50.0", *["NA"] * (len(rows[0].split("\t")) - 4)]
    partial = [rows[0], *rows[6:], "\t".join(unknown)]
    (corpus / "ph_partial.tsv").write_text("\n".join(partial) + "\n")
    ok = _run(
        *FEDGEN, "qc", "covariates", "--pheno", "ph_partial.tsv", "--eigenvec", "pcaA.eigenvec",
        "--output", "covP.tsv", "--columns", "sex,age", "--pcs", "3", cwd=corpus,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    kept = (corpus / "covP.tsv").read_text().splitlines()[1:]
    assert len(kept) == len(rows) - 1 - 5


# -- site registry ---------------------------------------------------------------------------


def _registry_variants(corpus: Path) -> dict[str, Path]:
    base = yaml.safe_load((corpus / "sim" / "sites.yaml").read_text())
    variants = {}
    for case in ("unknown_key", "bad_url", "ok"):
        data = yaml.safe_load(yaml.safe_dump(base))
        if case == "unknown_key":
            data["sites"]["B"]["tes_ulr"] = data["sites"]["B"].pop("tes_url")
        elif case == "bad_url":
            data["sites"]["C"]["tes_url"] = "htp:/127.0.0.1:8103/ga4gh/tes/v1"
        path = corpus / f"sites_{case}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        variants[case] = path
    return variants


def test_sites_validate__typos_named_with_line_and_fix(corpus):
    regs = _registry_variants(corpus)
    unknown = _one_error(_run(*FEDGEN, "sites", "validate", str(regs["unknown_key"]), cwd=corpus))
    assert "sites_unknown_key.yaml line" in unknown and "did you mean 'tes_url'?" in unknown
    observed("registry_typo", unknown)
    bad_url = _one_error(_run(*FEDGEN, "sites", "validate", str(regs["bad_url"]), cwd=corpus))
    assert "sites_bad_url.yaml line" in bad_url and "site C key tes_url" in bad_url
    assert "does not match '^https?://'" in bad_url


def test_fedgen_executor__registry_typos_and_missing_token(corpus, tmp_path):
    regs = _registry_variants(corpus)
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(
        'rule all:\n    input: "out/A.txt"\n\n'
        'rule hello:\n    output: "out/{site}.txt"\n    shell: "echo hi > {output}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGEN_TOKEN")}
    outcome = {}
    for case, path in regs.items():
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--executor", "fedgen", "--fedgen-sites",
             str(path), "--jobs", "1"],
            cwd=wf, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        outcome[case] = proc.stderr
        assert not (wf / "out" / "A.txt").exists()
    assert "line" in outcome["unknown_key"] and "did you mean 'tes_url'?" in outcome["unknown_key"]
    assert "site C key tes_url" in outcome["bad_url"]
    # A valid registry but no token in the environment: named site and variable, no request.
    missing = outcome["ok"]
    assert "site A: environment variable FEDGEN_TOKEN_A (token_env) is not set" in missing
    observed("missing_token", missing)


# -- genotypes at the site (through the executor and a real node) ----------------------------

VCF_SNAKEFILE = r"""
import sys

FEDGEN = f"{sys.executable} -m snakemake_fedgen"
CASES = ["cut", "short_line", "no_samples"]


localrules: all, dataset_ref


rule all:
    input:
        expand("sites/A/qc/{case}.pgen", case=CASES),


rule dataset_ref:
    output:
        "sites/A/datasets/{case}.vcf.gz",
    shell:
        "{FEDGEN} sites ref --sites {config[sites]} --site A --dataset {wildcards.case} "
        "--output {output}"


# The workflow's own import step (workflows/federated-gwas/workflow/rules/qc.smk): plink2 output
# goes to the rule's log.
rule qc_import:
    input:
        vcf="sites/A/datasets/{case}.vcf.gz",
    output:
        pgen="sites/A/qc/{case}.pgen",
    log:
        "logs/A/{case}.log",
    resources:
        site="A",
    shell:
        "plink2 --vcf {input.vcf} --double-id --make-pgen --out sites/A/qc/{wildcards.case}"
        " > {log} 2>&1"
"""


def test_fedgen_executor__bad_vcf_at_site_names_site_file_and_line(corpus, tmp_path):
    """The site returns task logs to this coordinator (caller_logs): the analyst sees the
    tool's words. Without it they stay at the site (tests/security/test_task_logs.py)."""
    site = start_site(tmp_path / "sites", "A", runtime="bwrap", caller_logs=True)
    try:
        data = site.root / "data"
        real = corpus / "sim" / "sites" / "A" / "genotypes.vcf.gz"
        (data / "cut.vcf.gz").write_bytes(real.read_bytes()[:30000])
        subprocess.run(
            ["bcftools", "view", "-G", "-Oz", "-o", str(data / "no_samples.vcf.gz"), str(real)],
            check=True,
        )
        with gzip.open(real, "rt") as f:
            lines = f.read().splitlines()
        first = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
        lines[first + 6] = "\t".join(lines[first + 6].split("\t")[:-40])
        with gzip.open(data / "short_line.vcf.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
        bad_line = first + 7  # 1-based line number of the short line
        wf = tmp_path / "wf"
        wf.mkdir()
        (wf / "Snakefile").write_text(VCF_SNAKEFILE)
        registry = tmp_path / "sites.yaml"
        entry = site.registry_entry(
            datasets={
                case: {"url": (data / f"{case}.vcf.gz").as_uri()}
                for case in ("cut", "short_line", "no_samples")
            }
        )
        registry.write_text(yaml.safe_dump({"version": 1, "sites": {"A": entry}}))
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--executor", "fedgen", "--fedgen-sites",
             str(registry), "--jobs", "3", "--keep-going", "--config", f"sites={registry}"],
            cwd=wf, env={**os.environ, site.token_env: site.token}, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        err = proc.stderr
        for fragment in (
            "Malformed BGZF block",
            "No samples in --vcf file",
            f"Line {bad_line} of --vcf file has fewer tokens than expected",
        ):
            assert fragment in err, (fragment, err[-6000:])
        assert err.count("site A: task") >= 3
        for case in ("cut", "short_line", "no_samples"):
            assert not (wf / "sites" / "A" / "qc" / f"{case}.pgen").exists()
        observed("bad_vcf", err)
    finally:
        site.node.stop()


def test_meta__empty_site_is_reported_with_zero_rows(corpus):
    # A site whose table holds a header only (e.g. written by hand: the exporter refuses to
    # write one) takes part with nothing; the user sees it in the summary and studies table.
    good = corpus / "A_GRCh38.tsv.gz"
    with gzip.open(good, "rt") as f:
        header = f.readline()
    with gzip.open(corpus / "C_empty.tsv.gz", "wt") as f:
        f.write(header)
    proc = _run(
        *FEDGEN, "meta", "--out", "metaout_emptysite", "--no-plots", good.name, "C_empty.tsv.gz",
        cwd=corpus,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    studies = (corpus / "metaout_emptysite.studies.tsv").read_text().splitlines()
    empty_row = next(r.split("\t") for r in studies if r.startswith("C_empty\t"))
    assert empty_row[2:4] == ["0", "0"]  # read, kept
    observed("empty_site", proc.stdout + proc.stderr)
