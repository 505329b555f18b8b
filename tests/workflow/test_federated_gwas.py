"""End to end: the federated GWAS workflow on three loopback ``fedgen node`` sites.

One simulated federation (``fedgen simulate --scale tiny``, site C holding its phenotypes as
Phenopacket v2 files) runs once through ``snakemake --executor fedgen --profile profiles/demo``
(module fixture); the tests then check what came back against the simulation's truth file, look
at the site-held files the way the site's own staff could (the test owns the site storage),
compare the federated meta-analysis with a pooled ``plink2 --glm`` over all sites' samples at
once, and cross-check the run's RO-Crate with each node's task list and audit log.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import pytest
import yaml
from snakemake_executor_plugin_fedgen.executor import default_run_id
from snakemake_executor_plugin_fedgen.reference import is_reference, read_reference

from snakemake_fedgen import demo
from tests.site_paths import held_file
from tests.workflow.coordinator_scan import (
    assert_no_individual_level_data,
    coordinator_files,
    magic,
    table_rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 7
SITES = ("A", "B", "C")
PHENOPACKETS_SITES = ("C",)  # holds its phenotypes as Phenopacket v2 files
GENOME_WIDE = 5e-8
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


@dataclass
class Run:
    """A finished federated run: its directories, truth and the per-site registry."""

    out: Path
    data: Path
    work: Path
    truth: dict[str, Any]
    tokens: dict[str, str]
    node_tasks: dict[str, list[dict[str, Any]]]  # each node's TES task list (BASIC view)
    node_state: dict[str, Path]
    first_crate: dict[str, Any]  # the crate of the first run, before the rerun rebuilt it

    def site_file(self, path: str) -> Path:
        """The site-side file behind a reference on the coordinator (the site admin's view)."""
        ref = read_reference(self.work / path)
        assert ref is not None, f"{path} should be a reference on the coordinator"
        site = yaml.safe_load((self.work / "sites.yaml").read_text())["sites"][ref.site]
        roots = [Path(unquote(urlparse(site[k]).path)) for k in ("work_url", "egress_url")]
        return held_file(ref.url, roots)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("federated-gwas")
    data, work = out / "data", out / "coordinator"
    truth = demo.simulate(data, seed=SEED, scale="tiny", phenopackets_sites=PHENOPACKETS_SITES)
    with demo.federation(data, out / "nodes", work / "sites.yaml") as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        demo.run_snakemake(
            demo.snakemake_command(work), env=env, log_path=out / "snakemake.log", show=False
        )
        # A rerun in the same directory (here: only the crate is missing) must find the same
        # run's tasks at the sites.
        crate = work / "provenance" / "ro-crate"
        first_crate = json.loads((crate / "ro-crate-metadata.json").read_text())
        shutil.rmtree(crate)
        demo.run_snakemake(
            demo.snakemake_command(work), env=env, log_path=out / "rerun.log", show=False
        )
        demo.run_snakemake(
            [*demo.snakemake_command(work), f"--report={work / 'report.html'}"],
            env=env,
            log_path=out / "report.log",
            show=False,
        )
        node_tasks = {
            name: httpx.get(
                f"{s.node.url}/tasks",
                params={"view": "BASIC", "page_size": 2048},
                headers={"Authorization": f"Bearer {s.token}"},
            ).json()["tasks"]
            for name, s in sites.items()
        }
        tokens = {name: s.token for name, s in sites.items()}
        node_state = {name: s.node.state_dir for name, s in sites.items()}
    yield Run(out, data, work, truth, tokens, node_tasks, node_state, first_crate)


def _counts(path: Path) -> dict[tuple[str, str], str]:
    return {(r["step"], r["quantity"]): r["count"] for r in table_rows(path)}


def _ids(path: Path) -> set[str]:
    return {r["IID"] for r in table_rows(path)}


def _strong_causal(truth: dict[str, Any]) -> dict[str, Any]:
    return max(truth["causal_variants"], key=lambda c: c["variance_explained"])


def test_meta_analysis__causal_variant_is_top_hit(run: Run) -> None:
    causal = _strong_causal(run.truth)
    rows = table_rows(run.work / "results" / "meta" / "qt.tsv.gz")
    by_pos = {int(r["base_pair_location"]): r for r in rows}
    top = max(rows, key=lambda r: float(r["neg_log_10_p_value"]))
    print(demo.summary(run.work, run.truth))
    hit = by_pos[causal["pos"]]
    assert float(hit["p_value"]) < GENOME_WIDE
    assert hit["direction"].count("?") == 0, "every site should contribute the causal variant"
    # The top hit is the causal variant's locus: imputed variants in strong LD with it (within
    # the simulation's 100 kb tagging window) can edge it out by chance at this sample size.
    assert abs(int(top["base_pair_location"]) - causal["pos"]) <= 100_000
    loci = [c["pos"] for c in run.truth["causal_variants"]]
    false_hits = [
        r["base_pair_location"]
        for r in rows
        if float(r["p_value"]) < GENOME_WIDE
        and all(abs(int(r["base_pair_location"]) - pos) > 1_000_000 for pos in loci)
    ]
    assert not false_hits, f"genome-wide significant away from every causal locus: {false_hits}"


def test_qc__injected_sample_failures_are_removed(run: Run) -> None:
    for site in SITES:
        injected = run.truth["sites"][site]["injected"]
        full = _counts(run.site_file(f"sites/{site}/qc/qc_counts.full.tsv"))
        qc_ids = _ids(run.site_file(f"sites/{site}/qc/qc.psam"))
        raw_ids = _ids(run.site_file(f"sites/{site}/qc/raw.psam"))
        assert int(full[("duplicates", "samples_removed")]) == len(injected["duplicates"])
        for pair in injected["duplicates"]:
            assert {pair["original"], pair["duplicate"]} - qc_ids, f"{site}: {pair} both kept"
        # Cryptic relatives of the simulated population may add one or two more removals.
        related = int(full[("relatedness", "samples_removed")])
        assert len(injected["related_pairs"]) <= related <= len(injected["related_pairs"]) + 2
        for pair in injected["related_pairs"]:
            assert {pair["iid1"], pair["iid2"]} - qc_ids, f"{site}: {pair} both kept"
        outliers = _ids(run.site_file(f"sites/{site}/qc/heterozygosity.outliers"))
        assert set(injected["heterozygosity_outliers"]) <= outliers
        assert not set(injected["heterozygosity_outliers"]) & qc_ids
        assert not set(injected["low_call_rate"]) & qc_ids
        assert len(raw_ids) == run.truth["sites"][site]["n_samples"]


def test_qc__egress_counts_are_suppressed_and_match_the_site(run: Run) -> None:
    for site in SITES:
        egress = _counts(run.work / "results" / "sumstats" / site / "qc_counts.tsv")
        full = _counts(run.site_file(f"sites/{site}/qc/qc_counts.full.tsv"))
        for key, value in egress.items():
            if value == "<5":
                assert 0 < int(full[key]) < 5
            else:
                assert int(value) == int(full[key]) and (int(value) == 0 or int(value) >= 5)
        # The injected duplicates (2 per site at tiny scale) are below the cell size: the
        # input total is withheld so the suppressed count cannot be recovered by differencing.
        assert egress[("duplicates", "samples_removed")] == "<5"
        assert ("input", "samples") not in egress
        assert egress[("final", "samples")] == full[("final", "samples")]


def test_qc__flipped_and_swapped_batches_are_fixed(run: Run) -> None:
    for site, fault in (("B", "strand_flipped"), ("C", "ref_alt_swapped")):
        batch = run.truth["sites"][site]["injected"][fault]
        assert batch, f"site {site} should have a {fault} batch"
        aligned = {
            int(r["ID"].split(":")[1]): (r["REF"], r["ALT"])
            for r in table_rows(run.site_file(f"sites/{site}/qc/aligned.pvar"))
        }
        # The truth lists the alleles as written in the site's faulty VCF; the fix restores the
        # panel's: complements for the strand-flipped batch, REF and ALT exchanged for the swap.
        if fault == "strand_flipped":
            expected = {v["pos"]: (COMPLEMENT[v["ref"]], COMPLEMENT[v["alt"]]) for v in batch}
        else:
            expected = {v["pos"]: (v["alt"], v["ref"]) for v in batch}
        fixed = [pos for pos, alleles in expected.items() if aligned.get(pos) == alleles]
        print(f"site {site}: {len(fixed)} of {len(batch)} {fault} variants fixed")
        # Palindromic SNPs near 50 % cannot be resolved and are dropped by design.
        assert len(fixed) >= 0.8 * len(batch)
        counts = _counts(run.site_file(f"sites/{site}/qc/qc_counts.full.tsv"))
        kind = "variants_flip" if fault == "strand_flipped" else "variants_swap"
        assert int(counts[("align", kind)]) >= len(fixed)


def test_coordinator__holds_no_individual_level_data(run: Run) -> None:
    sample_ids = set()
    for site in SITES:
        sample_ids |= _ids(run.data / "sites" / site / "phenotypes.tsv")
    assert len(sample_ids) > 300
    # directory_markers: the phenopackets folder reference is a directory() output.
    assert_no_individual_level_data(run.work, sample_ids, min_files=50, directory_markers=True)


def test_report__shows_plots_and_qc_tables(run: Run) -> None:
    html = (run.work / "report.html").read_text(errors="replace")
    for name in ("qt.manhattan.png", "qt.qq.png", "bt.manhattan.png", "qc_counts.tsv"):
        assert name in html, name


def _pooled_glm(run: Run, tmp: Path) -> dict[int, dict[str, str]]:
    """All sites' QC-passing samples in one plink2 --glm on the sites' imputed dosages."""
    vcfs = []
    for site in SITES:
        # The unfiltered Beagle output (chromosome 20, its chunks ligated): every site imputed
        # the same panel variants.
        src = run.site_file(f"sites/{site}/impute/20/beagle.vcf.gz")
        dst = tmp / f"{site}.vcf.gz"
        dst.write_bytes(src.read_bytes())
        subprocess.run(["bcftools", "index", "-f", str(dst)], check=True)
        vcfs.append(str(dst))
    merged = tmp / "pooled.vcf.gz"
    subprocess.run(["bcftools", "merge", "-Oz", "-o", str(merged), *vcfs], check=True)
    covar = ["#FID\tIID\tqt\tage\tsex\tsite_b\tsite_c"]
    for site in SITES:
        kept = _ids(run.site_file(f"sites/{site}/qc/qc.psam"))
        for r in table_rows(run.data / "sites" / site / "phenotypes.tsv"):
            if r["IID"] in kept:
                covar.append(
                    f"{r['FID']}\t{r['IID']}\t{r['qt']}\t{r['age']}\t{r['sex']}\t"
                    f"{int(site == 'B')}\t{int(site == 'C')}"
                )
    (tmp / "pooled.pheno").write_text("\n".join(covar) + "\n")
    keep = tmp / "pooled.keep"
    keep.write_text("\n".join("\t".join(ln.split("\t")[:2]) for ln in covar) + "\n")
    plink = ["plink2", "--threads", "2", "--memory", "2000"]
    subprocess.run(
        [*plink, "--vcf", str(merged), "dosage=DS", "--double-id", "--keep", str(keep),
         "--set-all-var-ids", "@:#:$r:$a", "--make-pgen", "--out", str(tmp / "pooled")],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*plink, "--pfile", str(tmp / "pooled"), "--maf", "0.05",
         "--indep-pairwise", "200", "50", "0.2", "--out", str(tmp / "prune")],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*plink, "--pfile", str(tmp / "pooled"), "--extract", str(tmp / "prune.prune.in"),
         "--pca", "5", "--out", str(tmp / "pca")],
        check=True, capture_output=True,
    )  # fmt: skip
    pcs = {r["IID"]: r for r in table_rows(tmp / "pca.eigenvec")}
    lines = (tmp / "pooled.pheno").read_text().splitlines()
    with_pcs = [lines[0] + "\t" + "\t".join(f"PC{i}" for i in range(1, 6))]
    for ln in lines[1:]:
        iid = ln.split("\t")[1]
        with_pcs.append(ln + "\t" + "\t".join(pcs[iid][f"PC{i}"] for i in range(1, 6)))
    (tmp / "pooled.covar").write_text("\n".join(with_pcs) + "\n")
    subprocess.run(
        [*plink, "--pfile", str(tmp / "pooled"), "--pheno", str(tmp / "pooled.pheno"),
         "--pheno-name", "qt", "--covar", str(tmp / "pooled.covar"),
         "--covar-name", "age", "sex", "site_b", "site_c", "PC1-PC5",
         "--covar-variance-standardize", "--maf", "0.01",
         "--glm", "hide-covar", "--out", str(tmp / "pooled")],
        check=True, capture_output=True,
    )  # fmt: skip
    rows = table_rows(tmp / "pooled.qt.glm.linear")
    return {int(r["POS"]): r for r in rows if r["P"] != "NA"}


