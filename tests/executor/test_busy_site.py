"""A site whose queue is full for this caller (429): the executor waits and submits again."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Federation, run_snakemake, start_site

SNAKEFILE = """
rule all:
    input:
        expand("parts/{i}.txt", i=range(5)),


rule part:
    output:
        "parts/{i}.txt",
    resources:
        site="A",
    shell:
        "sleep 1; echo {wildcards.i} > {output}"
"""


@pytest.mark.e2e
def test_fedgen_executor__site_answering_429_gets_the_job_later(tmp_path: Path) -> None:
    # One core and one waiting task per caller: of five jobs sent at once the node takes two
    # (one running, one queued) and answers 429 to the others until there is room.
    site = start_site(
        tmp_path / "sites", "A", runtime="bwrap", cpu_cores=1, max_queued_per_caller=1
    )
    fed = Federation()
    fed.sites["A"] = site
    fed.env[site.token_env] = site.token
    try:
        workdir = tmp_path / "wf"
        workdir.mkdir()
        (workdir / "Snakefile").write_text(SNAKEFILE)
        registry = fed.write_registry(tmp_path / "sites.yaml", A={"max_parallel_tasks": 5})
        proc = run_snakemake(workdir, registry, "--jobs", "5", env=fed.env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        for i in range(5):
            assert (site.area / f"parts/{i}.txt").read_text() == f"{i}\n"
        log = proc.stdout + proc.stderr
        assert "answered 429" in log and "the job waits and is submitted again" in log
        busy = [r for r in site.audit() if r["action"] == "CreateTask" and r["outcome"] == "429"]
        created = [r for r in site.audit() if r["action"] == "CreateTask" and r.get("task")]
        assert busy, "the node never answered 429: the test did not exercise the wait"
        assert len(created) == 5  # each job's task created exactly once
    finally:
        site.node.stop()
