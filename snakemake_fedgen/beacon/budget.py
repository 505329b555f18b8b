"""The Beacon query budget against membership inference.

A Beacon that answers "is allele X present in dataset D?" lets anyone holding a person's genome
test whether that person is in D (Shringarpure & Bustamante 2015, AJHG 97:631): every "yes"
for one of the victim's rare alleles is evidence of membership. Raisaro et al. 2017 (JAMIA
24:799) proposed the defence used here: each requester has a budget per dataset, each query is
charged by how much its answer can tell such an attacker, and once the budget is spent the
Beacon refuses.

The unit of cost and budget is the attacker's log-likelihood ratio (nats) for "the victim is in
the dataset" (:func:`query_cost`). At the allele frequencies the cost assumes, a budget of B
nats bounds every answer sequence's likelihood ratio by exp(B), so no test at false-positive
rate alpha finds a member with probability above exp(B) * alpha (see
:data:`DEFAULT_PER_DATASET`; docs/discovery.md "The query budget" has the measured attack).

:class:`QueryBudget` keeps the charges in ``state_dir/beacon_budget.sqlite`` (WAL; one lock per
process, ``BEGIN IMMEDIATE`` across processes), so budgets survive restarts and every charge and
refusal is on record with its time, requester, dataset, cost and query text.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scipy.stats import beta, binom  # type: ignore[import-untyped]
from snakemake_executor_plugin_fedgen.errors import AccessDenied, ConfigError, FedgenError

#: Probability that the Beacon misses an allele its dataset holds (sequencing/calling error);
#: the value Shringarpure & Bustamante use.
DEFAULT_ERROR_RATE = 1e-6
#: Level of the lower confidence bound on an allele's population frequency (query_cost).
DEFAULT_CONFIDENCE = 0.95
#: Alleles with fewer copies are answered as absent: the airlock's default ``min_cell``.
#: Without it a singleton's "yes" decides membership and its refusal says "present".
DEFAULT_HIDE_BELOW = 5
#: Default budget per (requester, dataset), in nats of the attacker's log-likelihood ratio.
#: If every answer sequence a requester can obtain has a log-likelihood ratio of at most B,
#: no membership test at false-positive rate alpha detects a member with probability above
#: ``exp(B) * alpha``: at the published alpha = 0.05 that is 0.22 for B = 1.5 (the paper's
#: attack reaches 0.95), and at alpha = 0.01, 0.045. B must cover the dearest answer the
#: Beacon gives, a "yes" from ``hide_below`` = 5 copies: 1.34 nats at N = 300, at most 1.4.
DEFAULT_PER_DATASET = 1.5
#: Budgets never renew by default: evidence about membership does not decay, and a renewing
#: budget gives a patient attacker ``per_dataset`` more nats every window.
DEFAULT_WINDOW_DAYS: float | None = None
BUDGET_FILE = "beacon_budget.sqlite"
_KEYS = ("enabled", "per_dataset", "window_days", "hide_below", "requesters")
#: The kinds of budget requester (the prefix of every requester key).
REQUESTER_KINDS = ("caller:", "anonymous:")


class BudgetExhausted(AccessDenied):
    """The requester's query budget for a dataset is spent: the Beacon refuses (HTTP 403)."""

    def __init__(self, message: str, *, requester: str, dataset: str) -> None:
        super().__init__(message)
        self.requester = requester
        self.dataset = dataset


def _yes_probabilities(f: float, n: int, k: int, error_rate: float) -> tuple[float, float]:
    """P(yes | H0), P(yes | H1) for an allele of frequency f, answered "yes" from k copies."""
    if k <= 1:
        log_keep = math.log1p(-f)
        p0 = -math.expm1(2 * n * log_keep)  # 1 - D_N
        p1 = 1.0 - error_rate * math.exp((2 * n - 2) * log_keep)  # 1 - delta * D_{N-1}
        return p0, p1
    # The victim (heterozygous member) brings one copy; the other 2N - 2 haplotypes the rest.
    return float(binom.sf(k - 1, 2 * n, f)), float(binom.sf(k - 2, 2 * n - 2, f))


