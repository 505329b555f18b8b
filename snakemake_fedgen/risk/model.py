"""The federated risk model: a logistic regression of an event, fitted by Newton rounds.

The model is ``logit P(event) = b_0 + sum_j b_j z_j`` on standardised features
``z_j = (x_j - mean_j) / sd_j`` whose means and SDs are pooled over the training sites (sample
SD, ``n - 1``). The centre maximises the penalised log-likelihood::

    l(b) - (lambda / 2) * sum_{j >= 1} b_j^2,   l(b) = sum_i [y_i eta_i - log(1 + e^eta_i)]

(the intercept is not penalised). With ``lambda = 0`` this is the maximum-likelihood logistic
regression; with ``lambda > 0`` it is exactly sklearn's ``LogisticRegression(penalty='l2',
C=1/lambda)`` on the standardised features (sklearn minimises ``C * sum loss + ||w||^2 / 2``).

Every site->centre message is a :class:`~snakemake_fedgen.exact.sums.SiteSums` (plain or masked):

1. :func:`site_moments` (site): ``n``, ``n_cases``, ``n_dropped``, per feature ``sum x`` and
   ``sum x^2``; :func:`init_state` (centre) turns their sum into the initial *state*.
2. :func:`site_terms` (site): at the state's coefficients, the score ``U = X'(y - p)``, the
   information ``H = X'WX`` (upper triangle) and the log-likelihood, under the round id
   ``{run}.it{iteration}.{digest[:12]}`` (fresh per round; masks are never reused);
   :func:`newton_step` (centre) adds them and steps ``b += (H + lambda D)^-1 (U - lambda D b)``
   (or halves back when the penalised deviance rose: the previous step overshot).
3. :func:`finish_model` (centre): the model file from a converged state: coefficients on the
   standardised and the original feature scale with SEs from the inverse penalised information
   and Wald p-values.
4. :func:`predict` (site only): linear predictor and probability per person.

The state is a JSON document (``fedgen-risk-state/1``) with a digest over its content; site
terms carry the digest and the centre refuses terms of another state. :func:`fit_federated`
runs the same functions in-process (tests, benchmarks).

The per-variant binary GWAS (:mod:`snakemake_fedgen.exact.logistic`) solves the same Newton
equations for millions of tiny models at once from a ``.pgen``; this module is the one-model
version on a feature table, sharing its term layout (``U``, upper triangle of ``H``,
log-likelihood), the triangle packing and the masking and round-ledger code of
:mod:`snakemake_fedgen.exact.secure`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    EgressRefused,
    FedgenError,
    SecureAggregationError,
)
from snakemake_executor_plugin_fedgen.fileio import atomic_write

from snakemake_fedgen import __version__
from snakemake_fedgen.exact import sums as sums_format
from snakemake_fedgen.exact.aggregates import MISSING_TOKENS, _from_triu, _triu
from snakemake_fedgen.exact.sums import SiteSums, add_sums, mask_with_ledger

__all__ = [
    "MODEL_FORMAT",
    "STATE_FORMAT",
    "SiteTable",
    "finish_model",
    "fit_federated",
    "init_state",
    "newton_step",
    "predict",
    "read_model",
    "read_site_table",
    "read_state",
    "site_moments",
    "site_terms",
    "sum_terms",
    "terms_round",
    "write_model",
    "write_predictions",
    "write_state",
]

STATE_FORMAT = "fedgen-risk-state/1"
MODEL_FORMAT = "fedgen-risk-model/1"
MOMENTS_KIND = "risk-moments"
TERMS_KIND = "risk-terms"
INTERCEPT = "intercept"
#: Fixed-point fractional bits of masked risk sums: 2^-64 ~ 5e-20 absolute resolution (a PGS
#: average's sum of squares is ~1e-3 and its variance a small difference of two such sums), and
#: still |sum| < 2^62 ~ 4.6e18 of range (sum of sbp^2 over 10^6 people ~ 2e10).
FRAC_BITS = sums_format.FRAC_BITS
#: Relative change of the penalised deviance below which further rounds cannot improve the fit.
DEVIANCE_TOL = 1e-14
OBJECTIVE = (
    "maximise sum_i [y_i eta_i - log(1 + exp(eta_i))] - (ridge / 2) * sum_{j>=1} b_j^2, "
    "eta = b_0 + sum_j b_j (x_j - mean_j) / sd_j (pooled means, sample SDs; intercept "
    "unpenalised; = sklearn LogisticRegression(penalty='l2', C=1/ridge) on standardised features)"
)
_RUN_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,60}$")
_CODINGS = ("auto", "01", "plink2")


# --------------------------------------------------------------------------------------------
# Site tables (individual-level: read at the site, never sent)
# --------------------------------------------------------------------------------------------


@dataclass
class SiteTable:
    """A site's people with complete values; lives at the site only.

    ``x`` has shape (n, p) in the order of ``features``; ``y`` (n,) is 0/1 or None when no
    outcome was asked for. ``dropped`` counts the rows left out, by reason.
    """

    source: str
    id_column: str
    ids: list[str]
    features: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray | None
    coding: str
    n_read: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        """Rows read but left out (missing outcome or feature, no row in the joined table)."""
        return sum(self.dropped.values())

    def describe(self) -> str:
        """One line for stderr: rows read, kept, dropped by reason, outcome coding."""
        why = ", ".join(f"{v} {k}" for k, v in self.dropped.items() if v) or "none"
        coding = f"; outcome coding {self.coding}" if self.y is not None else ""
        return f"{self.source}: {self.n_read} rows, {len(self.ids)} kept, dropped: {why}{coding}"


def _read_columns(path: Path, id_column: str) -> tuple[list[str], list[str], list[list[str]]]:
    """Header, ids and rows of a tab- (or whitespace-) separated table with a header line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"table {path}: cannot be read ({exc})") from None
    body = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    while body and body[0][1].startswith("##"):
        body.pop(0)
    if not body:
        raise ConfigError(f"table {path}: empty; expected a header line naming the columns")
    head = body[0][1]
    split = (lambda s: s.rstrip("\r").split("\t")) if "\t" in head else str.split
    header = [h.strip() for h in split(head)]
    header[0] = header[0].lstrip("#")
    if id_column not in header:
        raise ConfigError(
            f"table {path}: no ID column {id_column!r} (columns: {', '.join(header)}); "
            "pass the ID column's name with --id"
        )
    col = header.index(id_column)
    ids, rows, seen = [], [], set()
    for lineno, line in body[1:]:
        parts = [p.strip() for p in split(line)]
        if len(parts) != len(header):
            raise ConfigError(
                f"table {path}: line {lineno} has {len(parts)} fields but the header has "
                f"{len(header)}"
            )
        if parts[col] in seen:
            raise ConfigError(f"table {path}: line {lineno}: ID {parts[col]!r} appears twice")
        seen.add(parts[col])
        ids.append(parts[col])
        rows.append(parts)
    return header, ids, rows


