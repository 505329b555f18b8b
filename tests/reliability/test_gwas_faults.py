"""The real federated GWAS workflow (simulated tiny federation, three bwrap nodes) through the
fault proxy: every result file is byte-identical to a clean run's, each node holds exactly one
completed task per job key, every downloaded summary file is the one the site published, and
the meta-analysis still finds the simulated causal locus."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pytest
import yaml

from snakemake_fedgen import demo
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.scenarios import observed
from tests.site_paths import caller_area

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt") as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("##")]
    header = lines[0].lstrip("#").split("\t")
    return [dict(zip(header, ln.split("\t"), strict=True)) for ln in lines[1:]]


def _run_federation(out: Path, *, faulty: bool) -> dict:
    """Simulate, start three nodes, run the workflow (through fault proxies if ``faulty``).

    Returns what the checks need while the nodes still run: proxy hits, tasks per site and
    the sites' published egress directories.
    """
    data, work = out / "data", out / "coordinator"
    seen: dict = {"hits": Counter(), "tasks": {}, "egress": {}}
    seen["truth"] = demo.simulate(data, seed=7, scale="tiny")
    with demo.federation(data, out / "nodes", work / "sites.yaml") as sites:
        registry = yaml.safe_load((work / "sites.yaml").read_text())
        proxies = {}
        for i, (name, site) in enumerate(sites.items()):
            if not faulty:
                break
            proxies[name] = FaultProxy(
                ("127.0.0.1", site.node.port),
                rate=0.1,
                seed=100 + i,
                slow_seconds=0.5,
                forced={
                    "POST /ga4gh/tes/v1/tasks": ["drop_after", "503_after", "drop_before"],
                    "GET /fedgen/v1/egress": ["truncate", "drop_after"],
                },
            )
            registry["sites"][name]["tes_url"] = f"{proxies[name].base_url}/ga4gh/tes/v1"
            registry["sites"][name]["egress_read_url"] = (
                f"{proxies[name].base_url}/fedgen/v1/egress"
            )
        (work / "sites.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        try:
            demo.run_snakemake(
                [*demo.snakemake_command(work), "--fedgen-max-attempts", "10"],
                env=env,
                log_path=out / "snakemake.log",
                show=False,
            )
        finally:
            for proxy in proxies.values():
                proxy.stop()
        seen["hits"] = sum((p.hits for p in proxies.values()), Counter())
        for name, site in sites.items():
            seen["tasks"][name] = httpx.get(
                f"{site.node.url}/tasks",
                params={"view": "BASIC", "page_size": 2048},
                headers={"Authorization": f"Bearer {site.token}"},
            ).json()["tasks"]
            seen["egress"][name] = Path(
                unquote(urlparse(registry["sites"][name]["egress_url"]).path)
            )
    return seen


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_federated_gwas__through_faults_identical_to_clean_run(tmp_path):
    # Both runs at once (same code, same seed): the wall time of one run on two cores.
    with ThreadPoolExecutor(2) as pool:
        clean_f = pool.submit(_run_federation, tmp_path / "clean", faulty=False)
        faulty_f = pool.submit(_run_federation, tmp_path / "faulty", faulty=True)
        clean, faulty = clean_f.result(), faulty_f.result()
    hits = faulty["hits"]
    assert hits[("drop_after", "POST /tasks")] >= 3 and hits[("truncate", "GET egress")] >= 3
    work = tmp_path / "faulty" / "coordinator"
    results = {
        str(p.relative_to(work)): _sha(p)
        for p in sorted((work / "results").rglob("*"))
        if p.is_file()
    }
    clean_work = tmp_path / "clean" / "coordinator"
    assert len(results) >= 20
    assert results == {
        str(p.relative_to(clean_work)): _sha(p)
        for p in sorted((clean_work / "results").rglob("*"))
        if p.is_file()
    }
    for name, tasks in faulty["tasks"].items():
        per_key = Counter(t["tags"]["fedgen_job_key"] for t in tasks)
        assert set(per_key.values()) == {1}, (name, per_key)
        assert {t["state"] for t in tasks} == {"COMPLETE"}, name
        assert len(per_key) == len(clean["tasks"][name])
        # Every summary file that came back is exactly what the site's airlock published.
        downloaded = sorted((work / "results" / "sumstats" / name).iterdir())
        assert downloaded
        for path in downloaded:
            published = caller_area(faulty["egress"][name]) / path.relative_to(work)
            assert _sha(path) == _sha(published), path
    causal = max(faulty["truth"]["causal_variants"], key=lambda c: c["variance_explained"])
    rows = _rows(work / "results" / "meta" / "qt.tsv.gz")
    top = max(rows, key=lambda r: float(r["neg_log_10_p_value"]))
    assert abs(int(top["base_pair_location"]) - causal["pos"]) <= 100_000
    observed("gwas_faults", (tmp_path / "faulty" / "snakemake.log").read_text())
