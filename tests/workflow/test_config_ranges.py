"""Every QC threshold the config schema admits is one the tool accepts.

For each threshold that becomes a PLINK 2 argument, the schema's bounds (inclusive ones as they
are, exclusive ones a hair inside) are run through the installed ``plink2`` on a real fileset:
a value the schema allows must never fail at the sites (as ``king_related: 0.5`` once did).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from snakemake_fedgen import demo
from tests.workflow.real_federation import unpack_plink

SCHEMA = demo.SNAKEFILE.parent / "schemas" / "config.schema.yaml"
EPS = 1e-6


def _bounds(spec: dict[str, Any]) -> list[float]:
    """The extreme values the schema admits for a numeric property."""
    values = []
    if "minimum" in spec:
        values.append(spec["minimum"])
    if "exclusiveMinimum" in spec:
        values.append(spec["exclusiveMinimum"] + (1 if spec["type"] == "integer" else EPS))
    if "maximum" in spec:
        values.append(spec["maximum"])
    if "exclusiveMaximum" in spec:
        values.append(spec["exclusiveMaximum"] - (1 if spec["type"] == "integer" else EPS))
    return values


@pytest.fixture(scope="module")
def bfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_plink(tmp_path_factory.mktemp("bfile"), "eur")


def _qc() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())["properties"]["qc"]["properties"]


# threshold -> plink2 arguments for value v (a filter needs an output command to run)
PLINK_ARGS = {
    "geno": lambda v: ["--geno", str(v), "--write-snplist"],
    "mind": lambda v: ["--mind", str(v), "--write-snplist"],
    "maf": lambda v: ["--maf", str(v), "--write-snplist"],
    "hwe": lambda v: ["--hwe", str(v), "--write-snplist"],
    "king_duplicate": lambda v: ["--king-cutoff", str(v)],
    "king_related": lambda v: ["--king-cutoff", str(v)],
}


@pytest.mark.parametrize("name", sorted(PLINK_ARGS))
def test_schema_bounds__accepted_by_plink2(name: str, bfile: Path, tmp_path: Path) -> None:
    spec = _qc()[name]
    values = _bounds(spec)
    assert len(values) == 2, f"qc.{name} needs both bounds in the schema"
    for v in values:
        proc = subprocess.run(
            ["plink2", "--bfile", str(bfile), *PLINK_ARGS[name](v), "--out", str(tmp_path / "x")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"qc.{name}: {v} passes the schema, plink2 says {proc.stdout[-300:]}"
        )


def test_prune_bounds__accepted_by_plink2(bfile: Path, tmp_path: Path) -> None:
    prune = _qc()["prune"]["properties"]
    for r2 in _bounds(prune["r2"]):
        for window in _bounds(prune["window"])[:1]:
            step = window  # the workflow refuses step > window (plink2 does too)
            proc = subprocess.run(
                ["plink2", "--bfile", str(bfile), "--indep-pairwise", str(window), str(step),
                 str(r2), "--out", str(tmp_path / "x")],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, (window, step, r2, proc.stdout[-300:])
    for maf in _bounds(prune["maf"]):
        proc = subprocess.run(
            ["plink2", "--bfile", str(bfile), "--maf", str(maf), "--write-snplist",
             "--out", str(tmp_path / "x")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (maf, proc.stdout[-300:])


def test_the_old_bug__plink2_refuses_what_the_schema_now_excludes(
    bfile: Path, tmp_path: Path
) -> None:
    """The check above can fail: 0.5 (once allowed for king_related) is refused by plink2."""
    proc = subprocess.run(
        ["plink2", "--bfile", str(bfile), "--king-cutoff", "0.5", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert _qc()["king_related"]["exclusiveMaximum"] == 0.5