def _number(token: str, *, path: Path, row: str, column: str) -> float:
    if token in MISSING_TOKENS:
        return math.nan
    try:
        value = float(token)
    except ValueError:
        raise ConfigError(
            f"table {path}: {row} column {column!r}: {token!r} is not a number; code "
            "features numerically (e.g. sex 0/1) and write NA for a missing value"
        ) from None
    return value if math.isfinite(value) else math.nan


def _outcome(raw: np.ndarray, coding: str, *, path: Path, column: str) -> tuple[np.ndarray, str]:
    """0/1 outcome with NaN for missing; plink2 1/2 coding is recognised (0 then missing)."""
    seen = set(np.unique(raw[np.isfinite(raw)]).tolist())
    if coding == "auto":
        coding = "01" if seen <= {0.0, 1.0} else "plink2"
    allowed = {0.0, 1.0} if coding == "01" else {0.0, 1.0, 2.0}
    if not seen <= allowed:
        bad = sorted(seen - allowed)[:3]
        raise ConfigError(
            f"table {path}: outcome {column!r} has value(s) {bad}; expected 0/1 (control/case) "
            "or plink2's 1 = control, 2 = case (0, -9, NA missing)"
        )
    if coding == "01":
        return raw, "0/1"
    y = np.where(raw == 0.0, np.nan, raw - 1.0)
    return y, "plink2 (1=control, 2=case, 0/-9/NA missing)"


