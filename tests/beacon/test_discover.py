"""``fedgen discover`` over three real loopback nodes, one of them stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from snakemake_fedgen.node.process import NodeProcess
from tests.beacon.conftest import beacon_block
from tests.conftest import bwrap_runtime


def test_discover__three_nodes_one_down(federation: Path, tmp_path: Path, monkeypatch) -> None:
    registry = yaml.safe_load((federation / "sites.yaml").read_text())
    nodes = {}
    try:
        for site in "ABC":
            cfg = yaml.safe_load((federation / "sites" / site / "node.yaml").read_text())
            token = tmp_path / f"tokens-{site}.yaml"
            token.write_text(yaml.safe_dump({"coordinator": f"token-of-{site}-123"}))
            # Exact counts (beacon.counts off) so the totals can be checked against pandas;
            # test_count_noise checks the shipped defaults' noise.
            block = beacon_block(federation, site) | {"counts": {"enabled": False}}
            cfg.update(runtime=bwrap_runtime(), token_file=str(token), beacon=block)
            nodes[site] = NodeProcess(tmp_path / f"state-{site}", config=cfg)
            registry["sites"][site]["tes_url"] = nodes[site].url
            monkeypatch.setenv(f"FEDGEN_TOKEN_{site}", f"token-of-{site}-123")
        nodes["B"].stop()
        sites = tmp_path / "sites.yaml"
        sites.write_text(yaml.safe_dump(registry))
        out = tmp_path / "include.yaml"
        cmd = [sys.executable, "-m", "snakemake_fedgen", "discover", "--sites", str(sites),
               "--filter", "NCIT:C16576", "--filter", "LOINC:39469-2>4.1",
               "--include-sites-out", str(out), "--min-count", "12"]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        for node in nodes.values():
            node.stop()
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    a = pd.read_csv(federation / "sites/A/phenotypes.tsv", sep="\t")
    expected_a = int(((a.sex == 2) & (a.ldl > 4.1)).sum())
    c = pd.read_csv(
        federation / "sites/C/phenotypes.tsv", sep="\t"
    )  # the table simulate wrote beside C's packets
    expected_c = int(((c.sex == 2) & (c.ldl > 4.1)).sum())
    assert rows["A"][:4] == ["A", "A-cohort", "yes", str(max(expected_a, 5) if expected_a else 0)]
    assert rows["C"][:4] == ["C", "C-cohort", "yes", str(max(expected_c, 5) if expected_c else 0)]
    assert (
        rows["B"][:4] == ["B", "-", "-", "-"]
        and "connection refused" in lines[2] + lines[3] + lines[1]
    )
    assert "no answer: B" in run.stdout
    assert f"total: {expected_a + expected_c} over 2 site(s)" in run.stdout
    assert yaml.safe_load(out.read_text()) == [
        s for s, n in (("A", expected_a), ("C", expected_c)) if n >= 12
    ]
    print(run.stdout)


def test_total__floored_counts_make_a_lower_bound() -> None:
    from snakemake_fedgen.beacon.network import SiteAnswer, matching_sites, total

    answers = [
        SiteAnswer("A", "a", True, 24),
        SiteAnswer("B", "b", True, 5, adjusted=True),
        SiteAnswer("C", None, None, note="timeout"),
        SiteAnswer("D", "d", False, 0),
    ]
    assert total(answers) == (25, True)
    assert total(answers[:1] + answers[3:]) == (24, False)
    assert matching_sites(answers, min_count=None) == ["A", "B"]
    assert matching_sites(answers, min_count=10) == ["A"]


def test_registry_beacon_url__default_and_explicit(tmp_path: Path) -> None:
    from snakemake_executor_plugin_fedgen.sites import load_registry

    sites = {
        "A": {"tes_url": "http://127.0.0.1:8101/ga4gh/tes/v1", "work_url": "file:///w"},
        "B": {"tes_url": "https://b.example/ga4gh/tes/v1", "work_url": "file:///w",
              "beacon_url": "https://beacon.b.example/api/"},
    }  # fmt: skip
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "sites": sites}))
    registry = load_registry(path)
    assert registry.site("A").beacon == "http://127.0.0.1:8101/api"
    assert registry.site("B").beacon == "https://beacon.b.example/api"
