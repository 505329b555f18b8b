"""The Beacon v2 endpoints under ``/api``: an APIRouter the node mounts (docs/discovery.md).

Informational endpoints are anonymous. Query endpoints (``g_variants``, ``individuals``, GET
and POST) answer each caller at its granularity per dataset: no ``Authorization`` header is
an anonymous caller (keyed by its source address for the budget), a header must satisfy the
node's authenticator or is answered 401. A ``ControlledAccessGrants`` visa naming a
dataset's ``visa`` id raises the caller to that dataset's ``visa`` granularity. Answers never
carry records. Every g_variants answer of every dataset is charged to the caller's query
budget before it is given (:func:`charge`); every individuals answer (count or boolean) is
a noisy count charged to the caller's epsilon budget (:func:`charge_count`). A spent budget
is answered 403 for that dataset (a Beacon error when no dataset is left): waiting does not
refill it, so 429's "retry later" would be wrong.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from snakemake_executor_plugin_fedgen.errors import AuthError, FedgenError

from snakemake_fedgen.beacon import responses as R
from snakemake_fedgen.beacon.config import LEVELS, BeaconDataset, BeaconSettings
from snakemake_fedgen.beacon.counts import answer_count
from snakemake_fedgen.beacon.individuals import count_individuals, filtering_terms, parse_filter
from snakemake_fedgen.beacon.variants import (
    QueryError,
    VariantAnswer,
    VariantQuery,
    query_variants,
)
from snakemake_fedgen.governance.passport import granted_datasets

PREFIX = "/api"
BUDGET_STATUS = 403


class AuditSink(Protocol):
    def record(
        self, *, caller: str, action: str, task: str | None = None, outcome: str, **extra: Any
    ) -> None: ...


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- the query budget (snakemake_fedgen.beacon.budget, built separately) ----------------------


def open_budget(state_dir: Path, settings: Mapping[str, Any]) -> Any:
    """The node's persistent query budget (``STATE/``; settings from ``beacon.budget``)."""
    from snakemake_fedgen.beacon.budget import QueryBudget

    return QueryBudget.open(state_dir, settings)


def charge(
    budget: Any, *, requester: str, dataset: str, found: VariantAnswer, query: str
) -> tuple[VariantAnswer, float]:
    """Charge one dataset's answer to ``requester``: the answer as the budget lets it out
    (alleles below ``beacon.budget.hide_below`` copies answered as absent) and its cost.

    :meth:`QueryBudget.answer` refuses whenever less than the dearest possible answer is
    left, whatever this answer is, so a refusal never tells the answer it withholds.
    Raises ``_Refused(403)`` when the budget has no room (nothing is answered then).
    """
    from snakemake_fedgen.beacon.budget import BudgetExhausted

    try:
        before = budget.remaining(requester, dataset)
        revealed = budget.answer(
            requester, dataset, found.alt_allele_counts, found.n_individuals, query
        )
        after = budget.remaining(requester, dataset)
    except BudgetExhausted as exc:
        raise _Refused(
            BUDGET_STATUS, f"query budget exhausted for dataset {dataset}: {exc}"
        ) from None
    shown = found.hiding(min(revealed)) if revealed else found.hiding(found.n_individuals * 2 + 1)
    cost = 0.0 if before == after else float(before - after)
    return shown, cost


def charge_count(
    budget: Any, settings: BeaconSettings, *, requester: str, dataset: str, count: int, query: str
) -> tuple[int, float]:
    """One dataset's count of individuals as the caller may see it (Laplace noise, before the
    ``min_cell`` floor) and the epsilon it cost (snakemake_fedgen.beacon.counts).

    Raises ``_Refused(403)`` when the caller's epsilon for the dataset is spent.
    """
    from snakemake_fedgen.beacon.budget import BudgetExhausted

    try:
        return answer_count(
            budget, settings.counts, requester=requester, dataset=dataset, true_count=count,
            query=query,
        )  # fmt: skip
    except BudgetExhausted as exc:
        raise _Refused(
            BUDGET_STATUS, f"query budget exhausted for dataset {dataset}: {exc}"
        ) from None


