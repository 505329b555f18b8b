"""The site registry: schema validation with site/key/line errors, tokens read at use time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import AuthError, RegistryError
from snakemake_executor_plugin_fedgen.reference import read_reference
from snakemake_executor_plugin_fedgen.sites import glob_match, load_registry

GOOD = {
    "version": 1,
    "default_site": None,
    "sites": {
        "A": {
            "tes_url": "http://127.0.0.1:8101/ga4gh/tes/v1",
            "token_env": "FEDGEN_TOKEN_A",
            "work_url": "file:///srv/siteA/work",
            "egress_url": "file:///srv/siteA/egress",
            "egress_read_url": "http://127.0.0.1:8101/fedgen/v1/egress",
            "egress": "allow-list",
            "egress_allow": ["results/sumstats/**"],
            "default_image": "fedgen/tools:0.1",
            "max_parallel_tasks": 4,
            "datasets": {
                "genotypes": {
                    "url": "file:///srv/siteA/data/genotypes.vcf.gz",
                    "duo": ["DUO:0000042"],
                    "assembly": "GRCh38",
                }
            },
        },
        "cloud": {
            "tes_url": "https://tes.example.org/ga4gh/tes/v1",
            "work_url": "s3://bucket/work",
            "egress": "all",
        },
    },
}


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_load_registry__reads_sites_datasets_and_defaults(tmp_path):
    reg = load_registry(write(tmp_path, GOOD))
    assert list(reg.sites) == ["A", "cloud"]
    a = reg.site("A")
    assert a.datasets["genotypes"].duo == ("DUO:0000042",)
    assert reg.site("cloud").max_parallel_tasks == 4
    assert reg.site("cloud").egress_allow == ("results/sumstats/**",)


def test_load_registry__unknown_key_names_site_line_and_suggestion(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"]["A"]["tes_ulr"] = data["sites"]["A"].pop("tes_url")
    path = write(tmp_path, data)
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    msg = str(err.value)
    assert "site A" in msg and "'tes_ulr'" in msg and "did you mean 'tes_url'" in msg
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "tes_ulr" in t)
    assert f"line {line}" in msg


def test_load_registry__wrong_type_names_site_and_key(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"]["A"]["max_parallel_tasks"] = "four"
    with pytest.raises(RegistryError, match=r"site A key max_parallel_tasks: 'four' is not"):
        load_registry(write(tmp_path, data))


def test_load_registry__unknown_default_site_is_refused(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["default_site"] = "a"
    with pytest.raises(RegistryError, match="default_site 'a' is not a site"):
        load_registry(write(tmp_path, data))


def test_load_registry__bad_dataset_duo_code_names_site_and_key(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"]["A"]["datasets"]["genotypes"]["duo"] = ["GRU"]
    with pytest.raises(RegistryError, match=r"site A key datasets.genotypes.duo.0"):
        load_registry(write(tmp_path, data))


def test_site_token__is_read_from_env_at_use_time(tmp_path, monkeypatch):
    site = load_registry(write(tmp_path, GOOD)).site("A")
    monkeypatch.delenv("FEDGEN_TOKEN_A", raising=False)
    with pytest.raises(AuthError, match="FEDGEN_TOKEN_A"):
        site.token()
    monkeypatch.setenv("FEDGEN_TOKEN_A", "s3cr3t-value")
    assert site.token() == "s3cr3t-value"


def test_site_token__token_command_output_is_used_and_failure_hides_output(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    del data["sites"]["A"]["token_env"]
    data["sites"]["A"]["token_command"] = ["sh", "-c", "echo fresh-jwt"]
    data["sites"]["cloud"]["token_command"] = "sh -c 'echo leaked-part; exit 3'"
    reg = load_registry(write(tmp_path, data))
    assert reg.site("A").token() == "fresh-jwt"
    with pytest.raises(AuthError) as err:
        reg.site("cloud").token()
    assert "exited with 3" in str(err.value) and "leaked-part" not in str(err.value)


def test_glob_match__double_star_spans_directories_single_star_does_not():
    assert glob_match("results/sumstats/A/x.tsv.gz", "results/sumstats/**")
    assert glob_match("results/sumstats/A/x.tsv", "results/sumstats/*/*.tsv")
    assert not glob_match("results/sumstats/A/sub/x.tsv", "results/sumstats/*/*.tsv")
    assert not glob_match("results/qc/A/x.tsv", "results/sumstats/**")


def test_site_is_egress__egress_all_lets_everything_leave(tmp_path):
    reg = load_registry(write(tmp_path, GOOD))
    assert reg.site("cloud").is_egress("work/anything.bed")
    assert not reg.site("A").is_egress("work/anything.bed")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "sites", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_sites_cli_validate__ok_and_error_exit_codes(tmp_path):
    path = write(tmp_path, GOOD)
    ok = run_cli("validate", str(path))
    assert ok.returncode == 0 and "valid (2 sites" in ok.stdout
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"]["A"]["egress"] = "some"
    bad = run_cli("validate", str(write(tmp_path, data)))
    assert bad.returncode == 1 and "site A key egress" in bad.stderr


def test_sites_cli_ref__writes_dataset_reference(tmp_path):
    path = write(tmp_path, GOOD)
    out = tmp_path / "sites" / "A" / "datasets" / "genotypes.vcf.gz"
    proc = run_cli(
        "ref", "--sites", str(path), "--site", "A", "--dataset", "genotypes", "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    ref = read_reference(out)
    assert ref is not None and ref.site == "A" and ref.dataset == "genotypes"
    assert ref.url == "file:///srv/siteA/data/genotypes.vcf.gz" and ref.sha256 is None
    missing = run_cli(
        "ref", "--sites", str(path), "--site", "A", "--dataset", "genotype", "--output", str(out)
    )
    assert missing.returncode == 1 and "did you mean 'genotypes'" in missing.stderr


@pytest.mark.e2e
def test_sites_cli_check__table_shows_reachable_and_unreachable_sites(tmp_path, one_site):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    site = one_site.sites["A"]
    data["sites"]["A"]["tes_url"] = site.node.url
    data["sites"]["A"]["token_env"] = site.token_env
    # Nothing listens on port 9 (discard) on loopback in the test environment.
    data["sites"]["cloud"]["tes_url"] = "http://127.0.0.1:9/ga4gh/tes/v1"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "sites", "check", str(write(tmp_path, data))],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **one_site.env},
    )
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["site", "tes_url", "service-info"]
    row_a = next(line for line in lines if line.startswith("A "))
    row_cloud = next(line for line in lines if line.startswith("cloud "))
    assert "ok:" in row_a and "unreachable:" in row_cloud
    assert proc.returncode == 1
