"""The layer order holds: the import-linter contracts in pyproject.toml, checked on every run.

A test so that `make test` (not only `make lint`) fails when a cycle comes back; the second test
shows the check can fail: a module of a lower layer importing a higher one breaks the contract.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{root}:{root / 'snakemake-executor-plugin-fedgen'}",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_contracts__kept() -> None:
    run = _lint_imports(REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in run.stdout


def test_import_contracts__a_reversed_import_breaks_them(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("pyproject.toml", "snakemake_fedgen", "snakemake-executor-plugin-fedgen"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, copy / name)
    # sumstats (the format) must never import the airlock that sits above it.
    columns = copy / "snakemake_fedgen" / "sumstats" / "columns.py"
    columns.write_text(columns.read_text() + "\nimport snakemake_fedgen.egress.airlock  # noqa\n")
    run = _lint_imports(copy)
    assert run.returncode == 1, run.stdout[-3000:]
    assert (
        "snakemake_fedgen.sumstats is not allowed to import snakemake_fedgen.egress" in run.stdout
    )
