"""A coordinator with only Snakemake and the executor plugin runs a workflow against a real node.

The venv is new and holds ``snakemake`` plus ``snakemake-executor-plugin-fedgen`` built from this
repository (not editable): the test checks that neither the tools distribution nor FastAPI,
msprime, matplotlib, NumPy or pandas came with it, then runs a two-rule workflow whose site job
runs at a ``fedgen node`` (started from the project's own environment, as a site would) and whose
released counts table comes back through the node's airlock.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from importlib import metadata
from pathlib import Path

import pytest

from tests.executor.conftest import Federation, start_site

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "snakemake-executor-plugin-fedgen"
HEAVY = ("snakemake-fedgen", "fastapi", "uvicorn", "msprime", "stdpopsim", "matplotlib", "numpy")

SNAKEFILE = """
from snakemake_executor_plugin_fedgen.sites import write_dataset_reference


localrules: all, dataset_ref


rule all:
    input:
        "results/sumstats/A/counts.tsv",


rule dataset_ref:
    output:
        "sites/A/datasets/samples.txt",
    run:
        write_dataset_reference(config["sites"], "A", "samples", output[0])


rule count:
    input:
        "sites/A/datasets/samples.txt",
    output:
        "results/sumstats/A/counts.tsv",
    resources:
        site="A",
    shell:
        "printf 'step\\\\tquantity\\\\tcount\\\\n' > {output}; "
        "printf 'qc\\\\tsamples\\\\t%s\\\\n' $(grep -c IND {input}) >> {output}"
"""


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with Snakemake (the version under test here) and the plugin only."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    _pip(python, f"snakemake=={metadata.version('snakemake')}", str(PLUGIN))
    return python


@pytest.mark.slow
def test_plugin_only_venv__runs_workflow_against_node(
    plugin_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = subprocess.run(
        [str(plugin_venv), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "snakemake-executor-plugin-fedgen" in installed
    assert sorted(installed & set(HEAVY)) == []

    fed = Federation()
    site = start_site(tmp_path / "sites", "A")
    fed.sites["A"] = site
    try:
        (site.root / "data" / "samples.txt").write_text(
            "".join(f"IND{i:04d}\t0\t1\n" for i in range(17))
        )
        registry = fed.write_registry(
            tmp_path / "sites.yaml",
            A={"datasets": {"samples": {"url": f"file://{site.root}/data/samples.txt"}}},
        )
        workdir = tmp_path / "wf"
        workdir.mkdir()
        (workdir / "Snakefile").write_text(SNAKEFILE)
        # Only the new venv's bin on PATH: nothing from the project's environment can be used.
        env = {
            "PATH": f"{plugin_venv.parent}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(tmp_path)),
            site.token_env: site.token,
        }
        run = subprocess.run(
            [
                str(plugin_venv.parent / "snakemake"),
                "--executor",
                "fedgen",
                "--fedgen-sites",
                str(registry),
                "--config",
                f"sites={registry}",
                "--jobs",
                "2",
                "--fedgen-poll-interval-max",
                "1",
            ],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        counts = (workdir / "results" / "sumstats" / "A" / "counts.tsv").read_text()
        assert counts == "step\tquantity\tcount\nqc\tsamples\t17\n"
        # The job really ran at the node: its audit log holds the task's end.
        assert any(e.get("action") == "TaskEnded" for e in site.audit())
    finally:
        site.node.stop()
