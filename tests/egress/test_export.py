"""GWAS-SSF export of real plink2 --glm reports, checked against plink2 and numpy regressions."""

from __future__ import annotations

import gzip
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import SumstatsError

from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.egress.export import count_cases_controls, export_glm, glm_trait_type
from snakemake_fedgen.egress.facts import DatasetFacts, ReleaseFacts

PLINK2 = "/usr/bin/plink2"
N_SAMPLES = 400
CAUSAL = ("10", 30000)  # chromosome, position of the simulated causal variant
CONTIGS = ("20", "10", "2")  # deliberately not in GWAS-SSF order


def _genotype_rows(rng: np.random.Generator):
    """Yield (chrom, pos, id, ref, alt, genotype strings, A1 dosage array or None)."""
    bases = "ACGT"
    for c_index, chrom in enumerate(CONTIGS):
        for i in range(40):
            pos = 10000 + 1000 * i
            ref = bases[(i + c_index) % 4]
            alt = bases[(i + c_index + 1) % 4]
            vid = (f"rs{1000 * (c_index + 1) + i}", ".", f"{chrom}:{pos}:{ref}:{alt}")[i % 3]
            freq = rng.uniform(0.1, 0.5)
            miss = 0.02
            if i == 5:
                freq = 0.004  # a handful of minor alleles: below min_mac
            if i == 6:
                freq = 0.0  # monomorphic: plink2 reports an error code
            if i == 7:
                miss = 0.9  # OBS_CT ~40: below min_n
            dosage = rng.binomial(2, freq, size=N_SAMPLES).astype(float)
            dosage[rng.random(N_SAMPLES) < miss] = np.nan
            if i == 8:
                alt = f"{alt},{bases[(i + c_index + 2) % 4]}"  # multiallelic
            if i == 9:
                ref, alt = "ACT", ref  # an indel
            gts = []
            for d in dosage:
                if np.isnan(d):
                    gts.append("./.")
                elif i == 8 and d == 2:
                    gts.append("1/2")
                else:
                    gts.append(("0/0", "0/1", "1/1")[int(d)])
            yield chrom, pos, vid, ref, alt, gts, dosage


