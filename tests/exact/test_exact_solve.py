"""Exact mode equals pooled ``plink2 --glm`` on all samples together.

plink2 2.00a3.5 prints BETA and SE with 6 significant digits, which caps a direct comparison at
~5e-6 relative. To check BETA to 1e-6 relative against plink2's own double-precision fit, each
variant j is also regressed with the phenotype ``y - beta_exact_j * g_j``: plink2 then reports
``beta_plink_j - beta_exact_j`` itself, a small number printed with 6 significant digits of its
own. SE is checked against plink2 at print precision and against an independent numpy
least-squares fit on the pooled individual-level data to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pgenlib
import pytest
from snakemake_executor_plugin_fedgen.errors import HarmonisationError

from snakemake_fedgen.exact.aggregates import SiteAggregates, compute_aggregates
from snakemake_fedgen.exact.solve import (
    solve,
    sum_aggregates,
    variant_counts,
    write_variant_counts,
)

from .conftest import site_aggregates
from .exact_study import make_study, pooled_glm, read_glm, run_plink2

PRINT_REL = 5.0001e-6  # half a unit in the 6th significant digit


def _pooled_arrays(study):
    """Individual-level pooled data as plink2 sees it (the test holds every site's data)."""
    lines = study.pheno.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    rows = [x.split("\t") for x in lines[1:]]
    table = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    psam_iids = [
        x.split("\t")[1] for x in (study.root / "pooled.psam").read_text().splitlines()[1:]
    ]
    order = {iid: i for i, iid in enumerate(table["IID"])}
    idx = [order[i] for i in psam_iids]

    def col(name):
        return np.array([float(table[name][i]) if table[name][i] != "NA" else np.nan for i in idx])

    covars = [*study.covariates, *(f"site_{s}" for s in study.sites[1:])]
    c_mat = np.column_stack([np.ones(len(idx)), *(col(c) for c in covars)])
    reader = pgenlib.PgenReader(bytes(study.root / "pooled.pgen"))
    m = reader.get_variant_ct()
    dos = np.empty((m, len(idx)))
    reader.read_dosages_range(0, m, dos)
    reader.close()
    return psam_iids, col("qt"), c_mat, dos


def _lstsq(y, c_mat, g):
    x = np.column_stack([c_mat, g])
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    sigma2 = resid @ resid / (len(y) - x.shape[1])
    cov = sigma2 * np.linalg.inv(x.T @ x)
    return coef[-1], np.sqrt(cov[-1, -1])


def test_solve__matches_pooled_plink2_glm(study3, aggs3):
    result = solve(sum_aggregates(aggs3))
    assert result.n == 650 and len(result.beta) == 120
    assert result.columns_used == ("intercept", "age", "sex", "site_B", "site_C")
    pooled_glm(study3)
    glm = read_glm(study3.root / "pooled_glm.qt.glm.linear")
    for i, vid in enumerate(result.vid):
        row = glm[vid]
        sign = 1.0 if row["A1"] == row["ALT"] else -1.0  # plink2 tests the minor allele
        assert int(row["OBS_CT"]) == result.n
        assert sign * float(row["BETA"]) == pytest.approx(result.beta[i], rel=PRINT_REL)
        assert float(row["SE"]) == pytest.approx(result.se[i], rel=PRINT_REL)
        assert float(row["P"]) == pytest.approx(result.p[i], rel=1e-5, abs=1e-300)

    # BETA to 1e-6: plink2 regresses y - beta_exact_j * g_j on g_j and prints the difference.
    iids, y, _, dos = _pooled_arrays(study3)
    index = {v: j for j, v in enumerate(read_glm(study3.root / "pooled_glm.qt.glm.linear"))}
    names = [f"r{i}" for i in range(len(result.vid))]
    cols = []
    for i, vid in enumerate(result.vid):
        cols.append(y - result.beta[i] * dos[index[vid]])
    body = ["#FID\tIID\t" + "\t".join(names)]
    for s, iid in enumerate(iids):
        body.append(f"{iid}\t{iid}\t" + "\t".join(repr(float(c[s])) for c in cols))
    (study3.root / "resid.tsv").write_text("\n".join(body) + "\n")
    covars = [*study3.covariates, *(f"site_{s}" for s in study3.sites[1:])]
    run_plink2(
        "--pfile", "pooled", "--pheno", "resid.tsv", "--covar", "pheno.tsv",
        "--covar-name", ",".join(covars), "--glm", "hide-covar", "omit-ref", "--out", "resid",
        cwd=study3.root,
    )  # fmt: skip
    for i, vid in enumerate(result.vid):
        delta = float(read_glm(study3.root / f"resid.r{i}.glm.linear")[vid]["BETA"])
        assert abs(delta) <= 1e-6 * abs(result.beta[i]), (vid, delta, result.beta[i])


def test_solve__matches_numpy_lstsq(study3, aggs3):
    result = solve(sum_aggregates(aggs3))
    _, y, c_mat, dos = _pooled_arrays(study3)
    for i in range(len(result.beta)):
        beta, se = _lstsq(y, c_mat, dos[i])
        assert result.beta[i] == pytest.approx(beta, rel=1e-9)
        assert result.se[i] == pytest.approx(se, rel=1e-9)


def test_solve__missing_phenotypes_and_dosages_match_lstsq(tmp_path):
    # Missing phenotypes drop samples (as plink2 does); missing dosages are mean-imputed at the
    # site, which plink2 has no mode for, so the reference is numpy on the imputed matrix.
    study = make_study(tmp_path, sizes=(120, 160, 90), m=30, seed=3, missing_pheno=25)
    # Knock out some dosages at site B: plink2 writes them as missing in B's fileset.
    vcf = (tmp_path / "pooled.vcf").read_text().splitlines()
    b_cols = [i for i, h in enumerate(vcf[3].split("\t")) if h.startswith("B_")]
    rng = np.random.default_rng(0)
    for li in range(4, len(vcf), 3):
        parts = vcf[li].split("\t")
        for c in rng.choice(b_cols, 6, replace=False):
            parts[c] = "."
        vcf[li] = "\t".join(parts)
    (tmp_path / "B.vcf").write_text(
        "\n".join(
            "\t".join(p for i, p in enumerate(line.split("\t")) if i < 9 or i in b_cols)
            if line.startswith(("#CHROM", "20\t"))
            else line
            for line in vcf
        )
        + "\n"
    )
    run_plink2(
        "--vcf", "B.vcf", "dosage=DS", "--double-id", "--make-pgen", "--out", "B", cwd=tmp_path
    )  # fmt: skip
    aggs = site_aggregates(study, min_mac=1)
    result = solve(sum_aggregates(aggs))
    assert result.n == 370 - 25
    iids, y, c_mat, dos = _pooled_arrays(study)
    reader = pgenlib.PgenReader(bytes(tmp_path / "B.pgen"))
    b_dos = np.empty((reader.get_variant_ct(), reader.get_raw_sample_ct()))
    reader.read_dosages_range(0, b_dos.shape[0], b_dos)
    reader.close()
    assert (b_dos < 0).sum() > 0  # the fileset really has missing dosages
    b_idx = [i for i, iid in enumerate(iids) if iid.startswith("B_")]
    keep_b = np.isfinite(y[b_idx])
    for j in range(b_dos.shape[0]):
        row = b_dos[j].copy()
        miss = row < 0
        row[miss] = row[~miss & keep_b].mean()
        dos[j, b_idx] = row
    for i in range(len(result.beta)):
        beta, se = _lstsq(y, c_mat, dos[i])
        assert result.beta[i] == pytest.approx(beta, rel=1e-9)
        assert result.se[i] == pytest.approx(se, rel=1e-9)


def test_sum_aggregates__refuses_different_covariates(study3, aggs3):
    other = site_aggregates(study3, sites=["B"])[0]
    other.columns = ("intercept", "age", "site_B", "site_C", "extra")
    with pytest.raises(HarmonisationError, match="site B has columns="):
        sum_aggregates([aggs3[0], other])


def test_sum_aggregates__keeps_variants_at_every_site(aggs3):
    a, b, c = aggs3
    b_cut = b.subset(np.arange(1, b.m))
    total = sum_aggregates([a, b_cut, c])
    assert total.m == a.m - 1
    assert total.meta["variants_not_at_every_site"] == "1"
    assert isinstance(total, SiteAggregates)


def _collinear(agg: SiteAggregates, j: int, dosage: float) -> SiteAggregates:
    """A copy of ``agg`` where variant ``j`` has the same dosage in every sample."""
    out = agg.subset(np.arange(agg.m))  # fancy indexing: fresh arrays
    out.gtg[j] = dosage**2 * agg.n
    out.gty[j] = dosage * agg.cty[0]
    out.ctg[j] = dosage * agg.ctc[:, 0]  # C'1: the intercept's column of C'C
    return out


def test_variant_counts__equal_an_independent_count(aggs3, tmp_path):
    a, b, c = aggs3
    b = b.subset(np.arange(3, b.m))  # B lacks its first three variants
    c = c.subset(np.r_[0:2, 4 : c.m])  # C lacks its third and fourth
    j = {k: i for i, k in enumerate(a.variant_keys())}[c.variant_keys()[-1]]
    fixed = a.variant_keys()[j]  # at every site; monomorphic everywhere: singular
    aggs = [_collinear(a, j, 2.0)]
    for agg in (b, c):
        aggs.append(_collinear(agg, agg.variant_keys().index(fixed), 2.0))
    total = sum_aggregates(aggs)
    result = solve(total)
    counts = variant_counts(total, result)

    keys = {agg.site: set(agg.variant_keys()) for agg in aggs}
    union, every = set.union(*keys.values()), set.intersection(*keys.values())
    assert counts.sites == ("A", "B", "C")
    assert counts.seen == len(union)
    assert counts.absent == len(union - every) >= 4
    assert counts.absent_at_site == {s: len(union - k) for s, k in keys.items()}
    assert counts.singular == 1 and np.isnan(result.beta[result.vid == a.vid[j]]).all()
    assert counts.solved == len(every) - 1 == int(np.isfinite(result.beta).sum())
    assert counts.seen == counts.solved + counts.absent + counts.singular

    path = tmp_path / "qt.unsolved.tsv"
    write_variant_counts(counts, path)
    assert path.read_text().splitlines() == [
        "status\tsite\tvariants",
        f"seen\tall\t{len(union)}",
        f"solved\tall\t{len(every) - 1}",
        f"not_solved_absent\tall\t{len(union - every)}",
        *(f"absent_at_site\t{s}\t{len(union - keys[s])}" for s in ("A", "B", "C")),
        "not_solved_singular\tall\t1",
    ]
    assert counts.summary().startswith(f"{len(every) - 1} of {len(union)} variants seen")


def test_solve__site_specific_covariates_match_pooled_plink2(tmp_path):
    # PCs computed at each site mean different things at different sites: each site's PCs get
    # their own columns (zero in other sites' rows), in exact mode and in the pooled reference.
    study = make_study(tmp_path, sizes=(150, 220, 130), m=40, seed=9)
    rng = np.random.default_rng(1)
    pooled = study.pheno.read_text().splitlines()
    pcs = {row.split("\t")[1]: rng.normal(0, 0.05, 2) for row in pooled[1:]}
    inter = [f"PC{j}.site_{s}" for s in study.sites for j in (1, 2)]
    lines = [pooled[0] + "\t" + "\t".join(inter)]
    for row in pooled[1:]:
        iid = row.split("\t")[1]
        vals = [
            repr(float(pcs[iid][j - 1])) if iid.startswith(f"{s}_") else "0"
            for s in study.sites
            for j in (1, 2)
        ]
        lines.append(row + "\t" + "\t".join(vals))
    study.pheno.write_text("\n".join(lines) + "\n")
    for s in study.sites:
        site_lines = study.site_pheno[s].read_text().splitlines()
        out = [site_lines[0] + "\tPC1\tPC2"]
        for row in site_lines[1:]:
            iid = row.split("\t")[1]
            out.append(row + "\t" + "\t".join(repr(float(v)) for v in pcs[iid]))
        study.site_pheno[s].write_text("\n".join(out) + "\n")
    aggs = [
        compute_aggregates(
            study.site_pfiles[s], study.site_pheno[s], pheno_name="qt",
            covar_names=study.covariates, site_covar_names=("PC1", "PC2"), site=s,
            sites=study.sites,
        )
        for s in study.sites
    ]  # fmt: skip
    result = solve(sum_aggregates(aggs))
    assert result.columns_used[-6:] == tuple(inter)
    covars = [*study.covariates, *(f"site_{s}" for s in study.sites[1:]), *inter]
    # Pooled standardisation is affine per column: beta_g and its SE do not change.
    run_plink2(
        "--pfile", "pooled", "--pheno", "pheno.tsv", "--pheno-name", "qt", "--covar",
        "pheno.tsv", "--covar-name", ",".join(covars), "--glm", "hide-covar", "omit-ref",
        "--covar-variance-standardize", "--out", "pcs", cwd=tmp_path,
    )  # fmt: skip
    glm = read_glm(tmp_path / "pcs.qt.glm.linear")
    for i, vid in enumerate(result.vid):
        assert float(glm[vid]["BETA"]) == pytest.approx(result.beta[i], rel=PRINT_REL)
        assert float(glm[vid]["SE"]) == pytest.approx(result.se[i], rel=PRINT_REL)


def test_t_logsf__matches_scipy_and_stays_finite_in_the_far_tail():
    from scipy import stats

    from snakemake_fedgen.exact.solve import t_logsf

    for df in (5, 300, 5000):
        t = np.array([0.5, 2.0, 8.0, 30.0])
        np.testing.assert_allclose(t_logsf(t, df), stats.t.logsf(t, df), rtol=1e-12)
    # Beyond scipy's range (logsf = -inf there) the tail continues smoothly and decreasingly.
    far = t_logsf(np.array([36.0, 37.0, 100.0, 1e4]), 1000)
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)
    assert np.isneginf(stats.t.logsf(100.0, 1000))
    # Continuity at the switch point: the series and scipy agree where both are finite.
    from scipy import special

    a, x = 150.0, 300 / (300 + 30.0**2)
    series = (
        np.log(0.5) + a * np.log(x) + 0.5 * np.log1p(-x) - np.log(a) - special.betaln(a, 0.5)
        + np.log(special.hyp2f1(a + 0.5, 1.0, a + 1.0, x))
    )  # fmt: skip
    assert series == pytest.approx(stats.t.logsf(30.0, 300), rel=1e-12)
