"""Beacon test fixtures: a tiny simulated federation, Beacon node configs, schema validation."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from snakemake_fedgen.node.app import create_app
from snakemake_fedgen.node.auth import make_authenticator
from snakemake_fedgen.node.config import load_config
from snakemake_fedgen.node.runtime import make_runtime
from snakemake_fedgen.simulate.registry import beacon_config
from tests.conftest import bwrap_runtime

# The official schemas, vendored byte for byte (spec/SOURCE.txt).
SPEC = Path(__file__).parent / "spec" / "beacon-v2"
FRAMEWORK = SPEC / "framework" / "json"


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fedgen simulate --scale tiny`` with site C's phenotypes as Phenopackets."""
    out = tmp_path_factory.mktemp("beacon-fed") / "sim"
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(out), "--seed", "11",
         "--scale", "tiny", "--phenopackets-sites", "C"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def beacon_block(fed: Path, site: str) -> dict[str, Any]:
    """The ``beacon`` block of a simulated site's node.yaml (as docs/discovery.md shows)."""
    phenopackets = (fed / "sites" / site / "phenopackets").is_dir()
    return beacon_config(fed, site, phenopackets=phenopackets)


# -- the official schemas ---------------------------------------------------------------------


def _registry() -> Registry:
    """Every schema of the framework and default model, by file URI (relative $refs resolve)."""
    resources = []
    for path in SPEC.rglob("*.json"):
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            doc = {k: v for k, v in doc.items() if k != "$id"}
            doc.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
            resources.append((path.as_uri(), Resource.from_contents(doc)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validator(relative: str) -> Draft202012Validator:
    """A validator for a framework schema (``responses/beaconInfoResponse.json``)."""
    uri = (FRAMEWORK / relative).as_uri()
    return Draft202012Validator({"$ref": uri}, registry=REGISTRY)


def validate(doc: Any, relative: str) -> None:
    """Raise on the first violation of ``relative`` (with the path of the offending value)."""
    errors = sorted(validator(relative).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def endpoint_schema(path: str) -> str:
    """The 200 response schema endpoints.json names for an informational path (``/map``)."""
    spec = json.loads((FRAMEWORK / "endpoints.json").read_text())
    ok = spec["paths"][path]["get"]["responses"]["200"]
    if "$ref" in ok:
        ok = spec["components"]["responses"][ok["$ref"].rsplit("/", 1)[1]]
    return ok["content"]["application/json"]["schema"]["$ref"].removeprefix("./")


# -- a node in this process ------------------------------------------------------------------

TOKENS = {"analyst": "analyst-token-123"}


@contextlib.contextmanager
def beacon_node(
    fed: Path,
    site: str,
    state: Path,
    *,
    budget: dict[str, Any] | None = None,
    counts: dict[str, Any] | None = None,
    anonymous: dict[str, Any] | None = None,
    client_address: str = "testclient",
    **node_yaml: Any,
) -> Iterator[TestClient]:
    """The site's node (its simulated node.yaml plus a Beacon and a token file), in process.

    ``budget``, ``counts``, ``anonymous``: the Beacon's settings of those names (default: the
    shipped defaults). ``client_address``: the address the node sees requests come from."""
    cfg = yaml.safe_load((fed / "sites" / site / "node.yaml").read_text())
    state.mkdir(parents=True, exist_ok=True)
    tokens = state / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    block = beacon_block(fed, site)
    if budget is not None:
        block["budget"] = budget
    if counts is not None:
        block["counts"] = counts
    if anonymous is not None:
        block["anonymous"] = anonymous
    cfg.update(token_file=str(tokens), runtime=bwrap_runtime(), beacon=block)
    cfg.update(node_yaml)
    path = state / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    node = load_config(state, config_file=path)
    runtime = make_runtime(node.runtime, tool_paths=node.tool_paths, allowed_images=[])
    app = create_app(node, runtime=runtime, authenticator=make_authenticator(node))
    with TestClient(app, base_url="http://127.0.0.1", client=(client_address, 50000)) as client:
        yield client


def audit_records(state: Path, action: str = "BeaconQuery") -> list[dict[str, Any]]:
    lines = (state / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["action"] == action]