def read_site_table(
    table: Path,
    *,
    features: Sequence[str],
    outcome: str | None = None,
    join: Path | None = None,
    id_column: str = "IID",
    coding: str = "auto",
) -> SiteTable:
    """Read a site's outcome and features, optionally joining a second table on the ID.

    A feature is taken from ``table`` if it has the column, else from ``join`` (e.g. a plink2
    ``--score`` output with ``#IID ... SCORE1_AVG``). Rows with a missing outcome, a missing
    feature or no row in ``join`` are dropped and counted in ``dropped``. ``coding`` is
    ``auto`` (0/1 if only 0 and 1 occur, else plink2's 1/2), ``01`` or ``plink2``.
    """
    if coding not in _CODINGS:
        raise ConfigError(f"outcome coding {coding!r}: expected one of {', '.join(_CODINGS)}")
    features = tuple(features)
    if not features:
        raise ConfigError("no features given; pass e.g. --features score,age,sex")
    if len(set(features)) != len(features) or INTERCEPT in features:
        raise ConfigError(f"features {','.join(features)}: names must be unique, not 'intercept'")
    path = Path(table)
    header, ids, rows = _read_columns(path, id_column)
    join_header: list[str] = []
    join_rows: dict[str, list[str]] = {}
    if join is not None:
        join_header, jids, jrows = _read_columns(Path(join), id_column)
        join_rows = dict(zip(jids, jrows, strict=True))
    wanted = ([outcome] if outcome else []) + list(features)
    # Per wanted column: (from the joined table?, column index).
    where: list[tuple[bool, int]] = []
    for name in wanted:
        if name in header:
            where.append((False, header.index(name)))
        elif name in join_header:
            where.append((True, join_header.index(name)))
        else:
            raise ConfigError(
                f"column {name!r} is in neither {path}"
                + (f" nor {join}" if join is not None else "")
                + f"; columns: {', '.join(header + join_header)}"
            )
    n_read = len(ids)
    values = np.full((n_read, len(wanted)), np.nan)
    unmatched = np.zeros(n_read, dtype=bool)
    for i, (key, row) in enumerate(zip(ids, rows, strict=True)):
        other = join_rows.get(key, []) if join is not None else []
        if join is not None and not other:
            unmatched[i] = True
            continue
        for j, (joined, col) in enumerate(where):
            token = other[col] if joined else row[col]
            where_from = Path(join) if joined and join is not None else path
            values[i, j] = _number(token, path=where_from, row=f"ID {key}", column=wanted[j])
    y = None
    found = ""
    dropped: dict[str, int] = {}
    if join is not None:
        dropped["not in joined table"] = int(unmatched.sum())
    ok = ~unmatched
    if outcome:
        y, found = _outcome(values[:, 0], coding, path=path, column=outcome)
        miss = ok & ~np.isfinite(y)
        dropped["outcome missing"] = int(miss.sum())
        ok &= ~miss
    x = values[:, 1:] if outcome else values
    miss = ok & ~np.isfinite(x).all(axis=1)
    dropped["feature missing"] = int(miss.sum())
    ok &= ~miss
    keep = np.flatnonzero(ok)
    return SiteTable(
        source=str(path) + (f" + {join}" if join is not None else ""),
        id_column=id_column,
        ids=[ids[i] for i in keep],
        features=features,
        x=np.ascontiguousarray(x[keep]),
        y=None if y is None else y[keep],
        coding=found,
        n_read=n_read,
        dropped=dropped,
    )


# --------------------------------------------------------------------------------------------
# Masking (site)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Standardisation moments and the initial state
# --------------------------------------------------------------------------------------------


def _check_run(run_id: str) -> str:
    if not _RUN_RE.match(run_id):
        raise ConfigError(
            f"run id {run_id!r}: use 1-60 letters, digits or _ . : - (it names the rounds)"
        )
    return run_id


#: Largest coefficient per SD a site computes terms at. A fitted risk model has log-odds ratios
#: per SD well below 5; a state far beyond turns each person's probability into a step
#: function of one feature, and two such rounds differenced would isolate a few people.
MAX_STANDARDISED_BETA = 20.0


