"""The coordinator's side of discovery: one Beacon query fanned out to every site in parallel.

Each site's Beacon is at its registry ``beacon_url`` (default: the TES URL's origin + ``/api``)
and is called with the site's bearer token exactly as the executor gets it
(``Site.token()``). A site that does not answer is listed with the reason (connection
refused, 401, budget exhausted, timeout, ...), never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from snakemake_executor_plugin_fedgen.errors import AuthError
from snakemake_executor_plugin_fedgen.sites import Site

from snakemake_fedgen.beacon.responses import API_VERSION
from snakemake_fedgen.beacon.variants import QueryError

TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class SiteAnswer:
    """One dataset's answer at one site, or why the site gave none (``dataset`` None)."""

    site: str
    dataset: str | None
    exists: bool | None
    count: int | None = None
    adjusted: bool = False
    note: str = ""
    #: Scale of the Laplace noise in ``count`` (the site's ``info.countNoise``), if noisy.
    noise_scale: float | None = None

    @property
    def answered(self) -> bool:
        """Whether the site gave this dataset an answer (yes or no)."""
        return self.exists is not None


def parse_variant(text: str) -> dict[str, Any]:
    """``21:12345:A:G`` (VCF 1-based POS) -> Beacon ``g_variant`` parameters (0-based start)."""
    parts = text.split(":")
    if len(parts) != 4 or not parts[1].isdigit() or int(parts[1]) < 1:
        raise QueryError(f"--variant {text!r}: expected CHROM:POS:REF:ALT with a 1-based POS.")
    chrom, pos, ref, alt = parts
    return {
        "referenceName": chrom,
        "start": [int(pos) - 1],
        "referenceBases": ref.upper(),
        "alternateBases": alt.upper(),
    }


def parse_range(text: str) -> dict[str, Any]:
    """``21:1000-2000`` (1-based, inclusive) -> Beacon range parameters (0-based, end exclusive)."""
    chrom, _, span = text.partition(":")
    first, _, last = span.partition("-")
    if not chrom or not first.isdigit() or not last.isdigit() or not 1 <= int(first) <= int(last):
        raise QueryError(f"--range {text!r}: expected CHROM:START-END (1-based, START <= END).")
    return {"referenceName": chrom, "start": [int(first) - 1], "end": [int(last)]}


def request_body(
    *, parameters: Mapping[str, Any] | None, filters: Sequence[Mapping[str, Any]], granularity: str
) -> dict[str, Any]:
    """A ``beaconRequestBody``."""
    query: dict[str, Any] = {"requestedGranularity": granularity}
    if parameters:
        query["requestParameters"] = {"g_variant": dict(parameters)}
    if filters:
        query["filters"] = [dict(f) for f in filters]
    return {"meta": {"apiVersion": API_VERSION}, "query": query}


def _failure(site: str, exc: Exception) -> SiteAnswer:
    if isinstance(exc, httpx.ConnectError):
        reason = (
            "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
        )
    elif isinstance(exc, httpx.TimeoutException):
        reason = "timeout"
    else:
        reason = str(exc)
    return SiteAnswer(site, None, None, note=reason)


