"""P-values in log space, the sample-size scheme with effective N, and the ``fedgen meta`` CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import chi2, norm

from snakemake_fedgen.meta import stats
from snakemake_fedgen.meta.engine import MetaOptions, run_meta

from .test_inputs import GOOD, HEADER, _write


@pytest.mark.parametrize("z", [40.0, -40.0, 60.0, 1000.0])
def test_log10_p_from_z__extreme_z_matches_scipy_logsf(z):
    ours = stats.log10_p_from_z(np.array([z]))[0]
    expected = (math.log(2) + norm.logsf(abs(z))) / math.log(10)
    assert np.isfinite(ours)
    # p relative error = 10**(difference in log10 p) - 1
    assert abs(10 ** (ours - expected) - 1) < 1e-6


def test_log10_chi2_sf__huge_q_stays_finite():
    q = np.array([3.0, 2000.0, 5000.0])
    df = np.array([2.0, 3.0, 1.0])
    ours = stats.log10_chi2_sf(q, df)
    assert np.isfinite(ours).all()
    assert ours[0] == pytest.approx(chi2.logsf(3.0, 2.0) / math.log(10), rel=1e-9)
    # Where scipy's chi2.logsf gives -inf, compare with its exact closed forms: for 1 df,
    # P(X > q) = 2 * Phi(-sqrt(q)); for 3 df, add 2 * phi(sqrt(q)) * sqrt(q).
    expected_1 = (math.log(2) + norm.logsf(math.sqrt(5000.0))) / math.log(10)
    assert ours[2] == pytest.approx(expected_1, rel=1e-9)
    r = math.sqrt(2000.0)
    log_3 = np.logaddexp(math.log(2) + norm.logsf(r), math.log(2 * r) + norm.logpdf(r))
    assert ours[1] == pytest.approx(log_3 / math.log(10), rel=1e-9)


def _p_from_text(text: str) -> Decimal:
    return Decimal(text)


def test_run_meta__p_value_never_zero_at_z_40_and_60(tmp_path):
    rows = [
        ["1", "100", "A", "C", "0.4", "0.01", "0.3", "0", "1000"],  # z = 40
        ["1", "200", "G", "T", "-0.6", "0.01", "0.2", "0", "1000"],  # z = -60
        ["1", "300", "G", "T", "1000", "1", "0.2", "0", "1000"],  # z = 1000
    ]
    path = _write(tmp_path / "huge.tsv.gz", rows)
    result = run_meta([path], out=tmp_path / "m")
    out = pd.read_csv(result.outputs["sumstats"], sep="\t", dtype={"p_value": str})
    for text, z in zip(out.p_value, [40.0, 60.0, 1000.0], strict=True):
        p = _p_from_text(text)
        assert p > 0
        expected = Decimal(2) * Decimal(math.e) ** Decimal(norm.logsf(z))
        assert abs(p / expected - 1) < Decimal("1e-6"), (text, expected)
    assert np.isfinite(out.neg_log_10_p_value).all()
    assert out.neg_log_10_p_value.iloc[2] == pytest.approx(
        -(math.log(2) + norm.logsf(1000.0)) / math.log(10), rel=1e-6
    )


def _case_control_sidecar(path, *, site, cases, controls):
    meta = {
        "genome_assembly": "GRCh38",
        "samples": [{"sample_size": cases + controls}],
        "fedgen": {"site": site, "trait_type": "binary", "n_cases": cases, "n_controls": controls},
    }
    (path.parent / (path.name + "-meta.yaml")).write_text(yaml.safe_dump(meta))


def test_run_meta__samplesize_scheme_uses_effective_n(tmp_path):
    """METAL's SAMPLESIZE Z with N_eff = 4 / (1/cases + 1/controls), written out by hand."""
    a = _write(tmp_path / "a.tsv.gz", GOOD)
    b_rows = [list(r) for r in GOOD]
    b_rows[0][2:4] = ["C", "A"]  # swapped
    b_rows[0][4] = "0.3"
    b_rows[1][4] = "-0.1"
    b_rows[1][5] = "0.08"
    b = _write(tmp_path / "b.tsv.gz", b_rows)
    _case_control_sidecar(a, site="A", cases=500, controls=1500)
    _case_control_sidecar(b, site="B", cases=2000, controls=2000)
    result = run_meta([a, b], out=tmp_path / "m", options=MetaOptions(scheme="both"))
    out = pd.read_csv(result.outputs["sumstats"], sep="\t")
    neff = [4 / (1 / 500 + 1 / 1500), 4 / (1 / 2000 + 1 / 2000)]
    for i in range(3):
        z_a = float(GOOD[i][4]) / float(GOOD[i][5])
        sign = -1 if i == 0 else 1
        z_b = sign * float(b_rows[i][4]) / float(b_rows[i][5])
        expected = (math.sqrt(neff[0]) * z_a + math.sqrt(neff[1]) * z_b) / math.sqrt(sum(neff))
        assert out.z_samplesize[i] == pytest.approx(expected, rel=1e-6)
        assert out.p_value_samplesize[i] == pytest.approx(2 * norm.sf(abs(expected)), rel=1e-6)
    studies = pd.read_csv(result.outputs["studies"], sep="\t")
    assert studies.weight_n[0] == "effective N 1500.0"
    only = run_meta([a, b], out=tmp_path / "s", options=MetaOptions(scheme="samplesize"))
    ss = pd.read_csv(only.outputs["sumstats"], sep="\t")
    assert np.allclose(ss.z, out.z_samplesize, rtol=1e-6)
    assert "z_samplesize" not in ss.columns


def test_fedgen_meta__cli_help_and_run(tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "meta", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--out", "--random", "--gc", "--maf-palindromic", "--scheme", "--sort"):
        assert flag in help_text
    a = _write(tmp_path / "a.tsv.gz", GOOD)
    b = _write(tmp_path / "b.tsv", GOOD)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "meta",
            "--out",
            str(tmp_path / "res" / "m"),
            "--random",
            str(a),
            str(b),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 variants from 2 studies" in proc.stderr
    for suffix in (".tsv.gz", ".tsv.gz-meta.yaml", ".exclusions.tsv.gz", ".studies.tsv"):
        assert (tmp_path / "res" / f"m{suffix}").is_file()
    for suffix in (".manhattan.png", ".qq.png"):
        assert (tmp_path / "res" / f"m{suffix}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = pd.read_csv(tmp_path / "res" / "m.tsv.gz", sep="\t")
    assert list(out.columns[:8]) == HEADER[:8]
    assert list(out.direction) == ["++", "--", "++", "++"]
    assert "beta_random" in out.columns

    bad = _write(tmp_path / "bad.tsv", [["1", "100", "A", "C", "x", "1", "0.1", "1", "10"]])
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "meta", "--out", str(tmp_path / "x"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "bad.tsv, line 2, column 5 (beta): non-numeric value 'x'" in proc.stderr
    # No partial output, not even a temporary file.
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))


def test_run_meta__outputs_follow_the_umask(tmp_path):
    import os

    path = _write(tmp_path / "a.tsv.gz", GOOD)
    old = os.umask(0o022)
    try:
        result = run_meta([path], out=tmp_path / "o")
    finally:
        os.umask(old)
    for out in result.outputs.values():
        assert (out.stat().st_mode & 0o777) == 0o644, out
