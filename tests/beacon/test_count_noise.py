"""Counts of individuals: the differencing (tracker) attack, the Laplace noise that stops it and
the epsilon budget that stops averaging it away (snakemake_fedgen/beacon/counts.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, laplace
from snakemake_executor_plugin_fedgen.errors import ConfigError, FedgenError

from snakemake_fedgen.beacon.budget import BudgetExhausted, QueryBudget
from snakemake_fedgen.beacon.config import beacon_settings
from snakemake_fedgen.beacon.counts import (
    DEFAULT_EPSILON,
    DEFAULT_TOTAL_EPSILON,
    CountSettings,
    answer_count,
    noisy_count,
)
from snakemake_fedgen.beacon.network import SiteAnswer, noise_sd, site_answers
from tests.beacon.conftest import TOKENS, audit_records, beacon_block, beacon_node, validate

AUTH = {"Authorization": f"Bearer {TOKENS['analyst']}"}
BODY = {"meta": {"apiVersion": "v2.1.1"}}
LDL = "LOINC:39469-2"
#: Answers the defaults allow per requester and dataset: 20 / 0.5.
ANSWERS = round(DEFAULT_TOTAL_EPSILON / DEFAULT_EPSILON)


def one_person_apart(fed: Path) -> tuple[str, str]:
    """Two LDL filters of site A whose true counts differ by exactly one person (pandas):
    ``>=x`` and ``>x`` for an LDL value ``x`` only one person has, near the middle."""
    table = pd.read_csv(fed / "sites/A/phenotypes.tsv", sep="\t", dtype={"ldl": str})
    values = table.ldl.dropna()
    once = values.value_counts()
    ldl = values.astype(float)
    for text in sorted(once[once == 1].index, key=lambda v: abs(float(v) - ldl.median())):
        x = float(text)
        if int((ldl >= x).sum()) - int((ldl > x).sum()) == 1 and (ldl > x).sum() >= 30:
            return f"{LDL}>={text}", f"{LDL}>{text}"
    raise AssertionError("no LDL value held by exactly one person")


def count(client: Any, term: str, headers: dict[str, str] | None = None) -> Any:
    body = {**BODY, "query": {"filters": [_term(term)], "requestedGranularity": "count"}}
    return client.post("/api/individuals", json=body, headers=headers or {})


def _term(text: str) -> dict[str, str]:
    for op in (">=", ">"):
        if op in text:
            fid, value = text.split(op, 1)
            return {"id": fid, "operator": op, "value": value}
    return {"id": text}


def reported(response: Any) -> int:
    assert response.status_code == 200, response.text
    (rs,) = response.json()["response"]["resultSets"]
    return int(rs["resultsCount"])


# --- (a) the attack ---------------------------------------------------------------------------


def test_differencing_attack__exact_without_noise(federation: Path, tmp_path: Path) -> None:
    """Without noise two counts one person apart give that person's LDL away, every time."""
    wide, narrow = one_person_apart(federation)
    with beacon_node(federation, "A", tmp_path / "state", counts={"enabled": False}) as client:
        diffs = [reported(count(client, wide, AUTH)) - reported(count(client, narrow, AUTH))
                 for _ in range(5)]  # fmt: skip
    assert diffs == [1] * 5