def check_features(data: SiteTable, *, site: str, min_cell: int) -> None:
    """Refuse features that single out fewer than ``min_cell`` people.

    A feature the coordinator chose (a score whose weights sit on one rare variant, say) that
    is the same for everybody but a few people makes every sum over it a sum over those few:
    their outcome would leave the site in the next round's gradient. So: where a feature takes
    at most 20 distinct values, each is held by ``min_cell`` people or more; and whatever the
    feature, at least ``min_cell`` people differ from its most common value.

    Raises
    ------
    EgressRefused
    """
    for j, name in enumerate(data.features):
        values, counts = np.unique(data.x[:, j], return_counts=True)
        others = len(data.x) - int(counts.max())
        if 0 < others < min_cell or (len(values) <= 20 and int(counts.min()) < min_cell):
            few = min(others, int(counts.min())) if len(values) <= 20 else others
            raise EgressRefused(
                f"site {site}: feature {name!r} singles out {few} people (fewer than "
                f"min_cell={min_cell} differ from the others); sums over it would disclose "
                "them. Drop or recode the feature, or check the score's weights"
            )


def site_moments(
    data: SiteTable,
    *,
    site: str,
    run_id: str,
    outcome: str = "event",
    min_n: int = 50,
    min_cases: int = 10,
    min_cell: int = 5,
) -> SiteSums:
    """A site's standardisation sums: ``n``, ``n_cases``, ``n_dropped``, ``sum:f``, ``sumsq:f``.

    Raises
    ------
    EgressRefused
        Fewer than ``min_n`` people, or fewer than ``min_cases`` cases or controls (their count
        would be a small cell, and the site's data would barely inform the model).
    """
    _check_run(run_id)
    if data.y is None:
        raise ConfigError(f"site {site}: the table was read without an outcome column")
    n = len(data.y)
    cases = int(data.y.sum())
    if n < min_n or min(cases, n - cases) < min_cases:
        raise EgressRefused(
            f"site {site}: {n} people ({cases} cases, {n - cases} controls) after dropping "
            f"{data.n_dropped} rows; need at least min_n={min_n} people and min_cases="
            f"{min_cases} cases and controls before any count leaves the site"
        )
    check_features(data, site=site, min_cell=min_cell)
    names = ["n", "n_cases", "n_dropped"]
    names += [f"sum:{f}" for f in data.features] + [f"sumsq:{f}" for f in data.features]
    values = np.concatenate(
        [[n, cases, data.n_dropped], data.x.sum(axis=0), np.square(data.x).sum(axis=0)]
    )
    return SiteSums(
        site=site,
        round_id=f"{run_id}.moments",
        kind=MOMENTS_KIND,
        names=tuple(names),
        values=values.astype(np.float64),
        meta={"run": run_id, "outcome": outcome, "coding": data.coding.split(" ")[0]},
    )


