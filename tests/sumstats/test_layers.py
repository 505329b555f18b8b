"""Layering: each package imports only the layers below it (checked on the source, so imports
inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import snakemake_fedgen

PACKAGE = Path(snakemake_fedgen.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module name a file imports, at any depth, relative imports resolved."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join((*anchor, base) if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The format: read and written by everything above, depends on none of it.
        ("sumstats", ("egress", "exact", "meta", "node", "cli", "governance")),
        # The airlock and export: above the format, below exact mode and the node.
        ("egress", ("exact", "meta", "node", "cli")),
    ],
)
def test_layer_imports_nothing_above_it(layer, forbidden):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in sorted(_imports(path)):
            if any(name.startswith(f"snakemake_fedgen.{f}") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert bad == []