def test_differencing_attack__noise_and_budget_defeat_it(federation: Path, tmp_path: Path) -> None:
    """With the shipped defaults (epsilon 0.5 per answer, 20 per requester and dataset) the
    attacker gets 20 pairs of answers. Each difference is 1 + the difference of two rounded
    Laplace(2) draws: sd 4.0, right (== 1) with probability 0.12; 9 or fewer of 20 are right
    except with probability 5e-5 (binomial). Averaging the 20 differences gives sd
    4.0 / sqrt(20) = 0.90: within 0.5 of the truth with probability 0.41 (a coin flip), and
    95% sure only after ~250 pairs (500 answers, epsilon 250): the node refuses the 41st."""
    wide, narrow = one_person_apart(federation)
    state = tmp_path / "state"
    with beacon_node(federation, "A", state) as client:
        diffs = []
        for _ in range(ANSWERS // 2):
            diffs.append(
                reported(count(client, wide, AUTH)) - reported(count(client, narrow, AUTH))
            )
        refused = count(client, wide, AUTH)
        assert refused.status_code == 403, refused.text
        validate(refused.json(), "responses/beaconErrorResponse.json")
        assert "budget" in refused.json()["error"]["errorMessage"]
        # The refusal is per requester: another caller (anonymous, boolean) still gets answers.
        anon = client.post("/api/individuals", json={**BODY, "query": {"filters": [_term(wide)]}})
        assert anon.status_code == 200 and anon.json()["responseSummary"]["exists"] is True
    hits = sum(d == 1 for d in diffs)
    # P(hit) per pair, computed from the rounded Laplace: P(round(L1) - round(L2) == 0).
    b = 1 / DEFAULT_EPSILON
    cells = np.arange(-60, 61)
    pmf = laplace.cdf(cells + 0.5, scale=b) - laplace.cdf(cells - 0.5, scale=b)
    p_hit = float((pmf**2).sum())
    assert 0.11 < p_hit < 0.14
    assert binom.sf(9, len(diffs), p_hit) < 1e-4
    assert hits <= 9, diffs
    assert np.var(diffs, ddof=1) > 3.0, diffs  # 0 without noise; ~16 with it
    records = audit_records(state)
    charged = [r for r in records if r.get("requester") == "caller:static-analyst"]
    assert [r["epsilon"] for r in charged[:ANSWERS]] == [DEFAULT_EPSILON] * ANSWERS
    assert [r["outcome"] for r in charged] == ["200"] * ANSWERS + ["403"]


# --- (b) the noise ------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_noisy_count__rounded_laplace(epsilon: float) -> None:
    """20,000 answers of a count of 500 against scipy's Laplace(1/epsilon), rounded."""
    true, n = 500, 20_000
    got = np.array([noisy_count(true, epsilon) for _ in range(n)]) - true
    b = 1 / epsilon
    variance = 2 * b**2 + 1 / 12  # Laplace plus rounding (uniform on a unit cell)
    assert abs(got.mean()) < 4 * math.sqrt(variance / n)
    assert got.var() == pytest.approx(variance, rel=0.08)  # sd of the estimate: 1.6%
    # Kolmogorov distance to the rounded Laplace's CDF, P(round(L) <= k) = F(k + 0.5).
    ks = np.arange(got.min(), got.max() + 1)
    empirical = np.searchsorted(np.sort(got), ks, side="right") / n
    assert np.abs(empirical - laplace.cdf(ks + 0.5, scale=b)).max() < 0.02  # 99.9%: 0.014


def test_noisy_count__clamped_at_zero_and_fresh() -> None:
    draws = [noisy_count(0, 0.5) for _ in range(2000)]
    assert min(draws) == 0 and max(draws) > 0
    # Half the mass is below 0 -> 0; plus P(-0.5 < L < 0.5).
    assert np.mean(np.array(draws) == 0) == pytest.approx(laplace.cdf(0.5, scale=2), abs=0.05)
    assert len({noisy_count(100, 0.5) for _ in range(50)}) > 5
    with pytest.raises(FedgenError, match="epsilon"):
        noisy_count(3, 0.0)
    with pytest.raises(FedgenError, match="count >= 0"):
        noisy_count(-1, 0.5)


def test_node__noise_through_the_endpoint(federation: Path, tmp_path: Path) -> None:
    """300 answers of one filter through a node (no limit): centred on the pandas count, with
    the noise's variance (8.1 at epsilon 0.5; sd of the estimate 13%, tolerance 4 sd)."""
    table = pd.read_csv(federation / "sites/A/phenotypes.tsv", sep="\t")
    true = int((table.sex == 2).sum())
    assert true > 30
    with beacon_node(
        federation, "A", tmp_path / "state", counts={"total_epsilon": float("inf")}
    ) as client:
        got = np.array([reported(count(client, "NCIT:C16576", AUTH)) for _ in range(300)])
        # The answer says that its count is noisy, and how much.
        (rs,) = count(client, "NCIT:C16576", AUTH).json()["response"]["resultSets"]
        noise = rs["info"]["countNoise"]
        assert noise["mechanism"] == "Laplace" and noise["epsilon"] == DEFAULT_EPSILON
        assert noise["scale"] == 1 / DEFAULT_EPSILON
        assert f"epsilon {DEFAULT_EPSILON:g} per answer" in noise["description"]
        # fedgen discover reads it: the count is marked noisy, and a total's noise is summed.
        answers = site_answers("A", 200, count(client, "NCIT:C16576", AUTH).json())
    (answer,) = answers
    assert answer.noise_scale == 1 / DEFAULT_EPSILON and answer.count is not None
    assert answer.note == f"noisy: sd {math.sqrt(2) / DEFAULT_EPSILON:.1f}"
    assert noise_sd([answer, answer]) == pytest.approx(2 / DEFAULT_EPSILON)
    assert noise_sd([SiteAnswer("B", "b", True, 7)]) is None  # exact counts
    variance = 2 * (1 / DEFAULT_EPSILON) ** 2 + 1 / 12
    assert abs(got.mean() - true) < 4 * math.sqrt(variance / len(got))
    assert 0.48 * variance < got.var() < 1.52 * variance


def test_node__floor_after_noise_and_anonymous_booleans_charged(
    federation: Path, tmp_path: Path
) -> None:
    """A filter nobody matches: the noisy count is 0 ("no") or, floored, at least min_cell
    (5), never 1-4 (30 answers: some are 5 except with probability 0.66**30 = 5e-6). An
    anonymous caller's booleans come from the same noise and spend the same epsilon."""
    state = tmp_path / "state"
    nobody = f"{LDL}>=100"
    with beacon_node(federation, "A", state, counts={"total_epsilon": 15.0}) as client:
        got = [reported(count(client, nobody, AUTH)) for _ in range(30)]
        assert count(client, nobody, AUTH).status_code == 403
        body = {**BODY, "query": {"filters": [_term(nobody)]}}
        anon = [client.post("/api/individuals", json=body) for _ in range(31)]
    assert set(got) <= {0} | set(range(5, 40)) and 0 in got and 5 in got, got
    assert [r.status_code for r in anon] == [200] * 30 + [403]
    said = [r.json()["responseSummary"]["exists"] for r in anon[:30]]
    assert True in said and False in said  # true count 0, yet "yes" about 39% of the time
    validate(anon[0].json(), "responses/beaconBooleanResponse.json")
    records = [r for r in audit_records(state) if r.get("requester", "").startswith("anonymous")]
    assert [r["epsilon"] for r in records[:30]] == [0.5] * 30
    assert records[30]["outcome"] == "403" and records[30]["epsilon"] is None


# --- (c) the ledger, requesters, settings ------------------------------------------------------


def test_spend_epsilon__persists_across_restarts_per_requester(tmp_path: Path) -> None:
    settings = CountSettings.from_mapping({"total_epsilon": 2.0, "epsilon": 0.5})
    budget = QueryBudget.open(tmp_path, None)
    for _ in range(3):
        answer_count(budget, settings, requester="caller:a", dataset="D", true_count=10, query="q")
    budget.close()
    budget = QueryBudget.open(tmp_path, None)  # a node restart
    assert budget.epsilon_remaining("caller:a", "D", total=2.0) == pytest.approx(0.5)
    answer_count(budget, settings, requester="caller:a", dataset="D", true_count=10, query="q")
    with pytest.raises(BudgetExhausted, match=r"beacon\.counts\.requesters\.caller:a"):
        answer_count(budget, settings, requester="caller:a", dataset="D", true_count=10, query="q")
    # Another requester, and the same requester on another dataset, start afresh.
    assert budget.epsilon_remaining("caller:b", "D", total=2.0) == 2.0
    assert budget.epsilon_remaining("caller:a", "E", total=2.0) == 2.0
    # The variant budget's nats are a separate account in the same file.
    assert budget.remaining("caller:a", "D") == pytest.approx(1.5)
    budget.close()
    # Disabled: exact, nothing charged.
    off = CountSettings.from_mapping({"enabled": False})
    budget = QueryBudget.open(tmp_path, None)
    assert answer_count(
        budget, off, requester="caller:a", dataset="D", true_count=7, query="q"
    ) == (7, 0.0)
    budget.close()


def test_requester_override(tmp_path: Path) -> None:
    settings = CountSettings.from_mapping(
        {"total_epsilon": 0.5, "requesters": {"caller:steward": float("inf")}}
    )
    assert settings.total_for("caller:steward") == math.inf
    budget = QueryBudget.open(tmp_path, None)
    for _ in range(5):
        answer_count(
            budget, settings, requester="caller:steward", dataset="D", true_count=1, query="q"
        )
    answer_count(budget, settings, requester="caller:x", dataset="D", true_count=1, query="q")
    with pytest.raises(BudgetExhausted):
        answer_count(budget, settings, requester="caller:x", dataset="D", true_count=1, query="q")
    budget.close()


@pytest.mark.parametrize(("counts", "message"), [
    ({"epsilon": 0}, r"beacon\.counts\.epsilon must be a number > 0"),
    ({"epsilon": "x"}, r"beacon\.counts\.epsilon"),
    ({"epsilon": float("inf")}, r"beacon\.counts\.epsilon"),
    ({"total_epsilon": -1}, r"beacon\.counts\.total_epsilon must be"),
    ({"total_epsilon": 0.1}, r"beacon\.counts\.total_epsilon \(0\.1\) is below"),
    ({"enabled": "yes"}, r"beacon\.counts\.enabled must be true or false"),
    ({"noise": 1}, r"unknown key\(s\) beacon\.counts\.noise"),
    ({"requesters": {"alice": 1}}, r"beacon\.counts\.requesters key 'alice'"),
    ([1], r"beacon\.counts must be a mapping"),
])  # fmt: skip
def test_config__refusals_name_the_key(federation: Path, counts: Any, message: str) -> None:
    block = beacon_block(federation, "A") | {"counts": counts}
    with pytest.raises(ConfigError, match=message):
        beacon_settings(block, read_roots=[federation])


def test_config__defaults(federation: Path) -> None:
    settings = beacon_settings(beacon_block(federation, "A"), read_roots=[federation])
    assert settings is not None
    assert settings.counts == CountSettings(enabled=True, epsilon=0.5, total_epsilon=20.0)
    assert math.sqrt(2) / settings.counts.epsilon == pytest.approx(2.83, abs=0.01)
