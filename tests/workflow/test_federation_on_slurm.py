"""One site on Slurm, two on bwrap: the federated GWAS runs and gives the same meta-analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from snakemake_fedgen import demo
from tests.slurm_cluster import PARTITION, SlurmCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.needs_bwrap]

SEED = 7
META = "results/meta/qt.tsv.gz"


def _run(out: Path, data: Path, site_config: dict | None) -> bytes:
    work = out / "coordinator"
    with demo.federation(data, out / "nodes", work / "sites.yaml", site_config=site_config) as s:
        env = demo.tool_env()
        env.update({site.token_env: site.token for site in s.values()})
        demo.run_snakemake(
            demo.snakemake_command(work), env=env, log_path=out / "snakemake.log", show=False
        )
        if site_config:
            name = next(iter(site_config))
            assert "Slurm job" in s[name].node.log_tail(10**7), "the Slurm site ran no job"
    return (work / META).read_bytes()


def test_federation__site_on_slurm_gives_the_same_meta_analysis_as_all_bwrap(
    tmp_path, slurm_cluster: SlurmCluster
):
    data = tmp_path / "data"
    demo.simulate(data, seed=SEED, scale="tiny")
    bwrap = _run(tmp_path / "bwrap", data, None)
    task_root = tmp_path / "shared-tasks"
    task_root.mkdir()
    slurm_site = {
        "runtime": "slurm",
        "cpu_cores": slurm_cluster.cpus,
        "slurm": {
            "task_root": str(task_root),
            "partition": PARTITION,
            "poll_seconds": 0.5,
            "conf": str(slurm_cluster.conf),
        },
    }
    sites = sorted(yaml.safe_load((data / "sites.yaml").read_text())["sites"])
    mixed = _run(tmp_path / "slurm", data, {sites[0]: slurm_site})
    assert mixed == bwrap
