"""Disclosure control of the Beacon's counts of individuals: noise and an epsilon budget.

An exact count lets a caller difference two answers whose filters differ by one person
(``LOINC:39469-2>4.10`` against ``>4.11``, a filter with and without ``NCIT:C16576``) and
learn that person's attribute: the tracker attack (Denning 1979). i2b2/SHRINE and
differential privacy answer with the Laplace mechanism instead: a count changes by at most 1
when one person is added or removed (sensitivity 1), so ``true + Laplace(1/epsilon)`` is
epsilon-differentially private, and k answers about the same people are at most
k * epsilon-DP (sequential composition). The noise is drawn afresh for every answer (the
same query asked twice gets independent noise), so every answer is charged: each spends
``epsilon`` of the requester's per-dataset ``total_epsilon``, kept in the Beacon's budget
store (:meth:`QueryBudget.spend_epsilon`, the same sqlite file as the variant budget).
The charge does not depend on the data, so a refusal tells nothing about the answer.

The ``min_cell`` floor (responses.reported) is applied afterwards to the NOISY count:
1..min_cell-1 is reported as min_cell, 0 stays 0 ("no"); a boolean answer is "yes" when the
noisy count is >= 1. Post-processing keeps the guarantee.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import ConfigError, FedgenError

from snakemake_fedgen.beacon.budget import REQUESTER_KINDS, setting_number

#: Epsilon spent by each count answer: noise sd sqrt(2)/0.5 = 2.8 people.
DEFAULT_EPSILON = 0.5
#: Epsilon per (requester, dataset) in total: 40 answers at the default epsilon.
DEFAULT_TOTAL_EPSILON = 20.0
_KEYS = ("enabled", "epsilon", "total_epsilon", "requesters")


@dataclass(frozen=True)
class CountSettings:
    """Validated ``beacon.counts`` settings of node.yaml."""

    enabled: bool = True
    epsilon: float = DEFAULT_EPSILON
    total_epsilon: float = DEFAULT_TOTAL_EPSILON
    #: Per-requester ('caller:<name>' or 'anonymous:<ip>') totals overriding ``total_epsilon``.
    requesters: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> CountSettings:
        """Validate node.yaml's ``beacon.counts`` (None or {} gives the defaults)."""
        if settings is None:
            return cls()
        if not isinstance(settings, Mapping):
            raise ConfigError(
                f"node.yaml: beacon.counts must be a mapping with keys {', '.join(_KEYS)}; "
                f"got {type(settings).__name__} {settings!r}"
            )
        unknown = sorted(str(k) for k in set(settings) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"node.yaml: unknown key(s) beacon.counts.{', beacon.counts.'.join(unknown)}; "
                f"allowed: {', '.join(_KEYS)}"
            )
        enabled = settings.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(
                f"node.yaml: beacon.counts.enabled must be true or false; got {enabled!r}"
            )
        epsilon = setting_number(
            settings.get("epsilon", DEFAULT_EPSILON), "beacon.counts.epsilon", strict=True
        )
        total = setting_number(
            settings.get("total_epsilon", DEFAULT_TOTAL_EPSILON),
            "beacon.counts.total_epsilon",
            strict=True,
            allow_inf=True,
        )
        if total < epsilon:
            raise ConfigError(
                f"node.yaml: beacon.counts.total_epsilon ({total:g}) is below "
                f"beacon.counts.epsilon ({epsilon:g}): no count could ever be answered; raise "
                "total_epsilon or lower epsilon (or set beacon.counts.enabled: false)"
            )
        raw = settings.get("requesters") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "node.yaml: beacon.counts.requesters must map requesters ('caller:<name>' or "
                f"'anonymous:<ip>') to total epsilons; got {raw!r}"
            )
        requesters: dict[str, float] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not name.startswith(REQUESTER_KINDS):
                raise ConfigError(
                    f"node.yaml: beacon.counts.requesters key {name!r} must be 'caller:<name>' "
                    "or 'anonymous:<ip>'"
                )
            requesters[name] = setting_number(
                value, f"beacon.counts.requesters.{name}", strict=True, allow_inf=True
            )
        return cls(enabled=enabled, epsilon=epsilon, total_epsilon=total, requesters=requesters)

    def total_for(self, requester: str) -> float:
        """The requester's total epsilon per dataset (its override, else ``total_epsilon``)."""
        return self.requesters.get(requester, self.total_epsilon)


def noisy_count(true_count: int, epsilon: float, rng: np.random.Generator | None = None) -> int:
    """``true_count`` + Laplace(1/epsilon) noise, rounded to the nearest integer, at least 0.

    The Laplace mechanism for a count (sensitivity 1): epsilon-differentially private.
    Without ``rng`` the noise comes from a generator seeded with 128 fresh bits from
    :mod:`secrets`, never from the query, so asking again gives independent noise.
    """
    if isinstance(true_count, bool) or not isinstance(true_count, int) or true_count < 0:
        raise FedgenError(f"noisy_count needs a count >= 0; got {true_count!r}")
    if not 0 < epsilon < math.inf:
        raise FedgenError(f"noisy_count needs 0 < epsilon < inf; got {epsilon!r}")
    gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    return max(0, round(true_count + float(gen.laplace(0.0, 1.0 / epsilon))))


def answer_count(
    budget: Any,
    settings: CountSettings,
    *,
    requester: str,
    dataset: str,
    true_count: int,
    query: str,
) -> tuple[int, float]:
    """Charge one count answer to (requester, dataset) and return (noisy count, epsilon spent).

    ``budget`` is the Beacon's :class:`~snakemake_fedgen.beacon.budget.QueryBudget`. With
    ``settings.enabled`` false the exact count is returned and nothing is charged. Raises
    :class:`~snakemake_fedgen.beacon.budget.BudgetExhausted` (nothing answered) when the
    requester's total epsilon for the dataset is spent.
    """
    if not settings.enabled:
        return true_count, 0.0
    budget.spend_epsilon(
        requester, dataset, settings.epsilon, query, total=settings.total_for(requester)
    )
    return noisy_count(true_count, settings.epsilon), settings.epsilon
