"""The Beacon query budget: query_cost against the paper's LRT, and QueryBudget's ledger."""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from snakemake_executor_plugin_fedgen.errors import AccessDenied, ConfigError, FedgenError

from snakemake_fedgen.beacon.budget import (
    BUDGET_FILE,
    DEFAULT_HIDE_BELOW,
    DEFAULT_PER_DATASET,
    BudgetExhausted,
    QueryBudget,
    query_cost,
)

ALICE = "caller:alice"
ANON = "anonymous:192.0.2.7"


class Clock:
    """A settable clock (seconds) for window tests."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- query_cost -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [20, 300, 5000])
@pytest.mark.parametrize("k", [1, 5])
def test_query_cost__rarer_alleles_cost_more(n: int, k: int) -> None:
    counts = [c for c in (1, 2, 3, 5, 8, 13, 21, 40) if c >= k and c <= 2 * n]
    costs = [query_cost([c], n, hidden_below=k) for c in counts]
    finite = [c for c in costs if math.isfinite(c)]
    assert all(a > b for a, b in itertools.pairwise(finite))
    assert costs[-1] < 0.01 < costs[0]


def test_query_cost__a_singleton_decides_on_its_own() -> None:
    assert query_cost([1], 300) == math.inf
    assert query_cost([1], 300) > DEFAULT_PER_DATASET
    # ... so does any "yes" from a one-person dataset.
    assert query_cost([2], 1) == math.inf
    # A doubleton is worth about log(1/0.05) = 3.0 nats at the 95% lower bound: more than the
    # default budget, which is why the default hides counts below 5.
    assert query_cost([2], 300) == pytest.approx(math.log(20), abs=0.01)
    assert query_cost([2], 300) > DEFAULT_PER_DATASET


def test_query_cost__dearest_default_answer_fits_the_default_budget() -> None:
    for n in (30, 300, 100_000):
        dearest = query_cost([DEFAULT_HIDE_BELOW], n, hidden_below=DEFAULT_HIDE_BELOW)
        assert 1.0 < dearest <= DEFAULT_PER_DATASET


def test_query_cost__covers_an_attacker_who_knows_the_allele_is_rarer() -> None:
    """The point estimate (c - 1) / (2N - 2) under-charges the victim's rarest alleles: a
    doubleton in a cohort of 300 whose population frequency is 1/6000 (an allele unseen in
    3,000 reference haplotypes, as in test_membership_attack) is worth 2.35 nats to the
    attacker, and would be charged 0.46. The 95% lower bound charges more than it gives."""
    n = 300
    attacker_f = 0.5 / 3001
    gained = -math.log1p(-((1 - attacker_f) ** (2 * n)))
    point = -math.log1p(-((1 - 1 / (2 * n - 2)) ** (2 * n)))
    assert gained == pytest.approx(2.35, abs=0.01)
    assert point == pytest.approx(0.46, abs=0.01)
    assert query_cost([2], n) > gained


def test_query_cost__no_answer_is_free_and_costs_add_up() -> None:
    assert query_cost([], 300) == 0.0
    assert query_cost([3, 7], 300) == pytest.approx(query_cost([3], 300) + query_cost([7], 300))
    # A common allele costs (next to) nothing.
    assert query_cost([120], 300) < 1e-12


def _monte_carlo_llr(f: float, n: int, k: int, rng: np.random.Generator) -> tuple[float, float]:
    """The LLR of a "yes" from first principles: simulate Beacon cohorts of n diploid people
    (each allele of each person carries the variant with probability f), with and without
    a heterozygous victim, and count how often at least k copies make the Beacon say yes."""
    draws = 400_000
    h0 = rng.binomial(2, f, size=(draws, n)).sum(axis=1)
    h1 = 1 + rng.binomial(2, f, size=(draws, n - 1)).sum(axis=1)
    p0, p1 = (h0 >= k).mean(), (h1 >= k).mean()
    # Delta-method standard error of log(p1 / p0).
    se = math.sqrt((1 - p0) / (p0 * draws) + (1 - p1) / max(p1 * draws, 1))
    return math.log(p1 / p0), se


@pytest.mark.parametrize(("count", "k"), [(2, 1), (3, 1), (6, 1), (5, 5), (7, 5), (10, 5)])
def test_query_cost__matches_the_lrt_term_by_monte_carlo(count: int, k: int) -> None:
    n = 20
    # The population frequency the cost assumes: the one-sided 95% lower (Clopper-Pearson)
    # bound of the other members' count-1 copies in 2n-2 haplotypes, here from scipy's
    # exact binomial test rather than the beta quantile query_cost uses.
    ci = binomtest(count - 1, 2 * n - 2).proportion_ci(confidence_level=0.90, method="exact")
    f = ci.low
    llr, se = _monte_carlo_llr(f, n, k, np.random.default_rng(count * 10 + k))
    assert query_cost([count], n, hidden_below=k) == pytest.approx(llr, abs=4 * se + 1e-3)


def test_query_cost__rejects_impossible_counts() -> None:
    for counts, n in (([0], 10), ([21], 10), ([True], 10), ([2.0], 10), ([3], 0)):
        with pytest.raises(FedgenError):
            query_cost(counts, n)  # type: ignore[arg-type]
    with pytest.raises(FedgenError, match="hidden_below"):
        query_cost([3], 10, hidden_below=5)


# --- QueryBudget ----------------------------------------------------------------------------


def test_charge__returns_what_is_left_and_refuses_past_the_budget(tmp_path: Path) -> None:
    budget = QueryBudget.open(tmp_path, {"per_dataset": 1.0, "window_days": 30}, clock=Clock())
    try:
        assert budget.charge(ALICE, "ds1", 0.4, "q1") == pytest.approx(0.6)
        assert budget.remaining(ALICE, "ds1") == pytest.approx(0.6)
        with pytest.raises(BudgetExhausted) as info:
            budget.charge(ALICE, "ds1", 0.7, "q2")
        message = str(info.value)
        assert (
            "'ds1'" in message
            and "0.4 of 1 nats" in message
            and "renews at 2023-12-14T22:13:20+00:00" in message
        )
        assert isinstance(info.value, AccessDenied)
        # Nothing charged; the refusal is on record; the pair stays closed.
        history = budget.history(ALICE, "ds1")
        assert [(c.query, c.outcome) for c in history] == [("q1", "charged"), ("q2", "refused")]
        assert budget.remaining(ALICE, "ds1") == 0.0
        with pytest.raises(BudgetExhausted, match="earlier refused query"):
            budget.charge(ALICE, "ds1", 0.0, "q3")
        # Other datasets and requesters have their own budgets.
        assert budget.remaining(ALICE, "ds2") == 1.0
        assert budget.charge(ANON, "ds1", 0.5, "q4") == pytest.approx(0.5)
    finally:
        budget.close()


def test_charge__never_renews_by_default_and_says_so(tmp_path: Path) -> None:
    budget = QueryBudget.open(tmp_path, {})
    try:
        assert budget.remaining(ALICE, "ds") == DEFAULT_PER_DATASET
        with pytest.raises(BudgetExhausted, match=r"does not renew.*beacon\.budget\.window_days"):
            budget.charge(ALICE, "ds", math.inf, "singleton")
        assert budget.history(ALICE, "ds")[0].cost == math.inf
    finally:
        budget.close()


def test_budget__persists_across_restarts(tmp_path: Path) -> None:
    budget = QueryBudget.open(tmp_path, {"per_dataset": 2.0})
    budget.charge(ALICE, "ds", 0.75, "q1")
    budget.close()
    db = sqlite3.connect(tmp_path / BUDGET_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert (tmp_path / BUDGET_FILE).stat().st_mode & 0o777 == 0o600
    again = QueryBudget.open(tmp_path, {"per_dataset": 2.0})
    try:
        assert again.remaining(ALICE, "ds") == pytest.approx(1.25)
        assert [c.query for c in again.history(ALICE, "ds")] == ["q1"]
    finally:
        again.close()


def test_budget__renews_after_the_window(tmp_path: Path) -> None:
    clock = Clock()
    budget = QueryBudget.open(tmp_path, {"per_dataset": 1.0, "window_days": 7}, clock=clock)
    try:
        budget.charge(ALICE, "ds", 0.9, "q1")
        with pytest.raises(BudgetExhausted):
            budget.charge(ALICE, "ds", 0.5, "q2")
        clock.now += 6.9 * 86400
        assert budget.remaining(ALICE, "ds") == 0.0
        clock.now += 0.2 * 86400
        assert budget.remaining(ALICE, "ds") == 1.0
        assert budget.charge(ALICE, "ds", 0.5, "q3") == pytest.approx(0.5)
    finally:
        budget.close()


def test_budget__per_requester_overrides_and_disabled(tmp_path: Path) -> None:
    settings = {"per_dataset": 1.0, "requesters": {ALICE: 5.0, "caller:steward": math.inf}}
    budget = QueryBudget.open(tmp_path / "on", settings)
    try:
        assert budget.charge(ALICE, "ds", 3.0, "q") == pytest.approx(2.0)
        with pytest.raises(BudgetExhausted):
            budget.charge(ANON, "ds", 3.0, "q")
        assert budget.charge("caller:steward", "ds", math.inf, "q") == math.inf
        assert budget.remaining("caller:steward", "ds") == math.inf
    finally:
        budget.close()
    off = QueryBudget.open(tmp_path / "off", {"enabled": False})
    try:
        assert off.charge(ANON, "ds", math.inf, "q") == math.inf
        assert off.history(ANON, "ds") == []
        assert off.answer(ANON, "ds", [1, 3], 100, "q") == (1, 3)
    finally:
        off.close()


def test_answer__hides_small_counts_and_refuses_whatever_the_answer(tmp_path: Path) -> None:
    budget = QueryBudget.open(tmp_path, {})  # hide_below 5, per_dataset 1.5
    n = 300
    reserve = query_cost([5], n, hidden_below=5)
    try:
        # Fewer than 5 copies: answered as absent, for free (a two-person dataset: always).
        assert budget.assess([1, 2, 4], 2).revealed == ()
        assert budget.assess([3, 7, 40], n).revealed == (7, 40)
        assert budget.answer(ALICE, "ds", [1, 4], n, "rare") == ()
        assert budget.remaining(ALICE, "ds") == DEFAULT_PER_DATASET
        assert budget.answer(ALICE, "ds", [5], n, "five") == (5,)
        left = DEFAULT_PER_DATASET - reserve
        assert budget.remaining(ALICE, "ds") == pytest.approx(left)
        # Less than the dearest answer is left: even a free "no" is refused, so a refusal
        # tells nothing about the refused answer.
        assert left < reserve
        with pytest.raises(BudgetExhausted):
            budget.answer(ALICE, "ds", [], n, "absent")
    finally:
        budget.close()


def test_charge__concurrent_requests_never_overspend(tmp_path: Path) -> None:
    budget = QueryBudget.open(tmp_path, {"per_dataset": 1.0})
    granted: list[float] = []

    def ask() -> None:
        for _ in range(20):
            try:
                budget.charge(ANON, "ds", 1 / 64, "q")
                granted.append(1 / 64)
            except BudgetExhausted:
                return

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        spent = sum(c.cost for c in budget.history(ANON, "ds") if c.outcome == "charged")
        assert len(granted) == 64
        assert spent == pytest.approx(1.0)
    finally:
        budget.close()


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"per_dataset": -1}, "beacon.budget.per_dataset"),
        ({"per_dataset": "lots"}, "beacon.budget.per_dataset"),
        ({"per_dataset": math.inf}, "beacon.budget.per_dataset"),
        ({"window_days": 0}, "beacon.budget.window_days"),
        ({"enabled": "yes"}, "beacon.budget.enabled"),
        ({"hide_below": 0}, "beacon.budget.hide_below"),
        ({"requesters": {"alice": 1.0}}, "beacon.budget.requesters"),
        ({"requesters": {ALICE: -2}}, f"beacon.budget.requesters.{ALICE}"),
        ({"budget": 3}, "beacon.budget.budget"),
    ],
)
def test_settings__errors_name_the_key(tmp_path: Path, settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"node.yaml: .*{key}"):
        QueryBudget.open(tmp_path, settings)
