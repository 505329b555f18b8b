"""Three sites, three real nodes: references, egress, cross-site refusal, batched polling, secrets.

Each site's data directory holds a file of pseudo sample IDs; only a count table (accepted by the
node's airlock) may come back to the coordinator.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from snakemake_executor_plugin_fedgen.reference import read_reference

from .conftest import Federation, run_snakemake

SAMPLES = {"A": 21, "B": 34, "C": 55}

SNAKEFILE = """
import sys

SITES = ["A", "B", "C"]
FEDGEN = f"{sys.executable} -m snakemake_fedgen"


localrules: all, dataset_ref


rule all:
    input:
        expand("results/sumstats/{site}/counts.tsv", site=SITES),
        expand("work/{site}/summary.txt", site=SITES),
        expand("results/sumstats/{site}/chunks.tsv", site=SITES),


rule dataset_ref:
    output:
        "sites/{site}/datasets/samples.txt",
    shell:
        "{FEDGEN} sites ref --sites {config[sites]} --site {wildcards.site} "
        "--dataset samples --output {output}"


rule count:
    input:
        samples="sites/{site}/datasets/samples.txt",
        params="config/params.txt",
    output:
        "work/{site}/n.txt",
    log:
        "logs/{site}/count.log",
    threads: 2
    resources:
        mem_mb=1500,
        runtime=3,
        queue="short",
    shell:
        "grep -c IND {input.samples} > {output} 2> {log}; cat {input.params} >> {log}"


rule summary:
    input:
        "work/{site}/n.txt",
    output:
        "work/{site}/summary.txt",
    benchmark:
        "bench/{site}.tsv"
    shell:
        "sleep 1; cat {input} > {output}"


rule counts:
    input:
        "work/{site}/n.txt",
    output:
        "results/sumstats/{site}/counts.tsv",
    shell:
        "printf 'step\\\\tquantity\\\\tcount\\\\n' > {output}; "
        "printf 'qc\\\\tsamples\\\\t%s\\\\n' $(head -n1 {input}) >> {output}"


rule split:
    input:
        "sites/{site}/datasets/samples.txt",
    output:
        directory("work/{site}/chunks"),
    shell:
        "mkdir -p {output}; split -l 10 {input} {output}/c_"


rule chunks:
    input:
        "work/{site}/chunks",
    output:
        "results/sumstats/{site}/chunks.tsv",
    shell:
        "printf 'step\\\\tquantity\\\\tcount\\\\n' > {output}; "
        "printf 'split\\\\tchunks\\\\t%s\\\\n' $(ls {input} | wc -l) >> {output}"
"""

CROSS = """
rule steal:
    input:
        "work/A/n.txt",
    output:
        "work/B/stolen.txt",
    resources:
        site="B",
    shell:
        "cp {input} {output}"
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(tmp_path: Path, fed: Federation) -> tuple[Path, Path]:
    for name, site in fed.sites.items():
        lines = [f"IND{name}{i:04d}\t0\t1" for i in range(SAMPLES[name])]
        (site.root / "data" / "samples.txt").write_text("\n".join(lines) + "\n")
    registry = fed.write_registry(
        tmp_path / "sites.yaml",
        **{
            name: {"datasets": {"samples": {"url": f"file://{s.root}/data/samples.txt"}}}
            for name, s in fed.sites.items()
        },
    )
    # Site C takes one task at a time: the executor must hold the others back.
    data = yaml.safe_load(registry.read_text())
    data["sites"]["C"]["max_parallel_tasks"] = 1
    registry.write_text(yaml.safe_dump(data, sort_keys=False))
    workdir = tmp_path / "wf"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "params.txt").write_text("min_n: 5\n")
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "cross.smk").write_text(CROSS)
    return workdir, registry