def _allele_cost(
    count: int, n: int, *, hidden_below: int, confidence: float, delta: float
) -> float:
    """Membership evidence of one "yes" for an allele held ``count`` times (see query_cost)."""
    if n == 1:
        return math.inf
    others, haplotypes = count - 1, 2 * n - 2
    if others >= haplotypes:
        return 0.0
    # One-sided lower confidence bound (Clopper-Pearson) of the population frequency from
    # the other members' copies: 0 for a singleton.
    f = float(beta.ppf(1.0 - confidence, others, haplotypes - others + 1)) if others else 0.0
    if f <= 0.0:
        return math.inf
    p0, p1 = _yes_probabilities(f, n, max(hidden_below, 1), delta)
    if p0 <= 0.0:
        return math.inf
    return max(0.0, math.log(p1) - math.log(p0))


def query_cost(
    alt_allele_counts: Sequence[int],
    n_individuals: int,
    *,
    hidden_below: int = 1,
    confidence: float = DEFAULT_CONFIDENCE,
    error_rate: float = DEFAULT_ERROR_RATE,
) -> float:
    """What a variant query's answer can reveal about one person's membership, in nats.

    Shringarpure & Bustamante's attacker queries the victim's alternate alleles and sums, per
    answer, the log-likelihood ratio of "victim in the dataset of N diploid individuals" (H1)
    against "not in it" (H0). For an allele of population frequency ``f`` the probability
    that none of N individuals carries it is ``D_N = (1 - f)**(2N)``; the Beacon misses a
    present allele with probability ``delta`` (``error_rate``). So P(yes | H0) = 1 - D_N,
    P(yes | H1) = 1 - delta * D_{N-1}, and a "yes" adds

        log((1 - delta * D_{N-1}) / (1 - D_N))

    to the attacker's statistic (a "no" adds ``log(delta * D_{N-1} / D_N) < 0``: evidence
    against membership). If the Beacon answers "no" for alleles with fewer than
    k = ``hidden_below`` copies, a "yes" means at least k copies and adds
    ``log(P(Bin(2N - 2, f) >= k - 1) / P(Bin(2N, f) >= k))`` (the victim, a heterozygous
    member, brings one copy).

    The attacker uses the population frequency; the Beacon knows only its dataset's count
    ``c``. It estimates ``f`` from the other members' copies, ``c - 1`` of ``2N - 2``
    haplotypes (the victim is a member in the case the budget exists for), and takes the
    one-sided lower ``confidence`` bound (Clopper-Pearson) of that estimate, because the
    term grows without bound as ``f`` falls and an attacker asks for the victim's rarest
    alleles: charged at the point estimate ``(c - 1) / (2N - 2)``, a doubleton cost 0.46
    nats and gave the attacker 2.35 (tests/beacon/test_membership_attack.py). Rarer alleles
    cost more; a singleton has no other copy, ``f = 0`` and costs ``inf`` (its "yes" decides
    membership on its own). A homozygous victim (``c - 2`` other copies) is not charged for:
    for rare alleles it is unlikely.

    The cost of a query is the sum over its matched variants (a count or record answer can
    reveal each). An empty ``alt_allele_counts`` is the "no" answer and costs 0: for the
    victim's own alleles a "no" only lowers the statistic, and for an allele the victim
    lacks it adds ``-2 log(1 - f)``, 0 at the dataset's estimate ``f = 0``.

    Parameters
    ----------
    alt_allele_counts
        Alternate-allele count in the dataset of each variant the answer reveals (each
        ``hidden_below``..2N); variants the answer hides are not listed.
    n_individuals
        Diploid individuals in the dataset (N >= 1).
    hidden_below
        k: the Beacon answers "no" for alleles with fewer copies (1: nothing hidden).
    confidence
        Level of the lower confidence bound on the frequency (0.5 <= confidence < 1).
    error_rate
        delta, the probability that the Beacon misses an allele it holds (0 <= delta < 1).

    Returns
    -------
    float
        Nats, >= 0; ``math.inf`` for a revealed singleton or a one-person dataset.
    """
    if isinstance(n_individuals, bool) or not isinstance(n_individuals, int) or n_individuals < 1:
        raise FedgenError(
            f"query_cost needs n_individuals, the dataset's diploid individuals, as an integer "
            f">= 1; got n_individuals={n_individuals!r}"
        )
    if not 0.0 <= error_rate < 1.0 or not 0.5 <= confidence < 1.0:
        raise FedgenError(
            "query_cost needs 0 <= error_rate < 1 and 0.5 <= confidence < 1; got "
            f"error_rate={error_rate!r}, confidence={confidence!r}"
        )
    lowest = max(hidden_below, 1)
    total = 0.0
    for count in alt_allele_counts:
        if isinstance(count, bool) or not isinstance(count, int):
            raise FedgenError(
                f"query_cost needs integer alternate-allele counts; got {count!r} in "
                f"{list(alt_allele_counts)!r}"
            )
        if not lowest <= count <= 2 * n_individuals:
            raise FedgenError(
                f"an alternate-allele count must be between {lowest} (hidden_below) and 2N = "
                f"{2 * n_individuals} (N={n_individuals} diploid individuals); got {count}. "
                "Leave unmatched and hidden variants out of alt_allele_counts"
            )
        total += _allele_cost(
            count, n_individuals, hidden_below=lowest, confidence=confidence, delta=error_rate
        )
    return total


