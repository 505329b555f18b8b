"""Federated evaluation of risk predictions: discrimination, calibration, reclassification.

Each site holds a predictions table (ID, observed outcome, one predicted probability per model);
it never leaves. Every site->centre message is a :class:`~snakemake_fedgen.exact.sums.SiteSums`
(plain, or masked under the project's pairwise masks so that only the sum over all sites can be
read); the centre adds them with :func:`~snakemake_fedgen.exact.sums.add_sums`.

Round 1 (:func:`count_sums`, at each site): per model, histogram counts of the predicted risk in
fixed public bins (equal width on the logit scale, clamped), separately for cases and non-cases;
sums for the Brier score, the log-likelihood, ``n`` and ``n_cases``; count, events and sum of
``p`` per fixed risk category; and, per comparison of a model with the reference model, the
counts of people reclassified up and down (between categories, and by any change) among events
and non-events. :func:`site_metrics` separately releases the site's own AUC (exact), Brier,
calibration-in-the-large and O/E for the per-site table, only when the site has at least
``min_n`` cases and ``min_n`` non-cases.

Centre (:func:`summarise_counts`): from the pooled histograms, the cut points of the pooled
risk deciles (bin edges) and the DeLong placement value of each bin (for a case in bin ``b``:
the share of non-cases in lower bins plus half those in ``b``; for a non-case: the share of cases
in higher bins plus half those in ``b``). These are public after summation and go back to the
sites in the round-1 summary file.

Round 2 (:func:`placement_sums`, at each site): per model and pooled decile, count, events and
sum of ``p`` (the expected events need the pooled cut points, so they cannot come earlier); and
the sums of the placement values, their squares and their cross products between models over
the site's cases and over its non-cases (the cross products pair two models' values of the same
person, so they cannot come from histograms). Everything else comes from round 1.

Centre (:func:`evaluate`): pooled AUC per model with DeLong standard error and 95% CI, delta AUC
with CI and p (DeLong, DeLong & Clarke-Pearson 1988), Brier score, Nagelkerke R^2, calibration by
pooled decile (cells smaller than ``min_n`` suppressed and counted), categorical and continuous
NRI, and the per-site table.

Resolution: the binned AUC counts a case and a non-case in the same bin as half a concordant
pair, as it does for exactly tied predictions. It therefore equals the exact (Mann-Whitney, ties
counted half) AUC when no two distinct predictions share a bin, and otherwise differs from it by
at most ``0.5 * sum_b cases_b * noncases_b / (n_cases * n_noncases)``, which the centre computes
from the pooled histogram and publishes as ``auc_bin_bound``. The DeLong quantities are those of
the binned scores, so they share the bound's condition.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import ConfigError, SiteDataError
from snakemake_executor_plugin_fedgen.fileio import atomic_write

from snakemake_fedgen.exact.sums import SiteSums, add_sums, mask_with_ledger

__all__ = [
    "DEFAULT_CUTOFFS",
    "SUMMARY_FORMAT",
    "BinSpec",
    "EvalDesign",
    "Predictions",
    "RoundOneSummary",
    "calibration_plot",
    "count_sums",
    "evaluate",
    "placement_sums",
    "read_predictions",
    "read_summary",
    "run_federated_evaluation",
    "site_metrics",
    "summarise_counts",
    "write_evaluation",
    "write_summary",
]

#: ACC/AHA 10-year ASCVD risk categories: <5%, 5-7.5%, 7.5-20%, >=20%.
DEFAULT_CUTOFFS = (0.05, 0.075, 0.20)
SUMMARY_FORMAT = "fedgen-risk-eval-summary/1"
RESULT_FORMAT = "fedgen-risk-evaluation/1"
KIND_COUNTS = "risk-eval-counts"
KIND_PLACEMENTS = "risk-eval-placements"
KIND_SITE = "risk-eval-site"
_Z975 = 1.959963984540054
_LOG_EPS = 1e-15  # p is clipped to [eps, 1 - eps] in the log-likelihood only
_SITE_DIGITS = 4  # decimals of a site's released own metrics


# ---------------------------------------------------------------------------------------------
# Public design: bins, models, categories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinSpec:
    """Equal-width bins of ``logit(p)`` over ``[lo, hi]``; values outside go to the end bins.

    The default (2000 bins over logits -10..10) has width 0.01 on the logit scale: two
    predictions share a bin only if their odds differ by less than 1%. The logit scale gives
    the same relative resolution to a 1% and a 30% risk, where equal bins on [0, 1] (width
    0.0005) would put most of a primary-prevention population into a few bins below 10%.
    """

    bins: int = 2000
    lo: float = -10.0
    hi: float = 10.0

    def __post_init__(self) -> None:
        if self.bins < 10 or not self.lo < self.hi:
            raise ConfigError(
                f"bins need bins >= 10 and lo < hi; got bins={self.bins}, lo={self.lo}, "
                f"hi={self.hi}"
            )

    @property
    def width(self) -> float:
        """Bin width on the logit scale."""
        return (self.hi - self.lo) / self.bins

    def index(self, p: np.ndarray) -> np.ndarray:
        """Bin of each probability, shape (n,) int64 in ``0 .. bins-1``."""
        p = np.asarray(p, dtype=np.float64)
        with np.errstate(divide="ignore"):
            x = np.log(p) - np.log1p(-p)
        x = np.clip(x, self.lo, self.hi)
        return np.clip(np.floor((x - self.lo) / self.width), 0, self.bins - 1).astype(np.int64)

    def edge_probability(self, edge: np.ndarray) -> np.ndarray:
        """Probability at the lower edge of bin ``edge`` (the cut point between edge-1 and edge)."""
        x = self.lo + np.asarray(edge, dtype=np.float64) * self.width
        return 1.0 / (1.0 + np.exp(-x))

    def label(self) -> str:
        """Text form, e.g. ``logit:2000:-10:10``."""
        return f"logit:{self.bins}:{self.lo:g}:{self.hi:g}"

    @classmethod
    def parse(cls, text: str) -> BinSpec:
        """Inverse of :meth:`label`."""
        try:
            scale, bins, lo, hi = text.split(":")
            if scale != "logit":
                raise ValueError
            return cls(int(bins), float(lo), float(hi))
        except ValueError:
            raise ConfigError(f"bin spec {text!r} is not 'logit:BINS:LO:HI'") from None


@dataclass(frozen=True)
class EvalDesign:
    """What every site computes: the models (columns), the reference model, bins, categories.

    Every model other than ``reference`` is compared with it (delta AUC, NRI).
    """

    models: tuple[str, ...]
    reference: str
    bins: BinSpec = field(default_factory=BinSpec)
    cutoffs: tuple[float, ...] = DEFAULT_CUTOFFS
    groups: int = 10

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise ConfigError(f"models must be distinct and non-empty; got {self.models}")
        for m in self.models:
            if not m or any(c in m for c in ".,\t\n ") or m != m.strip():
                raise ConfigError(f"model name {m!r}: use letters, digits, '_' or '-'")
        if self.reference not in self.models:
            raise ConfigError(
                f"reference model {self.reference!r} is not among the models "
                f"{','.join(self.models)}"
            )
        c = self.cutoffs
        if any(not 0 < x < 1 for x in c) or any(b <= a for a, b in itertools.pairwise(c)):
            raise ConfigError(f"risk cutoffs must increase within (0, 1); got {c}")
        if not 2 <= self.groups <= 100:
            raise ConfigError(f"calibration groups must be 2..100; got {self.groups}")

    @property
    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """(reference, model) for every model other than the reference."""
        return tuple((self.reference, m) for m in self.models if m != self.reference)

    def meta(self) -> dict[str, str]:
        """Labels carried in every upload (checked at the centre)."""
        return {
            "models": ",".join(self.models),
            "reference": self.reference,
            "bins": self.bins.label(),
            "cutoffs": ",".join(f"{x:g}" for x in self.cutoffs),
            "groups": str(self.groups),
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> EvalDesign:
        """Inverse of :meth:`meta`."""
        try:
            return cls(
                models=tuple(meta["models"].split(",")),
                reference=meta["reference"],
                bins=BinSpec.parse(meta["bins"]),
                cutoffs=tuple(float(x) for x in meta["cutoffs"].split(",")),
                groups=int(meta["groups"]),
            )
        except (KeyError, ValueError) as exc:
            raise SiteDataError(f"evaluation design labels missing or bad: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The site's predictions (individual-level: stay at the site)
# ---------------------------------------------------------------------------------------------


@dataclass
class Predictions:
    """One site's outcomes ``y`` (n,) in {0, 1} and probabilities ``p[model]`` (n,)."""

    site: str
    y: np.ndarray
    p: dict[str, np.ndarray]
    dropped: int = 0

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.float64)
        n = len(self.y)
        if not np.isin(self.y, (0.0, 1.0)).all():
            raise SiteDataError(f"site {self.site}: outcomes must be 0/1")
        for m, v in list(self.p.items()):
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (n,):
                raise SiteDataError(f"site {self.site}: model {m} has {len(v)} values for {n}")
            if not ((v >= 0) & (v <= 1)).all():
                raise SiteDataError(
                    f"site {self.site}: model {m} has predictions outside [0, 1]; give "
                    "probabilities, not logits or scores"
                )
            self.p[m] = v

    @property
    def n(self) -> int:
        """People with an outcome and every model's prediction."""
        return len(self.y)

    def check(self, design: EvalDesign) -> None:
        """Every model of the design is present."""
        missing = [m for m in design.models if m not in self.p]
        if missing:
            raise SiteDataError(
                f"site {self.site}: no prediction column(s) {', '.join(missing)} (has "
                f"{', '.join(self.p)})"
            )


