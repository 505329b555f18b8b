"""DUO decisions on a real site registry: the executor's start-up gate and `fedgen sites check`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from snakemake_executor_plugin_fedgen import duo
from snakemake_executor_plugin_fedgen.errors import GovernanceError
from snakemake_executor_plugin_fedgen.sites import load_registry

from snakemake_fedgen.node.process import NodeProcess

PURPOSE = {
    "purpose": {
        "research_type": "DUO:0000007",
        "disease": "MONDO:0005148",
        "commercial": False,
        "institution": "Example University",
    }
}


def _registry(tmp_path, tes_url: str):
    sites = {}
    terms = {
        "A": ["DUO:0000042"],
        "B": ["DUO:0000006", "DUO:0000046", "DUO:0000019"],
        "C": [{"id": "DUO:0000007", "disease": "MONDO:0005015"}],  # diabetes mellitus only
    }
    for name, duo_terms in terms.items():
        sites[name] = {
            "tes_url": tes_url,
            "work_url": (tmp_path / name / "work").as_uri(),
            "datasets": {
                "genotypes": {"url": (tmp_path / name / "g.vcf.gz").as_uri(), "duo": duo_terms},
                "reference_panel": {"url": (tmp_path / "panel.vcf.gz").as_uri()},
            },
        }
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "sites": sites}, sort_keys=False))
    return path


def test_executor_gate__refuses_before_any_task_naming_site_dataset_term(tmp_path):
    registry = load_registry(_registry(tmp_path, "http://127.0.0.1:9/ga4gh/tes/v1"))
    messages: list[str] = []
    with pytest.raises(GovernanceError) as err:
        duo.executor_gate(registry, workflow_config=PURPOSE, log=messages.append)
    text = str(err.value)
    assert "site C" in text and "dataset genotypes" in text and "DUO:0000007" in text
    assert "MONDO:0005015" in text and "disease_ancestors" in text
    # With the consented disease listed as an ancestor of the studied subtype, C is allowed.
    ok = dict(PURPOSE["purpose"], disease_ancestors=["MONDO:0005015"])
    decisions = duo.executor_gate(registry, workflow_config={"purpose": ok}, log=messages.append)
    assert all(d.allowed for d in decisions.values())
    assert any("site B" in m and "scientific community" in m for m in messages)


def test_executor_gate__without_purpose_says_terms_are_not_checked(tmp_path):
    registry = load_registry(_registry(tmp_path, "http://127.0.0.1:9/ga4gh/tes/v1"))
    messages: list[str] = []
    assert duo.executor_gate(registry, workflow_config={}, log=messages.append) is None
    assert "NOT checked" in messages[0]


def test_sites_check__shows_each_sites_data_use_decision(tmp_path):
    # A node running as root runs host tasks only as an unprivileged task user.
    config = {"runtime": "host", **({"task_user": "nobody"} if os.geteuid() == 0 else {})}
    node = NodeProcess(tmp_path / "node", config=config)
    try:
        sites = _registry(tmp_path, node.url)
        purpose = tmp_path / "config.yaml"
        purpose.write_text(yaml.safe_dump(PURPOSE))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake_fedgen",
                "sites",
                "check",
                str(sites),
                "--purpose",
                str(purpose),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        node.stop()
    assert proc.returncode == 1, proc.stderr  # site C is refused
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "data use" in proc.stdout.splitlines()[0]
    assert "ok:" in lines["A"] and "allowed" in lines["A"]
    assert "allowed" in lines["B"] and "actions required" in lines["B"]
    assert "refused" in lines["C"] and "DUO:0000007" in lines["C"]


def test_executor_gate__only_included_sites_are_checked(tmp_path):
    registry = load_registry(_registry(tmp_path, "http://127.0.0.1:9/ga4gh/tes/v1"))
    config = dict(PURPOSE, include_sites=["A", "B"])  # C (refused) is not analysed
    decisions = duo.executor_gate(registry, workflow_config=config)
    assert set(decisions) == {"A", "B"}