@dataclass(frozen=True)
class Assessment:
    """What an answer may reveal under the budget's settings, and what it costs."""

    #: The alternate-allele counts the answer reveals (those below ``hide_below`` are
    #: answered as absent).
    revealed: tuple[int, ...]
    cost: float
    #: The dearest answer any query on this dataset can get: a "yes" from ``hide_below``
    #: copies. ``charge`` refuses unless at least this much is left, whatever the answer.
    reserve: float


@dataclass(frozen=True)
class BudgetSettings:
    """Validated ``beacon.budget`` settings of node.yaml."""

    enabled: bool = True
    per_dataset: float = DEFAULT_PER_DATASET
    window_days: float | None = DEFAULT_WINDOW_DAYS
    hide_below: int = DEFAULT_HIDE_BELOW
    requesters: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> BudgetSettings:
        """Validate node.yaml's ``beacon.budget`` (None or {} gives the defaults)."""
        if settings is None:
            return cls()
        if not isinstance(settings, Mapping):
            raise ConfigError(
                f"node.yaml: beacon.budget must be a mapping with keys {', '.join(_KEYS)}; "
                f"got {type(settings).__name__} {settings!r}"
            )
        unknown = sorted(set(settings) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"node.yaml: unknown key(s) beacon.budget.{', beacon.budget.'.join(unknown)}; "
                f"allowed: {', '.join(_KEYS)}"
            )
        enabled = settings.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(
                f"node.yaml: beacon.budget.enabled must be true or false; got {enabled!r}"
            )
        per_dataset = setting_number(
            settings.get("per_dataset", DEFAULT_PER_DATASET),
            "beacon.budget.per_dataset",
            strict=False,
            unit="nats",
        )
        window = settings.get("window_days", DEFAULT_WINDOW_DAYS)
        if window is not None and (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not 0 < window < math.inf
        ):
            raise ConfigError(
                "node.yaml: beacon.budget.window_days must be a positive number of days, or "
                f"absent/null for budgets that never renew; got {window!r}"
            )
        hide_below = settings.get("hide_below", DEFAULT_HIDE_BELOW)
        if isinstance(hide_below, bool) or not isinstance(hide_below, int) or hide_below < 1:
            raise ConfigError(
                "node.yaml: beacon.budget.hide_below must be an integer >= 1 (alleles with "
                f"fewer copies are answered as absent; 1 hides nothing); got {hide_below!r}"
            )
        raw = settings.get("requesters") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "node.yaml: beacon.budget.requesters must map requesters ('caller:<name>' or "
                f"'anonymous:<ip>') to budgets; got {raw!r}"
            )
        requesters: dict[str, float] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not name.startswith(REQUESTER_KINDS):
                raise ConfigError(
                    f"node.yaml: beacon.budget.requesters key {name!r} must be 'caller:<name>' "
                    "or 'anonymous:<ip>'"
                )
            requesters[name] = setting_number(
                value, f"beacon.budget.requesters.{name}", strict=False, unit="nats", allow_inf=True
            )
        return cls(
            enabled=enabled,
            per_dataset=per_dataset,
            window_days=None if window is None else float(window),
            hide_below=hide_below,
            requesters=requesters,
        )