def test_pooled_vs_federated__same_causal_signal(
    run: Run, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pooled = _pooled_glm(run, tmp_path_factory.mktemp("pooled"))
    meta = {
        int(r["base_pair_location"]): r for r in table_rows(run.work / "results/meta/qt.tsv.gz")
    }
    shared = sorted(set(pooled) & set(meta))
    assert len(shared) > 1000
    z_pooled, z_meta = [], []
    for pos in shared:
        p, m = pooled[pos], meta[pos]
        sign = 1.0 if p["A1"] == m["effect_allele"] else -1.0
        if {p["A1"], p["REF"], p["ALT"]} != {m["effect_allele"], m["other_allele"]} | {p["A1"]}:
            continue
        z_pooled.append(float(p["T_STAT"]))
        z_meta.append(sign * float(m["z"]))
    r = float(np.corrcoef(z_pooled, z_meta)[0, 1])
    causal = _strong_causal(run.truth)
    p, m = pooled[causal["pos"]], meta[causal["pos"]]
    beta_pooled = float(p["BETA"]) * (1 if p["A1"] == causal["alt"] else -1)
    beta_meta = float(m["beta"]) * (1 if m["effect_allele"] == causal["alt"] else -1)
    print(f"\nz-score correlation, pooled vs federated meta over {len(z_meta)} variants: {r:.3f}")
    print(f"causal {causal['id']} 20:{causal['pos']} (true beta {causal['beta']:+.3f} per ALT)")
    print(f"  pooled plink2 --glm : beta {beta_pooled:+.3f}  se {float(p['SE']):.3f}  p {p['P']}")
    print(
        f"  federated meta      : beta {beta_meta:+.3f}  se {float(m['standard_error']):.3f}  "
        f"p {m['p_value']}"
    )
    assert r > 0.8
    assert float(p["P"]) < GENOME_WIDE
    assert float(m["p_value"]) < GENOME_WIDE
    assert abs(beta_pooled - beta_meta) < 2 * float(m["standard_error"])


# ------------------------------------------------------------------------------------------
# phenotypes from Phenopackets (site C)
# ------------------------------------------------------------------------------------------


def test_phenopackets__site_table_equals_the_simulated_phenotypes(run: Run) -> None:
    registry = yaml.safe_load((run.work / "sites.yaml").read_text())
    dataset = registry["sites"]["C"]["datasets"]["phenotypes"]
    assert dataset["format"] == "phenopackets" and dataset["url"].endswith("/phenopackets/")
    packets = list((run.data / "sites" / "C" / "phenopackets").glob("*.json"))
    assert len(packets) == run.truth["sites"]["C"]["n_samples"]
    # What the site's staff see: the table made at the site from the packets...
    made = {r["IID"]: r for r in table_rows(run.site_file("sites/C/phenotypes/phenopackets.tsv"))}
    # ...against the simulation's own table of the same people.
    simulated = {r["IID"]: r for r in table_rows(run.data / "sites" / "C" / "phenotypes.tsv")}
    assert set(made) == set(simulated)
    for iid, want in simulated.items():
        got = made[iid]
        assert got["FID"] == iid
        assert (got["sex"], got["age"], got["bt"]) == (want["sex"], want["age"], want["bt"]), iid
        if want["qt"] == "NA":
            assert got["qt"] == "NA", iid
        else:
            assert float(got["qt"]) == pytest.approx(float(want["qt"]), abs=1e-9), iid
    assert sum(r["bt"] == "2" for r in made.values()) == run.truth["sites"]["C"]["n_cases"]
    # The workflow used that table at C and the TSV datasets at A and B.
    assert not (run.work / "sites" / "C" / "datasets" / "phenotypes.tsv").exists()
    for site in ("A", "B"):
        assert is_reference(run.work / "sites" / site / "datasets" / "phenotypes.tsv")
    by_rule = {t["tags"]["fedgen_rule"]: t for t in run.node_tasks["C"]}
    assert by_rule["phenotypes_from_phenopackets"]["state"] == "COMPLETE"
    # The table is matched to the genotype samples (qc_phenotypes) before the GWAS uses it.
    matched = {i["path"] for i in by_rule["qc_phenotypes"]["inputs"]}
    assert "/fedgen/work/sites/C/phenotypes/phenopackets.tsv" in matched
    covar_inputs = {i["path"] for i in by_rule["gwas_covariates"]["inputs"]}
    assert "/fedgen/work/sites/C/qc/phenotypes.tsv" in covar_inputs
    counts = _counts(run.site_file("sites/C/qc/qc_counts.full.tsv"))
    n = run.truth["sites"]["C"]["n_samples"]
    assert int(counts[("phenotypes", "samples_matched")]) == n
    assert int(counts[("phenotypes", "rows_without_genotypes")]) == 0


def test_coordinator__holds_no_phenopackets_or_phenotype_tables(run: Run) -> None:
    for path in coordinator_files(run.work):
        head = magic(path)
        assert not head.startswith(b"#FID\tIID"), f"{path}: a phenotype table"
        data = path.read_bytes()
        assert b"phenopacketSchemaVersion" not in data, f"{path}: a phenopacket"
        assert b"iso8601duration" not in data, f"{path}: phenopacket content"
    folder = run.work / "sites" / "C" / "datasets" / "phenopackets"
    assert {p.name for p in folder.iterdir()} <= {".fedgen_ref.json", ".snakemake_timestamp"}
    assert is_reference(folder)


# ------------------------------------------------------------------------------------------
# the run's RO-Crate
# ------------------------------------------------------------------------------------------


def _crate(run: Run) -> dict[str, dict[str, Any]]:
    path = run.work / "provenance" / "ro-crate" / "ro-crate-metadata.json"
    return {e["@id"]: e for e in json.loads(path.read_text())["@graph"]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_crate__loads_with_rocrate_and_lists_the_three_sites(run: Run) -> None:
    from rocrate.rocrate import ROCrate

    crate = ROCrate(run.work / "provenance" / "ro-crate")
    assert crate.mainEntity is not None and crate.mainEntity.id == "Snakefile"
    assert "ComputationalWorkflow" in crate.mainEntity.type
    profiles = {p.id for p in crate.root_dataset["conformsTo"]}
    assert {
        "https://w3id.org/ro/wfrun/process/0.5",
        "https://w3id.org/ro/wfrun/workflow/0.5",
        "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
    } <= profiles
    registry = yaml.safe_load((run.work / "sites.yaml").read_text())
    for site in SITES:
        entity = crate.get(f"#site-{site}")
        assert entity is not None and entity.type == "Organization"
        assert entity["url"] == registry["sites"][site]["tes_url"]


def test_crate__every_site_task_of_the_run_matches_the_nodes(run: Run) -> None:
    graph = _crate(run)
    run_id = default_run_id(str(run.work))
    assert graph["#run"]["identifier"] == run_id
    assert graph["#run"]["actionStatus"] == "http://schema.org/CompletedActionStatus"
    actions = [e for e in graph.values() if e["@id"].startswith("#task-")]
    assert len({a["identifier"] for a in actions}) == len(actions)
    for site in SITES:
        listed = {t["id"] for t in run.node_tasks[site]}
        assert {t["tags"]["fedgen_run"] for t in run.node_tasks[site]} == {run_id}
        audit = [
            json.loads(line)
            for line in (run.node_state[site] / "audit.jsonl").read_text().splitlines()
        ]
        ended = {r["task"]: r["outcome"] for r in audit if r["action"] == "TaskEnded"}
        in_crate = {a["identifier"]: a for a in actions if a["agent"] == {"@id": f"#site-{site}"}}
        assert len(listed) >= 10, site
        assert set(in_crate) == listed == set(ended), site
        for task_id, outcome in ended.items():
            assert outcome == "COMPLETE"
            assert in_crate[task_id]["actionStatus"] == "http://schema.org/CompletedActionStatus"
        # Every egress file the airlock accepted is a result of its task, with the same hash.
        for rec in (r for r in audit if r["action"] == "Airlock" and r["accepted"]):
            results = [graph[r["@id"]] for r in in_crate[rec["task"]]["result"]]
            assert [f["sha256"] for f in results if f["name"] == rec["file"]] == [rec["sha256"]]
    # The rerun rebuilt the crate from the same run's tasks.
    first = {e["identifier"] for e in run.first_crate["@graph"] if e["@id"].startswith("#task-")}
    assert first == {a["identifier"] for a in actions}


def test_crate__records_the_purpose_and_each_site_duo_decision(run: Run) -> None:
    graph = _crate(run)
    config = yaml.safe_load(demo.CONFIGFILE.read_text())
    assert json.loads(graph["#purpose"]["value"]) == config["purpose"]
    assert graph["#run"]["object"] == [{"@id": "#purpose"}]
    registry = yaml.safe_load((run.work / "sites.yaml").read_text())
    for site in SITES:
        decision = graph[f"#duo-{site}"]
        assert decision["value"] == "allowed"
        assert graph[f"#site-{site}"]["subjectOf"] == {"@id": f"#duo-{site}"}
        terms = {
            t for ds in registry["sites"][site]["datasets"].values() for t in ds.get("duo", [])
        }
        cited = {graph[ref["@id"]]["termCode"] for ref in decision["valueReference"]}
        assert cited == terms, site
    # Site C's consent needs ethics approval (DUO:0000021): the action is listed.
    assert "IRB" in graph["#duo-C"]["description"]


def test_crate__meta_outputs_carry_their_sha256(run: Run) -> None:
    graph = _crate(run)
    crate_dir = run.work / "provenance" / "ro-crate"
    results = {r["@id"] for r in graph["#run"]["result"]}
    expected = [
        *(f"results/meta/{t}.{ext}" for t in ("qt", "bt") for ext in ("tsv.gz", "top_hits.tsv")),
        "results/qc/qc_counts.tsv",
    ]
    for rel in expected:
        assert rel in results, rel
        entity = graph[rel]
        assert entity["sha256"] == _sha256(run.work / rel), rel
        assert _sha256(crate_dir / rel) == entity["sha256"], rel
        assert int(entity["contentSize"]) == (run.work / rel).stat().st_size


def test_crate__no_token_in_any_coordinator_file_or_log(run: Run) -> None:
    files = [p for p in run.work.rglob("*") if p.is_file() and not p.is_symlink()]
    files += list(run.out.glob("*.log"))
    assert any(p.name == "ro-crate.log" for p in files)
    for path in files:
        data = path.read_bytes()
        for site, token in run.tokens.items():
            assert token.encode() not in data, f"{path} holds site {site}'s token"


def test_sites__ran_approved_code_with_checks_on_their_own_facts(run: Run) -> None:
    # Each site's steward approved this repository's workflow and registered its genotypes
    # (demo.federation): every task was checked against the approved templates, and every
    # release against the site's facts, rounded, and recorded with the approved release.
    for site, state in run.node_state.items():
        records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
        created = [r for r in records if r.get("action") == "CreateTask"]
        assert created and all(r["outcome"] == "QUEUED" for r in created), site
        egress = [r for r in records if r.get("action") == "Airlock"]
        assert egress and all(r["code"].startswith("approved:") for r in egress), site
        assert all(r["outcome"] == "accepted" for r in egress), site
        rounded = [r for r in records if r.get("action") == "Rounded"]
        assert rounded and all(r["digits"] == 4 for r in rounded), site
        assert (state / "datasets" / "genotypes.json").is_file()
