"""Failures are clear: failed tasks, refused rules, missing sites, large files, silent sites."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.reference import Reference, write_reference

from .conftest import Federation, run_snakemake, snakemake_cmd, start_site


def workflow(tmp_path: Path, fed: Federation, snakefile: str, **registry) -> tuple[Path, Path]:
    workdir = tmp_path / "wf"
    workdir.mkdir(exist_ok=True)
    (workdir / "Snakefile").write_text(snakefile)
    return workdir, fed.write_registry(tmp_path / "sites.yaml", **registry)


@pytest.mark.e2e
def test_fedgen_executor__failed_task_reports_site_task_state_exit_code_and_stderr(
    tmp_path, one_site
):
    workdir, registry = workflow(
        tmp_path,
        one_site,
        'rule boom:\n    output: "x.txt"\n    resources: site="A"\n'
        '    shell: "echo first line >&2; echo the real reason >&2; exit 3"\n',
    )
    proc = run_snakemake(workdir, registry, "--retries", "1", env=one_site.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "site A: task " in out and "(rule boom) ended in state EXECUTOR_ERROR" in out
    assert "with exit code 3" in out and "the real reason" in out
    # Snakemake's retries apply: two attempts, two tasks.
    assert sum(1 for r in one_site.sites["A"].audit() if r["action"] == "CreateTask") == 2
    assert not (workdir / "x.txt").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ('    run:\n        open(output[0], "w").write("x")\n', "run:"),
        ('    script: "s.py"\n', "script:"),
    ],
)
def test_fedgen_executor__non_shell_rule_at_site_is_refused(tmp_path, one_site, body, kind):
    snakefile = f'rule r:\n    output: "x.txt"\n    resources: site="A"\n{body}'
    workdir, registry = workflow(tmp_path, one_site, snakefile)
    (workdir / "s.py").write_text("")
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode != 0
    assert f"rule r uses {kind}" in proc.stderr and "Rewrite it with shell:" in proc.stderr


@pytest.mark.e2e
def test_fedgen_executor__job_without_site_says_what_to_do(tmp_path, one_site):
    workdir, registry = workflow(
        tmp_path, one_site, 'rule r:\n    output: "x.txt"\n    shell: "touch {output}"\n'
    )
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode != 0
    assert "rule r (job 0) names no site" in proc.stderr
    assert "localrule: True" in proc.stderr and "default_site" in proc.stderr


@pytest.mark.e2e
def test_fedgen_executor__coordinator_input_above_the_ingress_cap_is_refused(tmp_path, monkeypatch):
    # Too large for content, and above this site's ingress cap (the refusal without any
    # ingress: tests/executor/test_ingress_staging.py).
    site = start_site(tmp_path / "sites", "A", max_ingress_bytes=200_000)
    fed = Federation(sites={"A": site}, env={site.token_env: site.token})
    monkeypatch.setenv(site.token_env, site.token)
    try:
        workdir, registry = workflow(
            tmp_path,
            fed,
            'rule r:\n    input: "big.bin"\n    output: "x.txt"\n    resources: site="A"\n'
            '    shell: "wc -c {input} > {output}"\n',
        )
        (workdir / "big.bin").write_bytes(b"x" * 200_001)
        proc = run_snakemake(workdir, registry, env=fed.env)
        assert proc.returncode != 0
        assert "input big.bin is a 200001-byte coordinator file" in proc.stderr
        assert "site A takes uploads up to 200000 bytes" in proc.stderr
        assert not any(r["action"] in ("CreateTask", "PutIngress") for r in site.audit())
    finally:
        site.node.stop()


@pytest.mark.e2e
def test_fedgen_executor__silent_site_fails_its_jobs_after_deadline(tmp_path, one_site):
    site = one_site.sites["A"]
    workdir, registry = workflow(
        tmp_path,
        one_site,
        'rule r:\n    output: "x.txt"\n    resources: site="A"\n'
        '    shell: "sleep 60; touch {output}"\n',
    )
    cmd = snakemake_cmd(workdir, registry, "--fedgen-site-deadline", "3")
    env = {**os.environ, **one_site.env}
    log = workdir / "coordinator.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not any(r["action"] == "CreateTask" for r in site.audit()):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        site.node.kill()  # the site disappears without a word
        start = time.monotonic()
        assert proc.wait(120) != 0
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "site A has not answered for" in text and "--fedgen-site-deadline" in text
    assert elapsed >= 3


@pytest.mark.e2e
def test_fedgen_executor__localrule_reading_site_data_is_refused_before_any_task(
    tmp_path, one_site
):
    snakefile = """
localrules: show, peek


rule all:
    input:
        "shown.txt",
        "peeked.txt",
        "ok.txt",


rule make:
    output:
        "work/held.txt",
        "results/sumstats/A/table.tsv",
    resources:
        site="A",
    shell:
        "echo x > {output[0]}; printf 'step\\tquantity\\tcount\\nqc\\tn\\t9\\n' > {output[1]}"


rule ok:
    input:
        "results/sumstats/A/table.tsv",
    output:
        "ok.txt",
    localrule: True
    shell:
        "cp {input} {output}"


rule show:
    input:
        "work/held.txt",
    output:
        "shown.txt",
    shell:
        "cp {input} {output}"


rule peek:
    input:
        "old/ref.txt",
    output:
        "peeked.txt",
    shell:
        "cp {input} {output}"
"""
    # One wrong localrule per run, so the message to expect is certain.
    workdir, registry = workflow(
        tmp_path, one_site, snakefile.replace('        "peeked.txt",\n', "")
    )
    (workdir / "old").mkdir()
    write_reference(workdir / "old" / "ref.txt", Reference(site="A", url="file:///x/ref.txt"))
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode != 0
    assert "localrule show reads work/held.txt, which is held at site A" in proc.stderr
    assert not any(r["action"] == "CreateTask" for r in one_site.sites["A"].audit())

    # Without `show`, the existing reference read by `peek` is refused the same way, while
    # `ok` (an egress output) is allowed.
    (workdir / "Snakefile").write_text(
        snakefile.replace('        "shown.txt",\n', "").replace(
            "localrules: show, peek", "localrules: peek"
        )
    )
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode != 0
    assert "localrule peek reads old/ref.txt, which is held at site A" in proc.stderr

    (workdir / "Snakefile").write_text(
        snakefile.replace('        "shown.txt",\n', "").replace('        "peeked.txt",\n', "")
    )
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "ok.txt").read_text() == "step\tquantity\tcount\nqc\tn\t9\n"
