"""Binary traits: federated Newton-Raphson equals pooled ``plink2 --glm no-firth``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pgenlib
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from snakemake_executor_plugin_fedgen.errors import ConfigError, SecureAggregationError

from snakemake_fedgen.cli import main
from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.aggregates import read_variant_table, variant_keys
from snakemake_fedgen.exact.logistic import (
    LogisticSite,
    _state_digest,
    centre_step,
    fit_federated,
    init_state,
    read_state,
    site_round_terms,
    write_state,
)
from snakemake_fedgen.exact.sums import mask_with_ledger, read_sums, write_sums
from tests.workflow.coordinator_scan import table_rows

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
        "omit-ref", "cols=+beta,+a1freq", "--out", "logit", cwd=study.root,
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


# -- the rounds as files and commands (what the workflow's TES tasks run) -------------------


def _layout(study, tmp_path, *, drop: int | None = None) -> Path:
    """The shared public variant list: the pooled .pvar (optionally without one variant)."""
    lines = [
        x for x in (study.root / "pooled.pvar").read_text().splitlines() if not x.startswith("##")
    ]
    if drop is not None:
        del lines[1 + drop]
    out = tmp_path / "panel.tsv"
    out.write_text("\n".join(lines) + "\n")
    return out


def _cli_rounds(study, tmp_path, *, site_args=(), max_iter=25) -> tuple[Path, list[dict]]:
    """Run logit-init, then logit-terms at every site and logit-step until stopped."""
    layout = _layout(study, tmp_path)
    sites = ",".join(study.sites)
    state = tmp_path / "state.0.json"
    assert main(["exact", "logit-init", "--round", "t1.bt", "--sites", sites,
                 "--max-iter", str(max_iter), "--out", str(state)]) == 0  # fmt: skip
    states = []
    for it in range(1, max_iter + 1):
        uploads = []
        for s in study.sites:
            out = tmp_path / f"{s}.terms.{it}.sums.json"
            assert main([
                "exact", "logit-terms", "--pfile", str(study.site_pfiles[s]),
                "--pheno", str(study.site_pheno[s]), "--pheno-name", "bt",
                "--covar-name", "age,sex", "--site", s, "--sites", sites,
                "--variants", str(layout), "--state", str(state), "--min-mac", "5",
                "--out", str(out), *site_args,
            ]) == 0  # fmt: skip
            uploads.append(str(out))
        nxt = tmp_path / f"state.{it}.json"
        assert main(["exact", "logit-step", "--state", str(state), "--terms", *uploads,
                     "--out", str(nxt)]) == 0  # fmt: skip
        state = nxt
        states.append(json.loads(nxt.read_text()))
        if states[-1]["stopped"]:
            break
    return state, states


def test_logit_commands__rounds_equal_the_in_process_fit_and_plink2(binary_study, tmp_path):
    study, sites = binary_study
    final, states = _cli_rounds(study, tmp_path)
    fit = fit_federated(sites)
    out = tmp_path / "bt.tsv.gz"
    assert main(["exact", "logit-finish", "--state", str(final), "--out", str(out)]) == 0
    rows = {r["variant_id"]: r for r in table_rows(out)}
    glm = read_glm(study.root / "logit.bt.glm.logistic")
    assert states[-1]["stopped"] and len(states) == fit.iterations
    assert states[-1]["n"] == fit.n == 1040
    for i, vid in enumerate(fit.variants["vid"]):
        key = ":".join(str(fit.variants[c][i]) for c in ("chrom", "pos", "ref", "alt"))
        got = rows[key]
        assert float(got["beta"]) == pytest.approx(fit.beta[i], rel=1e-12)
        assert float(got["standard_error"]) == pytest.approx(fit.se[i], rel=1e-12)
        assert float(got["beta"]) == pytest.approx(float(glm[vid]["BETA"]), rel=PRINT_REL)
        assert float(got["standard_error"]) == pytest.approx(float(glm[vid]["SE"]), rel=PRINT_REL)
        assert float(got["p_value"]) == pytest.approx(float(glm[vid]["P"]), rel=1e-4)
        assert int(got["n"]) == int(glm[vid]["OBS_CT"])
        # The pooled alternate allele frequency, from the sites' dosage sums.
        assert float(got["effect_allele_frequency"]) == pytest.approx(
            float(glm[vid]["A1_FREQ"]), abs=5e-6
        )


def test_logit_terms__a_variant_off_the_panel_is_left_out_and_counted(binary_study, tmp_path):
    study, _ = binary_study
    layout = _layout(study, tmp_path, drop=5)
    state = tmp_path / "state.0.json"
    main(["exact", "logit-init", "--round", "t2.bt", "--sites", ",".join(study.sites),
          "--out", str(state)])  # fmt: skip
    s = study.sites[0]
    out = tmp_path / "terms.sums.json"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main([
            "exact", "logit-terms", "--pfile", str(study.site_pfiles[s]),
            "--pheno", str(study.site_pheno[s]), "--pheno-name", "bt", "--covar-name", "age,sex",
            "--site", s, "--sites", ",".join(study.sites), "--variants", str(layout),
            "--state", str(state), "--min-mac", "5", "--out", str(out),
        ]) == 0  # fmt: skip
    assert "1 of the site's variants not on the panel" in err.getvalue()
    sums = read_sums(out)
    assert len(sums.rows) == 39 and sums.kind == "exact-logit-terms"
    assert sums.round_id == "t2.bt.it1" and sums.as_dict()["n"] == sum(
        1 for x in study.site_pheno[s].read_text().splitlines()[1:] if x.split("\t")[-1] != "NA"
    )


def test_logit_terms__steep_coefficients_from_the_centre_get_no_terms(binary_study, tmp_path):
    # The attack: a coordinator sends coefficients that make the fitted probability jump from
    # 0 to 1 between two people by age, so that the difference of two rounds' scores is one
    # person's phenotype. The site answers no terms for such a variant.
    study, sites = binary_study
    site = sites[0]
    layout = read_variant_table(_layout(study, tmp_path))
    state = init_state(round_id="t3.bt", sites=study.sites)
    m, kk = len(layout["pos"]), len(site.columns) + 1
    ages = np.sort(site.c[:, site.columns.index("age")])
    cut = (ages[-1] + ages[-2]) / 2  # between the two oldest people
    beta = np.zeros((m, kk))
    beta[0, 0] = -200.0 * cut
    beta[0, site.columns.index("age")] = 200.0
    hostile = {**state, "iteration": 1, "variants": variant_keys(layout),
               "beta": [float(x) for x in beta.ravel()]}  # fmt: skip
    hostile["digest"] = _state_digest(hostile)
    sums, counts = site_round_terms(site, hostile, layout)
    table = sums.values[2:].reshape(m, -1)
    assert counts["refused_steep"] == 1
    assert not table[0].any(), "the steep variant's terms must all be zero (absent)"
    assert table[1:, 0].sum() == counts["sent"] and counts["sent"] >= 30
    # A plausible age effect (log OR 0.05 per year) on the same variant is answered.
    beta[0, 0], beta[0, site.columns.index("age")] = -2.0 - 0.05 * 55, 0.05
    gentle = {**hostile, "beta": [float(x) for x in beta.ravel()]}
    gentle["digest"] = _state_digest(gentle)
    assert site_round_terms(site, gentle, layout)[1]["refused_steep"] == 0


def test_logit_step__refuses_stale_incomplete_and_foreign_rounds(binary_study, tmp_path):
    study, sites = binary_study
    layout = read_variant_table(_layout(study, tmp_path))
    state = init_state(round_id="t4.bt", sites=study.sites)
    ups = [site_round_terms(s, state, layout)[0] for s in sites]
    one = centre_step(state, ups)
    with pytest.raises(SecureAggregationError, match="every site"):
        centre_step(state, ups[:2])
    with pytest.raises(SecureAggregationError, match=r"round t4\.bt\.it2"):
        centre_step(one, ups)  # the first round's uploads for the second round
    other = init_state(round_id="t4.bt", sites=study.sites, max_iter=3)
    with pytest.raises(SecureAggregationError, match="another state"):
        centre_step(other, ups)
    changed = {**one, "iteration": 7}
    with pytest.raises(ConfigError, match="digest"):
        write_state(changed, tmp_path / "bad.json")
        read_state(tmp_path / "bad.json")


def test_logit_rounds__masked_by_the_node_key_equal_plain(binary_study, tmp_path):
    study, sites = binary_study
    layout = read_variant_table(_layout(study, tmp_path))
    keys = {s.site: X25519PrivateKey.generate() for s in sites}
    public = {s: secure.public_key_text(k) for s, k in keys.items()}
    state = init_state(round_id="t5.bt", sites=study.sites)
    plain = [site_round_terms(s, state, layout)[0] for s in sites]
    masked = [
        mask_with_ledger(
            up, private_key=keys[up.site], public_keys=public, participants=study.sites,
            ledger=tmp_path / f"{up.site}.rounds",
        )
        for up in plain
    ]  # fmt: skip
    for up in masked:
        path = tmp_path / f"{up.site}.sums.json"
        write_sums(up, path)
        assert read_sums(path).rows == plain[0].rows
    a, b = centre_step(state, plain), centre_step(state, masked)
    np.testing.assert_allclose(b["beta"], a["beta"], rtol=1e-12, atol=1e-15)