def _digest(state: Mapping[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def init_state(
    total: SiteSums,
    *,
    sites: Sequence[str],
    outcome: str | None = None,
    ridge: float = 0.0,
    tol: float = 1e-8,
    max_iter: int = 25,
    start: str = "prevalence",
    masked: bool = False,
) -> dict[str, Any]:
    """The initial model state from the summed moments of all training sites (centre).

    ``start`` is ``prevalence`` (intercept at the logit of the pooled prevalence) or ``zero``;
    ``outcome`` defaults to the name the sites' moments carry.
    """
    outcome = outcome or total.meta.get("outcome", "")
    if not outcome:
        raise ConfigError("the moments do not name the outcome; pass it")
    if total.kind != MOMENTS_KIND:
        raise ConfigError(f"sums of kind {total.kind!r} are not standardisation moments")
    if ridge < 0 or tol <= 0 or max_iter < 1:
        raise ConfigError(
            f"ridge must be >= 0, tol > 0, max_iter >= 1; got ridge={ridge}, tol={tol}, "
            f"max_iter={max_iter}"
        )
    if start not in ("prevalence", "zero"):
        raise ConfigError(f"start {start!r}: expected prevalence or zero")
    sums = total.as_dict()
    run_id = _check_run(total.round_id.removesuffix(".moments"))
    features = [k.removeprefix("sum:") for k in total.names if k.startswith("sum:")]
    n = sums["n"]
    n_cases = sums["n_cases"]
    feats = []
    for f in features:
        mean = sums[f"sum:{f}"] / n
        var = max(sums[f"sumsq:{f}"] - n * mean * mean, 0.0) / (n - 1)
        sd = math.sqrt(var)
        if not sd > 1e-12 * max(1.0, abs(mean)):
            raise ConfigError(
                f"feature {f!r} is constant over the training sites (mean {mean:g}); drop it"
            )
        feats.append({"name": f, "mean": mean, "sd": sd})
    coef = [0.0] * (len(features) + 1)
    if start == "prevalence":
        coef[0] = math.log(n_cases / (n - n_cases))
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "run": run_id,
        "iteration": 0,
        "outcome": outcome,
        "features": feats,
        "terms": [INTERCEPT, *features],
        "coef": coef,
        "ridge": float(ridge),
        "tol": float(tol),
        "max_iter": int(max_iter),
        "sites": list(sites),
        "masked": bool(masked),
        "n": round(n),
        "n_cases": round(n_cases),
        "n_dropped": round(sums["n_dropped"]),
        "deviance_history": [],
        "converged": False,
        "stopped": None,
        "accepted": None,
        "covariance": None,
    }
    state["digest"] = _digest(state)
    return state


def write_state(state: Mapping[str, Any], path: Path) -> None:
    """Write a state document (JSON, atomically)."""
    _write_json(state, path)


def read_state(path: Path) -> dict[str, Any]:
    """Read a state and check its format and digest (a changed state is refused)."""
    state = _read_json(path, STATE_FORMAT)
    if state.get("digest") != _digest(state):
        raise ConfigError(
            f"{path}: the state's digest does not match its content; it was edited after the "
            "centre wrote it. Use the state file the centre published"
        )
    return state


def _write_json(doc: Mapping[str, Any], path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(path)) as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


def _read_json(path: Path, fmt: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable {fmt} file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ConfigError(f"{path}: not a {fmt} file (format key missing or different)")
    return doc


# --------------------------------------------------------------------------------------------
# Newton rounds
# --------------------------------------------------------------------------------------------


def terms_round(state: Mapping[str, Any]) -> str:
    """The round id of the terms at ``state``: fresh for every iteration and state."""
    return f"{state['run']}.it{state['iteration']}.{state['digest'][:12]}"


def _design(data: SiteTable, state: Mapping[str, Any]) -> np.ndarray:
    names = tuple(f["name"] for f in state["features"])
    if data.features != names:
        raise ConfigError(
            f"{data.source}: features {','.join(data.features)} differ from the model's "
            f"{','.join(names)}"
        )
    mean = np.array([f["mean"] for f in state["features"]])
    sd = np.array([f["sd"] for f in state["features"]])
    return np.column_stack([np.ones(len(data.x)), (data.x - mean) / sd])


def site_terms(
    data: SiteTable, state: Mapping[str, Any], *, site: str, min_cell: int = 5
) -> SiteSums:
    """A site's Newton terms at the state's coefficients (runs at the site).

    Values: ``n``, ``U:<term>`` (``X'(y - p)``), ``H:<a>:<b>`` (upper triangle of ``X'WX``,
    row by row), ``loglik``; ``meta['state']`` is the state's digest.
    """
    from scipy.special import expit

    if site not in state["sites"]:
        raise ConfigError(
            f"site {site} is not a training site of this state ({','.join(state['sites'])})"
        )
    if state["converged"] or state["stopped"]:
        raise ConfigError(
            f"the state of run {state['run']} has stopped ({state['stopped']}); no more rounds"
        )
    if data.y is None:
        raise ConfigError(f"site {site}: the table was read without an outcome column")
    x = _design(data, state)
    beta = np.asarray(state["coef"], dtype=np.float64)
    if np.abs(beta[1:]).max(initial=0.0) > MAX_STANDARDISED_BETA:
        raise EgressRefused(
            f"site {site}: the state of run {state['run']} has a coefficient of "
            f"{np.abs(beta[1:]).max():.3g} per SD (more than {MAX_STANDARDISED_BETA:g}); no "
            "risk model has that, and terms at such a state would single out people"
        )
    check_features(data, site=site, min_cell=min_cell)
    eta = x @ beta
    p = expit(eta)
    u = x.T @ (data.y - p)
    h = x.T @ (x * (p * (1.0 - p))[:, None])
    ll = float(np.sum(data.y * eta - np.logaddexp(0.0, eta)))
    terms = state["terms"]
    iu = np.triu_indices(len(terms))
    names = ["n", *(f"U:{t}" for t in terms)]
    names += [f"H:{terms[a]}:{terms[b]}" for a, b in zip(*iu, strict=True)]
    names.append("loglik")
    return SiteSums(
        site=site,
        round_id=terms_round(state),
        kind=TERMS_KIND,
        names=tuple(names),
        values=np.concatenate([[len(data.y)], u, _triu(h), [ll]]),
        meta={"state": state["digest"], "run": state["run"], "iteration": str(state["iteration"])},
    )


def sum_terms(state: Mapping[str, Any], uploads: Sequence[SiteSums]) -> SiteSums:
    """Add one round's terms (centre), refusing terms of another state or with a site missing."""
    for up in uploads:
        if up.kind != TERMS_KIND:
            raise ConfigError(f"site {up.site}: upload of kind {up.kind!r} is not Newton terms")
        got = up.meta.get("state", "")
        if got != state["digest"]:
            raise ConfigError(
                f"site {up.site}: terms computed for state {got[:12]} (iteration "
                f"{up.meta.get('iteration', '?')}), not for this state {state['digest'][:12]} "
                f"(iteration {state['iteration']}); the site used a stale state: rerun its "
                "terms with the current state file"
            )
    sites = [up.site for up in uploads]
    plain = [up.site for up in uploads if not up.masked]
    if state["masked"] and plain:
        raise SecureAggregationError(
            f"round {terms_round(state)}: run {state['run']} is masked but site(s) "
            f"{','.join(plain)} sent plain terms; they must mask (--key, --registry)"
        )
    if not state["masked"] and len(plain) < len(uploads):
        raise SecureAggregationError(
            f"round {terms_round(state)}: run {state['run']} is plain (its moments were not "
            "masked) but some terms are masked; every round of a run is masked or none is"
        )
    if uploads and uploads[0].masked and list(uploads[0].participants) != state["sites"]:
        raise SecureAggregationError(
            f"round {uploads[0].round_id}: masked among {','.join(uploads[0].participants)} "
            f"but the model trains on {','.join(state['sites'])}"
        )
    total = add_sums(uploads)
    if sorted(sites) != sorted(state["sites"]):
        missing = sorted(set(state["sites"]) - set(sites))
        extra = sorted(set(sites) - set(state["sites"]))
        raise SecureAggregationError(
            f"round {terms_round(state)}: terms from {','.join(sites)}; missing "
            f"{','.join(missing) or '-'}, not training sites {','.join(extra) or '-'}. Every "
            f"training site ({','.join(state['sites'])}) must send its terms every round"
        )
    if round(total.as_dict()["n"]) != state["n"]:
        raise ConfigError(
            f"round {terms_round(state)}: the sites' terms count {total.as_dict()['n']:.0f} "
            f"people but their moments counted {state['n']}; a site's data changed during the "
            "fit: start again from the moments"
        )
    return total


def newton_step(state: Mapping[str, Any], total: SiteSums) -> dict[str, Any]:
    """One penalised Newton step from the summed terms (centre); returns the next state.

    If the penalised deviance at the state's coefficients is higher than at the last accepted
    coefficients, the last step overshot: the next coefficients are halfway back (step
    halving, as R's ``glm.fit`` does) and no Newton step is taken from these terms. Converged
    when ``max_j |step_j| / max(1, |b_j|) < tol`` or the penalised deviance changed by less
    than :data:`DEVIANCE_TOL` relative; ``covariance`` is the inverse penalised information at
    the last accepted coefficients. Stops with ``stopped: max_iter`` (``converged: false``)
    after ``max_iter`` rounds.
    """
    if state["converged"] or state["stopped"]:
        raise ConfigError(f"the state has already stopped ({state['stopped']}); nothing to step")
    if total.meta.get("state") != state["digest"]:
        raise ConfigError("the summed terms are not of this state; add them with sum_terms")
    k = len(state["terms"])
    v = total.values
    assert v is not None
    ll = float(v[-1])
    beta = np.asarray(state["coef"], dtype=np.float64)
    pen = np.full(k, state["ridge"])
    pen[0] = 0.0
    pdev = -2.0 * ll + float(np.sum(pen * beta * beta)) if math.isfinite(ll) else math.inf
    best = state["accepted"]
    entry: dict[str, Any] = {
        "iteration": state["iteration"],
        "deviance": -2.0 * ll if math.isfinite(ll) else None,
        "penalised_deviance": pdev if math.isfinite(pdev) else None,
    }
    nxt = {k2: v2 for k2, v2 in state.items() if k2 != "digest"}
    slack = DEVIANCE_TOL * (abs(best["penalised_deviance"]) + 0.1) if best else 0.0
    if best is not None and not pdev <= best["penalised_deviance"] + slack:
        new = 0.5 * (np.asarray(best["coef"]) + beta)
        entry |= {"step": float(np.max(np.abs(new - beta) / np.maximum(1.0, np.abs(new)))),
                  "halved": True}  # fmt: skip
        converged = False
    else:
        if not math.isfinite(pdev):
            raise FedgenError(f"run {state['run']}: the log-likelihood is not finite")
        u = v[1 : 1 + k]
        hp = _from_triu(v[1 + k : -1], k) + np.diag(pen)
        try:
            step = np.linalg.solve(hp, u - pen * beta)
            cov = np.linalg.inv(hp)
        except np.linalg.LinAlgError:
            raise FedgenError(
                f"run {state['run']} iteration {state['iteration']}: the information matrix is "
                "singular (collinear features, or an outcome separated by a feature); drop a "
                "feature or use a ridge penalty"
            ) from None
        if not np.isfinite(step).all():
            raise FedgenError(f"run {state['run']}: the Newton step is not finite")
        new = beta + step
        # The sites refuse states beyond MAX_STANDARDISED_BETA: shorten a step that would
        # leave that box (a step from a poor start; a model that needs it is no risk model).
        if np.abs(new[1:]).max(initial=0.0) > MAX_STANDARDISED_BETA:
            b, d = beta[1:], step[1:]
            room = np.where(d > 0, MAX_STANDARDISED_BETA - b, MAX_STANDARDISED_BETA + b)
            with np.errstate(divide="ignore"):
                t = np.where(d != 0, room / np.abs(d), np.inf)
            step = step * float(np.clip(t.min(), 0.0, 1.0))
            new = beta + step
        rel = float(np.max(np.abs(step) / np.maximum(1.0, np.abs(new))))
        entry |= {"step": rel, "halved": False}
        converged = rel < state["tol"] or (
            best is not None and abs(pdev - best["penalised_deviance"]) < slack
        )
        nxt["accepted"] = {
            "coef": [float(b) for b in beta],
            "deviance": -2.0 * ll,
            "penalised_deviance": pdev,
        }
        nxt["covariance"] = [[float(c) for c in row] for row in cov]
    nxt |= {
        "iteration": state["iteration"] + 1,
        "coef": [float(b) for b in new],
        "deviance_history": [*state["deviance_history"], entry],
        "converged": bool(converged),
    }
    if converged:
        nxt["stopped"] = "converged"
    elif nxt["iteration"] >= state["max_iter"]:
        nxt["stopped"] = "max_iter"
    nxt["digest"] = _digest(nxt)
    return nxt


# --------------------------------------------------------------------------------------------
# The model file
# --------------------------------------------------------------------------------------------


def _wald(beta: np.ndarray, cov: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    from scipy import stats

    se = np.sqrt(np.diag(cov))
    z = beta / se
    p = np.exp(stats.norm.logsf(np.abs(z)) + math.log(2.0))
    return [
        {"term": t, "beta": float(b), "se": float(s), "z": float(zz), "p": float(pp)}
        for t, b, s, zz, pp in zip(names, beta, se, z, p, strict=True)
    ]


def finish_model(
    state: Mapping[str, Any],
    *,
    provenance: Mapping[str, Any] | None = None,
    allow_unconverged: bool = False,
) -> dict[str, Any]:
    """The model file from the final state (centre; no further round).

    Original-scale coefficients are the standardised ones mapped back:
    ``b_j / sd_j`` and ``b_0 - sum_j b_j mean_j / sd_j``, with the covariance ``A C A'``. For
    ``ridge = 0`` they equal the unpenalised fit on the raw features.
    """
    if not state["converged"] and not allow_unconverged:
        raise FedgenError(
            f"run {state['run']} has not converged (stopped: {state['stopped']}, after "
            f"{state['iteration']} rounds); raise max_iter or ridge and refit, or pass "
            "--allow-unconverged to write the model anyway (marked converged: false)"
        )
    if state["covariance"] is None:
        raise FedgenError(f"run {state['run']}: no Newton round was taken yet")
    beta = np.asarray(state["coef"], dtype=np.float64)
    cov = np.asarray(state["covariance"], dtype=np.float64)
    mean = np.array([f["mean"] for f in state["features"]])
    sd = np.array([f["sd"] for f in state["features"]])
    a = np.eye(len(beta))
    a[0, 1:] = -mean / sd
    a[1:, 1:] = np.diag(1.0 / sd)
    terms = state["terms"]
    last = state["accepted"]
    return {
        "format": MODEL_FORMAT,
        "model": "logistic",
        "outcome": state["outcome"],
        "objective": OBJECTIVE,
        "features": state["features"],
        "coefficients": {
            "standardised": _wald(beta, cov, terms),
            "original": _wald(a @ beta, a @ cov @ a.T, terms),
        },
        "training_sites": state["sites"],
        "secure_aggregation": state["masked"],
        "n": state["n"],
        "n_cases": state["n_cases"],
        "n_dropped": state["n_dropped"],
        "iterations": state["iteration"],
        "converged": state["converged"],
        "stopped": state["stopped"],
        "deviance": last["deviance"],
        "deviance_history": [h["deviance"] for h in state["deviance_history"]],
        "step_halvings": sum(bool(h.get("halved")) for h in state["deviance_history"]),
        "ridge": state["ridge"],
        "tol": state["tol"],
        "run": state["run"],
        "state_digest": state["digest"],
        "versions": {"fedgen": __version__, "numpy": np.__version__},
        "provenance": dict(provenance or {}),
    }


def write_model(model: Mapping[str, Any], path: Path) -> None:
    """Write the model file (JSON, atomically)."""
    _write_json(model, path)


def read_model(path: Path) -> dict[str, Any]:
    """Read a model file written by :func:`write_model`."""
    return _read_json(path, MODEL_FORMAT)


def predict(model: Mapping[str, Any], data: SiteTable) -> tuple[np.ndarray, np.ndarray]:
    """Linear predictor and event probability per person (site only; never sent).

    Returns two arrays of shape (n,) aligned with ``data.ids``.
    """
    from scipy.special import expit

    std = model["coefficients"]["standardised"]
    state_like = {"features": model["features"]}
    x = _design(data, state_like)
    beta = np.array([c["beta"] for c in std])
    eta = x @ beta
    return eta, expit(eta)


def write_predictions(path: Path, data: SiteTable, lp: np.ndarray, prob: np.ndarray) -> None:
    """Write ``<id> linear_predictor probability`` (TSV) at the site."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(path)) as f:
        f.write(f"{data.id_column}\tlinear_predictor\tprobability\n")
        for i, e, p in zip(data.ids, lp, prob, strict=True):
            f.write(f"{i}\t{float(e)!r}\t{float(p)!r}\n")


# --------------------------------------------------------------------------------------------
# In-process driver
# --------------------------------------------------------------------------------------------


def fit_federated(
    sites: Mapping[str, SiteTable],
    *,
    outcome: str = "event",
    run_id: str = "risk",
    ridge: float = 0.0,
    tol: float = 1e-8,
    max_iter: int = 25,
    start: str = "prevalence",
    keys: Mapping[str, Any] | None = None,
    public_keys: Mapping[str, str] | None = None,
    ledger_dir: Path | None = None,
    min_n: int = 50,
    min_cases: int = 10,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit in-process with the functions the CLI runs; returns (model, final state).

    ``sites`` maps site names (in registry order) to their tables. With ``keys`` (site ->
    X25519 private key) and ``public_keys`` every upload is masked and the centre only adds
    masked vectors. The model is returned even when not converged (check ``converged``).
    """
    names = list(sites)

    def upload(s: str, sums: SiteSums) -> SiteSums:
        if keys is None:
            return sums
        ledger = None if ledger_dir is None else Path(ledger_dir) / f"{s}.rounds"
        return mask_with_ledger(
            sums, private_key=keys[s], public_keys=public_keys or {}, participants=names,
            ledger=ledger,
        )  # fmt: skip

    moments = [
        upload(s, site_moments(d, site=s, run_id=run_id, outcome=outcome, min_n=min_n,
                               min_cases=min_cases))
        for s, d in sites.items()
    ]  # fmt: skip
    state = init_state(
        add_sums(moments), sites=names, outcome=outcome, ridge=ridge, tol=tol,
        max_iter=max_iter, start=start, masked=keys is not None,
    )  # fmt: skip
    while not state["stopped"]:
        terms = [upload(s, site_terms(d, state, site=s)) for s, d in sites.items()]
        state = newton_step(state, sum_terms(state, terms))
    return finish_model(state, allow_unconverged=True), state
