"""Beacon v2 (framework v2.1.1) response envelopes: meta, responseSummary, resultSets, errors.

Query answers never carry records: ``results`` is always empty. Boolean answers are
``beaconBooleanResponse`` (per-dataset ``exists`` in ``info.datasets``), count answers
``beaconResultsetsResponse`` with one resultSet per dataset. v2.1.1 defines no count-precision
field, so a count in ``1 .. min_cell-1`` is reported as ``min_cell`` and the resultSet's
``info`` says so (``countAdjustedTo``, ``countPrecision``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snakemake_fedgen import __version__
from snakemake_fedgen.beacon.config import BeaconSettings

API_VERSION = "v2.1.1"
SCHEMA_BASE = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/v2.1.1"
ENTRY_SCHEMAS = {
    "genomicVariant": f"{SCHEMA_BASE}/models/json/beacon-v2-default-model/genomicVariations/defaultSchema.json",
    "individual": f"{SCHEMA_BASE}/models/json/beacon-v2-default-model/individuals/defaultSchema.json",
    "dataset": f"{SCHEMA_BASE}/models/json/beacon-v2-default-model/datasets/defaultSchema.json",
    "cohort": f"{SCHEMA_BASE}/models/json/beacon-v2-default-model/cohorts/defaultSchema.json",
}
ENTRY_PATHS = {"genomicVariant": "g_variants", "individual": "individuals"}


@dataclass(frozen=True)
class DatasetAnswer:
    """One dataset's raw answer (before the small-count rule): a count or None (unanswered)."""

    id: str
    count: int | None
    note: str = ""


def reported(count: int, min_cell: int) -> tuple[int, bool]:
    """(count as reported, adjusted?): ``1 .. min_cell-1`` becomes ``min_cell``."""
    if 0 < count < min_cell:
        return min_cell, True
    return count, False


def _schemas(entry: str) -> list[dict[str, str]]:
    return [{"entityType": entry, "schema": ENTRY_SCHEMAS[entry]}]


def informational_meta(settings: BeaconSettings, entry: str | None = None) -> dict[str, Any]:
    """``meta`` of the informational endpoints."""
    return {
        "beaconId": settings.id,
        "apiVersion": API_VERSION,
        "returnedSchemas": _schemas(entry) if entry else [],
    }


def request_summary(
    *,
    requested: str,
    parameters: Mapping[str, Any] | None = None,
    filters: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """``receivedRequestSummary`` of a query."""
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "requestedSchemas": [],
        "pagination": {"skip": 0, "limit": 0},
        "requestedGranularity": requested,
    }
    if parameters:
        out["requestParameters"] = {"g_variant": dict(parameters)}
    if filters:
        out["filters"] = [str(f.get("id")) for f in filters]
    return out


