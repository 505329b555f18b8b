"""Task building, seen on the wire: the executor's POST bodies recorded by a forwarding proxy."""

from __future__ import annotations

import json

import pytest

from tests.reliability.faultproxy import FaultProxy

from .conftest import run_snakemake

SNAKEFILE = """
rule all:
    input:
        "out/x.txt",


rule make:
    input:
        "config/list.txt",
    output:
        "out/x.txt",
    log:
        "logs/make.log",
    threads: 2
    resources:
        site="A",
        mem_mb=2500,
        disk_mb=3000,
        runtime=7,
        queue="short",
    container:
        "docker://fedgen/tools:0.2"
    shell:
        "sort {input} > {output} 2> {log}"
"""


@pytest.mark.e2e
def test_build_task__maps_command_image_resources_paths_and_tags(tmp_path, one_site):
    site = one_site.sites["A"]
    proxy = FaultProxy(("127.0.0.1", site.node.port), rate=0.0)
    try:
        workdir = tmp_path / "wf"
        (workdir / "config").mkdir(parents=True)
        (workdir / "config" / "list.txt").write_text("b\na\n")
        (workdir / "Snakefile").write_text(SNAKEFILE)
        registry = one_site.write_registry(
            tmp_path / "sites.yaml", A={"tes_url": proxy.base_url + "/ga4gh/tes/v1"}
        )
        proc = run_snakemake(workdir, registry, env=one_site.env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        proxy.stop()
    posts = [
        json.loads(body)
        for line, body in zip(proxy.seen, proxy.bodies, strict=True)
        if line == "POST /ga4gh/tes/v1/tasks"
    ]
    assert len(posts) == 1
    task = posts[0]
    assert task["resources"] == {
        "cpu_cores": 2,
        "ram_gb": 2.5,
        "disk_gb": 3.0,
        "backend_parameters": {"runtime": "7", "queue": "short"},
    }
    main = task["executors"][1]
    assert main["image"] == "fedgen/tools:0.2" and main["workdir"] == "/fedgen/work"
    assert main["command"][:2] == ["bash", "-c"]
    # The rule's own command last, after any helper prefix (e.g. printing log tails on failure).
    assert main["command"][2].startswith("set -euo pipefail; ")
    assert main["command"][2].endswith("sort config/list.txt > out/x.txt 2> logs/make.log")
    assert task["executors"][0]["command"] == ["mkdir", "-p", "--", "logs", "out"]
    assert task["executors"][2]["command"][-2:] == ["out/x.txt", "logs/make.log"]
    assert task["inputs"] == [
        {
            "name": "config/list.txt",
            "content": "b\na\n",
            "path": "/fedgen/work/config/list.txt",
            "type": "FILE",
        }
    ]
    assert [o["url"] for o in task["outputs"]] == [
        f"file://{site.work}/out/x.txt",
        f"file://{site.work}/logs/make.log",
    ]
    assert task["tags"]["fedgen_rule"] == "make" and task["tags"]["fedgen_site"] == "A"
    assert "env" not in main and site.token not in json.dumps(task)
    # The site really ran it: the sorted file is at the site, a reference here.
    assert (site.area / "out" / "x.txt").read_text() == "a\nb\n"
