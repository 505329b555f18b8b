"""A coordinator file too large and binary for TES content reaches a site through its ingress.

Real Snakemake runs with ``--executor fedgen`` against a real node: a rule at site A takes a
2 MiB binary coordinator input (per-variant coefficients, say), which a node without ingress
(as Funnel or TESK) refuses with the old message, and a node with ingress receives
byte-identical. Rerunning reuses the finished task (same job key) without uploading again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import StorageError
from snakemake_executor_plugin_fedgen.reference import read_reference
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.staging import input_for, upload_of

from .conftest import Federation, run_snakemake, start_site

SNAKEFILE = """
rule copy_at_site:
    input:
        "coef.bin",
    output:
        "held/coef_copy.bin",
    resources:
        site="A",
    shell:
        "cp {input} {output}"
"""


def _workflow(tmp_path: Path) -> tuple[Path, bytes]:
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    data = b"\x1f\x8b\x08\x00" + secrets.token_bytes(2 * 1024 * 1024)
    (workdir / "coef.bin").write_bytes(data)
    return workdir, data


@pytest.mark.e2e
def test_binary_2mib_coordinator_input__arrives_byte_identical_and_rerun_reuses_it(
    tmp_path: Path, one_site: Federation
):
    site = one_site.sites["A"]
    workdir, data = _workflow(tmp_path)
    digest = hashlib.sha256(data).hexdigest()
    registry = one_site.write_registry(tmp_path / "sites.yaml")
    proc = run_snakemake(workdir, registry, env=one_site.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"uploaded coef.bin ({len(data)} bytes) to the ingress of site A" in proc.stderr
    ref = read_reference(str(workdir / "held" / "coef_copy.bin"))
    assert ref is not None and ref.site == "A"
    # The file the task wrote at the site is the coordinator's, byte for byte.
    assert site.held(ref.url).read_bytes() == data
    assert (ref.size, ref.sha256) == (len(data), digest)
    [task] = [r for r in site.audit() if r["action"] == "IngressInput"]
    assert (task["sha256"], task["bytes"]) == (digest, len(data))

    # Rerun: the job key is the content's, as for inline content: the finished task is reused
    # and nothing is uploaded again.
    again = run_snakemake(workdir, registry, "--forceall", env=one_site.env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing finished task" in again.stderr
    assert "uploaded coef.bin" not in again.stderr
    puts = [r["outcome"] for r in site.audit() if r["action"] == "PutIngress"]
    assert puts == ["201"], puts


@pytest.mark.e2e
def test_site_without_ingress__refused_with_the_content_message(tmp_path: Path, monkeypatch):
    workdir, _ = _workflow(tmp_path)
    site = start_site(tmp_path / "sites", "A", max_ingress_bytes=0)
    try:
        fed = Federation(sites={"A": site}, env={site.token_env: site.token})
        monkeypatch.setenv(site.token_env, site.token)
        proc = run_snakemake(workdir, fed.write_registry(tmp_path / "sites.yaml"), env=fed.env)
        assert proc.returncode != 0
        assert "only files up to 128 KiB travel to site A as task content" in proc.stderr
        audit = (site.node.state_dir / "audit.jsonl").read_text().splitlines()
        assert not [r for r in map(json.loads, audit) if r["action"] == "CreateTask"]
    finally:
        site.node.stop()


def test_input_for__small_text_as_content_larger_or_binary_through_ingress(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = Site(name="A", tes_url="http://127.0.0.1:1/ga4gh/tes/v1", work_url="file:///w")
    files = {
        "small.txt": b"x=1\n",
        "small.gz": b"\x1f\x8b\x08\x00binary",
        "large.tsv": b"variant\tbeta\n" * 20_000,
    }
    for name, data in files.items():
        Path(name).write_bytes(data)
    asked: list[str] = []

    def limit(s: Site) -> int | None:
        asked.append(s.name)
        return 1 << 20

    for name, data in files.items():
        spec, fingerprint = input_for(name, site=site, rule="r", ingress_limit=limit)
        digest = hashlib.sha256(data).hexdigest()
        # The job key's fingerprint is the content's sha256 however the file travels.
        assert fingerprint == f"content:{digest}"
        upload = upload_of(spec, name)
        if name == "small.txt":
            assert spec.content == "x=1\n" and upload is None
        else:
            assert spec.url == f"fedgen-ingress:sha256:{digest}" and spec.content is None
            assert upload is not None and (upload.sha256, upload.size) == (digest, len(data))
    assert asked == ["A", "A"]  # the site is asked only for files that need ingress
    with pytest.raises(StorageError, match="takes uploads up to 100 bytes"):
        input_for("large.tsv", site=site, rule="r", ingress_limit=lambda s: 100)
    with pytest.raises(StorageError, match="TES content must be text"):
        input_for("small.gz", site=site, rule="r", ingress_limit=lambda s: None)
