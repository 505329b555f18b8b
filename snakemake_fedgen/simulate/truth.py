"""The truth file (``truth.json``): what a correct analysis of the simulated federation finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from snakemake_fedgen.simulate.vcf import write_text

#: Expected KING-robust kinship coefficients of the injected pairs.
KINSHIP = {"duplicate": 0.5, "parent-offspring": 0.25, "siblings": 0.25}


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """Write ``truth`` as stable, sorted JSON (byte-identical for the same seed and scale)."""
    write_text(path, json.dumps(truth, indent=2, sort_keys=True) + "\n")


def read_truth(path: Path) -> dict[str, Any]:
    """Read a ``truth.json`` written by :func:`write_truth`."""
    return json.loads(Path(path).read_text())
