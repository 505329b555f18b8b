"""The coordinator's own steps find ``fedgen`` without an activated venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Federation, run_snakemake

SNAKEFILE = """
localrules:
    version,


rule version:
    output:
        "version.txt",
    shell:
        "fedgen --version > {output}"
"""


@pytest.mark.e2e
def test_localrule__runs_fedgen_with_a_path_without_the_venv(tmp_path: Path, one_site: Federation):
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    registry = one_site.write_registry(tmp_path / "sites.yaml")
    # What a user's shell has when the venv is not activated.
    env = {**one_site.env, "PATH": "/usr/bin:/bin"}
    proc = run_snakemake(workdir, registry, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "version.txt").read_text().startswith("fedgen ")
