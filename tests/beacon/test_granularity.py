"""What each caller sees: anonymous yes/no, tokens counts, visas raise, small counts floored,
records never; the budget refuses; every query is audited."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

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
    # Granularity and the small-count floor alone, with the budget off (it would hide the rare
    # allele; test_budget__* below run the shipped defaults).
    with beacon_node(federation, "A", state, budget={"enabled": False}) as client:
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


def allele_copies(path: Path, low: int, high: int) -> tuple[dict[str, Any], int]:
    """A biallelic variant whose alternate allele has ``low`` to ``high`` copies (bcftools)."""
    out = subprocess.run(
        ["bcftools", "query", "-f", "%POS\t%REF\t%ALT[\t%GT]\n", path],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        pos, ref, alt, *gts = line.split("\t")
        copies = sum(re.split(r"[/|]", g).count("1") for g in gts)
        if "," not in alt and low <= copies <= high:
            q = {"referenceName": "20", "start": [int(pos) - 1], "referenceBases": ref,
                 "alternateBases": alt}  # fmt: skip
            return q, copies
    raise AssertionError(f"no variant with {low}-{high} copies")


def test_budget__rare_alleles_are_answered_absent_and_refusals_are_403(
    federation: Path, tmp_path: Path
) -> None:
    # The shipped defaults (hide_below 5 copies, 1.5 nats per requester and dataset).
    vcf = federation / "sites/A/genotypes.vcf.gz"
    hidden, _ = allele_copies(vcf, 1, 4)
    dear, copies = allele_copies(vcf, 5, 8)
    _, _, common, _ = rare_and_common(vcf)
    state = tmp_path / "state"
    with beacon_node(federation, "A", state) as client:
        # Fewer than 5 copies: "no", as if absent (and free: a "no" adds nothing).
        answer = post(client, hidden, AUTH).json()
        assert answer["responseSummary"]["exists"] is False
        # A common allele costs next to nothing; a 5-8 copy allele most of the budget.
        assert post(client, common, AUTH).json()["responseSummary"]["exists"] is True
        first = post(client, dear, AUTH)
        assert first.status_code == 200 and first.json()["responseSummary"]["exists"] is True
        # Less than the dearest answer is left: every further query is refused, whatever it
        # would answer (even the common one), so a refusal does not give the answer away.
        for q in (dear, common, hidden):
            refused = post(client, q, AUTH)
            assert refused.status_code == 403
            validate(refused.json(), "responses/beaconErrorResponse.json")
            assert "budget" in refused.json()["error"]["errorMessage"]
        # Another caller (here anonymous, by address) has its own budget.
        assert post(client, common).json()["responseSummary"]["exists"] is True
    records = audit_records(state)
    assert [r["outcome"] for r in records] == ["200", "200", "200", "403", "403", "403", "200"]
    charges = [r["charge"] for r in records[:3]]
    assert charges[0] == 0.0 and charges[1] < 1e-3 and 0.5 < charges[2] <= 1.5, (copies, charges)
