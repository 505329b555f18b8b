"""End to end: the federated-gwas workflow with ``method: exact-linear`` on three loopback nodes.

One tiny simulated federation runs through ``snakemake --executor fedgen --profile
profiles/demo`` with only the exact-mode targets (module fixture): QC, imputation and PCA at
each site, ``fedgen exact aggregate`` at each site, ``fedgen exact solve`` at the centre. The
result is compared with ``plink2 --glm`` on all sites' samples pooled, built by the test from
the very files the sites analysed (read as the site admin would, through the coordinator's
references): the same imputed dosages, the same covariates table, the same phenotypes, and the
same design (shared age and sex, one slope per site for each site's own PCs, site indicators).

The same federation then reruns the exact targets with ``exact.secure: true``: each site's node
masks the plain aggregates its task hands over with the site's X25519 key and the peers' pinned
keys (no task sees a key), only the masked upload leaves the site, and the centre's sum gives
the plain result. That run also fits the binary trait with ``exact.binary: logistic``: federated
Newton-Raphson rounds through TES, each round's per-variant terms masked by the nodes, the
coefficients handed to the sites through the nodes' ingress; compared with pooled
``plink2 --glm no-firth``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pgenlib
import pytest
import yaml
from snakemake_executor_plugin_fedgen.reference import is_reference, read_reference

from snakemake_fedgen import demo
from snakemake_fedgen.exact.secure import generate_key
from tests.site_paths import caller_area, held_file
from tests.workflow.coordinator_scan import assert_no_individual_level_data, table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 7
SITES = ("A", "B", "C")
PCS = 5
TARGETS = ("results/exact/qt.tsv.gz", "results/exact/qt.top_hits.tsv")
LOGIT_TARGETS = ("results/exact/bt.tsv.gz", "results/exact/bt.top_hits.tsv")
SECURE_CONFIG = (
    "method: exact-linear\nexact:\n  secure: true\n  round: e2e-test.1\n  binary: logistic\n"
)
# plink2 2.00a3.5 prints BETA and SE with 6 significant digits: half a unit in the 6th digit.
PRINT_REL = 5.0001e-6


@dataclass
class Run:
    """A finished exact-mode run: its directories, the simulation's truth, both results."""

    out: Path
    data: Path
    work: Path
    truth: dict
    plain: Path  # results/exact/qt.tsv.gz of the plain run
    secure: Path  # the same from the secure-aggregation run
    audit_lines: dict[str, int]  # audit log length of each node after the plain run
    logit: Path  # results/exact/bt.tsv.gz: the binary trait's exact logistic fit (secure run)

    def site_file(self, path: str) -> Path:
        """The site-side file behind a reference on the coordinator (the site admin's view)."""
        ref = read_reference(self.work / path)
        assert ref is not None, f"{path} should be a reference on the coordinator"
        site = yaml.safe_load((self.work / "sites.yaml").read_text())["sites"][ref.site]
        roots = [Path(unquote(urlparse(site[k]).path)) for k in ("work_url", "egress_url")]
        return held_file(ref.url, roots)


def _command(work: Path, *configfiles: Path, targets: tuple[str, ...] = TARGETS) -> list[str]:
    cmd = demo.snakemake_command(work, extra_config=["method=exact-linear"])
    # Targets go before --config, which takes every following word as a key=value pair; a
    # second --configfile replaces the first, so the workflow's own config is named again.
    at = cmd.index("--config")
    extra = ["--configfile", str(demo.CONFIGFILE), *map(str, configfiles)] if configfiles else []
    return [*cmd[:at], *targets, *extra, *cmd[at:]]


def _site_keys(keys: Path) -> dict[str, Path]:
    """Each site's steward creates its X25519 key for the node (outside every read root)."""
    out = {}
    for site in SITES:
        out[site] = keys / site / "x25519.key"
        generate_key(out[site])
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("exact-workflow")
    data, work = out / "data", out / "coordinator"
    truth = demo.simulate(data, seed=SEED, scale="tiny")
    masking_keys = _site_keys(out / "keys")
    secure_config = out / "secure.yaml"
    secure_config.write_text(SECURE_CONFIG)
    result = work / "results" / "exact" / "qt.tsv.gz"
    # Each node masks its site's upload (plain aggregates are checked as usual first).
    with demo.federation(
        data, out / "nodes", work / "sites.yaml", masking_keys=masking_keys
    ) as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        demo.run_snakemake(_command(work), env=env, log_path=out / "snakemake.log", show=False)
        plain = shutil.copy(result, out / "plain.qt.tsv.gz")
        audit_lines = {
            s: len((out / "nodes" / s / "state" / "audit.jsonl").read_text().splitlines())
            for s in SITES
        }
        demo.run_snakemake(
            _command(work, secure_config, targets=TARGETS + LOGIT_TARGETS),
            env=env,
            log_path=out / "secure.log",
            show=False,
        )
        secure = shutil.copy(result, out / "secure.qt.tsv.gz")
    logit = work / "results" / "exact" / "bt.tsv.gz"
    yield Run(out, data, work, truth, Path(plain), Path(secure), audit_lines, logit)


