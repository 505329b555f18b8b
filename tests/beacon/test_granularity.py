"""What each caller sees: anonymous yes/no, tokens counts, visas raise, small counts floored,
records never; the budget refuses; every query is audited."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from snakemake_fedgen.beacon.api import beacon_router
from snakemake_fedgen.beacon.config import beacon_settings
from tests.beacon.conftest import TOKENS, audit_records, beacon_block, beacon_node, validate
from tests.governance.issuer import AUDIENCE, ISSUER, Issuer

AUTH = {"Authorization": f"Bearer {TOKENS['analyst']}"}
BODY = {"meta": {"apiVersion": "v2.1.1"}}


def rare_and_common(path: Path) -> tuple[dict[str, Any], int, dict[str, Any], int]:
    """A variant with 1-4 carriers and one with many (carriers counted from bcftools output)."""
    out = subprocess.run(
        ["bcftools", "query", "-f", "%POS\t%REF\t%ALT[\t%GT]\n", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rare = common = None
    for line in out.splitlines():
        pos, ref, alt, *gts = line.split("\t")
        n = sum("1" in re.split(r"[/|]", g) for g in gts)
        q = {
            "referenceName": "20",
            "start": [int(pos) - 1],
            "referenceBases": ref,
            "alternateBases": alt,
        }
        if rare is None and 1 <= n <= 4:
            rare = (q, n)
        if common is None and n >= 20:
            common = (q, n)
    assert rare and common
    return rare[0], rare[1], common[0], common[1]


def post(
    client: TestClient,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
    granularity: str | None = None,
) -> Any:
    query: dict[str, Any] = {"requestParameters": {"g_variant": params}}
    if granularity:
        query["requestedGranularity"] = granularity
    return client.post("/api/g_variants", json={**BODY, "query": query}, headers=headers or {})


def test_anonymous_boolean__token_count__floor__never_records(
    federation: Path, tmp_path: Path
) -> None:
    rare, n_rare, common, n_common = rare_and_common(federation / "sites/A/genotypes.vcf.gz")
    state = tmp_path / "state"
    with beacon_node(federation, "A", state) as client:
        anon = post(client, common, granularity="record").json()
        validate(anon, "responses/beaconBooleanResponse.json")
        assert anon["meta"]["returnedGranularity"] == "boolean"
        assert anon["responseSummary"] == {"exists": True}
        assert "response" not in anon
        counted = post(client, common, AUTH, granularity="record").json()
        validate(counted, "responses/beaconResultsetsResponse.json")
        assert counted["meta"]["returnedGranularity"] == "count"
        (rs,) = counted["response"]["resultSets"]
        assert (
            rs["resultsCount"],
            rs["results"],
            counted["responseSummary"]["numTotalResults"],
        ) == (n_common, [], n_common)
        floored = post(client, rare, AUTH).json()
        (rs,) = floored["response"]["resultSets"]
        assert (rs["exists"], rs["resultsCount"], rs["info"]["countAdjustedTo"]) == (True, 5, 5)
        assert n_rare < 5 and floored["responseSummary"]["numTotalResults"] == 5
        asked_boolean = post(client, common, AUTH, granularity="boolean").json()
        assert (
            asked_boolean["meta"]["returnedGranularity"] == "boolean"
            and "response" not in asked_boolean
        )
    records = audit_records(state)
    assert [(r["granularity"], r["dataset"], r["outcome"]) for r in records] == [
        ("boolean", "A-cohort", "200"), ("count", "A-cohort", "200"), ("count", "A-cohort", "200"), ("boolean", "A-cohort", "200")
    ]  # fmt: skip
    assert (
        records[0]["requester"] == "anonymous:testclient"
        and records[1]["requester"] == "caller:static-analyst"
    )
    assert all(r["charge"] is not None for r in records)


def test_visa__raises_granularity_for_its_dataset_only(federation: Path, tmp_path: Path) -> None:
    issuer = Issuer()
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    block = beacon_block(federation, "A")
    block["datasets"]["A-cohort"]["granularity"] = {
        "anonymous": None,
        "authenticated": "boolean",
        "visa": "count",
    }
    jwt = {"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE}
    with beacon_node(federation, "A", tmp_path / "state", jwt=jwt, beacon=block) as client:
        filters = {"query": {"filters": [{"id": "NCIT:C16576"}]}}
        granted = issuer.token("alice", visas=[issuer.visa("alice", "EGAD-A")])
        other = issuer.token("mallory", visas=[issuer.visa("mallory", "EGAD-other")])
        with_visa = client.post(
            "/api/individuals",
            json={**BODY, **filters},
            headers={"Authorization": f"Bearer {granted}"},
        ).json()
        without = client.post(
            "/api/individuals",
            json={**BODY, **filters},
            headers={"Authorization": f"Bearer {other}"},
        ).json()
        nobody = client.post("/api/individuals", json={**BODY, **filters})
    assert (
        with_visa["meta"]["returnedGranularity"] == "count"
        and with_visa["response"]["resultSets"][0]["resultsCount"] > 5
    )
    assert without["meta"]["returnedGranularity"] == "boolean" and "response" not in without
    assert nobody.status_code == 403
    validate(nobody.json(), "responses/beaconErrorResponse.json")


class TwoQueries:
    """A budget admitting two charges per requester and dataset (the interface of budget.py)."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, str], int] = {}

    def charge(self, requester: str, dataset: str, cost: float, query: str) -> float:
        from snakemake_fedgen.beacon.budget import BudgetExhausted

        n = self.used.get((requester, dataset), 0)
        if n >= 2:
            raise BudgetExhausted(f"{requester} spent its budget on {dataset}")
        self.used[(requester, dataset)] = n + 1
        return 2.0 - n - 1


def test_budget__spent_is_a_403_beacon_error(federation: Path) -> None:
    settings = beacon_settings(beacon_block(federation, "A"), read_roots=[federation])
    assert settings is not None
    audit: list[dict[str, Any]] = []

    class Sink:
        def record(self, **entry: Any) -> None:
            audit.append(entry)

    app = FastAPI()
    app.include_router(
        beacon_router(
            settings,
            authenticate=lambda h: None,
            requester_of=str,
            audit=Sink(),
            budget=TwoQueries(),
        )
    )
    client = TestClient(app)
    _, _, common, _ = rare_and_common(federation / "sites/A/genotypes.vcf.gz")
    answers = [post(client, common) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 403]
    validate(answers[2].json(), "responses/beaconErrorResponse.json")
    assert "budget" in answers[2].json()["error"]["errorMessage"]
    assert [e["outcome"] for e in audit] == ["200", "200", "403"]
