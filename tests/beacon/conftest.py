"""Beacon test fixtures: a tiny simulated federation, Beacon node configs, schema validation.

Until ``snakemake_fedgen/beacon/budget.py`` (built separately) is in the tree, the node's
query budget is a throwaway stand-in written here, outside the package: in-process tests put
it into ``sys.modules``, node processes get it from a ``sitecustomize`` on their PYTHONPATH.
Once the real module exists it is used instead (the stand-in is only installed when missing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
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

SPEC = Path(os.environ.get("FEDGEN_BEACON_SPEC", "/work/shared/spec/beacon-v2"))
FRAMEWORK = SPEC / "framework" / "json"

STUB = """
import sys, types
mod = types.ModuleType("snakemake_fedgen.beacon.budget")
class BudgetExhausted(Exception):
    pass
def query_cost(alt_allele_counts, n_individuals):
    return float(len(alt_allele_counts)) or 0.5
class QueryBudget:
    def __init__(self, limit):
        self.limit = float(limit); self.spent = {}
    @classmethod
    def open(cls, state_dir, settings):
        return cls(settings.get("limit", 1e9))
    def charge(self, requester, dataset, cost, query):
        key = (requester, dataset); left = self.limit - self.spent.get(key, 0.0)
        if cost > left:
            raise BudgetExhausted(f"{requester} has {left:g} left on {dataset}, the query costs {cost:g}")
        self.spent[key] = self.spent.get(key, 0.0) + cost
        return left - cost
    def remaining(self, requester, dataset):
        return self.limit - self.spent.get((requester, dataset), 0.0)
    def close(self):
        pass
mod.BudgetExhausted, mod.query_cost, mod.QueryBudget = BudgetExhausted, query_cost, QueryBudget
"""
REGISTER = "import sys\nsys.modules[mod.__name__] = mod\n"


def budget_missing() -> bool:
    return importlib.util.find_spec("snakemake_fedgen.beacon.budget") is None


@pytest.fixture(autouse=True)
def budget_module(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget stand-in, in this process and in node processes started by the test."""
    if not budget_missing():
        return
    namespace: dict[str, Any] = {}
    exec(STUB, namespace)
    monkeypatch.setitem(sys.modules, "snakemake_fedgen.beacon.budget", namespace["mod"])
    site = tmp_path_factory.mktemp("budget-stub")
    (site / "sitecustomize.py").write_text(STUB + REGISTER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))


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
def beacon_node(fed: Path, site: str, state: Path, **node_yaml: Any) -> Iterator[TestClient]:
    """The site's node (its simulated node.yaml plus a Beacon and a token file), in process."""
    cfg = yaml.safe_load((fed / "sites" / site / "node.yaml").read_text())
    state.mkdir(parents=True, exist_ok=True)
    tokens = state / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    cfg.update(token_file=str(tokens), runtime=bwrap_runtime(), beacon=beacon_block(fed, site))
    cfg.update(node_yaml)
    path = state / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    node = load_config(state, config_file=path)
    runtime = make_runtime(node.runtime, tool_paths=node.tool_paths, allowed_images=[])
    app = create_app(node, runtime=runtime, authenticator=make_authenticator(node))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def audit_records(state: Path, action: str = "BeaconQuery") -> list[dict[str, Any]]:
    lines = (state / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["action"] == action]
