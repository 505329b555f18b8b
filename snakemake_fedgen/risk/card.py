"""The model card: one HTML page on a fitted risk model and how it performed, for the report.

It follows the sections of Mitchell et al. (2019), "Model Cards for Model Reporting", as far as
the run can fill them: model details (form, features and their scaling, coefficients, training
sites and sizes, fit), intended use, the evaluation (pooled and per site, in-sample and held
out), the score's provenance, and caveats. Everything on it comes from the model file and the
evaluation results: aggregates only.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

__all__ = ["render_card", "write_card"]


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    return html.escape(str(x))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_num(v)}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _ci(pair: Sequence[float] | None) -> str:
    if not pair:
        return "n/a"
    return f"{_num(pair[0])} to {_num(pair[1])}"


def _evaluation(name: str, result: Mapping[str, Any]) -> str:
    parts = [f"<h3>{html.escape(name)}</h3>"]
    parts.append(
        f"<p>{result['n']} people, {result['n_cases']} events, at sites "
        f"{html.escape(', '.join(result['sites']))}.</p>"
    )
    rows = [
        [
            m,
            v["auc"],
            _ci(v.get("auc_ci")),
            v["brier"],
            v["nagelkerke_r2"],
            v["calibration_in_the_large"],
            v["oe_ratio"],
        ]
        for m, v in result["models"].items()
    ]
    parts.append(
        _table(
            ["model", "AUC", "95% CI", "Brier", "Nagelkerke R²", "calibration-in-the-large", "O/E"],
            rows,
        )
    )
    for c in result.get("comparisons", []):
        nri = c.get("nri", {})
        cat = nri.get("categorical", {})
        cont = nri.get("continuous", {})
        parts.append(
            f"<p>{html.escape(c['model'])} vs {html.escape(c['reference'])}: delta AUC "
            f"{_num(c['delta_auc'])} (95% CI {_ci(c.get('delta_auc_ci'))}, p {_num(c['p'])}); "
            f"categorical NRI {_num(cat.get('total'))} (events {_num(cat.get('events'))}, "
            f"non-events {_num(cat.get('nonevents'))}); continuous NRI "
            f"{_num(cont.get('total'))}.</p>"
        )
    per_site = result.get("per_site") or []
    if per_site:
        rows = []
        for s in per_site:
            for m, v in (s.get("models") or {}).items():
                rows.append(
                    [s["site"], m, s.get("n"), s.get("n_cases"), v.get("auc"), v.get("brier")]
                )
            if not s.get("models"):
                rows.append([s["site"], "suppressed", None, None, None, None])
        parts.append(_table(["site", "model", "n", "events", "AUC", "Brier"], rows))
    return "".join(parts)


def render_card(
    model: Mapping[str, Any],
    *,
    name: str,
    evaluations: Mapping[str, Mapping[str, Any]] | None = None,
    calibration_plots: Mapping[str, Path] | None = None,
) -> str:
    """The card as one HTML document (no external resources: plots are embedded)."""
    std = {c["term"]: c for c in model["coefficients"]["standardised"]}
    orig = {c["term"]: c for c in model["coefficients"]["original"]}
    feats = {f["name"]: f for f in model["features"]}
    rows = [
        [
            term,
            feats.get(term, {}).get("mean"),
            feats.get(term, {}).get("sd"),
            std[term]["beta"],
            std[term]["se"],
            orig[term]["beta"],
            orig[term]["p"],
        ]
        for term in std
    ]
    prov = model.get("provenance") or {}
    secrecy = (
        "secure aggregation: the centre saw only sums over sites"
        if model.get("secure_aggregation")
        else "plain per-site sums"
    )
    versions = ", ".join(f"{k} {v}" for k, v in model["versions"].items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Model card: {html.escape(name)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
        f"<h1>Model card: {html.escape(name)}</h1>",
        "<h2>Model details</h2>",
        f"<p>Logistic regression of <b>{html.escape(str(model['outcome']))}</b> on "
        f"{len(model['features'])} features, fitted by federated Newton-Raphson over sites "
        f"{html.escape(', '.join(model['training_sites']))} "
        f"({secrecy}); "
        f"n = {model['n']} ({model['n_cases']} events, {model.get('n_dropped', 0)} rows left "
        f"out for missing values); {model['iterations']} rounds, converged: "
        f"{model['converged']}; ridge {model['ridge']}; deviance {_num(model['deviance'])}.</p>",
        f"<p>Objective: {html.escape(str(model.get('objective', '')))}</p>",
        _table(["term", "mean", "SD", "beta (per SD)", "SE", "beta (original units)", "p"], rows),
        "<h2>Intended use</h2>",
        "<p>Estimating the risk of the outcome for adults like those of the training sites, "
        "applied at a site to its own people with <code>fedgen risk score</code> (the "
        "predictions never leave the site). Not validated for clinical decisions; a simulated "
        "federation trains the demo model.</p>",
        "<h2>Polygenic score</h2>",
        "<p>"
        + (
            f"Weights {html.escape(str(prov.get('weights', '')))} (SHA-256 "
            f"{html.escape(str(prov.get('weights_sha256', '')))})."
            if prov.get("weights")
            else "This model has no polygenic score."
        )
        + "</p>",
    ]
    if evaluations:
        parts.append("<h2>Evaluation</h2>")
        parts.append(
            "<p>insample: every site scored with the model fitted on all sites; loso: each "
            "site scored with the model and score weights fitted without it (held out). "
            "Metrics come from per-site sums (round 1: risk histograms, Brier, log-likelihood, "
            "reclassification; round 2: calibration deciles and DeLong sums).</p>"
        )
        for ev_name, result in evaluations.items():
            parts.append(_evaluation(ev_name, result))
            plot = (calibration_plots or {}).get(ev_name)
            if plot:
                data = base64.b64encode(Path(plot).read_bytes()).decode()
                parts.append(
                    f"<img alt='calibration plot, {html.escape(ev_name)}' "
                    f"src='data:image/png;base64,{data}'>"
                )
    parts += [
        "<h2>Caveats</h2>",
        "<ul><li>Held-out (loso) figures are the honest estimate of performance at a new site; "
        "in-sample figures are optimistic.</li>"
        "<li>AUCs come from risk histograms with the stated bin resolution "
        "(<code>auc_bin_bound</code> in the results).</li>"
        "<li>Calibration cells with fewer people than the disclosure limits are suppressed.</li>"
        "</ul>",
        f"<p>Versions: {html.escape(versions)}; "
        f"run {html.escape(str(model['run']))}; state {html.escape(str(model['state_digest']))}.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_card(path: Path, html_text: str) -> None:
    """Write the card atomically."""
    write_text_atomic(Path(path), html_text)