def query_meta(
    settings: BeaconSettings, *, entry: str, returned: str, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """``meta`` of a query answer (``beaconResponseMeta``)."""
    return {
        **informational_meta(settings, entry),
        "returnedGranularity": returned,
        "receivedRequestSummary": dict(summary),
    }


def query_response(
    settings: BeaconSettings,
    *,
    entry: str,
    returned: str,
    summary: Mapping[str, Any],
    answers: Sequence[DatasetAnswer],
) -> dict[str, Any]:
    """A boolean or count answer over ``answers`` (never records)."""
    meta = query_meta(settings, entry=entry, returned=returned, summary=summary)
    answered = [a for a in answers if a.count is not None]
    exists = any((a.count or 0) > 0 for a in answered)
    if returned == "boolean":
        datasets = [
            {"id": a.id, "exists": (a.count or 0) > 0}
            if a.count is not None
            else {"id": a.id, "exists": False, "note": a.note}
            for a in answers
        ]
        return {"meta": meta, "responseSummary": {"exists": exists}, "info": {"datasets": datasets}}
    sets = []
    total = 0
    adjusted_any = False
    for a in answers:
        count, adjusted = reported(a.count or 0, settings.min_cell)
        total += count
        adjusted_any = adjusted_any or adjusted
        info: dict[str, Any] = {}
        if adjusted:
            info = {
                "countAdjustedTo": settings.min_cell,
                "countPrecision": f"a count of 1 to {settings.min_cell - 1} is reported as "
                f"{settings.min_cell} (min_cell)",
            }
        if a.count is not None and entry == "individual" and settings.counts.enabled:
            scale = 1 / settings.counts.epsilon
            info["countNoise"] = {
                "mechanism": "Laplace",
                "scale": scale,
                "epsilon": settings.counts.epsilon,
                "description": f"Laplace noise of scale {scale:g} (epsilon "
                f"{settings.counts.epsilon:g} per answer) added before the small-count rule",
            }
        if a.count is None:
            info["note"] = a.note
        sets.append(
            {
                "id": a.id,
                "setType": "dataset",
                "exists": count > 0,
                "resultsCount": count,
                "results": [],
                **({"info": info} if info else {}),
            }
        )
    out: dict[str, Any] = {
        "meta": meta,
        "responseSummary": {"exists": exists, "numTotalResults": total},
        "response": {"resultSets": sets},
    }
    if adjusted_any:
        out["info"] = {
            "countAdjusted": f"numTotalResults sums the reported counts, some of which are "
            f"counts below {settings.min_cell} reported as {settings.min_cell}"
        }
    return out


def error_response(
    settings: BeaconSettings, code: int, message: str, *, summary: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``beaconErrorResponse``."""
    return {
        "meta": query_meta(
            settings,
            entry="genomicVariant",
            returned="boolean",
            summary=summary or request_summary(requested="boolean"),
        ),
        "error": {"errorCode": code, "errorMessage": message},
    }


def info_response(settings: BeaconSettings) -> dict[str, Any]:
    """``/api`` and ``/api/info``: ``beaconInfoResponse``."""
    return {
        "meta": informational_meta(settings),
        "response": {
            "id": settings.id,
            "name": settings.name,
            "apiVersion": API_VERSION,
            "environment": "prod",
            "version": __version__,
            "organization": {"id": settings.organization_id, "name": settings.organization_name},
            "description": "snakemake-fedgen node Beacon: boolean and count answers only, "
            f"counts below {settings.min_cell} reported as {settings.min_cell}",
        },
    }


def service_info(settings: BeaconSettings) -> dict[str, Any]:
    """GA4GH service-info 1.0 (type ``org.ga4gh:beacon``)."""
    return {
        "id": settings.id,
        "name": settings.name,
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "organization": {
            "name": settings.organization_name,
            "url": "https://github.com/snakemake-fedgen",
        },
        "version": __version__,
        "environment": "prod",
    }


def _entry_types() -> dict[str, Any]:
    def ref(entry: str) -> dict[str, str]:
        return {
            "id": entry,
            "name": f"Beacon v2 default schema for {entry}",
            "referenceToSchemaDefinition": ENTRY_SCHEMAS[entry],
            "schemaVersion": API_VERSION,
        }

    return {
        entry: {
            "id": entry,
            "name": name,
            "partOfSpecification": f"Beacon {API_VERSION}",
            "defaultSchema": ref(entry),
            "nonFilteredQueriesAllowed": entry != "individual",
        }
        for entry, name in (
            ("genomicVariant", "Genomic variants"),
            ("individual", "Individuals"),
            ("dataset", "Datasets"),
            ("cohort", "Cohorts"),
        )
    }


def entry_types_response(settings: BeaconSettings) -> dict[str, Any]:
    """``/api/entry_types``: ``beaconEntryTypesResponse``."""
    return {"meta": informational_meta(settings), "response": {"entryTypes": _entry_types()}}


def configuration_response(settings: BeaconSettings) -> dict[str, Any]:
    """``/api/configuration``: ``beaconConfigurationResponse`` (default granularity boolean)."""
    return {
        "meta": informational_meta(settings),
        "response": {
            "$schema": f"{SCHEMA_BASE}/framework/json/configuration/beaconConfigurationSchema.json",
            "maturityAttributes": {"productionStatus": "PROD"},
            "securityAttributes": {
                "defaultGranularity": "boolean",
                "securityLevels": ["PUBLIC", "REGISTERED", "CONTROLLED"],
            },
            "entryTypes": _entry_types(),
        },
    }


def map_response(settings: BeaconSettings, root: str) -> dict[str, Any]:
    """``/api/map``: ``beaconMapResponse`` with URLs under ``root`` (``http://host:port/api``)."""
    sets: dict[str, Any] = {}
    for entry in ("genomicVariant", "individual"):
        path = ENTRY_PATHS[entry]
        sets[entry] = {"entryType": entry, "rootUrl": f"{root}/{path}"}
    sets["dataset"] = {
        "entryType": "dataset",
        "rootUrl": f"{root}/datasets",
        "endpoints": {
            p: {"url": f"{root}/datasets/{{id}}/{p}", "returnedEntryType": e}
            for e, p in ENTRY_PATHS.items()
        },
    }
    sets["cohort"] = {"entryType": "cohort", "rootUrl": f"{root}/cohorts"}
    return {
        "meta": informational_meta(settings),
        "response": {
            "$schema": f"{SCHEMA_BASE}/framework/json/configuration/beaconMapSchema.json",
            "endpointSets": sets,
        },
    }


def collections_response(
    settings: BeaconSettings, entry: str, collections: list[dict[str, Any]]
) -> dict[str, Any]:
    """``/datasets`` and ``/cohorts``: descriptions only (no counts, no records)."""
    return {
        "meta": query_meta(
            settings, entry=entry, returned="boolean", summary=request_summary(requested="boolean")
        ),
        "responseSummary": {"exists": bool(collections)},
        "response": {"collections": collections},
    }


def filtering_terms_response(
    settings: BeaconSettings, terms: list[dict[str, Any]]
) -> dict[str, Any]:
    """``/api/filtering_terms``: ``beaconFilteringTermsResponse``."""
    return {"meta": informational_meta(settings), "response": {"filteringTerms": terms}}
