"""End to end on real genotypes, set up the way a new consortium would.

Three sites hold real 1000 Genomes genotypes (``tests/workflow/real_federation.py``: Debian's
``bio-eagle-examples``) each in their own way: a PLINK 1 fileset, one VCF per chromosome, a
``chr``-prefixed VCF with records the import must drop; phenotype tables keyed by IID alone or by
FID and IID; one site under 50 samples. Everything is set up through ``fedgen sites init`` and
the documented edits of its files (docs/own-data.md): the analyst's config, the node configs,
each steward registering the genotypes and approving the workflow. The trait is simulated on a
SNP no site genotyped (it must be imputed from the panel).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml
from snakemake_executor_plugin_fedgen.reference import read_reference

from snakemake_fedgen import demo
from snakemake_fedgen.node.process import NodeProcess, free_port
from tests.site_paths import held_file
from tests.workflow.coordinator_scan import table_rows
from tests.workflow.real_federation import EXAMPLES, SITE_SIZES, build

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEDGEN = [sys.executable, "-m", "snakemake_fedgen"]
WORKFLOW = demo.SNAKEFILE.parent.parent
ORDER = ("C", "B", "A")  # largest site first: the meta-analysis' reference study
GENOME_WIDE = 5e-8


@dataclass
class Run:
    root: Path
    data: Path
    work: Path
    truth: dict
    log: str
    first: list[str]  # what the --until qc_counts run brought back

    def site_file(self, path: str) -> Path:
        ref = read_reference(self.work / path)
        assert ref is not None, path
        site = yaml.safe_load((self.work / "sites.yaml").read_text())["sites"][ref.site]
        roots = [Path(unquote(urlparse(site[k]).path)) for k in ("work_url", "egress_url")]
        return held_file(ref.url, roots)

    def full_counts(self, site: str) -> dict[tuple[str, str], int]:
        rows = table_rows(self.site_file(f"sites/{site}/qc/qc_counts.full.tsv"))
        return {(r["step"], r["quantity"]): int(r["count"]) for r in rows}


def _fedgen(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEDGEN, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=demo.tool_env(),
        check=False,
    )


def _analysis_config(work: Path) -> Path:
    """The analyst's config: the workflow's, with what this study differs in."""
    config = yaml.safe_load((WORKFLOW / "config" / "config.yaml").read_text())
    config.update(
        assembly="GRCh37",
        # The package's phased panel holds chromosome 21 only: the sites' chr22 SNPs are
        # counted at import (variants_other_contig) and not analysed.
        chromosomes=["21"],
        traits={"qt": {"type": "quantitative", "description": "simulated on a real SNP"}},
        covariates=["age", "sex"],
        pcs=3,
    )
    config["datasets"]["genetic_map"] = None  # Beagle: 1 cM per Mb
    config["egress"]["min_n"] = 30  # the consortium's rule: sites of 30 and more contribute
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(work: Path, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(demo.SNAKEFILE),
        "--directory", str(work), "--configfile", str(config),
        "--profile", str(demo.PROFILE), "--fedgen-sites", "sites.yaml", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    if not (EXAMPLES / "EUR_test.vcf.gz").exists():
        pytest.fail("bio-eagle-examples is not installed: run `make install`")
    root = tmp_path_factory.mktemp("real-genotypes")
    data, work = root / "data", root / "coordinator"
    build(data)
    work.mkdir()
    config = _analysis_config(work)
    init = _fedgen(
        "sites", "init", "--out", work, "--config", config, "--data-root", data,
        *(a for s in ORDER for a in ("--site", s)),
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    registry = yaml.safe_load((work / "sites.yaml").read_text())
    nodes: dict[str, NodeProcess] = {}
    env = demo.tool_env()
    try:
        for site in ORDER:
            entry = registry["sites"][site]
            site_data = data / site / "data"
            # The steward's edits (docs/own-data.md): where the genotypes really are, the token
            # file, the sample lists to redact.
            node_cfg = yaml.safe_load((work / "nodes" / site / "node.yaml").read_text())
            genotypes = site_data / ("genotypes.vcf.gz" if site == "C" else "genotypes")
            if site != "C":
                entry["datasets"]["genotypes"]["url"] = genotypes.as_uri() + "/"
            samples = {"A": genotypes / "array.fam", "B": genotypes / "chr21.vcf.gz"}
            node_cfg["redact_ids_from"] = [
                str(samples.get(site, genotypes)),
                str(site_data / "phenotypes.tsv"),
            ]
            node_cfg["airlock"]["min_n"] = 30
            state = root / "nodes" / site
            token = f"token-{site}-" + "x" * 24
            token_file = Path(node_cfg["token_file"])
            token_file.parent.mkdir(parents=True, exist_ok=True)
            token_file.write_text(yaml.safe_dump({demo.CALLER: token}))
            token_file.chmod(0o600)
            for d in node_cfg["write_roots"]:
                Path(d).mkdir(parents=True, exist_ok=True)
            reg = _fedgen(
                "node", "dataset", "register", "genotypes", "--genotypes", genotypes,
                "--variants", data / "reference" / "panel.vcf.gz", "--state-dir", state,
            )  # fmt: skip
            assert reg.returncode == 0, reg.stderr
            ok = _fedgen("node", "approve", WORKFLOW, "--yes", "--state-dir", state)
            assert ok.returncode == 0, ok.stderr
            node_cfg.pop("port")
            node = NodeProcess(state, port=free_port(), config=node_cfg)
            nodes[site] = node
            entry["tes_url"] = node.url
            entry["egress_read_url"] = node.egress_read_url
            env[entry["token_env"]] = token
        (work / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
        check = subprocess.run(
            [*FEDGEN, "sites", "check", "sites.yaml"], cwd=work, env=env,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        # The first real check (docs/own-data.md): every site imports its files, matches its
        # phenotypes, aligns to its panel and runs QC; only the QC counts come back.
        demo.run_snakemake(
            _snakemake(work, config, "--until", "qc_counts"),
            env=env,
            log_path=root / "until-qc.log",
            show=False,
        )
        first = sorted(p.relative_to(work).as_posix() for p in (work / "results").rglob("*.tsv*"))
        demo.run_snakemake(
            _snakemake(work, config), env=env, log_path=root / "snakemake.log", show=False
        )
    finally:
        for node in nodes.values():
            node.stop()
    truth = json.loads((data / "truth.json").read_text())
    yield Run(root, data, work, truth, check.stdout, first)


def _meta_row(run: Run, pos: int) -> dict[str, str]:
    rows = [
        r for r in table_rows(run.work / "results" / "meta" / "qt.tsv.gz")
        if int(r["base_pair_location"]) == pos
    ]  # fmt: skip
    assert len(rows) == 1, rows
    return rows[0]


def _pooled_beta(run: Run, tmp: Path) -> tuple[float, float]:
    """plink2 --glm over every site sample at once on the true genotypes (the package's VCF):
    the estimate the federation should reproduce without pooling."""
    covar = ["#FID\tIID\tqt\tage\tsex\tsite_b\tsite_c"]
    for site in ORDER:
        for r in table_rows(run.data / site / "data" / "phenotypes.tsv"):
            if r["IID"].startswith("X_"):
                continue
            name = r["IID"] if "_" in r["IID"] else None
            covar.append(
                f"{name or r['IID']}\t{name or r['IID']}\t{r['qt']}\t{r['age']}\t{r['sex']}\t"
                f"{int(site == 'B')}\t{int(site == 'C')}"
            )
    # The package's VCF names samples FID_IID; map the IID-keyed rows onto those names.
    names = subprocess.run(
        ["bcftools", "query", "-l", str(EXAMPLES / "EUR_test.vcf.gz")],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    by_iid = {n.split("_", 1)[1]: n for n in names}
    fixed, seen = [covar[0]], set()
    for line in covar[1:]:
        f = line.split("\t")
        full = f[0] if f[0] in names else by_iid[f[0]]
        if full in seen:
            continue
        seen.add(full)
        fixed.append("\t".join([full, full, *f[2:]]))
    (tmp / "pooled.tsv").write_text("\n".join(fixed) + "\n")
    subprocess.run(
        ["plink2", "--vcf", str(EXAMPLES / "EUR_test.vcf.gz"), "--double-id",
         "--snp", run.truth["causal"]["rsid"], "--pheno", str(tmp / "pooled.tsv"),
         "--pheno-name", "qt", "--covar", str(tmp / "pooled.tsv"),
         "--covar-name", "age", "sex", "site_b", "site_c", "--glm", "hide-covar",
         "--out", str(tmp / "pooled")],
        check=True, capture_output=True,
    )  # fmt: skip
    (row,) = table_rows(tmp / "pooled.qt.glm.linear")
    sign = 1.0 if row["A1"] == run.truth["causal"]["alt"] else -1.0
    return sign * float(row["BETA"]), float(row["SE"])


def test_sites_check__asks_each_node_about_token_images_and_approval(run: Run) -> None:
    for site in ORDER:
        line = next(ln for ln in run.log.splitlines() if ln.startswith(site + " "))
        assert "ok: 4 images allowed, release approved" in line, line


def test_imputed_causal_snp__found_with_its_rsid_and_the_pooled_effect(
    run: Run, tmp_path: Path
) -> None:
    causal = run.truth["causal"]
    row = _meta_row(run, causal["pos"])
    beta = float(row["beta"]) * (1 if row["effect_allele"] == causal["alt"] else -1)
    se = float(row["standard_error"])
    pooled, pooled_se = _pooled_beta(run, tmp_path)
    print(
        f"\ncausal {causal['rsid']} (imputed at every site): meta beta {beta:+.3f} se {se:.3f} "
        f"p {row['p_value']}; pooled true genotypes beta {pooled:+.3f} se {pooled_se:.3f}"
    )
    assert float(row["p_value"]) < GENOME_WIDE
    for site in ORDER:  # the panel's rsID reached every site's export
        rows = table_rows(run.work / "results" / "sumstats" / site / "qt.tsv.gz")
        (mine,) = [r for r in rows if int(r["base_pair_location"]) == causal["pos"]]
        assert mine["rsid"] == causal["rsid"], site
    # Every site contributed, the one under 50 samples after QC included.
    assert row["direction"].count("?") == 0 and len(row["direction"]) == 3
    assert abs(beta - pooled) < 2 * se


def test_small_site__under_50_after_qc_runs_on_projected_pcs(run: Run) -> None:
    a = run.full_counts("A")
    assert a[("final", "samples")] < 50
    weights = {run.site_file(f"sites/{s}/qc/panel_pca.eigenvec.allele").read_bytes() for s in ORDER}
    assert len(weights) == 1, "every site projects onto the same panel axes"
    pcs = table_rows(run.site_file("sites/A/qc/pcs.tsv"))
    assert len(pcs) == SITE_SIZES["A"] and {"PC1", "PC2", "PC3"} <= set(pcs[0])


def test_counts__every_removal_is_counted_where_the_user_looks(run: Run) -> None:
    c = run.full_counts("C")
    for quantity, n in run.truth["injected"].items():
        assert c[("import", quantity)] == n, quantity
    with gzip.open(run.data / "C" / "data" / "genotypes.vcf.gz", "rt") as f:
        chr22 = sum(1 for line in f if line.startswith("chr22\t"))
    assert c[("import", "variants_other_contig")] == chr22 > 0  # not in config `chromosomes`
    removed = sum(run.truth["injected"].values()) + chr22
    assert c[("import", "variants")] - removed == c[("input", "variants")]
    assert c[("phenotypes", "rows_without_genotypes")] == 2
    assert c[("phenotypes", "rows_duplicated")] == 2
    assert c[("phenotypes", "samples_matched")] == SITE_SIZES["C"] - 1
    a = run.full_counts("A")
    assert a[("phenotypes", "samples_matched")] == SITE_SIZES["A"]  # keyed by IID alone
    b = run.full_counts("B")
    assert b[("input", "variants")] == a[("input", "variants")]  # two files, one fileset
    # What reaches the coordinator: the same rows, small counts suppressed.
    merged = {
        (r["step"], r["quantity"]): r for r in table_rows(run.work / "results/qc/qc_counts.tsv")
    }
    assert merged[("import", "variants_not_snp")]["C"] == "<5"  # 1, below min_cell
    assert merged[("phenotypes", "samples_matched")]["A"] == str(SITE_SIZES["A"])


def test_wrong_build__refused_before_any_task_with_one_message(run: Run) -> None:
    registry = yaml.safe_load((run.work / "sites.yaml").read_text())
    registry["sites"]["B"]["datasets"]["genotypes"]["assembly"] = "GRCh38"
    (run.work / "sites.wrong.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    proc = subprocess.run(
        [*_snakemake(run.work, run.work / "config.yaml", "-n"), "--config",
         "sites=sites.wrong.yaml"],
        capture_output=True, text=True, env=demo.tool_env(), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "site B declares its genotypes as GRCh38" in text
    assert "reference panel as GRCh37" in text


def test_imputed_rsids__come_from_the_panel(run: Run) -> None:
    with gzip.open(run.work / "results" / "sumstats" / "C" / "qt.tsv.gz", "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, ln.rstrip("\n").split("\t"), strict=True)) for ln in f]
    named = [r for r in rows if r["rsid"].startswith("rs")]
    assert len(named) > 0.9 * len(rows)
    assert np.all([r["variant_id"].count(":") == 3 for r in rows])


def test_meta__palindromic_snps_aligned_to_the_same_panel_are_kept(run: Run) -> None:
    studies = {r["study"]: r for r in table_rows(run.work / "results" / "meta" / "qt.studies.tsv")}
    assert list(studies) == list(ORDER)  # the registry's order: C is the reference study
    panels = {r["aligned_panel"] for r in studies.values()}
    assert len(panels) == 1 and next(iter(panels)).startswith("sha256:")
    for site in ("B", "A"):
        assert int(studies[site]["palindromic_panel_kept"]) > 0, site
        assert int(studies[site]["dropped_palindromic_ambiguous"]) == 0, site


def test_meta__studies_table_shows_each_sites_disclosure_cost(run: Run) -> None:
    studies = {r["study"]: r for r in table_rows(run.work / "results" / "meta" / "qt.studies.tsv")}
    for site in ORDER:
        meta = yaml.safe_load(
            (run.work / "results" / "sumstats" / site / "qt.tsv.gz-meta.yaml").read_text()
        )
        n = meta["samples"][0]["sample_size"]
        assert int(studies[site]["withheld_at_site"]) == meta["fedgen"]["variants_suppressed"] > 0
        assert float(studies[site]["maf_floor_at_site"]) == pytest.approx(10 / (2 * n), rel=1e-3)
    # the smallest site pays the most: its floor is the highest
    assert float(studies["A"]["maf_floor_at_site"]) > float(studies["C"]["maf_floor_at_site"])


def test_until_qc_counts__checks_every_site_and_returns_only_counts(run: Run) -> None:
    assert run.first == [f"results/sumstats/{s}/qc_counts.tsv" for s in sorted(ORDER)]
