"""The meta-analysis agrees with GWAMA 2.2.2 and PLINK 1.9 on simulated, messy studies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import chi2, norm

from snakemake_fedgen.meta.engine import MetaOptions, run_meta

from .simdata import canonical_key, simulate, write_gwama, write_plink, write_ssf

N_STUDIES = 4
GWAMA = "/usr/bin/GWAMA"
PLINK = "/usr/bin/plink1.9"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta")
    variants, _ = simulate(1500, N_STUDIES, seed=11)
    ssf, gwama, plink = [], [], []
    for s in range(N_STUDIES):
        ssf.append(root / f"study{s}.tsv.gz")
        gwama.append(root / f"study{s}.gwama.txt")
        plink.append(root / f"study{s}.plink.txt")
        write_ssf(variants, s, ssf[-1])
        write_gwama(variants, s, gwama[-1])
        write_plink(variants, s, plink[-1])
    (root / "gwama.in").write_text("".join(f"{p.name}\n" for p in gwama))
    result = run_meta(ssf, out=root / "out" / "meta", options=MetaOptions(random=True))
    ours = pd.read_csv(
        result.outputs["sumstats"], sep="\t", keep_default_na=False, na_values=["NA"]
    )
    ours["key"] = [
        canonical_key(c, p, a, b)
        for c, p, a, b in zip(
            ours.chromosome.astype(str),
            ours.base_pair_location,
            ours.effect_allele,
            ours.other_allele,
            strict=True,
        )
    ]
    return {"root": root, "variants": variants, "result": result, "ours": ours.set_index("key")}


def _reference_key(v) -> tuple:
    """Key of a variant as the first study carrying it reports it (GWAMA's reference)."""
    first = v.rows[min(v.rows)]
    return canonical_key(v.chrom, v.pos, first["ea"], first["oa"])


def _run_gwama(root: Path, *flags: str) -> pd.DataFrame:
    out = "gwama" + "".join(f.strip("-") for f in flags)
    subprocess.run(
        [GWAMA, "-qt", *flags, "-o", out],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return pd.read_csv(root / f"{out}.out", sep="\t", na_values=["-nan", "nan", "NA"])


def _comparable(variants) -> dict[str, tuple]:
    """Variants for which GWAMA's label-based alignment is also right: no palindromic strand
    flips, no palindromic SNP with MAF >= 0.4 (we drop those), no indels (GWAMA skips them)."""
    out = {}
    for v in variants:
        if v.category == "indel" or v.category == "palindromic_high":
            continue
        if v.category == "palindromic_low" and v.strand_flipped_in:
            continue
        out[v.vid] = _reference_key(v)
    return out


def _close(ours, theirs, *, decimals: int = 6) -> np.ndarray:
    """Equal up to GWAMA's printed decimals (half a unit) plus our own 7-digit rounding."""
    ours = np.asarray(ours, dtype=float)
    theirs = np.asarray(theirs, dtype=float)
    tol = 0.5 * 10.0**-decimals + 5e-7 * np.abs(theirs) + 1e-12
    both_nan = np.isnan(ours) & np.isnan(theirs)
    return both_nan | (np.abs(ours - theirs) <= tol)


def test_run_meta__fixed_effects_equal_gwama(data):
    gw = _run_gwama(data["root"])
    keys = _comparable(data["variants"])
    gw = gw[gw.rs_number.isin(keys)]
    assert len(gw) > 1000
    ours = data["ours"].loc[[keys[v] for v in gw.rs_number]]
    assert (ours.effect_allele.to_numpy() == gw.reference_allele.to_numpy()).all()
    assert (ours.other_allele.to_numpy() == gw.other_allele.to_numpy()).all()
    for mine, theirs in [
        ("beta", "beta"),
        ("standard_error", "se"),
        ("z", "z"),
        ("q", "q_statistic"),
        ("effect_allele_frequency", "eaf"),
    ]:
        ok = _close(ours[mine], gw[theirs])
        assert ok.all(), (mine, ours[mine].to_numpy()[~ok][:5], gw[theirs].to_numpy()[~ok][:5])
    # GWAMA's p-values come from an approximation (up to 0.14% off in -log10 p at z = 24 here);
    # ours equal scipy's exact normal tail for GWAMA's own z.
    expected = -norm.logsf(np.abs(gw.z.to_numpy())) / np.log(10) - np.log10(2)
    assert np.allclose(ours.neg_log_10_p_value, expected, rtol=1e-6, atol=2e-6)
    gp = gw["_-log10_p-value"].to_numpy()
    assert np.allclose(ours.neg_log_10_p_value.to_numpy(), gp, rtol=2e-3, atol=2e-4)
    # I^2 of a single study is undefined: GWAMA prints -nan, or 0 when its Q rounds to -0.
    single = gw.n_studies.to_numpy() == 1
    assert _close(ours.i2[~single], gw.i2[~single]).all()
    assert ours.i2[single].isna().all()
    assert (gw.i2[single].isna() | (gw.i2[single] == 0)).all()
    assert (ours.n_studies.to_numpy() == gw.n_studies.to_numpy()).all()
    assert (ours.n.to_numpy() == gw.n_samples.to_numpy()).all()
    assert (ours.direction.to_numpy() == gw.effects.to_numpy()).all()
    # Q p-values: GWAMA prints 6 decimals, or 3 significant digits below 0.001 (and 1 for a
    # single study, where we write NA).
    qp = ours.q_p_value.to_numpy(dtype=float)[~single]
    gq = gw["q_p-value"].to_numpy(dtype=float)[~single]
    assert np.isnan(ours.q_p_value.to_numpy(dtype=float)[single]).all()
    small = gq < 1e-3
    assert _close(qp[~small], gq[~small]).all()
    assert np.allclose(qp[small], gq[small], rtol=5e-3)


def test_run_meta__random_effects_equal_gwama(data):
    gw = _run_gwama(data["root"], "-r")
    keys = _comparable(data["variants"])
    gw = gw[gw.rs_number.isin(keys)]
    ours = data["ours"].loc[[keys[v] for v in gw.rs_number]]
    # Heterogeneous variants make the random-effects estimate differ from the fixed one.
    assert (np.abs(ours.beta_random - ours.beta) > 1e-4).sum() > 20
    for mine, theirs in [
        ("beta_random", "beta"),
        ("standard_error_random", "se"),
        ("z_random", "z"),
    ]:
        ok = _close(ours[mine], gw[theirs])
        assert ok.all(), (mine, ours[mine].to_numpy()[~ok][:5], gw[theirs].to_numpy()[~ok][:5])
    assert (ours.direction.to_numpy() == gw.effects.to_numpy()).all()


def test_run_meta__indels_equal_gwama_indel_mode(data):
    gw = _run_gwama(data["root"], "--indel_alleles")
    indels = {v.vid: _reference_key(v) for v in data["variants"] if v.category == "indel"}
    gw = gw[gw.rs_number.isin(indels)]
    assert len(gw) > 30
    ours = data["ours"].loc[[indels[v] for v in gw.rs_number]]
    for mine, theirs in [("beta", "beta"), ("standard_error", "se"), ("q", "q_statistic")]:
        assert _close(ours[mine], gw[theirs]).all(), mine
    assert (ours.direction.to_numpy() == gw.effects.to_numpy()).all()


def test_run_meta__palindromic_strand_flips_resolved_by_frequency(data):
    """GWAMA reads a strand-flipped A/T SNP as a swap; we use the frequencies and get the
    sign that the truth has, so every study agrees on the effect allele's frequency."""
    ours = data["ours"]
    flipped = [
        v for v in data["variants"] if v.category == "palindromic_low" and v.strand_flipped_in
    ]
    assert len(flipped) > 5
    for v in flipped:
        row = ours.loc[[_reference_key(v)]].iloc[0]
        assert row.n_studies == len(v.rows)
        ref = v.rows[min(v.rows)]
        # Each study's aligned EAF is on the reference's side of 0.5 (they all were simulated
        # around the same true frequency), so the weighted mean is too.
        assert (row.effect_allele_frequency < 0.5) == (ref["eaf"] < 0.5)


def test_run_meta__ambiguous_palindromic_dropped_and_recorded(data):
    result = data["result"]
    excl = pd.read_csv(result.outputs["exclusions"], sep="\t")
    pal = excl[excl.reason == "palindromic_ambiguous"]
    high = [v for v in data["variants"] if v.category == "palindromic_high" and len(v.rows) > 1]
    assert len(pal) == sum(len(v.rows) - 1 for v in high)
    ours = data["ours"]
    for v in high:
        assert ours.loc[[_reference_key(v)]].iloc[0].n_studies == 1
    studies = pd.read_csv(result.outputs["studies"], sep="\t").set_index("study")
    assert studies.dropped_palindromic_ambiguous.sum() == len(pal)
    mismatched = sum(len(v.mismatched_in) for v in data["variants"])
    assert mismatched > 0
    assert (excl.reason == "allele_mismatch").sum() == mismatched
    assert (studies.read == studies.kept + studies.filter(like="dropped_").sum(axis=1)).all()


def test_run_meta__equals_plink_meta_analysis(data):
    root = data["root"]
    files = [str(root / f"study{s}.plink.txt") for s in range(N_STUDIES)]
    subprocess.run(
        [PLINK, "--meta-analysis", *files, "+", "qt", "--out", str(root / "plink")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    pl = pd.read_csv(root / "plink.meta", sep=r"\s+", na_values=["NA"])
    # PLINK aligns swapped alleles but not strand flips: compare where nobody flipped strands.
    keys = {
        v.vid: _reference_key(v)
        for v in data["variants"]
        if not v.strand_flipped_in and not v.mismatched_in and v.category != "palindromic_high"
    }
    pl = pl[pl.SNP.isin(keys)]
    assert len(pl) > 300
    ours = data["ours"].loc[[keys[v] for v in pl.SNP]]
    assert (ours.n_studies.to_numpy() == pl.N.to_numpy()).all()
    assert np.allclose(ours.beta, pl.BETA, rtol=0, atol=5.1e-5)
    assert np.allclose(ours.beta_random, pl["BETA(R)"], rtol=0, atol=5.1e-5)
    assert np.allclose(ours.p_value.astype(float), pl.P, rtol=5.1e-4, atol=0)
    assert np.allclose(ours.p_value_random.astype(float), pl["P(R)"], rtol=5.1e-4, atol=0)
    multi = ours.n_studies.to_numpy() > 1
    # PLINK prints P with 4 significant digits, Q's p-value and BETA with 4 decimals.
    assert np.allclose(
        ours.q_p_value.astype(float)[multi], pl.Q.to_numpy()[multi], rtol=0, atol=5.1e-5
    )
    assert np.allclose(ours.i2[multi] * 100, pl.I[multi], rtol=0, atol=5.1e-3)


def test_run_meta__genomic_control_per_study_equals_gwama(data):
    root = data["root"]
    files = [root / f"study{s}.tsv.gz" for s in range(N_STUDIES)]
    result = run_meta(files, out=root / "gc" / "meta", options=MetaOptions(gc=True))
    gw = _run_gwama(root, "-gc")
    lambdas = pd.read_csv(root / "gwamagc.gc.out", sep="\t", index_col=False)
    studies = pd.read_csv(result.outputs["studies"], sep="\t")
    assert (lambdas.iloc[:, 1] > 1.1).all()  # inflated studies, so the correction matters
    assert np.allclose(studies.lambda_gc, lambdas.iloc[:, 1], rtol=0, atol=5.1e-5)
    assert studies.lambda_applied.all()
    ours = pd.read_csv(
        result.outputs["sumstats"], sep="\t", keep_default_na=False, na_values=["NA"]
    )
    ours.index = [
        canonical_key(c, p, a, b)
        for c, p, a, b in zip(
            ours.chromosome.astype(str),
            ours.base_pair_location,
            ours.effect_allele,
            ours.other_allele,
            strict=True,
        )
    ]
    keys = _comparable(data["variants"])
    gw = gw[gw.rs_number.isin(keys)]
    ours = ours.loc[[keys[v] for v in gw.rs_number]]
    for mine, theirs in [("beta", "beta"), ("standard_error", "se"), ("z", "z")]:
        assert _close(ours[mine], gw[theirs]).all(), mine
    uncorrected = data["ours"].loc[ours.index]
    assert (ours.standard_error.to_numpy() > uncorrected.standard_error.to_numpy()).all()


def test_run_meta__genomic_control_on_result(data):
    """Without per-study GC the inflated studies inflate the result; --gc-result divides z by
    sqrt(median(z^2) / 0.4549364) computed here from the uncorrected output."""
    root = data["root"]
    files = [root / f"study{s}.tsv.gz" for s in range(N_STUDIES)]
    result = run_meta(
        files, out=root / "gcr" / "meta", options=MetaOptions(gc_result=True, random=True)
    )
    plain = data["ours"]
    lam = float(np.median(plain.z.to_numpy() ** 2) / chi2.ppf(0.5, 1))
    assert lam > 1.05
    assert result.lambda_meta == pytest.approx(lam, rel=1e-5)
    assert result.lambda_meta_applied
    out = pd.read_csv(result.outputs["sumstats"], sep="\t", keep_default_na=False, na_values=["NA"])
    assert np.allclose(out.z, plain.z.to_numpy() / np.sqrt(lam), rtol=2e-6, atol=1e-9)
    assert np.allclose(
        out.standard_error, plain.standard_error.to_numpy() * np.sqrt(lam), rtol=2e-6
    )
    expected = -norm.logsf(np.abs(out.z)) / np.log(10) - np.log10(2)
    assert np.allclose(out.neg_log_10_p_value, expected, rtol=2e-6)
    assert np.allclose(out.beta, plain.beta.to_numpy(), rtol=1e-9, atol=0)
    meta = yaml.safe_load(result.outputs["sidecar"].read_text())
    assert meta["fedgen_meta"]["lambda_meta"] == pytest.approx(lam, rel=1e-5)
