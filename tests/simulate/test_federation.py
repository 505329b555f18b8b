"""``fedgen simulate``: files, formats and the truth of a tiny simulated federation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SITES = ("A", "B", "C")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fed") / "sim"
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(out), "--seed", "7"],
        check=True,
        capture_output=True,
    )
    return out


def test_simulate__writes_the_contract_layout(tiny: Path):
    expected = [
        "reference/panel.vcf.gz",
        "reference/panel.vcf.gz.tbi",
        "reference/genetic_map.map",
        "sites.yaml",
        "truth.json",
    ]
    for s in SITES:
        expected += [
            f"sites/{s}/genotypes.vcf.gz",
            f"sites/{s}/genotypes.vcf.gz.tbi",
            f"sites/{s}/phenotypes.tsv",
            f"sites/{s}/node.yaml",
        ]
    missing = [p for p in expected if not (tiny / p).is_file()]
    assert missing == []
    registry = yaml.safe_load((tiny / "sites.yaml").read_text())
    assert list(registry["sites"]) == list(SITES)
    assert registry["sites"]["B"]["tes_url"] == "http://127.0.0.1:8102/ga4gh/tes/v1"
    url = registry["sites"]["C"]["datasets"]["genotypes"]["url"]
    assert url == (tiny / "sites/C/genotypes.vcf.gz").as_uri()


def test_simulate__vcfs_are_read_by_bcftools(tiny: Path):
    head = subprocess.run(
        ["bcftools", "view", "-h", str(tiny / "reference/panel.vcf.gz")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "##contig=<ID=20," in head
    body = subprocess.run(
        ["bcftools", "view", "-H", "-r", "20", str(tiny / "sites/A/genotypes.vcf.gz")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert body.startswith("20\t")