_ID_COLUMNS = ("IID", "#IID", "ID", "id", "#FID", "FID")
_MISSING = ("", "NA", "NaN", "nan", ".", "-9")


def read_predictions(
    path: Path,
    *,
    site: str,
    outcome: str = "event",
    models: Sequence[str] | None = None,
    id_column: str | None = None,
) -> Predictions:
    """Read a site's predictions TSV: an ID, the outcome (0/1 or plink2 1/2) and model columns.

    Rows with a missing outcome (``NA``, ``-9``, empty) or a missing prediction are dropped
    (counted in ``dropped``, which stays at the site). ``models`` defaults to every column other
    than the ID columns and the outcome.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SiteDataError(f"{path}: cannot read the predictions table ({exc})") from None
    ids = [id_column] if id_column else [c for c in _ID_COLUMNS if c in df.columns]
    if not ids or ids[0] not in df.columns:
        raise SiteDataError(
            f"{path}: no ID column ({id_column or ' or '.join(_ID_COLUMNS)}); name it with --id-col"
        )
    if df[ids[0]].duplicated().any():
        raise SiteDataError(f"{path}: column {ids[0]} repeats an ID; one row per person")
    if outcome not in df.columns:
        raise SiteDataError(f"{path}: no outcome column {outcome!r}; name it with --outcome")
    if models is None:
        models = [c for c in df.columns if c not in (*_ID_COLUMNS, outcome)]
    absent = [m for m in models if m not in df.columns]
    if absent or not models:
        raise SiteDataError(
            f"{path}: prediction column(s) {', '.join(absent) or '(none)'} not found; columns "
            f"are {', '.join(df.columns)}"
        )
    cols = [outcome, *models]
    keep = ~df[cols].isin(_MISSING).any(axis=1)
    try:
        y = df.loc[keep, outcome].astype(float).to_numpy()
        p = {m: df.loc[keep, m].astype(float).to_numpy() for m in models}
    except ValueError as exc:
        raise SiteDataError(f"{path}: a non-numeric outcome or prediction ({exc})") from None
    codes = set(np.unique(y).tolist())
    if codes <= {0.0, 1.0}:
        pass
    elif codes <= {1.0, 2.0}:
        y = y - 1.0  # plink2: 1 = control, 2 = case
    else:
        raise SiteDataError(
            f"{path}: outcome {outcome!r} has values {sorted(codes)}; use 0/1 or plink2 1/2 "
            "(missing as NA or -9)"
        )
    return Predictions(site=site, y=y, p=p, dropped=int((~keep).sum()))


# ---------------------------------------------------------------------------------------------
# Round 1 at a site
# ---------------------------------------------------------------------------------------------


def _category(p: np.ndarray, cutoffs: Sequence[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(cutoffs), p, side="right")


def _counts_names(design: EvalDesign) -> list[str]:
    b = design.bins.bins
    k = len(design.cutoffs) + 1
    names = ["n", "n_cases"]
    for m in design.models:
        names += [f"{m}.hist_case.{i}" for i in range(b)]
        names += [f"{m}.hist_ctrl.{i}" for i in range(b)]
        names += [f"{m}.brier", f"{m}.loglik", f"{m}.sum_p"]
        for g in range(k):
            names += [f"{m}.cat.{g}.n", f"{m}.cat.{g}.obs", f"{m}.cat.{g}.exp"]
    for a, m in design.comparisons:
        for who in ("event", "nonevent"):
            for kind in ("cat", "any"):
                names += [f"nri.{a}.{m}.{who}.{kind}.up", f"nri.{a}.{m}.{who}.{kind}.down"]
    return names


def count_sums(pred: Predictions, design: EvalDesign, *, round_id: str) -> SiteSums:
    """Round 1: the site's plain sums (histograms, Brier, log-likelihood, categories, NRI)."""
    pred.check(design)
    y = pred.y
    case = y == 1
    b = design.bins.bins
    k = len(design.cutoffs) + 1
    values: list[np.ndarray | list[float]] = [[float(pred.n), float(case.sum())]]
    cats = {}
    for m in design.models:
        p = pred.p[m]
        idx = design.bins.index(p)
        values.append(np.bincount(idx[case], minlength=b).astype(np.float64))
        values.append(np.bincount(idx[~case], minlength=b).astype(np.float64))
        pc = np.clip(p, _LOG_EPS, 1 - _LOG_EPS)
        loglik = float(np.sum(y * np.log(pc) + (1 - y) * np.log1p(-pc)))
        values.append([float(np.sum((y - p) ** 2)), loglik, float(p.sum())])
        cat = _category(p, design.cutoffs)
        cats[m] = cat
        per = []
        for g in range(k):
            sel = cat == g
            per += [float(sel.sum()), float(y[sel].sum()), float(p[sel].sum())]
        values.append(per)
    for a, m in design.comparisons:
        change = cats[m] - cats[a]
        diff = pred.p[m] - pred.p[a]
        for sel in (case, ~case):
            values.append(
                [
                    float((change[sel] > 0).sum()),
                    float((change[sel] < 0).sum()),
                    float((diff[sel] > 0).sum()),
                    float((diff[sel] < 0).sum()),
                ]
            )
    flat = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    return SiteSums(
        site=pred.site,
        round_id=round_id,
        kind=KIND_COUNTS,
        names=tuple(_counts_names(design)),
        values=flat,
        meta=design.meta(),
    )


