"""Every Beacon endpoint, GET and POST, against the official v2.1.1 schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.beacon.conftest import TOKENS, audit_records, beacon_node, endpoint_schema, validate

AUTH = {"Authorization": f"Bearer {TOKENS['analyst']}"}
INFO = ["/", "/info", "/service-info", "/map", "/configuration", "/entry_types", "/filtering_terms"]


@pytest.mark.parametrize("site", ["A", "C"])
def test_informational__valid_against_the_schemas_endpoints_json_names(
    federation: Path, tmp_path: Path, site: str
) -> None:
    with beacon_node(federation, site, tmp_path / "state") as client:
        for path in INFO:
            r = client.get("/api" + ("" if path == "/" else path))
            assert r.status_code == 200, (path, r.text)
            validate(r.json(), endpoint_schema(path))
        for path in ("/datasets", "/cohorts"):
            r = client.get("/api" + path)
            validate(r.json(), "responses/beaconCollectionsResponse.json")
        assert client.get("/api/service-info").json()["type"]["artifact"] == "beacon"
        terms = {
            t["id"] for t in client.get("/api/filtering_terms").json()["response"]["filteringTerms"]
        }
        assert {"NCIT:C16576", "NCIT:C20197", "age", "LOINC:39469-2", "NCIT:C67147"} <= terms


VARIANT = {"referenceName": "20", "start": [1000037], "referenceBases": "C", "alternateBases": "T"}
QUERIES = [
    ("g_variants", {"requestParameters": {"g_variant": VARIANT}}),
    ("g_variants", {"requestParameters": {"g_variant": {"referenceName": "chr20", "start": [1000000], "end": [1100000]}}}),
    ("individuals", {"filters": [{"id": "NCIT:C16576"}, {"id": "LOINC:39469-2", "operator": ">", "value": "4.1"}]}),
    ("individuals", {"filters": [{"id": "age", "operator": ">=", "value": "P50Y"}]}),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "schema"), [
    ({}, "responses/beaconBooleanResponse.json"),
    (AUTH, "responses/beaconResultsetsResponse.json"),
])  # fmt: skip
def test_queries__get_and_post_valid_at_each_granularity(
    federation: Path, tmp_path: Path, headers: dict[str, str], schema: str
) -> None:
    # Exact counts (beacon.counts off): the GET and POST answers are compared below.
    with beacon_node(federation, "A", tmp_path / "state", counts={"enabled": False}) as client:
        for path, query in QUERIES:
            body = {
                "meta": {"apiVersion": "v2.1.1"},
                "query": {**query, "requestedGranularity": "count"},
            }
            validate(body, "requests/beaconRequestBody.json")
            posted = client.post(f"/api/{path}", json=body, headers=headers)
            assert posted.status_code == 200, posted.text
            validate(posted.json(), schema)
            also = client.post(f"/api/datasets/A-cohort/{path}", json=body, headers=headers)
            assert also.json()["responseSummary"] == posted.json()["responseSummary"]
        got = client.get("/api/g_variants", params={**VARIANT, "start": 1000037}, headers=headers)
        validate(got.json(), schema)
        got = client.get(
            "/api/individuals", params={"filters": "NCIT:C16576,LOINC:39469-2>4.1"}, headers=headers
        )
        validate(got.json(), schema)
        assert (
            got.json()["responseSummary"]
            == client.post(
                "/api/individuals",
                json={"meta": {"apiVersion": "v2.1.1"}, "query": QUERIES[2][1]},
                headers=headers,
            ).json()["responseSummary"]
        )


def test_errors__beacon_error_shape(federation: Path, tmp_path: Path) -> None:
    with beacon_node(federation, "A", tmp_path / "state") as client:
        bad = [
            client.get(
                "/api/g_variants", params={**VARIANT, "start": 1000037, "assemblyId": "GRCh37"}
            ),
            client.get("/api/g_variants", params={"referenceName": "20"}),
            client.post(
                "/api/individuals",
                json={"meta": {"apiVersion": "v2"}, "query": {"filters": [{"id": "HP:9999999"}]}},
            ),
            client.get(
                "/api/g_variants",
                params={**VARIANT, "start": 1000037},
                headers={"Authorization": "Bearer wrong-token-xx"},
            ),
            client.get("/api/datasets/nope/individuals"),
        ]
        assert [r.status_code for r in bad] == [400, 400, 400, 401, 404]
        for r in bad:
            validate(r.json(), "responses/beaconErrorResponse.json")
        assert "GRCh38" in bad[0].json()["error"]["errorMessage"]
        assert "HP:9999999" in bad[2].json()["error"]["errorMessage"]


def test_node_limits__body_size_and_audit_of_refusals(federation: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with beacon_node(federation, "A", state, max_request_bytes=2000) as client:
        big = {
            "meta": {"apiVersion": "v2.1.1"},
            "query": {"filters": [{"id": "NCIT:C16576"}] * 200},
        }
        assert client.post("/api/individuals", json=big).status_code == 413
        browser = client.get("/api/individuals", headers={"Origin": "https://evil.example"})
        assert browser.status_code == 403
        client.get("/api/individuals", headers={"Authorization": "Bearer not-a-token-x"})
    records = audit_records(state)
    assert [(r["caller"], r["outcome"], r["endpoint"]) for r in records] == [
        ("unauthenticated", "401", "/api/individuals")
    ]
