"""``fedgen exact`` end to end through the CLI, with the site airlock on every upload."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.exact.aggregates import read_aggregates

from .exact_study import make_study


def fedgen(*args, cwd=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "exact", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fedgen exact {args[0]} failed:\n{proc.stderr}")
    return proc


def read_results(path):
    lines = [x for x in path.read_text().splitlines() if not x.startswith("##")]
    header = lines[0].split("\t")
    rows = [x.split("\t") for x in lines[1:]]
    return {h: [r[i] for r in rows] for i, h in enumerate(header)}


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    study = make_study(root / "data", sizes=(120, 200, 90), m=80, seed=21)
    registry = {"version": 1, "sites": {}}
    for s in study.sites:
        site_dir = root / "site" / s
        site_dir.mkdir(parents=True)
        out = fedgen("keygen", "--out", site_dir / "x25519.key").stdout
        public = out.split("public_key_x25519:")[1].strip()
        registry["sites"][s] = {
            "tes_url": f"http://127.0.0.1:1/{s}",
            "work_url": f"file://{site_dir}",
            "public_key_x25519": public,
        }
    (root / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    for s in study.sites:
        fedgen(
            "aggregate", "--pfile", study.site_pfiles[s], "--pheno", study.site_pheno[s],
            "--pheno-name", "qt", "--covar-name", "age,sex", "--site", s,
            "--registry", root / "sites.yaml", "--out", root / "site" / s / "qt.aggregates.tsv",
        )  # fmt: skip
    return root, study


def test_keygen__private_key_stays_private(federation):
    root, _ = federation
    key = root / "site" / "A" / "x25519.key"
    assert (os.stat(key).st_mode & 0o777) == 0o600
    secret = key.read_text().splitlines()[1]
    assert secret not in (root / "sites.yaml").read_text()
    proc = fedgen("keygen", "--out", key, check=False)
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr


def test_airlock__admits_plain_aggregates_with_guards_from_the_numbers(federation):
    root, _ = federation
    path = root / "site" / "B" / "qt.aggregates.tsv"
    decision = inspect(path, AirlockPolicy(), name="results/sumstats/B/qt.aggregates.tsv")
    assert decision.accepted and decision.kind == "aggregates", decision.reason
    strict_mac = inspect(path, AirlockPolicy(min_mac=150.0))
    assert not strict_mac.accepted
    assert "column 'Ctg.intercept': minor allele count" in strict_mac.reason
    strict_n = inspect(path, AirlockPolicy(min_n=201))
    assert not strict_n.accepted and "n=200 is below min_n=201" in strict_n.reason
    # A per-sample column smuggled into the table is refused.
    bad = root / "bad.aggregates.tsv"
    lines = path.read_text().splitlines()
    i = next(j for j, x in enumerate(lines) if x.startswith("chromosome"))
    lines[i + 1] = lines[i + 1].replace("\t", "\tB_17\t", 1)
    bad.write_text("\n".join(lines) + "\n")
    assert not inspect(bad, AirlockPolicy()).accepted


def test_cli__masked_round_equals_plain_solve_and_passes_airlock(federation):
    root, study = federation
    uploads = []
    for s in study.sites:
        out = root / "site" / s / "qt.aggregates.masked.tsv"
        fedgen(
            "mask", "--aggregates", root / "site" / s / "qt.aggregates.tsv",
            "--key", root / "site" / s / "x25519.key", "--registry", root / "sites.yaml",
            "--round", "gwas-2026-11-25.1", "--participants", "A,B,C",
            "--variants", study.pooled.with_suffix(".pvar"), "--out", out,
        )  # fmt: skip
        uploads.append(out)
        refused = inspect(out, AirlockPolicy())
        assert not refused.accepted and "secure_aggregation: true" in refused.reason
        accepted = inspect(out, AirlockPolicy(secure_aggregation=True))
        assert accepted.accepted and accepted.kind == "aggregates", accepted.reason
        weaker = inspect(out, AirlockPolicy(secure_aggregation=True, min_mac=20))
        assert not weaker.accepted and "weaker than the policy" in weaker.reason
    fedgen("solve", "--masked", *uploads, "--out", root / "masked.tsv")
    fedgen(
        "solve", "--aggregates", *(root / "site" / s / "qt.aggregates.tsv" for s in study.sites),
        "--out", root / "plain.tsv",
    )  # fmt: skip
    masked, plain = read_results(root / "masked.tsv"), read_results(root / "plain.tsv")
    assert masked["variant_id"] == plain["variant_id"] and len(plain["variant_id"]) > 70
    assert set(masked["n"]) == {"410"}
    for col in ("beta", "standard_error", "p_value"):
        np.testing.assert_allclose(
            np.array(masked[col], float), np.array(plain[col], float), rtol=1e-8
        )

    proc = fedgen("solve", "--masked", *uploads[:2], "--out", root / "x.tsv", check=False)
    assert proc.returncode == 1
    assert "no upload from site(s) C" in proc.stderr and "--participants A,B" in proc.stderr
    assert not (root / "x.tsv").exists()


def test_cli__aggregate_names_bad_column(federation):
    root, study = federation
    proc = fedgen(
        "aggregate", "--pfile", study.site_pfiles["A"], "--pheno", study.site_pheno["A"],
        "--pheno-name", "qt", "--covar-name", "agee", "--site", "A", "--sites", "A,B,C",
        "--out", root / "never.tsv", check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "covariate 'agee' is not a column of" in proc.stderr
    assert not (root / "never.tsv").exists()


def test_airlock__refuses_free_text_in_headers(federation):
    root, _ = federation
    plain = (root / "site" / "A" / "qt.aggregates.tsv").read_text()
    smuggled = root / "smuggled.aggregates.tsv"
    smuggled.write_text(plain.replace("##missing_dosage=mean-imputed", "##missing_dosage=A_1,A_2"))
    decision = inspect(smuggled, AirlockPolicy())
    assert not decision.accepted and "header key missing_dosage" in decision.reason
    fedgen(
        "mask", "--aggregates", root / "site" / "A" / "qt.aggregates.tsv",
        "--key", root / "site" / "A" / "x25519.key", "--registry", root / "sites.yaml",
        "--round", "smuggle-1", "--participants", "A,B,C", "--out", root / "m.tsv",
    )  # fmt: skip
    masked = (root / "m.tsv").read_text()
    assert inspect(root / "m.tsv", AirlockPolicy(secure_aggregation=True)).accepted
    bad = root / "m2.aggregates.masked.tsv"
    bad.write_text(
        masked.replace("##variants_outside_universe=0", "##variants_outside_universe=A_1")
    )
    decision = inspect(bad, AirlockPolicy(secure_aggregation=True))
    assert not decision.accepted and "header key variants_outside_universe" in decision.reason


def test_cli__gzip_aggregates_round_trip_and_pass_airlock(federation):
    root, study = federation
    gz = root / "site" / "A" / "qt.aggregates.tsv.gz"
    fedgen(
        "aggregate", "--pfile", study.site_pfiles["A"], "--pheno", study.site_pheno["A"],
        "--pheno-name", "qt", "--covar-name", "age,sex", "--site", "A",
        "--registry", root / "sites.yaml", "--out", gz,
    )  # fmt: skip
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert inspect(gz, AirlockPolicy()).accepted
    plain = root / "site" / "A" / "qt.aggregates.tsv"
    assert read_aggregates(gz).variant_keys() == read_aggregates(plain).variant_keys()
    np.testing.assert_array_equal(read_aggregates(gz).ctg, read_aggregates(plain).ctg)


def test_cli__solve_draws_manhattan_and_qq_plots(federation):
    root, study = federation
    plots = root / "plots"
    plots.mkdir()
    fedgen(
        "solve", "--aggregates", *(root / "site" / s / "qt.aggregates.tsv" for s in study.sites),
        "--out", plots / "qt.tsv", "--manhattan", plots / "qt.manhattan.png",
        "--qq", plots / "qt.qq.png",
    )  # fmt: skip
    for name in ("qt.manhattan.png", "qt.qq.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert sorted(p.name for p in plots.iterdir()) == [
        "qt.manhattan.png", "qt.qq.png", "qt.tsv", "qt.unsolved.tsv",
    ]  # fmt: skip


def _keys(agg):
    return set(zip(agg.chrom, agg.pos, agg.ref, agg.alt, strict=True))


def _counts_table(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "status\tsite\tvariants"
    return {(r.split("\t")[0], r.split("\t")[1]): r.split("\t")[2] for r in lines[1:]}


def test_cli__solve_writes_unsolved_counts_equal_to_an_independent_count(federation):
    root, study = federation
    out = root / "unsolved"
    out.mkdir()
    # Site C's table without its first five variants: they are absent at C.
    cut = read_aggregates(root / "site" / "C" / "qt.aggregates.tsv")
    cut = cut.subset(np.arange(5, cut.m))
    from snakemake_fedgen.exact.aggregates import write_aggregates

    write_aggregates(cut, out / "C.aggregates.tsv")
    paths = [root / "site" / "A" / "qt.aggregates.tsv", root / "site" / "B" / "qt.aggregates.tsv"]
    paths.append(out / "C.aggregates.tsv")
    proc = fedgen("solve", "--aggregates", *paths, "--out", out / "qt.tsv.gz")

    keys = {s: _keys(read_aggregates(p)) for s, p in zip(study.sites, paths, strict=True)}
    union, every = set.union(*keys.values()), set.intersection(*keys.values())
    text = gzip.decompress((out / "qt.tsv.gz").read_bytes()).decode().splitlines()
    body = [x.split("\t") for x in text if not x.startswith("##")]
    beta = body[0].index("beta")
    solved = sum(1 for r in body[1:] if r[beta] != "NA")
    table = _counts_table(out / "qt.unsolved.tsv")
    assert table == {
        ("seen", "all"): str(len(union)),
        ("solved", "all"): str(solved),
        ("not_solved_absent", "all"): str(len(union - every)),
        **{("absent_at_site", s): str(len(union - keys[s])) for s in study.sites},
        ("not_solved_singular", "all"): str(len(every) - solved),
    }
    assert len(union - keys["C"]) >= 5
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("pooled n=")]
    assert f"{solved} of {len(union)} variants seen at any site solved" in line
    assert f"{len(union - every)} absent at some site (A " in line
    assert str(out / "qt.unsolved.tsv") in line


def test_cli__masked_solve_counts_absent_variants_without_naming_the_site(federation):
    root, study = federation
    uploads = []
    for s in study.sites:
        uploads.append(root / "site" / s / "unsolved.aggregates.masked.tsv")
        fedgen(
            "mask", "--aggregates", root / "site" / s / "qt.aggregates.tsv",
            "--key", root / "site" / s / "x25519.key", "--registry", root / "sites.yaml",
            "--round", "unsolved-1", "--participants", "A,B,C",
            "--variants", study.pooled.with_suffix(".pvar"), "--out", uploads[-1],
        )  # fmt: skip
    fedgen("solve", "--masked", *uploads, "--out", root / "masked.tsv", "--unsolved", root / "m.u")
    keys = {s: _keys(read_aggregates(root / "site" / s / "qt.aggregates.tsv")) for s in study.sites}
    union, every = set.union(*keys.values()), set.intersection(*keys.values())
    table = _counts_table(root / "m.u")
    assert table[("seen", "all")] == str(len(union))
    assert table[("not_solved_absent", "all")] == str(len(union - every))
    assert [table[("absent_at_site", s)] for s in study.sites] == ["NA", "NA", "NA"]