def site_answers(site: str, status: int, doc: Any) -> list[SiteAnswer]:
    """One site's Beacon response (HTTP ``status``, JSON ``doc``) as answers per dataset: counts
    with their small-count and noise notes, booleans, or why there is no answer."""
    if not isinstance(doc, dict):
        return [SiteAnswer(site, None, None, note=f"HTTP {status}: not a Beacon response")]
    if "error" in doc or status != 200:
        err = doc.get("error") or {}
        message = str(err.get("errorMessage") or doc.get("message") or "")
        label = {401: "401 unauthorized", 403: "403 refused", 404: "404 not found"}.get(
            status, f"HTTP {status}"
        )
        if "budget" in message:
            label = "budget exhausted"
        return [SiteAnswer(site, None, None, note=f"{label}: {message}"[:200])]
    sets = (doc.get("response") or {}).get("resultSets")
    if sets is not None:
        out = []
        for rs in sets:
            info = rs.get("info") or {}
            note = str(info.get("note", ""))
            if note:
                out.append(SiteAnswer(site, rs.get("id"), None, note=note))
                continue
            noise = info.get("countNoise")
            scale = noise.get("scale") if isinstance(noise, dict) else None
            notes = []
            if "countAdjustedTo" in info:
                notes.append(
                    f"1-{int(info['countAdjustedTo']) - 1}, shown as {info['countAdjustedTo']}"
                )
            if isinstance(scale, int | float) and scale > 0:
                notes.append(f"noisy: sd {math.sqrt(2) * scale:.1f}")
            else:
                scale = None
            out.append(
                SiteAnswer(
                    site,
                    rs.get("id"),
                    bool(rs.get("exists")),
                    int(rs.get("resultsCount", 0)),
                    adjusted="countAdjustedTo" in info,
                    note="; ".join(notes),
                    noise_scale=scale,
                )
            )
        return out
    datasets = (doc.get("info") or {}).get("datasets") or []
    if not datasets:
        return [SiteAnswer(site, None, bool(doc["responseSummary"]["exists"]), note="boolean")]
    return [
        SiteAnswer(
            site,
            d.get("id"),
            None if d.get("note") else bool(d.get("exists")),
            note=str(d.get("note", "boolean")),
        )
        for d in datasets
    ]


def query_site(
    site: Site, *, entry: str, body: Mapping[str, Any], timeout: float
) -> list[SiteAnswer]:
    """POST the query to one site's Beacon; the answers per dataset, or one failure."""
    path = {"genomicVariant": "g_variants", "individual": "individuals"}[entry]
    try:
        token = site.token()
    except AuthError as exc:
        return [SiteAnswer(site.name, None, None, note=f"no token: {exc}")]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.post(f"{site.beacon}/{path}", json=dict(body), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return [_failure(site.name, exc)]
    try:
        doc = r.json()
    except ValueError:
        doc = None
    return site_answers(site.name, r.status_code, doc)


def discover(
    sites: Sequence[Site], *, entry: str, body: Mapping[str, Any], timeout: float = TIMEOUT_SECONDS
) -> list[SiteAnswer]:
    """Query every site in parallel; answers in the order of ``sites``."""
    if not sites:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(sites))) as pool:
        results = list(
            pool.map(lambda s: query_site(s, entry=entry, body=body, timeout=timeout), sites)
        )
    return [a for answers in results for a in answers]


def total(answers: Sequence[SiteAnswer]) -> tuple[int, bool] | None:
    """(total count, a lower bound?) over counted answers, or None when none has a count.

    A count reported as the floor (``min_cell`` for 1..min_cell-1) adds 1, its smallest possible
    value, and makes the total a lower bound (shown ``>= X``): summing the floors would
    overstate it, and nothing finer may be known.
    """
    counted = [a for a in answers if a.count is not None]
    if not counted:
        return None
    return sum(1 if a.adjusted else a.count or 0 for a in counted), any(a.adjusted for a in counted)


def noise_sd(answers: Sequence[SiteAnswer]) -> float | None:
    """Standard deviation of the noise in :func:`total` (independent Laplace noise per answer:
    variance 2 b^2 each), or None when no counted answer is noisy."""
    scales = [a.noise_scale for a in answers if a.count is not None and a.noise_scale]
    if not scales:
        return None
    return math.sqrt(sum(2 * b * b for b in scales))


def matching_sites(answers: Sequence[SiteAnswer], *, min_count: int | None) -> list[str]:
    """Sites with a dataset that exists (and, with ``min_count``, reports at least that count)."""
    out: list[str] = []
    for a in answers:
        if not a.exists or a.site in out:
            continue
        if min_count is not None and (a.count is None or a.count < min_count):
            continue
        out.append(a.site)
    return out
