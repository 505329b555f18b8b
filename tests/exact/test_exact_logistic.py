"""Binary traits: federated Newton-Raphson equals pooled ``plink2 --glm no-firth``."""

from __future__ import annotations

import numpy as np
import pgenlib
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.logistic import LogisticSite, fit_federated

from .exact_study import make_study, read_glm, run_plink2

PRINT_REL = 5.0001e-6


@pytest.fixture(scope="module")
def binary_study(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("logit"), sizes=(300, 500, 250), m=40, seed=17)
    reader = pgenlib.PgenReader(bytes(study.root / "pooled.pgen"))
    dos = np.empty((reader.get_variant_ct(), reader.get_raw_sample_ct()))
    reader.read_dosages_range(0, dos.shape[0], dos)
    reader.close()
    lines = study.pheno.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [x.split("\t") for x in lines[1:]]
    rng = np.random.default_rng(4)
    age = np.array([float(r[2]) for r in rows])
    site_b = np.array([float(r[5]) for r in rows])
    eta = -2.0 + 0.02 * (age - 55) + 0.4 * site_b + 0.5 * dos[3]
    bt = np.where(rng.random(len(rows)) < 1 / (1 + np.exp(-eta)), "2", "1").astype(object)
    bt[rng.choice(len(rows), 10, replace=False)] = "NA"
    new = ["\t".join([*header, "bt"])] + ["\t".join([*r, b]) for r, b in zip(rows, bt, strict=True)]
    study.pheno.write_text("\n".join(new) + "\n")
    for s in study.sites:
        ids = {r[1] for r in rows if r[1].startswith(f"{s}_")}
        site_lines = [new[0]] + [x for x in new[1:] if x.split("\t")[1] in ids]
        study.site_pheno[s].write_text("\n".join(site_lines) + "\n")
    covars = ["age", "sex", *(f"site_{s}" for s in study.sites[1:])]
    run_plink2(
        "--pfile", "pooled", "--pheno", "pheno.tsv", "--pheno-name", "bt", "--covar",
        "pheno.tsv", "--covar-name", ",".join(covars), "--glm", "hide-covar", "no-firth",
        "omit-ref", "cols=+beta", "--out", "logit", cwd=study.root,
    )  # fmt: skip
    sites = [
        LogisticSite.load(
            study.site_pfiles[s], study.site_pheno[s], pheno_name="bt",
            covar_names=("age", "sex"), site=s, sites=study.sites, min_mac=5,
        )
        for s in study.sites
    ]  # fmt: skip
    return study, sites


def test_fit_federated__matches_pooled_plink2_logistic(binary_study):
    study, sites = binary_study
    fit = fit_federated(sites)
    glm = read_glm(study.root / "logit.bt.glm.logistic")
    assert fit.n == 1040 and fit.converged.all() and fit.iterations < 15
    for i, vid in enumerate(fit.variants["vid"]):
        row = glm[vid]
        assert int(row["OBS_CT"]) == fit.n
        assert float(row["BETA"]) == pytest.approx(fit.beta[i], rel=PRINT_REL)
        assert float(row["SE"]) == pytest.approx(fit.se[i], rel=PRINT_REL)
        # Z and P inherit the print error of both BETA and SE (and plink2's stopping rule).
        assert float(row["Z_STAT"]) == pytest.approx(fit.z[i], rel=2e-5)
        assert float(row["P"]) == pytest.approx(fit.p[i], rel=1e-4)


def test_fit_federated__secure_rounds_equal_plain_rounds(binary_study):
    _, sites = binary_study
    keys = {s.site: X25519PrivateKey.generate() for s in sites}
    public = {s: secure.public_key_text(k) for s, k in keys.items()}
    plain = fit_federated(sites)
    masked = fit_federated(sites, keys=keys, public_keys=public, round_id="bt-1")
    np.testing.assert_allclose(masked.beta, plain.beta, rtol=1e-8)
    np.testing.assert_allclose(masked.se, plain.se, rtol=1e-8)
