"""The beacon block of node.yaml: refused at start with the key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.node.config import beacon_config, load_config
from tests.beacon.conftest import beacon_block


def load(fed: Path, tmp_path: Path, block: dict) -> object:
    cfg = yaml.safe_load((fed / "sites/A/node.yaml").read_text())
    cfg["beacon"] = block
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return beacon_config(load_config(tmp_path / "state", config_file=path), str(path))


def test_defaults__min_cell_from_the_airlock_and_granularities(
    federation: Path, tmp_path: Path
) -> None:
    settings = load(federation, tmp_path, beacon_block(federation, "A"))
    assert settings.min_cell == 5  # the simulated airlock's min_cell
    assert dict(settings.datasets["A-cohort"].granularity) == {
        "anonymous": "boolean",
        "authenticated": "count",
        "visa": "count",
    }


def test_refusals__name_node_yaml_and_the_key(federation: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(federation / "sites/A/genotypes.vcf.gz", outside / "g.vcf.gz")
    unindexed = federation / "sites/A/work/copy.vcf.gz"
    shutil.copy(federation / "sites/A/genotypes.vcf.gz", unindexed)
    cases = [
        ({"genotypes": str(outside / "g.vcf.gz")}, "outside the node's read_roots"),
        ({"genotypes": str(unindexed)}, "no .tbi/.csi index"),
        (
            {"granularity": {"anonymous": "count"}},
            "granularity.anonymous must be one of none, boolean",
        ),
        ({"granularity": {"visa": "record"}}, "records are never served"),
        ({"assembly": "hg18"}, "assembly must be one of GRCh38, GRCh37"),
        ({"colour": "blue"}, "unknown key(s) colour"),
    ]
    for change, fragment in cases:
        block = beacon_block(federation, "A")
        block["datasets"]["A-cohort"].update(change)
        with pytest.raises(ConfigError) as err:
            load(federation, tmp_path, block)
        assert "node.yaml: beacon.datasets.A-cohort" in str(err.value) and fragment in str(
            err.value
        ), str(err.value)
    unindexed.unlink()