def _pvar_ids(path: Path) -> list[str]:
    return [r["ID"] for r in table_rows(path)]


def _site_dosages(run: Run, site: str) -> tuple[list[str], list[str], np.ndarray]:
    """(IIDs, variant IDs, dosages (variants, samples)) of a site's imputed fileset."""
    prefix = f"sites/{site}/impute/imputed"
    pgen = run.site_file(f"{prefix}.pgen")
    iids = [r["IID"] for r in table_rows(run.site_file(f"{prefix}.psam"))]
    ids = _pvar_ids(run.site_file(f"{prefix}.pvar"))
    reader = pgenlib.PgenReader(bytes(pgen))
    dos = np.empty((reader.get_variant_ct(), reader.get_raw_sample_ct()))
    reader.read_dosages_range(0, dos.shape[0], dos)
    reader.close()
    assert (dos >= 0).all(), f"site {site}: imputed dosages should have no missing values"
    return iids, ids, dos


@dataclass
class Pooled:
    """All sites' samples together: the reference data set, as numbers and as plink2 files."""

    root: Path
    vids: list[str]
    y: np.ndarray
    design: np.ndarray  # intercept + covariates, samples x columns
    covar_names: list[str]
    dosages: np.ndarray  # variants x samples


def _pooled(run: Run, root: Path) -> Pooled:
    """Write the pooled fileset and covariate table the exact fit should reproduce."""
    per_site = {s: _site_dosages(run, s) for s in SITES}
    shared = set.intersection(*(set(ids) for _, ids, _ in per_site.values()))
    vids = [v for v in per_site["A"][1] if v in shared]
    pc_cols = [f"PC{j}.site_{s}" for s in SITES for j in range(1, PCS + 1)]
    covar_names = ["age", "sex", *(f"site_{s}" for s in SITES[1:]), *pc_cols]
    iids, blocks, y, design, lines = [], [], [], [], []
    for site in SITES:
        site_iids, ids, dos = per_site[site]
        index = {v: i for i, v in enumerate(ids)}
        blocks.append(dos[[index[v] for v in vids]])
        pheno = {r["IID"]: r for r in table_rows(run.data / "sites" / site / "phenotypes.tsv")}
        # The covariates table the site's workflow wrote (raw age, sex and the site's PCs).
        covar = {
            r["IID"]: r for r in table_rows(run.site_file(f"sites/{site}/gwas/covariates.tsv"))
        }
        for iid in site_iids:
            c = covar[iid]
            pcs = [c[f"PC{j}"] if s == site else "0" for s in SITES for j in range(1, PCS + 1)]
            fields = [c["age"], c["sex"], *(str(int(site == s)) for s in SITES[1:]), *pcs]
            lines.append("\t".join([iid, iid, pheno[iid]["qt"], *fields]))
            # Missing phenotypes (NA) are dropped by plink2 and by the sites alike.
            y.append(float("nan") if pheno[iid]["qt"] == "NA" else float(pheno[iid]["qt"]))
            design.append([1.0, *(float(x) for x in fields)])
            iids.append(iid)
    dosages = np.concatenate(blocks, axis=1)
    # The pooled fileset holds the sites' stored dosages unchanged (pgenlib writes the same
    # 1/16384 units it read).
    writer = pgenlib.PgenWriter(
        bytes(root / "pooled.pgen"), len(iids), variant_ct=len(vids), dosage_present=True
    )
    for j in range(len(vids)):
        writer.append_dosages(np.ascontiguousarray(dosages[j]))
    writer.close()
    pvar = ["#CHROM\tPOS\tID\tREF\tALT"]
    for vid in vids:
        chrom, pos, ref, alt = vid.split(":")
        pvar.append(f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}")
    (root / "pooled.pvar").write_text("\n".join(pvar) + "\n")
    (root / "pooled.psam").write_text("#FID\tIID\n" + "".join(f"{i}\t{i}\n" for i in iids))
    header = "\t".join(["#FID", "IID", "qt", *covar_names])
    (root / "pooled.covar").write_text("\n".join([header, *lines]) + "\n")
    return Pooled(root, vids, np.array(y), np.array(design), covar_names, dosages)