def setting_number(
    value: Any, key: str, *, strict: bool, unit: str = "", allow_inf: bool = False
) -> float:
    """A number of node.yaml's ``beacon`` block: ``> 0`` if ``strict`` else ``>= 0``, finite
    unless ``allow_inf`` (``.inf``: no limit).

    Raises
    ------
    ConfigError
        Not such a number (a boolean is not a number); the message names ``key``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (strict and value == 0)
        or (value == math.inf and not allow_inf)
    ):
        bound = "> 0" if strict else ">= 0"
        of = f" ({unit})" if unit else ""
        extra = ", or .inf for no limit" if allow_inf else ""
        raise ConfigError(f"node.yaml: {key} must be a number {bound}{of}{extra}; got {value!r}")
    return float(value)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    requester TEXT NOT NULL,
    dataset TEXT NOT NULL,
    started REAL NOT NULL,
    PRIMARY KEY (requester, dataset)
);
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    requester TEXT NOT NULL,
    dataset TEXT NOT NULL,
    cost REAL NOT NULL,
    query TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('charged', 'refused'))
);
CREATE INDEX IF NOT EXISTS charges_pair ON charges (requester, dataset, time);
CREATE TABLE IF NOT EXISTS epsilon_charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    requester TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epsilon REAL NOT NULL,
    query TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('charged', 'refused'))
);
CREATE INDEX IF NOT EXISTS epsilon_pair ON epsilon_charges (requester, dataset, time);
"""


@dataclass(frozen=True)
class Charge:
    """One recorded query: charged against the budget, or refused (nothing charged)."""

    time: float
    requester: str
    dataset: str
    cost: float
    query: str
    outcome: str