def _auc_exact(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC (ties counted half) from mid-ranks."""
    from scipy.stats import rankdata

    case = y == 1
    n1, n0 = int(case.sum()), int((~case).sum())
    ranks = rankdata(p)
    return float((ranks[case].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def site_metrics(pred: Predictions, design: EvalDesign, *, round_id: str, min_n: int) -> SiteSums:
    """The site's own metrics for the per-site table, plain, released only above ``min_n``.

    Released when the site has at least ``min_n`` cases and ``min_n`` non-cases (the
    project's airlock refuses ``n < min_n``; here both outcome groups must pass, since a
    handful of cases is as identifying as a handful of people). Otherwise the file carries no
    values and ``meta['suppressed']`` says why. Metrics are rounded to 4 decimals.
    """
    pred.check(design)
    n1 = int((pred.y == 1).sum())
    n0 = pred.n - n1
    if n1 < min_n or n0 < min_n:
        return SiteSums(
            site=pred.site,
            round_id=round_id,
            kind=KIND_SITE,
            names=(),
            values=np.zeros(0),
            meta={**design.meta(), "suppressed": f"min_n:{min_n}"},
        )
    names = ["n", "n_cases"]
    values = [float(pred.n), float(n1)]
    for m in design.models:
        p = pred.p[m]
        names += [f"{m}.auc", f"{m}.brier", f"{m}.citl", f"{m}.oe"]
        values += [
            _auc_exact(pred.y, p),
            float(np.mean((pred.y - p) ** 2)),
            float(pred.y.mean() - p.mean()),
            float(n1 / p.sum()) if p.sum() > 0 else float("nan"),
        ]
    rounded = np.round(np.asarray(values), _SITE_DIGITS)
    return SiteSums(
        site=pred.site,
        round_id=round_id,
        kind=KIND_SITE,
        names=tuple(names),
        values=rounded,
        meta={**design.meta(), "min_n": str(min_n)},
    )


# ---------------------------------------------------------------------------------------------
# Centre between the rounds: deciles and placements from the pooled histograms
# ---------------------------------------------------------------------------------------------


@dataclass
class RoundOneSummary:
    """What the centre sends back after round 1 (public: derived from pooled sums only).

    ``decile_edges[m]``: first bin of each calibration group after the first, shape (g-1,)
    (groups are unions of bins, so they hold ~10% each up to the people in one bin).
    ``case_placement[m]`` / ``ctrl_placement[m]``: DeLong placement of a case / non-case in
    each bin, shape (bins,).
    """

    design: EvalDesign
    round_id: str
    sites: tuple[str, ...]
    decile_edges: dict[str, np.ndarray]
    case_placement: dict[str, np.ndarray]
    ctrl_placement: dict[str, np.ndarray]

    def digest(self) -> str:
        """SHA-256 of the summary's content (a round-2 upload names the summary it used)."""
        h = hashlib.sha256(json.dumps(self._doc(), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def _doc(self) -> dict[str, Any]:
        return {
            "format": SUMMARY_FORMAT,
            "round": self.round_id,
            "sites": list(self.sites),
            "design": self.design.meta(),
            "decile_edges": {m: [int(x) for x in v] for m, v in self.decile_edges.items()},
            "case_placement": {m: [float(x) for x in v] for m, v in self.case_placement.items()},
            "ctrl_placement": {m: [float(x) for x in v] for m, v in self.ctrl_placement.items()},
        }


def _hist(total: SiteSums, design: EvalDesign, m: str, which: str) -> np.ndarray:
    """The pooled histogram ``which`` (``hist_case``/``hist_ctrl``) of model ``m``, shape (bins,)."""
    assert total.values is not None
    start = total.names.index(f"{m}.{which}.0")
    return np.rint(np.asarray(total.values[start : start + design.bins.bins], dtype=np.float64))


def _design_of(total: SiteSums, kind: str) -> EvalDesign:
    if total.kind != kind:
        raise SiteDataError(f"sums of kind {total.kind!r} given where {kind!r} was expected")
    design = EvalDesign.from_meta(total.meta)
    expected = _counts_names(design) if kind == KIND_COUNTS else _placement_names(design)
    if list(total.names) != expected:
        raise SiteDataError(
            f"round {total.round_id}: the sums' names do not match the design {design.meta()}"
        )
    return design


def _placements(cases: np.ndarray, ctrls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n1, n0 = cases.sum(), ctrls.sum()
    ctrl_below = np.concatenate([[0.0], np.cumsum(ctrls)[:-1]])
    case_above = n1 - np.cumsum(cases)
    return (ctrl_below + 0.5 * ctrls) / n0, (case_above + 0.5 * cases) / n1


def _decile_edges(total_per_bin: np.ndarray, groups: int) -> np.ndarray:
    cum = np.cumsum(total_per_bin)
    n = cum[-1]
    targets = n * np.arange(1, groups) / groups
    # A group ends with the bin where the running count reaches k/groups of everybody.
    edges = np.searchsorted(cum, targets - 1e-9, side="left") + 1
    edges = np.unique(edges[edges < len(total_per_bin)])
    return edges.astype(np.int64)


def summarise_counts(total: SiteSums) -> RoundOneSummary:
    """From the pooled round-1 sums: decile cut points and DeLong placements per bin."""
    design = _design_of(total, KIND_COUNTS)
    d = total.as_dict()
    n, n1 = d["n"], d["n_cases"]
    if n1 < 1 or n - n1 < 1:
        raise SiteDataError(
            f"round {total.round_id}: pooled data have {n1:g} cases and {n - n1:g} non-cases; "
            "the evaluation needs both"
        )
    edges, case_pl, ctrl_pl = {}, {}, {}
    for m in design.models:
        cases, ctrls = _hist(total, design, m, "hist_case"), _hist(total, design, m, "hist_ctrl")
        edges[m] = _decile_edges(cases + ctrls, design.groups)
        case_pl[m], ctrl_pl[m] = _placements(cases, ctrls)
    sites = tuple(total.meta.get("sites_summed", total.site).split(","))
    return RoundOneSummary(design, total.round_id, sites, edges, case_pl, ctrl_pl)


def write_summary(summary: RoundOneSummary, path: Path) -> None:
    """Write the round-1 summary (JSON), atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(summary._doc(), f)
        f.write("\n")


def read_summary(path: Path) -> RoundOneSummary:
    """Read a file written by :func:`write_summary` and check its shapes."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"format is not {SUMMARY_FORMAT}")
        design = EvalDesign.from_meta(doc["design"])
        b = design.bins.bins

        def arrays(key: str, dtype: type) -> dict[str, np.ndarray]:
            return {m: np.asarray(doc[key][m], dtype=dtype) for m in design.models}

        summary = RoundOneSummary(
            design=design,
            round_id=str(doc["round"]),
            sites=tuple(doc["sites"]),
            decile_edges=arrays("decile_edges", np.int64),
            case_placement=arrays("case_placement", np.float64),
            ctrl_placement=arrays("ctrl_placement", np.float64),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SiteDataError(f"{path}: not a readable {SUMMARY_FORMAT} file ({exc})") from None
    for m in design.models:
        e = summary.decile_edges[m]
        pl = (summary.case_placement[m], summary.ctrl_placement[m])
        if (
            len(e) >= design.groups
            or (len(e) and (e.min() < 1 or e.max() >= b or (np.diff(e) <= 0).any()))
            or any(v.shape != (b,) or not ((v >= 0) & (v <= 1)).all() for v in pl)
            # Placements of real histograms rise with the bin for cases and fall for non-cases;
            # anything else is a crafted vector (e.g. one that singles out one bin).
            or (np.diff(pl[0]) < -1e-12).any()
            or (np.diff(pl[1]) > 1e-12).any()
        ):
            raise SiteDataError(
                f"{path}: model {m}: decile edges or placements out of shape, range or order; ask the "
                "centre for the summary written by `fedgen risk eval-summary`"
            )
    return summary


# ---------------------------------------------------------------------------------------------
# Round 2 at a site
# ---------------------------------------------------------------------------------------------


def _placement_names(design: EvalDesign) -> list[str]:
    names = ["n", "n_cases"]
    for m in design.models:
        for g in range(design.groups):
            names += [f"{m}.dec.{g}.n", f"{m}.dec.{g}.obs", f"{m}.dec.{g}.exp"]
    ms = design.models
    for who in ("case", "ctrl"):
        names += [f"delong.{who}.sum.{m}" for m in ms]
        names += [
            f"delong.{who}.prod.{ms[i]}.{ms[j]}" for i in range(len(ms)) for j in range(i, len(ms))
        ]
    return names


def placement_sums(pred: Predictions, summary: RoundOneSummary, *, round_id: str) -> SiteSums:
    """Round 2: per-decile count/events/sum of p, and DeLong placement sums and products."""
    design = summary.design
    pred.check(design)
    if round_id == summary.round_id:
        raise ConfigError(f"round 2 needs a new round id; {round_id!r} was used by round 1")
    if pred.site not in summary.sites:
        raise SiteDataError(
            f"site {pred.site} is not among the sites {','.join(summary.sites)} of round "
            f"{summary.round_id}; it cannot join round 2"
        )
    y = pred.y
    case = y == 1
    values = [float(pred.n), float(case.sum())]
    v10, v01 = {}, {}
    for m in design.models:
        p = pred.p[m]
        idx = design.bins.index(p)
        group = np.searchsorted(summary.decile_edges[m], idx, side="right")
        for g in range(design.groups):
            sel = group == g
            values += [float(sel.sum()), float(y[sel].sum()), float(p[sel].sum())]
        v10[m] = summary.case_placement[m][idx[case]]
        v01[m] = summary.ctrl_placement[m][idx[~case]]
    ms = design.models
    for v in (v10, v01):
        values += [float(v[m].sum()) for m in ms]
        values += [
            float(np.dot(v[ms[i]], v[ms[j]])) for i in range(len(ms)) for j in range(i, len(ms))
        ]
    return SiteSums(
        site=pred.site,
        round_id=round_id,
        kind=KIND_PLACEMENTS,
        names=tuple(_placement_names(design)),
        values=np.asarray(values, dtype=np.float64),
        meta={**design.meta(), "summary": summary.digest(), "round1": summary.round_id},
    )


# ---------------------------------------------------------------------------------------------
# Centre: the metrics
# ---------------------------------------------------------------------------------------------


def _norm_sf2(z: float) -> float:
    """Two-sided normal p-value."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _ci(est: float, se: float) -> list[float]:
    return [est - _Z975 * se, est + _Z975 * se]


def _delong(total2: SiteSums, design: EvalDesign, n1: float, n0: float):
    """Per-model AUC (mean case placement) and the DeLong covariance S10/n1 + S01/n0."""
    d = total2.as_dict()
    ms = design.models
    k = len(ms)
    cov = np.zeros((k, k))
    means = {}
    for who, nn in (("case", n1), ("ctrl", n0)):
        mu = np.array([d[f"delong.{who}.sum.{m}"] for m in ms]) / nn
        prod = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                prod[i, j] = prod[j, i] = d[f"delong.{who}.prod.{ms[i]}.{ms[j]}"]
        s = (prod - nn * np.outer(mu, mu)) / (nn - 1)
        cov += s / nn
        means[who] = mu
    return means, cov


def _published_row(n: float, obs: float, *, min_n: int, min_cell: int) -> bool:
    """Published when ``n >= min_n`` and events and non-events are each 0 or ``>= min_cell``."""
    nonev = n - obs
    return n >= min_n and not (0 < obs < min_cell) and not (0 < nonev < min_cell)


def evaluate(
    counts: SiteSums,
    placements: SiteSums,
    site_sums: Sequence[SiteSums] = (),
    *,
    min_n: int = 50,
    min_cell: int = 5,
) -> dict[str, Any]:
    """All pooled metrics from the summed rounds, plus the per-site table.

    Parameters
    ----------
    counts, placements : SiteSums
        The pooled round-1 and round-2 sums (outputs of :func:`add_sums`).
    site_sums : sequence of SiteSums
        Each site's released own metrics (:func:`site_metrics`), possibly suppressed.
    min_n, min_cell : int
        Published calibration cells need ``n >= min_n`` and events and non-events each 0 or
        ``>= min_cell``; the others are withheld and counted in ``suppressed_cells``.

    Raises
    ------
    SiteDataError
        The rounds disagree (different sites, designs, or a site's data changed in between).
    """
    design, summary, sites = _check_rounds(counts, placements)
    c, p2 = counts.as_dict(), placements.as_dict()
    n, n1 = c["n"], c["n_cases"]
    means, cov = _delong(placements, design, n1, n - n1)
    models: dict[str, Any] = {}
    deciles: dict[str, list[dict[str, Any]]] = {}
    categories: dict[str, list[dict[str, Any]]] = {}
    for i, m in enumerate(design.models):
        cases, ctrls = _hist(counts, design, m, "hist_case"), _hist(counts, design, m, "hist_ctrl")
        models[m] = _model_metrics(c, m, cases, ctrls, cov[i, i])
        for who in ("case", "ctrl"):
            if abs(models[m]["auc"] - means[who][i]) > 1e-6:
                raise SiteDataError(
                    f"model {m}: the AUC from round 1 ({models[m]['auc']:.6f}) differs from the "
                    f"{who} placements of round 2 ({means[who][i]:.6f}): a site's predictions "
                    "changed between the rounds"
                )
        deciles[m] = _decile_rows(p2, design, m, summary.decile_edges[m], cases, ctrls,
                                  min_n=min_n, min_cell=min_cell)  # fmt: skip
        bounds = (0.0, *design.cutoffs, 1.0)
        categories[m] = []
        for g in range(len(design.cutoffs) + 1):
            gn, obs, exp = (c[f"{m}.cat.{g}.{x}"] for x in ("n", "obs", "exp"))
            row = _cal_row(g + 1, gn, obs, exp, bounds[g], bounds[g + 1], min_n=min_n,
                           min_cell=min_cell)  # fmt: skip
            categories[m].append(row)
    suppressed = sum(
        r["suppressed"] for table in (deciles, categories) for rows in table.values() for r in rows
    )
    return {
        "format": RESULT_FORMAT,
        "sites": list(sites),
        "rounds": [counts.round_id, placements.round_id],
        "design": design.meta(),
        "n": round(n),
        "n_cases": round(n1),
        "prevalence": n1 / n,
        "bin_width_logit": design.bins.width,
        "min_n": min_n,
        "min_cell": min_cell,
        "models": models,
        "comparisons": [_comparison(c, design, a, m, models, cov) for a, m in design.comparisons],
        "calibration_deciles": deciles,
        "calibration_categories": categories,
        "suppressed_cells": suppressed,
        "per_site": _site_table(site_sums, design, sites),
    }


def _check_rounds(
    counts: SiteSums, placements: SiteSums
) -> tuple[EvalDesign, RoundOneSummary, tuple[str, ...]]:
    """The two rounds share the design, the sites, the summary and the people counted."""
    design = _design_of(counts, KIND_COUNTS)
    if _design_of(placements, KIND_PLACEMENTS) != design:
        raise SiteDataError("rounds 1 and 2 were computed under different evaluation designs")
    sites1 = counts.meta.get("sites_summed", counts.site)
    sites2 = placements.meta.get("sites_summed", placements.site)
    if sorted(sites1.split(",")) != sorted(sites2.split(",")):
        raise SiteDataError(
            f"round 1 summed sites {sites1} but round 2 summed {sites2}; both rounds need the "
            "same sites"
        )
    summary = summarise_counts(counts)
    if placements.meta.get("summary") != summary.digest():
        raise SiteDataError(
            f"round {placements.round_id} used summary {placements.meta.get('summary')} but the "
            f"round-1 sums give summary {summary.digest()}; rerun round 2 with this summary"
        )
    c, p2 = counts.as_dict(), placements.as_dict()
    if abs(p2["n"] - c["n"]) > 0.5 or abs(p2["n_cases"] - c["n_cases"]) > 0.5:
        raise SiteDataError(
            f"round 1 counted n={c['n']:g}, cases={c['n_cases']:g} but round 2 counted "
            f"n={p2['n']:g}, cases={p2['n_cases']:g}: a site's predictions changed between the "
            "rounds"
        )
    return design, summary, tuple(sites1.split(","))


def _model_metrics(
    c: Mapping[str, float], m: str, cases: np.ndarray, ctrls: np.ndarray, var: float
) -> dict[str, Any]:
    """AUC (from the histograms), its DeLong CI and bin bound, Brier, R^2, calibration in the large."""
    n, n1 = c["n"], c["n_cases"]
    n0 = n - n1
    v10, _ = _placements(cases, ctrls)
    auc = float(np.dot(cases, v10) / n1)
    se = math.sqrt(max(var, 0.0))
    ll0 = n1 * math.log(n1 / n) + n0 * math.log(n0 / n)
    ll = c[f"{m}.loglik"]
    cox_snell = 1.0 - math.exp(2.0 * (ll0 - ll) / n)
    sum_p = c[f"{m}.sum_p"]
    return {
        "auc": auc,
        "auc_se": se,
        "auc_ci": _ci(auc, se),
        "auc_bin_bound": float(0.5 * np.dot(cases, ctrls) / (n1 * n0)),
        "brier": c[f"{m}.brier"] / n,
        "loglik": ll,
        "cox_snell_r2": cox_snell,
        "nagelkerke_r2": cox_snell / (1.0 - math.exp(2.0 * ll0 / n)),
        "calibration_in_the_large": (n1 - sum_p) / n,
        "oe_ratio": n1 / sum_p if sum_p > 0 else float("nan"),
    }


def _decile_rows(
    p2: Mapping[str, float],
    design: EvalDesign,
    m: str,
    edges: np.ndarray,
    cases: np.ndarray,
    ctrls: np.ndarray,
    *,
    min_n: int,
    min_cell: int,
) -> list[dict[str, Any]]:
    """Calibration rows of the pooled deciles, checked against the round-1 histogram."""
    lows = np.concatenate([[0], edges]).astype(int)
    highs = np.concatenate([edges, [design.bins.bins]]).astype(int)
    rows = []
    for g in range(len(edges) + 1):
        gn, obs, exp = (p2[f"{m}.dec.{g}.{x}"] for x in ("n", "obs", "exp"))
        sel = slice(lows[g], highs[g])
        if abs(gn - cases[sel].sum() - ctrls[sel].sum()) > 0.5 or abs(obs - cases[sel].sum()) > 0.5:
            raise SiteDataError(
                f"model {m} decile {g + 1}: round 2 counts differ from the round-1 histogram: "
                "a site's predictions changed between the rounds"
            )
        p_from = 0.0 if g == 0 else float(design.bins.edge_probability(lows[g]))
        p_to = 1.0 if g == len(edges) else float(design.bins.edge_probability(highs[g]))
        rows.append(_cal_row(g + 1, gn, obs, exp, p_from, p_to, min_n=min_n, min_cell=min_cell))
    return rows


def _comparison(
    c: Mapping[str, float],
    design: EvalDesign,
    a: str,
    m: str,
    models: Mapping[str, Any],
    cov: np.ndarray,
) -> dict[str, Any]:
    """Model ``m`` against the reference ``a``: delta AUC (DeLong), categorical and continuous NRI."""
    n1 = c["n_cases"]
    n0 = c["n"] - n1
    i, j = design.models.index(a), design.models.index(m)
    delta = models[m]["auc"] - models[a]["auc"]
    se = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0))
    z = delta / se if se > 0 else float("nan")
    nri = {}
    for kind, label in (("cat", "categorical"), ("any", "continuous")):
        e_up, e_dn, ne_up, ne_dn = (
            c[f"nri.{a}.{m}.{who}.{kind}.{d}"]
            for who in ("event", "nonevent")
            for d in ("up", "down")
        )
        ev, nonev = (e_up - e_dn) / n1, (ne_dn - ne_up) / n0
        nri[label] = {"events": ev, "nonevents": nonev, "total": ev + nonev}
    corr = (
        float(cov[i, j] / math.sqrt(cov[i, i] * cov[j, j]))
        if cov[i, i] > 0 and cov[j, j] > 0
        else float("nan")
    )
    return {
        "reference": a,
        "model": m,
        "delta_auc": delta,
        "delta_auc_se": se,
        "delta_auc_ci": _ci(delta, se),
        "z": z,
        "p": _norm_sf2(z) if se > 0 else float("nan"),
        "auc_correlation": corr,
        "nri": nri,
    }


def _site_table(
    site_sums: Sequence[SiteSums], design: EvalDesign, sites: Sequence[str]
) -> list[dict[str, Any]]:
    """The per-site rows from the sites' released scalars (or their suppression notes)."""
    rows: list[dict[str, Any]] = []
    for s in site_sums:
        if s.kind != KIND_SITE or s.site not in sites:
            raise SiteDataError(
                f"site {s.site}: a {s.kind!r} file is not a site table of this evaluation "
                f"(sites {','.join(sites)})"
            )
        if EvalDesign.from_meta(s.meta).models != design.models:
            raise SiteDataError(f"site {s.site}: its own metrics are of other models")
        if not s.names:
            rows.append({"site": s.site, "suppressed": s.meta.get("suppressed", "yes")})
            continue
        v = s.as_dict()
        rows.append(
            {
                "site": s.site,
                "n": round(v["n"]),
                "n_cases": round(v["n_cases"]),
                "models": {
                    m: {x: v[f"{m}.{x}"] for x in ("auc", "brier", "citl", "oe")}
                    for m in design.models
                },
            }
        )
    return rows


def _cal_row(
    group: int,
    n: float,
    obs: float,
    exp: float,
    p_from: float,
    p_to: float,
    *,
    min_n: int,
    min_cell: int,
) -> dict[str, Any]:
    """One calibration group; its numbers are withheld when it is a small cell."""
    row: dict[str, Any] = {"group": group, "p_from": float(p_from), "p_to": float(p_to)}
    if _published_row(n, obs, min_n=min_n, min_cell=min_cell):
        row |= {
            "n": round(n),
            "observed": round(obs),
            "expected": float(exp),
            "observed_rate": obs / n,
            "expected_rate": exp / n,
            "suppressed": False,
        }
    else:
        row |= {"n": None, "observed": None, "expected": None, "suppressed": True}
    return row


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


def _finite(x: Any) -> Any:
    """NaN and infinities as JSON null (strict JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _fmt(x: Any) -> str:
    if x is None:
        return "NA"
    if isinstance(x, float):
        return "NA" if math.isnan(x) else f"{x:.6g}"
    return str(x)


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(_fmt(x) for x in r) + "\n")


def write_evaluation(
    result: Mapping[str, Any],
    *,
    json_path: Path,
    metrics_tsv: Path | None = None,
    calibration_tsv: Path | None = None,
    sites_tsv: Path | None = None,
    plot: Path | None = None,
) -> None:
    """Write the metrics JSON and, when given, the TSV tables and the calibration plot."""
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(json_path) as f:
        json.dump(_finite(result), f, indent=1, allow_nan=False)
        f.write("\n")
    if metrics_tsv is not None:
        rows: list[list[Any]] = []
        for m, v in result["models"].items():
            rows.append([m, "auc", v["auc"], *v["auc_ci"], v["auc_se"]])
            rows.append([m, "auc_bin_bound", v["auc_bin_bound"], None, None, None])
            for key in ("brier", "nagelkerke_r2", "calibration_in_the_large", "oe_ratio"):
                rows.append([m, key, v[key], None, None, None])
        for cmp in result["comparisons"]:
            label = f"{cmp['model']}-vs-{cmp['reference']}"
            rows.append([label, "delta_auc", cmp["delta_auc"], *cmp["delta_auc_ci"]])
            rows[-1].append(cmp["delta_auc_se"])
            rows.append([label, "delta_auc_p", cmp["p"], None, None, None])
            for kind, parts in cmp["nri"].items():
                for who, val in parts.items():
                    rows.append([label, f"nri_{kind}_{who}", val, None, None, None])
        _write_tsv(metrics_tsv, ("model", "metric", "value", "ci_low", "ci_high", "se"), rows)
    if calibration_tsv is not None:
        rows = []
        for scheme, key in (
            ("decile", "calibration_deciles"),
            ("category", "calibration_categories"),
        ):
            for m, groups in result[key].items():
                for g in groups:
                    rows.append(
                        [m, scheme, g["group"], g["p_from"], g["p_to"], g["n"], g["observed"],
                         g["expected"], g["suppressed"]]
                    )  # fmt: skip
        _write_tsv(
            calibration_tsv,
            ("model", "grouping", "group", "p_from", "p_to", "n", "observed", "expected",
             "suppressed"),
            rows,
        )  # fmt: skip
    if sites_tsv is not None:
        rows = []
        for s in result["per_site"]:
            if "suppressed" in s:
                rows.append([s["site"], None, None, None, None, None, None, None, s["suppressed"]])
                continue
            for m, v in s["models"].items():
                rows.append(
                    [s["site"], m, s["n"], s["n_cases"], v["auc"], v["brier"], v["citl"],
                     v["oe"], False]
                )  # fmt: skip
        _write_tsv(
            sites_tsv,
            ("site", "model", "n", "n_cases", "auc", "brier", "citl", "oe_ratio", "suppressed"),
            rows,
        )
    if plot is not None:
        calibration_plot(plot, result)


def calibration_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Observed vs expected event rate per pooled decile, one series per model (PNG)."""
    from snakemake_fedgen.meta.plots import _figure, _save

    fig = _figure((5.5, 5.0))
    ax = fig.subplots()
    top = 0.0
    colours = ("#1f4e79", "#c0504d", "#6fa8dc", "#9bbb59", "#8064a2")
    for i, (m, rows) in enumerate(result["calibration_deciles"].items()):
        shown = [r for r in rows if not r["suppressed"]]
        x = [r["expected_rate"] for r in shown]
        y = [r["observed_rate"] for r in shown]
        auc = result["models"][m]["auc"]
        ax.plot(x, y, "o-", color=colours[i % len(colours)], ms=4, label=f"{m} (AUC {auc:.3f})")
        top = max([top, *x, *y])
    top = min(1.0, top * 1.05 + 1e-3)
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("Expected event rate (mean predicted risk)")
    ax.set_ylabel("Observed event rate")
    hidden = result["suppressed_cells"]
    note = f"; {hidden} small cells suppressed" if hidden else ""
    ax.set_title(
        f"Calibration by pooled risk decile\nn={result['n']}, events={result['n_cases']}, "
        f"{len(result['sites'])} sites{note}",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, Path(path))


# ---------------------------------------------------------------------------------------------
# In-process driver (tests, benchmark): the same functions the CLI runs
# ---------------------------------------------------------------------------------------------


def run_federated_evaluation(
    predictions: Mapping[str, Predictions],
    design: EvalDesign,
    *,
    min_n: int = 50,
    min_cell: int = 5,
    private_keys: Mapping[str, Any] | None = None,
    public_keys: Mapping[str, str] | None = None,
    rounds: tuple[str, str] = ("eval-1", "eval-2"),
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Run both rounds for every site and the centre; masked when keys are given.

    With ``out_dir`` every upload goes through its file (written and read back, as between a
    site and the centre), and ``result['transfer']`` reports bytes per upload and wall times.
    """
    from snakemake_fedgen.exact.sums import read_sums, write_sums

    sites = tuple(predictions)
    masked = private_keys is not None
    timings: dict[str, float] = {}
    sizes: dict[str, dict[str, int]] = {s: {} for s in sites}

    def ship(sums: SiteSums, label: str) -> SiteSums:
        if masked and sums.kind != KIND_SITE:
            assert private_keys is not None and public_keys is not None
            sums = mask_with_ledger(
                sums,
                private_key=private_keys[sums.site],
                public_keys=public_keys,
                participants=sites,
                ledger=None,  # one in-process run: every round id is fresh
            )
        if out_dir is None:
            return sums
        path = Path(out_dir) / f"{sums.site}.{label}.json"
        write_sums(sums, path)
        sizes[sums.site][label] = path.stat().st_size
        return read_sums(path)

    t0 = time.perf_counter()
    up1 = [ship(count_sums(predictions[s], design, round_id=rounds[0]), "counts") for s in sites]
    own = [
        ship(site_metrics(predictions[s], design, round_id=rounds[0], min_n=min_n), "site")
        for s in sites
    ]
    timings["round1_sites_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    total1 = add_sums(up1)
    summary = summarise_counts(total1)
    if out_dir is not None:
        write_summary(summary, Path(out_dir) / "summary.json")
        summary = read_summary(Path(out_dir) / "summary.json")
    timings["summary_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    up2 = [
        ship(placement_sums(predictions[s], summary, round_id=rounds[1]), "placements")
        for s in sites
    ]
    timings["round2_sites_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate(total1, add_sums(up2), own, min_n=min_n, min_cell=min_cell)
    timings["centre_s"] = time.perf_counter() - t0
    result["transfer"] = {"bytes": sizes, "seconds": timings}
    return result