# -- requests ---------------------------------------------------------------------------------


def _int(value: Any, name: str) -> int:
    if isinstance(value, list):
        if len(value) != 1:
            raise QueryError(f"{name}: bracket queries (two values) are not supported.")
        value = value[0]
    try:
        return int(str(value).strip())
    except ValueError:
        raise QueryError(f"{name} must be an integer, got {value!r}.") from None


def _variant_query(params: Mapping[str, Any]) -> VariantQuery:
    if "referenceName" not in params or "start" not in params:
        raise QueryError("a g_variants query needs referenceName and start (0-based).")
    start = params["start"]
    if isinstance(start, str) and "," in start:
        start = start.split(",")
    end = params.get("end")
    if isinstance(end, str) and "," in end:
        end = end.split(",")
    return VariantQuery(
        reference_name=str(params["referenceName"]),
        start=_int(start, "start"),
        end=_int(end, "end") if end is not None else None,
        reference_bases=params.get("referenceBases"),
        alternate_bases=params.get("alternateBases"),
        variant_type=params.get("variantType"),
        assembly_id=params.get("assemblyId"),
    )


async def _read_request(
    request: Request,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """(request parameters, filters, requested granularity) of a GET or POST query."""
    if request.method == "POST":
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            raise QueryError("the request body is not valid JSON (a beaconRequestBody).") from None
        if not isinstance(body, dict):
            raise QueryError("the request body must be a beaconRequestBody object.")
        query = body.get("query") or {}
        params = query.get("requestParameters") or {}
        if isinstance(params.get("g_variant"), Mapping):
            params = dict(params["g_variant"])
        filters = query.get("filters") or []
        if not isinstance(filters, list) or not all(
            isinstance(f, Mapping) and "id" in f for f in filters
        ):
            raise QueryError("query.filters must be a list of filtering terms {id, ...}.")
        return dict(params), [dict(f) for f in filters], query.get("requestedGranularity")
    q = request.query_params
    params = {k: v for k, v in q.items() if k not in ("filters", "requestedGranularity")}
    filters = [parse_filter(t) for t in ",".join(q.getlist("filters")).split(",") if t.strip()]
    return params, filters, q.get("requestedGranularity")


# -- the router -------------------------------------------------------------------------------


def beacon_router(
    settings: BeaconSettings,
    *,
    authenticate: Callable[[str | None], Any],
    requester_of: Callable[[Any], str],
    audit: AuditSink,
    budget: Any,
) -> APIRouter:
    """The ``/api`` router of a node's Beacon.

    Parameters
    ----------
    authenticate
        The node's authenticator (header value -> Caller, AuthError on a bad credential).
    requester_of
        Caller -> its budget key's name part (the node's ``area_of``).
    audit
        The node's audit log: one ``BeaconQuery`` record per dataset per query.
    budget
        The node's query budget (:func:`open_budget`).
    """
    router = APIRouter(prefix=PREFIX)
    lock = threading.Lock()

    def anonymous_requester(request: Request) -> str:
        forwarded = ", ".join(request.headers.getlist("x-forwarded-for")) or None
        peer = request.client.host if request.client else None
        return settings.anonymous.requester_of(peer, forwarded)

    def caller_of(request: Request) -> tuple[Any | None, str]:
        header = request.headers.get("authorization")
        if not header:
            return None, anonymous_requester(request)
        try:
            caller = authenticate(header)
        except AuthError as exc:
            raise _Refused(401, str(exc)) from None
        if getattr(caller, "kind", "") == "anonymous":
            return None, anonymous_requester(request)
        return caller, f"caller:{requester_of(caller)}"

    def level_for(caller: Any | None, dataset: BeaconDataset) -> str:
        if caller is None:
            return dataset.granularity["anonymous"]
        level = dataset.granularity["authenticated"]
        if dataset.visa and dataset.visa in granted_datasets(getattr(caller, "claims", {}) or {}):
            level = max(level, dataset.granularity["visa"], key=LEVELS.index)
        return level

    def error(status: int, message: str, summary: Mapping[str, Any] | None = None) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return JSONResponse(
            R.error_response(settings, status, message, summary=summary),
            status_code=status,
            headers=headers,
        )

    async def answer(request: Request, entry: str, only: str | None) -> JSONResponse:
        endpoint = f"{PREFIX}/{R.ENTRY_PATHS[entry]}"
        who = "unauthenticated"
        summary: dict[str, Any] | None = None
        try:
            caller, requester = caller_of(request)
            who = caller.name if caller is not None else requester
            params, filters, requested = await _read_request(request)
            if requested is not None and requested not in ("boolean", "count", "record"):
                raise QueryError(
                    f"requestedGranularity {requested!r} is not boolean, count or record."
                )
            if only is not None and only not in settings.datasets:
                raise _Refused(404, f"dataset {only} is not served by this Beacon.")
            chosen = [d for i, d in settings.datasets.items() if only in (None, i)]
            levels = {d.id: level_for(caller, d) for d in chosen}
            chosen = [d for d in chosen if levels[d.id] != "none"]
            if not chosen:
                raise _Refused(
                    403, "no dataset of this Beacon answers you; ask the site for access."
                )
            allowed = min((levels[d.id] for d in chosen), key=LEVELS.index)
            wanted = "count" if requested in (None, "record") else requested
            returned = min(allowed, wanted, key=LEVELS.index)
            vq = None
            if entry == "genomicVariant":
                if filters:
                    raise QueryError(
                        "filters are not combined with g_variants here; query /individuals."
                    )
                vq = _variant_query(params)
            summary = R.request_summary(
                requested=requested or "boolean",
                parameters=_parameters(vq) if vq else None,
                filters=filters,
            )
            answers = await asyncio.to_thread(
                run, chosen, vq, filters, requester, who, endpoint, returned
            )
        except _Refused as exc:
            audit.record(
                caller=who,
                action="BeaconQuery",
                outcome=str(exc.status),
                endpoint=endpoint,
                reason=exc.message,
            )
            return error(exc.status, exc.message, summary)
        except QueryError as exc:
            audit.record(
                caller=who, action="BeaconQuery", outcome="400", endpoint=endpoint, reason=str(exc)
            )
            return error(400, str(exc), summary)
        if all(a.count is None and a.note.startswith("query budget") for a in answers):
            return error(BUDGET_STATUS, "; ".join(a.note for a in answers), summary)
        return JSONResponse(
            R.query_response(
                settings, entry=entry, returned=returned, summary=summary, answers=answers
            )
        )

    def run(
        chosen: list[BeaconDataset],
        vq: VariantQuery | None,
        filters: list[dict[str, Any]],
        requester: str,
        who: str,
        endpoint: str,
        returned: str,
    ) -> list[R.DatasetAnswer]:
        answers = []
        for d in chosen:
            cost: float | None = None
            epsilon: float | None = None
            try:
                if vq is not None:
                    if d.genotypes is None:
                        answers.append(R.DatasetAnswer(d.id, None, "no genotypes in this dataset"))
                        continue
                    found = query_variants(d.genotypes, vq, assembly=d.assembly)
                    with lock:
                        shown, cost = charge(
                            budget,
                            requester=requester,
                            dataset=d.id,
                            found=found,
                            query=_describe(vq),
                        )
                    answers.append(R.DatasetAnswer(d.id, shown.carriers))
                else:
                    count, unknown = count_individuals(d, filters)
                    if count is not None:
                        with lock:
                            count, epsilon = charge_count(
                                budget,
                                settings,
                                requester=requester,
                                dataset=d.id,
                                count=count,
                                query=",".join(_describe_filter(f) for f in filters),
                            )
                    note = (
                        f"this dataset cannot answer filter(s) {', '.join(unknown)}"
                        if unknown
                        else ""
                    )
                    answers.append(R.DatasetAnswer(d.id, count, note))
                outcome = "200"
            except _Refused as exc:
                answers.append(R.DatasetAnswer(d.id, None, exc.message))
                outcome = str(exc.status)
            except QueryError:
                raise
            except FedgenError as exc:
                answers.append(R.DatasetAnswer(d.id, None, f"the site could not answer: {exc}"))
                outcome = "500"
            audit.record(
                caller=who,
                action="BeaconQuery",
                outcome=outcome,
                requester=requester,
                endpoint=endpoint,
                dataset=d.id,
                granularity=returned,
                charge=cost,
                epsilon=epsilon,
            )
        if (
            filters
            and all(a.count is None for a in answers)
            and not all(a.note.startswith("query budget") for a in answers)
        ):
            raise QueryError("; ".join(a.note for a in answers) + " (see /api/filtering_terms).")
        return answers

    def guarded(entry: str) -> Callable[..., Any]:
        async def handler(request: Request, dataset_id: str | None = None) -> JSONResponse:
            return await answer(request, entry, dataset_id)

        return handler

    for entry, path in R.ENTRY_PATHS.items():
        for route in (f"/{path}", f"/datasets/{{dataset_id}}/{path}"):
            router.add_api_route(
                route,
                guarded(entry),
                methods=["GET", "POST"],
                name=f"Beacon{entry}",
                response_model=None,
            )

    def root_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    @router.get("", name="BeaconInfo")
    @router.get("/", name="BeaconInfoSlash", include_in_schema=False)
    @router.get("/info", name="BeaconInfo2")
    async def info() -> dict[str, Any]:
        return R.info_response(settings)

    @router.get("/service-info", name="BeaconServiceInfo")
    async def service_info() -> dict[str, Any]:
        return R.service_info(settings)

    @router.get("/map", name="BeaconMap")
    async def beacon_map(request: Request) -> dict[str, Any]:
        return R.map_response(settings, root_of(request))

    @router.get("/configuration", name="BeaconConfiguration")
    async def configuration() -> dict[str, Any]:
        return R.configuration_response(settings)

    @router.get("/entry_types", name="BeaconEntryTypes")
    async def entry_types() -> dict[str, Any]:
        return R.entry_types_response(settings)

    @router.get("/filtering_terms", name="BeaconFilteringTerms")
    async def terms() -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for d in settings.datasets.values():
            for t in await asyncio.to_thread(filtering_terms, d):
                found.setdefault(t["id"], {**t, "datasets": []})["datasets"].append(d.id)
        listed = [
            {k: v for k, v in t.items() if k != "datasets"} | {"scopes": t["scopes"]}
            for t in found.values()
        ]
        return R.filtering_terms_response(settings, listed) | {
            "info": {"datasets": {i: t["datasets"] for i, t in found.items()}}
        }

    @router.get("/datasets", name="BeaconDatasets")
    async def datasets() -> dict[str, Any]:
        return R.collections_response(
            settings,
            "dataset",
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "description": d.description,
                    "info": {
                        "assembly": d.assembly,
                        "genotypes": d.genotypes is not None,
                        "phenotypes": d.phenotypes is not None or d.phenopackets is not None,
                    },
                }
                for d in settings.datasets.values()
            ],
        )

    @router.get("/cohorts", name="BeaconCohorts")
    async def cohorts() -> dict[str, Any]:
        return R.collections_response(settings, "cohort", [])

    return router


def _parameters(q: VariantQuery) -> dict[str, Any]:
    """The query as the default model's ``g_variant`` request parameters."""
    out: dict[str, Any] = {"referenceName": q.reference_name, "start": [q.start]}
    if q.end is not None:
        out["end"] = [q.end]
    names = {
        "referenceBases": q.reference_bases,
        "alternateBases": q.alternate_bases,
        "variantType": q.variant_type,
        "assemblyId": q.assembly_id,
    }
    return out | {k: v for k, v in names.items() if v is not None}


def _describe_filter(f: Mapping[str, Any]) -> str:
    return f"{f.get('id')}{f.get('operator', '')}{f.get('value', '')}"


def _describe(q: VariantQuery) -> str:
    if q.end is None:
        return f"{q.reference_name}:{q.start}:{q.reference_bases or 'N'}>{q.alternate_bases}"
    return f"{q.reference_name}:{q.start}-{q.end}" + (
        f":{q.alternate_bases}" if q.alternate_bases else ""
    )