class QueryBudget:
    """Per-(requester, dataset) Beacon query budgets, persisted in SQLite.

    A refusal must not tell what the refused answer was. :meth:`answer` (what the server
    calls) hides alleles below ``hide_below`` copies, prices the rest with
    :func:`query_cost`, and refuses whenever less than the dearest possible answer (the
    ``reserve``) is left, so whether a query is refused depends on earlier answers only.
    :meth:`charge` with ``reserve=0`` refuses when this answer's cost does not fit, which
    tells the requester a little about it; so once a requester is refused on a dataset,
    every later query of theirs on it is refused until the window renews (never, by
    default), and that little is learnt once.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        settings: BudgetSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.settings = settings
        self._clock = clock

    @classmethod
    def open(
        cls,
        state_dir: Path,
        settings: Mapping[str, Any] | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> QueryBudget:
        """Open (or create) ``state_dir/beacon_budget.sqlite`` with node.yaml's settings."""
        parsed = BudgetSettings.from_mapping(settings)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / BUDGET_FILE
        # Query texts name the variants requesters asked about: only the node reads them.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(_SCHEMA)
        return cls(db, parsed, clock=clock)

    def close(self) -> None:
        """Close the database (charges are committed as they are made)."""
        with self._lock:
            self._db.close()

    def budget_for(self, requester: str) -> float:
        """The requester's budget per dataset (its override, else ``per_dataset``)."""
        return self.settings.requesters.get(requester, self.settings.per_dataset)

    def assess(self, alt_allele_counts: Sequence[int], n_individuals: int) -> Assessment:
        """Which counts an answer may reveal (``hide_below`` and up) and what that costs."""
        k = self.settings.hide_below
        revealed = tuple(c for c in alt_allele_counts if c >= k)
        if not self.settings.enabled:
            return Assessment(revealed=tuple(alt_allele_counts), cost=0.0, reserve=0.0)
        # Datasets too small to hold k copies never reveal anything.
        reserve = query_cost([k], n_individuals, hidden_below=k) if k <= 2 * n_individuals else 0.0
        return Assessment(
            revealed=revealed,
            cost=query_cost(revealed, n_individuals, hidden_below=k),
            reserve=reserve,
        )

    def answer(
        self,
        requester: str,
        dataset: str,
        alt_allele_counts: Sequence[int],
        n_individuals: int,
        query: str,
    ) -> tuple[int, ...]:
        """Charge a variant query and return the counts its answer may reveal.

        ``alt_allele_counts`` are those of every variant the query matched in the dataset
        of ``n_individuals``; an empty result means the answer is "no" (absent or hidden).
        Raises :class:`BudgetExhausted` (nothing charged) when less than the dearest
        possible answer is left.
        """
        assessed = self.assess(alt_allele_counts, n_individuals)
        self.charge(requester, dataset, assessed.cost, query, reserve=assessed.reserve)
        return assessed.revealed

    def charge(
        self, requester: str, dataset: str, cost: float, query: str, *, reserve: float = 0.0
    ) -> float:
        """Charge ``cost`` nats to (requester, dataset) and return what is left.

        Raises :class:`BudgetExhausted`, charging nothing, when ``spent + cost`` would pass
        the budget, when less than ``reserve`` is left, or when the pair was refused before
        in this window (the refusal is recorded). With the budget disabled nothing is
        recorded and ``inf`` is returned.
        """
        if math.isnan(cost) or cost < 0 or math.isnan(reserve) or reserve < 0:
            raise FedgenError(
                f"a Beacon query's cost and reserve must be numbers >= 0 (query_cost); got "
                f"cost={cost!r}, reserve={reserve!r} for {query!r}"
            )
        if not self.settings.enabled:
            return math.inf
        budget = self.budget_for(requester)
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                started = self._window_start(requester, dataset, now, write=True)
                spent, refused = self._spent(requester, dataset, started)
                if refused or budget - spent < reserve or spent + cost > budget:
                    self._record(now, requester, dataset, cost, query, "refused")
                    self._db.execute("COMMIT")
                    raise BudgetExhausted(
                        self._refusal(
                            requester,
                            dataset,
                            spent,
                            max(cost, reserve),
                            budget,
                            started,
                            refused,
                        ),
                        requester=requester,
                        dataset=dataset,
                    )
                self._record(now, requester, dataset, cost, query, "charged")
                self._db.execute("COMMIT")
            except BudgetExhausted:
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if budget == math.inf:
            return math.inf
        return budget - spent - cost

    def remaining(self, requester: str, dataset: str) -> float:
        """What (requester, dataset) may still spend in this window (0 once refused)."""
        if not self.settings.enabled:
            return math.inf
        budget = self.budget_for(requester)
        with self._lock:
            started = self._window_start(requester, dataset, self._clock(), write=False)
            spent, refused = self._spent(requester, dataset, started)
        if refused:
            return 0.0
        if budget == math.inf:
            return math.inf
        return max(0.0, budget - spent)

    def spend_epsilon(
        self, requester: str, dataset: str, epsilon: float, query: str, *, total: float
    ) -> float:
        """Charge one count answer's ``epsilon`` to (requester, dataset); return what is left.

        The privacy budget of counts of individuals (snakemake_fedgen.beacon.counts): kept
        beside the variant budget's nats, in its own table, with the same windows
        (``window_days``). Raises :class:`BudgetExhausted`, charging nothing (the refusal is
        recorded), when ``spent + epsilon`` would pass ``total``. The charge does not depend
        on the answer, so a refusal tells nothing about it.
        """
        if not 0 < epsilon < math.inf or math.isnan(total) or total <= 0:
            raise FedgenError(
                f"a count answer's epsilon and the total must be numbers > 0 (beacon.counts); "
                f"got epsilon={epsilon!r}, total={total!r} for {query!r}"
            )
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                started = self._window_start(requester, dataset, now, write=True)
                spent = self._epsilon_spent(requester, dataset, started)
                # A relative tolerance: 40 charges of 0.5 must fit a total of 20.
                fits = spent + epsilon <= total * (1 + 1e-9)
                self._db.execute(
                    "INSERT INTO epsilon_charges (time, requester, dataset, epsilon, query, "
                    "outcome) VALUES (?, ?, ?, ?, ?, ?)",
                    (now, requester, dataset, epsilon, query, "charged" if fits else "refused"),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if not fits:
            raise BudgetExhausted(
                f"privacy budget for counts of individuals in dataset {dataset!r} exhausted: "
                f"epsilon {spent:.3g} of {total:.3g} spent and an answer costs {epsilon:.3g}; "
                + self._renewal(requester, started, key="beacon.counts.requesters"),
                requester=requester,
                dataset=dataset,
            )
        return math.inf if total == math.inf else max(0.0, total - spent - epsilon)

    def epsilon_remaining(self, requester: str, dataset: str, *, total: float) -> float:
        """What (requester, dataset) may still spend on counts in this window (epsilon)."""
        with self._lock:
            started = self._window_start(requester, dataset, self._clock(), write=False)
            spent = self._epsilon_spent(requester, dataset, started)
        return math.inf if total == math.inf else max(0.0, total - spent)

    def _epsilon_spent(self, requester: str, dataset: str, started: float) -> float:
        (spent,) = self._db.execute(
            "SELECT COALESCE(SUM(epsilon), 0.0) FROM epsilon_charges WHERE requester = ? AND "
            "dataset = ? AND time >= ? AND outcome = 'charged'",
            (requester, dataset, started),
        ).fetchone()
        return float(spent)

    def _renewal(self, requester: str, started: float, *, key: str) -> str:
        window = self.settings.window_days
        if window is None:
            return (
                "it does not renew (node.yaml beacon.budget.window_days is not set); the "
                f"site's steward can raise {key}.{requester}"
            )
        at = datetime.fromtimestamp(started + window * 86400.0, tz=UTC)
        return f"it renews at {at.isoformat(timespec='seconds')}"

    def history(self, requester: str, dataset: str) -> list[Charge]:
        """Every recorded charge and refusal of (requester, dataset), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, requester, dataset, cost, query, outcome FROM charges "
                "WHERE requester = ? AND dataset = ? ORDER BY id",
                (requester, dataset),
            ).fetchall()
        return [Charge(*row) for row in rows]

    def _window_start(self, requester: str, dataset: str, now: float, *, write: bool) -> float:
        row = self._db.execute(
            "SELECT started FROM windows WHERE requester = ? AND dataset = ?",
            (requester, dataset),
        ).fetchone()
        window = self.settings.window_days
        if row is not None and (window is None or now < row[0] + window * 86400.0):
            return float(row[0])
        if write:
            self._db.execute(
                "INSERT INTO windows (requester, dataset, started) VALUES (?, ?, ?) "
                "ON CONFLICT (requester, dataset) DO UPDATE SET started = excluded.started",
                (requester, dataset, now),
            )
        return now

    def _spent(self, requester: str, dataset: str, started: float) -> tuple[float, bool]:
        spent, refusals = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN outcome = 'charged' THEN cost END), 0.0), "
            "COUNT(CASE WHEN outcome = 'refused' THEN 1 END) FROM charges "
            "WHERE requester = ? AND dataset = ? AND time >= ?",
            (requester, dataset, started),
        ).fetchone()
        return float(spent), refusals > 0

    def _record(
        self, now: float, requester: str, dataset: str, cost: float, query: str, outcome: str
    ) -> None:
        self._db.execute(
            "INSERT INTO charges (time, requester, dataset, cost, query, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, requester, dataset, cost, query, outcome),
        )

    def _refusal(
        self,
        requester: str,
        dataset: str,
        spent: float,
        cost: float,
        budget: float,
        started: float,
        refused_before: bool,
    ) -> str:
        resets = self._renewal(requester, started, key="beacon.budget.requesters")
        why = (
            "it was exhausted by an earlier refused query"
            if refused_before
            else f"a query may cost up to {cost:.3g} more"
        )
        return (
            f"query budget for dataset {dataset!r} exhausted: {spent:.3g} of {budget:.3g} nats "
            f"spent and {why}; {resets}"
        )