@pytest.mark.e2e
def test_fedgen_executor__three_sites_keep_data_home_and_return_only_counts(tmp_path, federation):
    workdir, registry = prepare(tmp_path, federation)
    proc = run_snakemake(
        workdir, registry, "--config", f"sites={registry}", "--verbose", env=federation.env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    for name, site in federation.sites.items():
        # Site-held outputs: references to files at that site, checksums computed there.
        for rel in (f"work/{name}/n.txt", f"work/{name}/summary.txt", f"logs/{name}/count.log"):
            ref = read_reference(workdir / rel)
            assert ref is not None, rel
            held = site.held(ref.url)
            assert ref.site == name and ref.url == f"file://{site.work}/{rel}"
            assert held == site.area / rel
            assert ref.size == held.stat().st_size and ref.sha256 == sha256(held)
        assert (site.area / f"work/{name}/n.txt").read_text().strip() == str(SAMPLES[name])
        # The small coordinator file reached the task as content.
        assert "min_n: 5" in (site.area / f"logs/{name}/count.log").read_text()
        # Egress output: a real file, identical to what the node published.
        counts = workdir / f"results/sumstats/{name}/counts.tsv"
        assert read_reference(counts) is None
        published = site.egress_area / f"results/sumstats/{name}/counts.tsv"
        assert sha256(counts) == sha256(published)
        assert counts.read_text().splitlines()[1] == f"qc\tsamples\t{SAMPLES[name]}"
        # A directory() output: a directory holding the reference; the data stays at the site.
        chunks = read_reference(workdir / f"work/{name}/chunks")
        assert chunks is not None and chunks.is_directory and chunks.site == name
        n_chunks = -(-SAMPLES[name] // 10)
        assert len(list(site.held(chunks.url).iterdir())) == n_chunks
        chunk_table = (workdir / f"results/sumstats/{name}/chunks.tsv").read_text()
        assert chunk_table.splitlines()[1] == f"split\tchunks\t{n_chunks}"
        # Benchmark written from the task's own timing (the command sleeps 1 s).
        bench = (workdir / f"bench/{name}.tsv").read_text().splitlines()
        assert bench[0].startswith("s\th:m:s") and float(bench[1].split("\t")[0]) >= 1.0

    # No sample identifier ever reached the coordinator.
    ids = [f"IND{name}0".encode() for name in SAMPLES]
    for path in workdir.rglob("*"):
        if path.is_file():
            assert not any(i in path.read_bytes() for i in ids), path

    # Every request the coordinator made, from each node's audit log: one ListTasks per site
    # per status poll (+1 resume listing per site at start), one CreateTask per job and one
    # GetTask per job (the FULL document of its ended task); nothing else.
    cycles = re.findall(r"fedgen: status poll \d+ sites ([A-C,]+)", proc.stdout + proc.stderr)
    assert len(cycles) >= 3
    requests = {"ListTasks", "GetTask", "CreateTask", "CancelTask"}
    for name, site in federation.sites.items():
        polled = sum(1 for c in cycles if name in c.split(","))
        made = Counter(r["action"] for r in site.audit() if r["action"] in requests)
        # count, summary, counts, split, chunks: one task per job
        assert made == {"ListTasks": polled + 1, "CreateTask": 5, "GetTask": 5}, (name, made)

    # Task shape: direct command, resources mapped, tags set.
    count_task = next(
        t for t in _tasks(federation, "A", view="FULL") if t["tags"]["fedgen_rule"] == "count"
    )
    assert count_task["resources"]["cpu_cores"] == 2
    assert count_task["resources"]["ram_gb"] == 1.5
    # runtime/queue travel as backend_parameters; this node ignores them (TES allows that), so
    # they are not in the stored task.
    main = count_task["executors"][-2]["command"]
    assert (
        main[:2] == ["bash", "-c"]
        and main[2].startswith("set -euo pipefail; ")
        and "grep -c IND" in main[2]
    )
    assert count_task["executors"][-2]["workdir"] == "/fedgen/work"
    assert set(count_task["tags"]) == {
        "fedgen_run",
        "fedgen_job_key",
        "fedgen_rule",
        "fedgen_site",
        "fedgen_approval",  # what an approving node checks the commands with
        "fedgen_code",  # set by the node: this one runs unapproved code
    }
    assert count_task["tags"]["fedgen_code"] == "unapproved"

    # max_parallel_tasks=1 at C: every task was created after the previous one ended.
    live = 0
    for record in federation.sites["C"].audit():
        if record["action"] == "CreateTask":
            assert live == 0, "site C had two live tasks"
            live += 1
        elif record["action"] == "TaskEnded":
            live -= 1

    # Data of site A may not go to site B.
    cross = run_snakemake(workdir, registry, "-s", "cross.smk", env=federation.env)
    assert cross.returncode != 0
    assert "data of site A cannot go to site B" in cross.stdout + cross.stderr
    assert not (workdir / "work/B/stolen.txt").exists()

    # The tokens appear nowhere in what the run produced.
    produced = [workdir, *(s.root for s in federation.sites.values())]
    texts = [proc.stdout, proc.stderr, cross.stdout, cross.stderr]
    for token in federation.tokens():
        assert all(token not in t for t in texts)
        for root in produced:
            for path in root.rglob("*"):
                if path.is_file() and path.name != "tokens.yaml":
                    assert token.encode() not in path.read_bytes(), path


def _tasks(fed: Federation, name: str, *, view: str = "BASIC") -> list[dict]:
    import httpx

    site = fed.sites[name]
    resp = httpx.get(
        site.node.url + "/tasks",
        params={"view": view, "page_size": 1000},
        headers={"Authorization": f"Bearer {site.token}"},
    )
    resp.raise_for_status()
    return resp.json().get("tasks", [])