def _plink2(root: Path, *args: str) -> None:
    subprocess.run(
        ["plink2", "--threads", "2", "--memory", "2000", "--pfile", "pooled", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


#: plink2's collinearity checks raised beyond anything a full-rank design reaches.
VIF_OFF = ("--vif", "1e12", "--max-corr", "0.9999999")


@pytest.fixture(scope="module")
def pooled(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Pooled:
    ref = _pooled(run, tmp_path_factory.mktemp("pooled"))
    # Pooled standardisation is affine per covariate column: BETA and SE of the dosage do not
    # change, and plink2 needs it for the PC columns' scale next to age. The panel's PCs
    # projected onto one site can be strongly correlated there (a site of two populations),
    # which plink2's default VIF check refuses; the exact model keeps them, so does this one.
    _plink2(
        ref.root, "--pheno", "pooled.covar", "--pheno-name", "qt", "--covar", "pooled.covar",
        "--covar-name", ",".join(ref.covar_names), "--covar-variance-standardize",
        *VIF_OFF, "--glm", "hide-covar", "omit-ref", "--out", "glm",
    )  # fmt: skip
    return ref


def _exact(run: Run) -> dict[str, dict[str, str]]:
    return {r["variant_id"]: r for r in table_rows(run.plain)}


def test_exact_workflow__equals_pooled_plink2_glm_on_every_variant(run: Run, pooled: Pooled):
    exact = _exact(run)
    glm = {r["ID"]: r for r in table_rows(pooled.root / "glm.qt.glm.linear")}
    # Variants the sites' MAC guards kept everywhere are solved; the others are not.
    assert len(exact) > 1000
    assert set(exact) <= set(pooled.vids)
    n = int(np.isfinite(pooled.y).sum())
    assert n < len(pooled.y), "the simulation has missing phenotypes, which must be dropped"
    for vid, row in exact.items():
        ref = glm[vid]
        assert ref["A1"] == ref["ALT"] == row["effect_allele"]
        assert int(ref["OBS_CT"]) == int(row["n"]) == n
        assert float(row["beta"]) == pytest.approx(float(ref["BETA"]), rel=PRINT_REL), vid
        assert float(row["standard_error"]) == pytest.approx(float(ref["SE"]), rel=PRINT_REL), vid
        assert float(row["p_value"]) == pytest.approx(float(ref["P"]), rel=1e-5, abs=1e-300), vid


def test_exact_workflow__equals_pooled_least_squares_to_1e9(run: Run, pooled: Pooled):
    # Beyond plink2's 6 printed digits: least squares on the same pooled individual-level data
    # (numpy QR of the covariates, then each variant's dosage and y residualised on them).
    exact = _exact(run)
    ok = np.isfinite(pooled.y)
    q, _ = np.linalg.qr(pooled.design[ok])
    y = pooled.y[ok] - q @ (q.T @ pooled.y[ok])
    index = {v: j for j, v in enumerate(pooled.vids)}
    vids = list(exact)
    g = pooled.dosages[[index[v] for v in vids]][:, ok].T
    g = g - q @ (q.T @ g)
    gg = np.einsum("ij,ij->j", g, g)
    beta = (g.T @ y) / gg
    resid = y[:, None] - g * beta
    df = ok.sum() - q.shape[1] - 1
    se = np.sqrt(np.einsum("ij,ij->j", resid, resid) / df / gg)
    got_beta = np.array([float(exact[v]["beta"]) for v in vids])
    got_se = np.array([float(exact[v]["standard_error"]) for v in vids])
    np.testing.assert_allclose(got_beta, beta, rtol=1e-9)
    np.testing.assert_allclose(got_se, se, rtol=1e-9)


def test_exact_workflow__beta_matches_plink2_double_precision_to_1e6(run: Run, pooled: Pooled):
    # plink2 regresses y - beta_exact * g on g and prints beta_plink - beta_exact itself, with
    # 6 digits of its own; on 25 variants spread over the table (each extra phenotype costs a
    # fit of every extracted variant).
    exact = _exact(run)
    vids = sorted(exact, key=lambda v: float(exact[v]["p_value"]))
    picked = vids[:: max(1, len(vids) // 25)][:25]
    index = {v: j for j, v in enumerate(pooled.vids)}
    header = ["#FID", "IID", *(f"r{i}" for i in range(len(picked)))]
    cols = [pooled.y - float(exact[v]["beta"]) * pooled.dosages[index[v]] for v in picked]
    iids = [ln.split("\t")[1] for ln in (pooled.root / "pooled.psam").read_text().splitlines()[1:]]
    body = [
        f"{iid}\t{iid}\t"
        + "\t".join(repr(float(c[s])) if np.isfinite(c[s]) else "NA" for c in cols)
        for s, iid in enumerate(iids)
    ]
    (pooled.root / "resid.pheno").write_text("\n".join(["\t".join(header), *body]) + "\n")
    (pooled.root / "resid.extract").write_text("\n".join(picked) + "\n")
    _plink2(
        pooled.root, "--extract", "resid.extract", "--pheno", "resid.pheno", "--covar",
        "pooled.covar", "--covar-name", ",".join(pooled.covar_names),
        "--covar-variance-standardize", *VIF_OFF, "--glm", "hide-covar", "omit-ref",
        "--out", "resid",
    )  # fmt: skip
    for i, vid in enumerate(picked):
        rows = {r["ID"]: r for r in table_rows(pooled.root / f"resid.r{i}.glm.linear")}
        delta = float(rows[vid]["BETA"])
        beta = float(exact[vid]["beta"])
        assert abs(delta) <= 1e-6 * abs(beta), (vid, delta, beta)


def test_exact_workflow__finds_the_strong_causal_variant(run: Run):
    causal = max(run.truth["causal_variants"], key=lambda c: c["variance_explained"])
    top = table_rows(run.work / "results/exact/qt.top_hits.tsv")[0]
    assert abs(int(top["base_pair_location"]) - causal["pos"]) <= 100_000
    assert float(top["p_value"]) < 5e-8
    for name in ("qt.manhattan.png", "qt.qq.png"):
        assert (run.work / "results/exact" / name).read_bytes()[:4] == b"\x89PNG"


def _airlock(run: Run, site: str) -> tuple[list[tuple], list[tuple]]:
    """The node's airlock decisions (file, kind, accepted) in the plain and the secure run."""
    audit = run.out / "nodes" / site / "state" / "audit.jsonl"
    records = [json.loads(ln) for ln in audit.read_text().splitlines()]
    decisions = [
        (i, (r["file"], r["kind"], r["accepted"]))
        for i, r in enumerate(records)
        if r["action"] == "Airlock"
    ]
    cut = run.audit_lines[site]
    return [d for i, d in decisions if i < cut], [d for i, d in decisions if i >= cut]


def _logit_rounds(run: Run) -> int:
    return len(list((run.work / "results/exact/bt/logit").glob("state.*.json"))) - 1


def test_exact_workflow__only_aggregates_passed_the_airlock(run: Run):
    rounds = _logit_rounds(run)
    assert 3 <= rounds <= 25
    logit = [f"bt.logit.{it}.sums.json" for it in range(1, rounds + 1)]
    for site in SITES:
        plain, secure = _airlock(run, site)
        sumstats = f"/fedgen/work/results/sumstats/{site}"
        assert plain == [(f"{sumstats}/qt.aggregates.tsv.gz", "aggregates", True)]
        # With secure aggregation only the masked upload left; the plain table stayed. Each
        # Newton round of the binary trait sent one (node-masked) sums file.
        assert sorted(secure) == sorted(
            [
                (f"{sumstats}/qt.aggregates.masked.tsv", "aggregates", True),
                *((f"{sumstats}/{name}", "sums", True) for name in logit),
            ]
        )
        # Published into the coordinator's area of the egress root.
        egress = caller_area(run.data / "sites" / site / "egress")
        published = sorted(str(p.relative_to(egress)) for p in egress.rglob("*") if p.is_file())
        assert published == sorted(
            [
                f"results/sumstats/{site}/qt.aggregates.masked.tsv",
                f"results/sumstats/{site}/qt.aggregates.tsv.gz",
                *(f"results/sumstats/{site}/{name}" for name in logit),
            ]
        )
        local = sorted(p.name for p in (run.work / "results" / "sumstats" / site).iterdir())
        assert local == sorted(["qt.aggregates.masked.tsv", "qt.aggregates.tsv.gz", *logit])
        assert is_reference(run.work / "sites" / site / "exact" / "qt.aggregates.tsv.gz")
        # The key stays with the node: no task read it, so the run has no reference to it.
        assert not (run.work / "sites" / site / "exact" / "x25519.key").exists()


def _by_alleles(path: Path) -> dict[tuple[str, ...], dict[str, str]]:
    # The secure route labels variants from the public variant list (the panel's IDs), the
    # plain route from the sites' fileset: compare on chromosome, position and alleles.
    return {
        (r["chromosome"], r["base_pair_location"], r["other_allele"], r["effect_allele"]): r
        for r in table_rows(path)
    }


def test_exact_workflow__secure_aggregation_equals_the_plain_sum(run: Run):
    plain, secure = _by_alleles(run.plain), _by_alleles(run.secure)
    assert len(secure) > 1000 and set(secure) == set(plain)
    keys = sorted(plain)
    for column in ("beta", "standard_error"):
        got = np.array([float(secure[k][column]) for k in keys])
        want = np.array([float(plain[k][column]) for k in keys])
        # Fixed point with 40 fractional bits per value and site: ~1e-9 relative at worst.
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)
    assert {r["n"] for r in secure.values()} == {r["n"] for r in plain.values()}
    with gzip.open(run.secure, "rt") as f:
        notes = [ln for ln in f if ln.startswith("##")]
    assert "secure round e2e-test.1.qt over sites A,B,C" in "".join(notes)


def test_exact_workflow__masked_upload_is_noise(run: Run):
    # Site B's masked upload against its plain aggregates of the same numbers (plain run).
    from snakemake_fedgen.exact import secure
    from snakemake_fedgen.exact.aggregates import read_aggregates

    sumstats = run.work / "results" / "sumstats" / "B"
    upload = secure.read_masked(sumstats / "qt.aggregates.masked.tsv")
    plain = read_aggregates(sumstats / "qt.aggregates.tsv.gz")
    assert upload.participants == SITES
    index = {
        f"{c}:{p}:{r}:{a}": i
        for i, (c, p, r, a) in enumerate(
            zip(*(upload.universe[k] for k in ("chrom", "pos", "ref", "alt")), strict=True)
        )
    }
    rows = [index[key] for key in plain.variant_keys()]
    masked = upload.table[rows, 1]  # g'g of each variant, as ring elements (lo, hi)
    clear = secure.encode(plain.gtg, upload.frac_bits)
    # In the clear every g'g is a small positive number: its high 64-bit limb is 0. Masked,
    # the high limbs are uniform on [0, 2^64) and the values uncorrelated with the true ones.
    assert (clear[:, 1] == 0).all()
    high = masked[:, 1].astype(np.float64) / 2.0**64
    assert 0.4 < high.mean() < 0.6 and (masked[:, 1] == 0).sum() == 0
    r = np.corrcoef(secure.decode(masked, upload.frac_bits), plain.gtg)[0, 1]
    assert abs(r) < 0.1, r


def test_exact_workflow__coordinator_holds_no_individual_level_data(run: Run):
    sample_ids = set()
    for site in SITES:
        sample_ids |= {r["IID"] for r in table_rows(run.data / "sites" / site / "phenotypes.tsv")}
    assert len(sample_ids) > 300
    assert_no_individual_level_data(run.work, sample_ids, min_files=30)


# -- the binary trait: exact logistic rounds through TES -------------------------------------


@dataclass
class PooledLogit:
    """The pooled reference of the binary trait: plink2's table, and the data for statsmodels."""

    plink2: dict[str, dict[str, str]]  # ID -> row of plink2 --glm no-firth
    y: np.ndarray  # 0/1, NaN missing; samples in the pooled fileset's order
    design: np.ndarray  # intercept + covariates, same samples


@pytest.fixture(scope="module")
def pooled_logit(run: Run, pooled: Pooled) -> PooledLogit:
    """pooled plink2 --glm logistic no-firth with the logistic design: age, sex, site
    indicators and the PCs with one slope across sites."""
    pcs = [f"PC{j}" for j in range(1, PCS + 1)]
    covar_names = ["age", "sex", *(f"site_{s}" for s in SITES[1:]), *pcs]
    lines = ["\t".join(["#FID", "IID", "bt", *covar_names])]
    by_iid: dict[str, tuple[str, list[str]]] = {}
    for site in SITES:
        pheno = {r["IID"]: r for r in table_rows(run.data / "sites" / site / "phenotypes.tsv")}
        for c in table_rows(run.site_file(f"sites/{site}/gwas/covariates.tsv")):
            iid = c["IID"]
            fields = [
                c["age"], c["sex"], *(str(int(site == s)) for s in SITES[1:]),
                *(c[p] for p in pcs),
            ]  # fmt: skip
            by_iid[iid] = (pheno[iid]["bt"], fields)
            lines.append("\t".join([iid, iid, pheno[iid]["bt"], *fields]))
    (pooled.root / "logit.covar").write_text("\n".join(lines) + "\n")
    _plink2(
        pooled.root, "--pheno", "logit.covar", "--pheno-name", "bt", "--covar", "logit.covar",
        "--covar-name", ",".join(covar_names), "--covar-variance-standardize", *VIF_OFF,
        "--glm", "hide-covar", "omit-ref", "no-firth", "cols=+a1freq,+beta", "--out", "logit",
    )  # fmt: skip
    iids = [r["IID"] for r in table_rows(pooled.root / "pooled.psam")]
    y = np.array([np.nan if by_iid[i][0] == "NA" else float(by_iid[i][0]) - 1 for i in iids])
    design = np.array([[1.0, *map(float, by_iid[i][1])] for i in iids])
    rows = {r["ID"]: r for r in table_rows(pooled.root / "logit.bt.glm.logistic")}
    return PooledLogit(rows, y, design)


def test_exact_workflow__binary_logistic_rounds_equal_pooled_statsmodels_and_plink2(
    run: Run, pooled: Pooled, pooled_logit: PooledLogit
):
    import statsmodels.api as sm

    got = table_rows(run.logit)
    solved = [r for r in got if r["beta"] != "NA"]
    assert len(solved) > 1000, f"{len(solved)} of {len(got)} panel variants solved"
    ok = np.isfinite(pooled_logit.y)
    index = {v: j for j, v in enumerate(pooled.vids)}
    for row in solved:
        vid = row["variant_id"]
        # statsmodels' Newton fit on all sites' samples pooled, to its own tight tolerance.
        x = np.column_stack([pooled_logit.design[ok], pooled.dosages[index[vid]][ok]])
        fit = sm.Logit(pooled_logit.y[ok], x).fit(disp=0, method="newton", tol=1e-14)
        assert float(row["beta"]) == pytest.approx(fit.params[-1], rel=1e-8), vid
        assert float(row["standard_error"]) == pytest.approx(fit.bse[-1], rel=1e-8), vid
        assert int(row["n"]) == int(ok.sum())
        # plink2 fits logistic models in single precision: its BETA and SE agree to ~1e-5.
        ref = pooled_logit.plink2[vid]
        assert ref["ERRCODE"] == "." and ref["A1"] == row["effect_allele"]
        assert int(ref["OBS_CT"]) == int(row["n"])
        assert float(row["beta"]) == pytest.approx(float(ref["BETA"]), rel=1e-4, abs=1e-6)
        assert float(row["standard_error"]) == pytest.approx(float(ref["SE"]), rel=1e-4)
        assert float(row["p_value"]) == pytest.approx(float(ref["P"]), rel=1e-3, abs=1e-300)
        assert float(row["effect_allele_frequency"]) == pytest.approx(
            float(ref["A1_FREQ"]), abs=5e-6
        )
    counts = dict(
        line.split("\t")
        for line in (run.work / "results/exact/bt.unsolved.tsv").read_text().splitlines()[1:]
    )
    assert int(counts["solved"]) == len(solved) and int(counts["not_converged"]) == 0
    assert int(counts["seen"]) == len(got)


def test_exact_workflow__binary_rounds_are_masked_and_states_went_through_ingress(run: Run):
    rounds = _logit_rounds(run)
    for site in SITES:
        for it in range(1, rounds + 1):
            doc = json.loads(
                (run.work / f"results/sumstats/{site}/bt.logit.{it}.sums.json").read_text()
            )
            assert "masked" in doc and "values" not in doc
            assert doc["round"] == f"e2e-test.1.bt.logit.it{it}"
            assert doc["participants"] == list(SITES)
        # The coefficients of every variant (one state per round) exceed the inline-content
        # cap: the executor uploaded them to the node's ingress.
        audit = run.out / "nodes" / site / "state" / "audit.jsonl"
        puts = [
            r for r in map(json.loads, audit.read_text().splitlines())
            if r["action"] == "PutIngress" and r["outcome"] in ("200", "201")
        ]  # fmt: skip
        assert len(puts) >= rounds - 1
    state = json.loads((run.work / f"results/exact/bt/logit/state.{rounds}.json").read_text())
    assert state["stopped"] and all(state["done"])