@pytest.fixture(scope="module")
def glm_run(tmp_path_factory):
    """A VCF, phenotypes and real plink2 --glm reports (linear, logistic.hybrid, firth)."""
    d = tmp_path_factory.mktemp("glm")
    rng = np.random.default_rng(20240501)
    samples = [f"s{i:03d}" for i in range(N_SAMPLES)]
    dosages = {}
    lines = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=1000000>" for c in CONTIGS),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    for chrom, pos, vid, ref, alt, gts, dosage in _genotype_rows(rng):
        dosages[(chrom, pos)] = (ref, alt, dosage)
        lines.append("\t".join([chrom, str(pos), vid, ref, alt, ".", "PASS", ".", "GT", *gts]))
    (d / "geno.vcf").write_text("\n".join(lines) + "\n")

    causal = np.nan_to_num(dosages[CAUSAL][2], nan=1.0)
    age = rng.uniform(20, 80, N_SAMPLES)
    qt = 0.6 * causal + 0.02 * age + rng.normal(0, 1, N_SAMPLES)
    logit = -0.5 + 0.8 * causal + 0.01 * (age - 50)
    bt = np.where(rng.random(N_SAMPLES) < 1 / (1 + np.exp(-logit)), 2, 1)
    pheno = pd.DataFrame({"#IID": samples, "qt": qt.round(5), "bt": bt, "age": age.round(2)})
    pheno.loc[3, "bt"] = -9  # one missing phenotype
    pheno.to_csv(d / "pheno.tsv", sep="\t", index=False)

    common = [PLINK2, "--vcf", "geno.vcf", "--pheno", "pheno.tsv", "--covar", "pheno.tsv"]
    common += ["--covar-name", "age", "--covar-variance-standardize", "--threads", "1"]
    subprocess.run(
        [*common, "--pheno-name", "qt,bt", "--glm", "cols=+a1freq,+machr2", "--out", "run"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*common, "--pheno-name", "bt", "--glm", "firth", "cols=+a1freq", "--out", "firth"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*common, "--pheno-name", "qt", "--glm", "cols=+a1freq", "--out", "nofreq2"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    return {"dir": d, "dosages": dosages, "pheno": pheno}


def _plink_add_rows(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return df[df["TEST"] == "ADD"].reset_index(drop=True)


def _expected(df: pd.DataFrame, *, min_n: int, min_mac: float) -> tuple[pd.DataFrame, dict]:
    """Independent restatement of the export rules on the plink2 table."""
    reasons = {}
    keep = []
    for _, r in df.iterrows():
        if r["ERRCODE"] != ".":
            reason = "errcode"
        elif "," in r["ALT"]:
            reason = "multiallelic"
        elif int(r["OBS_CT"]) < min_n:
            reason = "min_n"
        elif 2 * int(r["OBS_CT"]) * min(float(r["A1_FREQ"]), 1 - float(r["A1_FREQ"])) < min_mac:
            reason = "min_mac"
        else:
            keep.append(True)
            continue
        keep.append(False)
        reasons[reason] = reasons.get(reason, 0) + 1
    return df[keep].reset_index(drop=True), reasons


def _read_ssf(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_export_glm__linear_matches_plink2_and_passes_airlock(glm_run, tmp_path):
    glm = glm_run["dir"] / "run.qt.glm.linear"
    result = export_glm(glm, tmp_path / "A_qt", site="A", assembly="GRCh38", ancestry="EUR")
    assert result.data_path == tmp_path / "A_qt.tsv.gz"
    assert result.meta_path == tmp_path / "A_qt.tsv.gz-meta.yaml"

    plink = _plink_add_rows(glm)
    expected, reasons = _expected(plink, min_n=50, min_mac=10.0)
    assert reasons["min_mac"] >= 1 and reasons["min_n"] >= 1 and reasons["multiallelic"] >= 1
    assert "errcode" in reasons  # the monomorphic variants
    got = _read_ssf(result.data_path)
    assert len(got) == len(expected) == result.variants_exported
    assert result.variants_dropped == dict(sorted(reasons.items()))
    assert result.variants_suppressed == reasons["min_n"] + reasons["min_mac"]

    # Values are plink2's own, row by row, with effect_allele = A1.
    by_key = got.set_index(["chromosome", "base_pair_location"])
    for _, r in expected.iterrows():
        row = by_key.loc[(r["#CHROM"], r["POS"])]
        assert row["effect_allele"] == r["A1"]
        assert {row["effect_allele"], row["other_allele"]} == {r["REF"], r["ALT"]}
        assert row["beta"] == r["BETA"]
        assert row["standard_error"] == r["SE"]
        assert row["p_value"] == r["P"]
        assert row["effect_allele_frequency"] == r["A1_FREQ"]
        assert row["n"] == r["OBS_CT"]
        assert row["info"] == r["MACH_R2"]
        vid = r["ID"]
        assert row["rsid"] == (vid if vid.startswith("rs") else "NA")
        assert row["variant_id"] == (vid if vid != "." else "NA")

    # Sorted by GWAS-SSF chromosome order, then position.
    order = [
        (int(c), int(p)) for c, p in zip(got["chromosome"], got["base_pair_location"], strict=True)
    ]
    assert order == sorted(order)
    assert got["chromosome"].iloc[0] == "2" and got["chromosome"].iloc[-1] == "20"

    decision = inspect(result.data_path, AirlockPolicy())
    assert decision.accepted, decision.reason
    assert decision.sha256 == hashlib.sha256(result.data_path.read_bytes()).hexdigest()
    meta_decision = inspect(result.meta_path, AirlockPolicy())
    assert meta_decision.accepted and meta_decision.kind == "sumstats-meta"

    meta = yaml.safe_load(result.meta_path.read_text())
    assert meta["file_type"] == "GWAS-SSF v1.0"
    assert meta["data_file_name"] == "A_qt.tsv.gz"
    assert meta["file_md5sum"] == hashlib.md5(result.data_path.read_bytes()).hexdigest()
    assert meta["genome_assembly"] == "GRCh38" and meta["is_sorted"] is True
    assert meta["samples"] == [
        {"sample_size": max(int(n) for n in got["n"]), "sample_ancestry": ["EUR"]}
    ]
    assert meta["analysis_software"].startswith("PLINK v2.00a3.5")
    fed = meta["fedgen"]
    assert fed["site"] == "A" and fed["trait_type"] == "quantitative"
    assert fed["variants_suppressed"] == result.variants_suppressed
    assert fed["variants_dropped"] == result.variants_dropped
    assert fed["min_n"] == 50 and fed["min_mac"] == 10.0


def test_export_glm__linear_beta_matches_numpy_least_squares(glm_run, tmp_path):
    """The exported beta is the effect of effect_allele, recomputed independently with numpy."""
    result = export_glm(
        glm_run["dir"] / "run.qt.glm.linear", tmp_path / "qt", site="A", assembly="GRCh38"
    )
    got = _read_ssf(result.data_path).set_index(["chromosome", "base_pair_location"])
    row = got.loc[(CAUSAL[0], str(CAUSAL[1]))]
    _ref, alt, dosage = glm_run["dosages"][CAUSAL]  # dosage counts ALT alleles
    a1_dosage = dosage if row["effect_allele"] == alt else 2 - dosage
    pheno = glm_run["pheno"]
    ok = ~np.isnan(a1_dosage)
    x = np.column_stack([np.ones(ok.sum()), a1_dosage[ok], pheno["age"].to_numpy()[ok]])
    y = pheno["qt"].to_numpy()[ok]
    coef, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
    sigma2 = rss[0] / (len(y) - x.shape[1])
    se = math.sqrt(sigma2 * np.linalg.inv(x.T @ x)[1, 1])
    assert float(row["beta"]) == pytest.approx(coef[1], rel=1e-4)
    assert float(row["standard_error"]) == pytest.approx(se, rel=1e-4)
    assert float(row["beta"]) > 0.3  # the simulated effect of the causal allele is 0.6


def _logistic_irls(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ beta))
        w = p * (1 - p)
        info = x.T @ (x * w[:, None])
        step = np.linalg.solve(info, x.T @ (y - p))
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta, np.sqrt(np.diag(np.linalg.inv(info)))


def test_export_glm__logistic_writes_log_odds_checked_against_irls(glm_run, tmp_path):
    glm = glm_run["dir"] / "run.bt.glm.logistic.hybrid"
    n_cases, n_controls = count_cases_controls(glm_run["dir"] / "pheno.tsv", "bt")
    pheno = glm_run["pheno"]
    assert (n_cases, n_controls) == (int((pheno["bt"] == 2).sum()), int((pheno["bt"] == 1).sum()))
    result = export_glm(
        glm, tmp_path / "bt", site="B", assembly="GRCh38", n_cases=n_cases, n_controls=n_controls
    )
    plink = _plink_add_rows(glm)
    expected, _ = _expected(plink, min_n=50, min_mac=10.0)
    got = _read_ssf(result.data_path).set_index(["chromosome", "base_pair_location"])
    assert "odds_ratio" not in got.columns
    for _, r in expected.iterrows():
        row = got.loc[(r["#CHROM"], r["POS"])]
        assert float(row["beta"]) == pytest.approx(math.log(float(r["OR"])), rel=1e-5, abs=1e-9)
        assert row["standard_error"] == r["LOG(OR)_SE"]

    row = got.loc[(CAUSAL[0], str(CAUSAL[1]))]
    _ref, alt, dosage = glm_run["dosages"][CAUSAL]
    a1 = dosage if row["effect_allele"] == alt else 2 - dosage
    ok = ~np.isnan(a1) & (pheno["bt"].to_numpy() > 0)
    age = pheno["age"].to_numpy()[ok]
    x = np.column_stack([np.ones(ok.sum()), a1[ok], (age - age.mean()) / age.std(ddof=1)])
    coef, se = _logistic_irls(x, (pheno["bt"].to_numpy()[ok] == 2).astype(float))
    assert float(row["beta"]) == pytest.approx(coef[1], rel=1e-3)
    assert float(row["standard_error"]) == pytest.approx(se[1], rel=1e-3)

    meta = yaml.safe_load(result.meta_path.read_text())
    assert meta["samples"][0]["sample_size"] == n_cases + n_controls
    assert meta["samples"][0]["case_count"] == n_cases
    assert meta["fedgen"]["trait_type"] == "binary"
    assert meta["fedgen"]["effect_scale"] == "log_odds_ratio"
    assert inspect(result.data_path, AirlockPolicy()).accepted


def test_export_glm__firth_report_is_binary_and_accepted(glm_run, tmp_path):
    glm = glm_run["dir"] / "firth.bt.glm.firth"
    assert glm_trait_type(glm) == "binary"
    result = export_glm(glm, tmp_path / "f.tsv.gz", site="C", assembly="GRCh38")
    assert result.data_path == tmp_path / "f.tsv.gz"
    assert "info" not in _read_ssf(result.data_path).columns
    assert inspect(result.data_path, AirlockPolicy()).accepted


def test_export_glm__unsorted_input_gives_identical_output(glm_run, tmp_path):
    glm = glm_run["dir"] / "run.qt.glm.linear"
    lines = glm.read_text().splitlines(keepends=True)
    body = lines[1:]
    np.random.default_rng(3).shuffle(body)
    shuffled = tmp_path / "shuf.qt.glm.linear"
    shuffled.write_text(lines[0] + "".join(body))
    a = export_glm(glm, tmp_path / "a", site="A", assembly="GRCh38")
    b = export_glm(shuffled, tmp_path / "b", site="A", assembly="GRCh38")
    with gzip.open(a.data_path, "rt") as fa, gzip.open(b.data_path, "rt") as fb:
        assert fa.read() == fb.read()


def test_export_glm__stricter_thresholds_suppress_more(glm_run, tmp_path):
    glm = glm_run["dir"] / "run.qt.glm.linear"
    result = export_glm(glm, tmp_path / "s", site="A", assembly="GRCh38", min_n=385, min_mac=80)
    expected, reasons = _expected(_plink_add_rows(glm), min_n=385, min_mac=80)
    assert result.variants_exported == len(expected)
    assert result.variants_suppressed == reasons.get("min_n", 0) + reasons.get("min_mac", 0)
    got = _read_ssf(result.data_path)
    mac = (
        2
        * got["n"].astype(int)
        * np.minimum(
            got["effect_allele_frequency"].astype(float),
            1 - got["effect_allele_frequency"].astype(float),
        )
    )
    assert (got["n"].astype(int) >= 385).all() and (mac >= 80).all()
    assert not inspect(result.data_path, AirlockPolicy(min_n=390)).accepted


def test_export_glm__nothing_left_raises_and_leaves_no_file(glm_run, tmp_path):
    with pytest.raises(SumstatsError, match="no variant left to export"):
        export_glm(
            glm_run["dir"] / "run.qt.glm.linear",
            tmp_path / "none",
            site="A",
            assembly="GRCh38",
            min_n=100000,
        )
    assert list(tmp_path.iterdir()) == []


def test_export_glm__missing_a1freq_names_the_fix(glm_run, tmp_path):
    # plink2 writes no A1_FREQ column unless asked; strip it from a real report.
    src = glm_run["dir"] / "nofreq2.qt.glm.linear"
    df = pd.read_csv(src, sep="\t", dtype=str, keep_default_na=False).drop(columns="A1_FREQ")
    glm = tmp_path / "x.qt.glm.linear"
    df.to_csv(glm, sep="\t", index=False)
    with pytest.raises(SumstatsError, match=r"line 1: no A1_FREQ column; .*cols=\+a1freq"):
        export_glm(glm, tmp_path / "out", site="A", assembly="GRCh38")
    assert not (tmp_path / "out.tsv.gz").exists()


def test_export_glm__truncated_report_names_line(glm_run, tmp_path):
    lines = (glm_run["dir"] / "run.qt.glm.linear").read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:5])
    glm = tmp_path / "t.qt.glm.linear"
    glm.write_text("\n".join(lines) + "\n")
    with pytest.raises(SumstatsError, match=r"t\.qt\.glm\.linear line 5: 5 fields"):
        export_glm(glm, tmp_path / "out", site="A", assembly="GRCh38")
    assert [p.name for p in tmp_path.iterdir()] == ["t.qt.glm.linear"]


def test_export_glm__trait_type_contradiction_is_an_error(glm_run, tmp_path):
    with pytest.raises(SumstatsError, match="binary --glm result but trait_type='quantitative'"):
        export_glm(
            glm_run["dir"] / "run.bt.glm.logistic.hybrid",
            tmp_path / "x",
            site="A",
            assembly="GRCh38",
            trait_type="quantitative",
        )


def test_count_cases_controls__keep_restricts_samples(glm_run, tmp_path):
    keep = tmp_path / "keep.psam"
    keep.write_text("#IID\tSEX\n" + "".join(f"s{i:03d}\tNA\n" for i in range(100)))
    pheno = glm_run["pheno"].iloc[:100]
    assert count_cases_controls(glm_run["dir"] / "pheno.tsv", "bt", keep=keep) == (
        int((pheno["bt"] == 2).sum()),
        int((pheno["bt"] == 1).sum()),
    )


def _fedgen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_sumstats_cli__export_then_check(glm_run, tmp_path):
    d = glm_run["dir"]
    proc = _fedgen(
        "sumstats",
        "export",
        "--glm",
        str(d / "run.bt.glm.logistic.hybrid"),
        "--out",
        str(tmp_path / "results" / "A_bt"),
        "--site",
        "A",
        "--assembly",
        "GRCh38",
        "--pheno",
        str(d / "pheno.tsv"),
        "--pheno-name",
        "bt",
        "--min-n",
        "60",
        "--refget-digest",
        "abc123",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "results" / "A_bt.tsv.gz"
    assert f"wrote {out}" in proc.stdout
    meta = yaml.safe_load((tmp_path / "results" / "A_bt.tsv.gz-meta.yaml").read_text())
    assert meta["fedgen"]["refget_seqcol_digest"] == "abc123"
    assert meta["fedgen"]["n_cases"] == int((glm_run["pheno"]["bt"] == 2).sum())

    ok = _fedgen("sumstats", "check", str(out), "--min-n", "60", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ACCEPTED kind=sumstats"), ok.stdout
    refused = _fedgen("sumstats", "check", str(out), "--min-n", "1000", cwd=tmp_path)
    assert refused.returncode == 1
    assert "REFUSED kind=sumstats" in refused.stdout
    assert "column 'n'" in refused.stdout and "below min_n=1000" in refused.stdout
    vcf = _fedgen("sumstats", "check", str(d / "geno.vcf"), cwd=tmp_path)
    assert vcf.returncode == 1 and "REFUSED kind=vcf" in vcf.stdout


def test_sumstats_cli__aligned_to_panel_writes_the_panels_sha256(glm_run, tmp_path):
    from snakemake_fedgen.sumstats.sidecar import read_study_info

    d = glm_run["dir"]
    panel = d / "geno.vcf"  # any file: the digest is of its bytes
    proc = _fedgen(
        "sumstats", "export", "--glm", str(d / "run.qt.glm.linear"),
        "--out", str(tmp_path / "A_qt"), "--site", "A", "--assembly", "GRCh38",
        "--aligned-to-panel", str(panel),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sidecar = tmp_path / "A_qt.tsv.gz-meta.yaml"
    expected = "sha256:" + hashlib.sha256(panel.read_bytes()).hexdigest()
    assert yaml.safe_load(sidecar.read_text())["fedgen"]["aligned_panel"] == expected
    assert read_study_info(tmp_path / "A_qt.tsv.gz").aligned_panel == expected
    ok = _fedgen("sumstats", "check", str(sidecar), cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ACCEPTED kind=sumstats-meta"), ok.stdout
    # A site with registered datasets checks every text value and their total length too.
    facts = ReleaseFacts(
        (DatasetFacts("genotypes", N_SAMPLES, 1000, (), "2026-01-01T00:00:00Z"),),
        np.arange(1000, dtype=np.uint64),
        np.zeros(0, dtype=np.uint64),
    )
    strict = inspect(sidecar, AirlockPolicy(facts=facts))
    assert strict.accepted, strict.reason

    missing = _fedgen(
        "sumstats", "export", "--glm", str(d / "run.qt.glm.linear"),
        "--out", str(tmp_path / "B_qt"), "--site", "B", "--assembly", "GRCh38",
        "--aligned-to-panel", str(tmp_path / "no_panel.vcf.gz"),
        cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode != 0 and "cannot read the reference panel" in missing.stderr
    assert not list(tmp_path.glob("B_qt*"))


def test_export_glm__without_a_panel_the_sidecar_declares_none(glm_run, tmp_path):
    result = export_glm(
        glm_run["dir"] / "run.qt.glm.linear", tmp_path / "A", site="A", assembly="GRCh38"
    )
    assert "aligned_panel" not in yaml.safe_load(result.meta_path.read_text())["fedgen"]


@pytest.mark.parametrize("digest", ["md5:0123", "sha256:" + "AB" * 32, "sha256:" + "ab" * 31])
def test_export_glm__malformed_panel_digest_refused_before_writing(glm_run, tmp_path, digest):
    with pytest.raises(SumstatsError, match=r"aligned_panel must be 'sha256:'"):
        export_glm(
            glm_run["dir"] / "run.qt.glm.linear", tmp_path / "A", site="A", assembly="GRCh38",
            aligned_panel=digest,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_export_glm__readable_by_the_meta_analysis_reader(glm_run, tmp_path):
    from snakemake_fedgen.sumstats.reader import StudyTable
    from snakemake_fedgen.sumstats.sidecar import read_study_info

    glm = glm_run["dir"] / "run.bt.glm.logistic.hybrid"
    result = export_glm(
        glm, tmp_path / "B_bt", site="B", assembly="GRCh38", n_cases=150, n_controls=240
    )
    info = read_study_info(result.data_path)
    assert (info.name, info.assembly, info.trait_type) == ("B", "GRCh38", "binary")
    assert (info.n_cases, info.n_controls, info.sample_size) == (150, 240, 390.0)
    assert info.is_sorted is True
    table = StudyTable(info)
    blocks = list(table.chromosomes())
    assert [b.chrom for b in blocks] == [2, 10, 20]
    assert sum(len(b) for b in blocks) == result.variants_exported
    assert table.exclusions == []


def test_export_glm__sidecar_refusal_leaves_neither_file(glm_run, tmp_path):
    # A 2000-character description is free text the airlock will not let out.
    with pytest.raises(SumstatsError, match=r"sidecar fails the airlock: .*trait_description"):
        export_glm(
            glm_run["dir"] / "run.qt.glm.linear",
            tmp_path / "A_qt",
            site="A",
            assembly="GRCh38",
            trait_description="x" * 2000,
        )
    assert list(tmp_path.iterdir()) == []
