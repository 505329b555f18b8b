"""A small three-site shell-only workflow on real nodes, and how to compare two runs of it.

Kept small (12 site tasks) so fault and crash runs fit a 2-core CI machine; the federated GWAS
workflow runs the same executor code paths with heavier tools.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import yaml
from snakemake_executor_plugin_fedgen.reference import read_reference

from tests.conftest import bwrap_runtime
from tests.executor.conftest import Federation, SiteNode, start_site
from tests.site_paths import held_file

SAMPLES = {"A": 21, "B": 34, "C": 55}
SITE_TASKS = 12  # per run: 3 sites x (3 shards + 1 counts table)

SNAKEFILE = r"""
import sys

SITES = ["A", "B", "C"]
FEDGEN = f"{sys.executable} -m snakemake_fedgen"


localrules: all, dataset_ref, total


rule all:
    input:
        "results/total.tsv",


rule dataset_ref:
    output:
        "sites/{site}/datasets/samples.txt",
    shell:
        "{FEDGEN} sites ref --sites {config[sites]} --site {wildcards.site} "
        "--dataset samples --output {output}"


rule shard:
    input:
        "sites/{site}/datasets/samples.txt",
    output:
        "work/{site}/shard{k}.txt",
    shell:
        "sleep {config[sleep]}; awk 'NR % 3 == {wildcards.k}' {input} > {output}"


rule counts:
    input:
        expand("work/{{site}}/shard{k}.txt", k=range(3)),
    output:
        "results/sumstats/{site}/counts.tsv",
    shell:
        "printf 'step\\tquantity\\tcount\\n' > {output}; "
        "for f in {input}; do printf 'shard\\t%s\\t%s\\n' $(basename $f .txt) $(wc -l < $f); "
        "done >> {output}"


rule total:
    input:
        expand("results/sumstats/{site}/counts.tsv", site=SITES),
    output:
        "results/total.tsv",
    shell:
        "cat {input} | sort > {output}"
"""


def start_federation(base: Path) -> Federation:
    """Three real bwrap nodes (host only with FEDGEN_NO_BWRAP=1) with a samples file each."""
    fed = Federation()
    runtime = bwrap_runtime()
    for name in "ABC":
        site = start_site(base, name, runtime=runtime)
        lines = [f"IND{name}{i:04d}\t0\t1" for i in range(SAMPLES[name])]
        (site.root / "data" / "samples.txt").write_text("\n".join(lines) + "\n")
        fed.sites[name] = site
        fed.env[site.token_env] = site.token
    return fed


def stop_federation(fed: Federation) -> None:
    for site in fed.sites.values():
        site.node.stop()


def write_workflow(
    workdir: Path, fed: Federation, *, sleep: float = 0, urls: dict[str, str] | None = None
) -> tuple[Path, list[str]]:
    """Write the Snakefile and registry; ``urls`` maps a site to a base URL replacing its node's.

    Returns the registry path and the snakemake arguments for a run.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    per_site: dict[str, dict[str, Any]] = {}
    for name, site in fed.sites.items():
        entry: dict[str, Any] = {
            "datasets": {"samples": {"url": f"file://{site.root}/data/samples.txt"}}
        }
        if urls and name in urls:
            entry["tes_url"] = f"{urls[name]}/ga4gh/tes/v1"
            entry["egress_read_url"] = f"{urls[name]}/fedgen/v1/egress"
        per_site[name] = entry
    registry = fed.write_registry(workdir.parent / f"{workdir.name}-sites.yaml", **per_site)
    return registry, ["--config", f"sites={registry}", f"sleep={sleep:g}"]


def results(workdir: Path) -> dict[str, str]:
    """What a run produced: sha256 of coordinator files, and of the site file behind a reference."""
    out = {}
    for path in sorted((workdir / "results").rglob("*")) + sorted((workdir / "work").rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(workdir))
        ref = read_reference(path)
        if ref is None:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            # The node keeps the file in the coordinator's area of the write root.
            held = held_file(ref.url, _write_roots(workdir, ref.site))
            assert hashlib.sha256(held.read_bytes()).hexdigest() == ref.sha256, rel
            out[rel] = f"{ref.site}:{ref.sha256}"
    return out


def _write_roots(workdir: Path, site: str) -> list[Path]:
    """The site's work and egress roots, from the registry ``write_workflow`` wrote."""
    registry = yaml.safe_load((workdir.parent / f"{workdir.name}-sites.yaml").read_text())
    entry = registry["sites"][site]
    return [Path(unquote(urlparse(entry[k]).path)) for k in ("work_url", "egress_url")]


def expected_total() -> str:
    """results/total.tsv computed without the workflow."""
    rows = []
    for _name, n in SAMPLES.items():
        for k in range(3):
            rows.append(f"shard\tshard{k}\t{sum(1 for i in range(1, n + 1) if i % 3 == k)}")
    rows += ["step\tquantity\tcount"] * 3
    return "\n".join(sorted(rows)) + "\n"


def tasks_at(site: SiteNode) -> list[dict[str, Any]]:
    """Every task of the coordinator's caller at the node (BASIC view)."""
    resp = httpx.get(
        f"{site.node.url}/tasks",
        params={"view": "BASIC", "page_size": 2048},
        headers={"Authorization": f"Bearer {site.token}"},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json().get("tasks") or []


def tasks_per_key(site: SiteNode, *, state: str | None = None) -> Counter[str]:
    return Counter(
        t["tags"]["fedgen_job_key"] for t in tasks_at(site) if state is None or t["state"] == state
    )


def registry_data(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())
