"""The Shringarpure-Bustamante membership-inference attack on a Beacon (AJHG 97:631, 2015).

The attacker holds the victim's genome and a reference population. They ask the Beacon about
the victim's alternate alleles, rarest first (population frequency from the reference), and
run the likelihood-ratio test of H0 "the victim is not among the Beacon's N individuals"
against H1 "the victim is one of them". Written here from the paper, independently of
``snakemake_fedgen.beacon.budget``, so that the budget is tested against the attack and not
against itself.

Per answered query of an allele with population frequency f, ``D_k = (1 - f)**(2k)`` and
the Beacon misses a present allele with probability delta:

* P(yes | H0) = 1 - D_N, P(yes | H1) = 1 - delta * D_{N-1}.

(``hidden_below``: the same test against a Beacon that answers "no" for alleles with fewer
carriers than that, with the answer probabilities that follow.)

The statistic is the log-likelihood ratio log L(H1) - log L(H0) summed over the answers (the
paper's Lambda with the sign flipped, so large means "member"). Its null distribution for the
answered queries comes from the paper's model (independent answers with P(yes | H0)) by Monte
Carlo. As in the paper the test has a fixed number of queries, planned before asking: the
fewest of the victim's rarest alleles after which the model says a member is found with
probability ``power``; membership is declared when the statistic over their answers exceeds
the (1 - alpha) quantile of its null distribution.

``ask(variant)`` is the Beacon: True/False for an allele-presence answer, None for a refusal
(a refused query is skipped; the attacker moves on to the next allele).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

#: The Beacon's miss rate the paper uses.
DELTA = 1e-6
#: Monte Carlo draws of the null and alternative distributions.
DRAWS = 4000


@dataclass
class AttackResult:
    """What one run of the attack asked, heard and decided."""

    #: Queries the attacker planned: the number after which the paper's model says a member
    #: is found with probability ``power`` at level ``alpha`` (at most ``max_queries``).
    planned: int
    asked: int
    answered: int
    refused: int
    yes: int
    #: The statistic over the answers to the planned queries, and the test's threshold.
    statistic: float
    threshold: float
    #: Whether the test over the planned queries rejected H0 (declared membership).
    member: bool
    #: The same test over every answer heard (all ``asked`` queries).
    statistic_all: float = 0.0
    member_all: bool = False
    #: Fewest answers after which the statistic first exceeded its threshold (report only).
    first_crossing: int | None = None
    #: Statistic and decision of an attacker who reads the first refusal as a "yes".
    statistic_refusal_as_yes: float | None = None
    member_refusal_as_yes: bool = False


def _terms(
    freqs: np.ndarray, n: int, hidden_below: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(P(yes | H0), P(yes | H1), LLR of a yes, LLR of a no) per allele frequency.

    A Beacon that hides alleles with fewer than ``hidden_below`` carriers (answers "no") says
    yes under H0 when Binomial(2N, f) >= k and under H1, the victim a heterozygous member,
    when 1 + Binomial(2N - 2, f) >= k. With k = 1 these are the paper's 1 - D_N and
    1 - delta * D_{N-1}.
    """
    k = hidden_below
    if k <= 1:
        p0 = 1.0 - (1.0 - freqs) ** (2 * n)
        p1 = 1.0 - DELTA * (1.0 - freqs) ** (2 * n - 2)
    else:
        p0 = binom.sf(k - 1, 2 * n, freqs)
        p1 = binom.sf(k - 2, 2 * n - 2, freqs)
    p0 = np.clip(p0, 1e-300, 1.0 - 1e-16)
    p1 = np.clip(p1, 1e-300, 1.0 - 1e-16)
    return p0, p1, np.log(p1) - np.log(p0), np.log1p(-p1) - np.log1p(-p0)


def _null_and_power(
    freqs: np.ndarray, n: int, *, alpha: float, seed: int, hidden_below: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per query count k: the (1 - alpha) null quantile of the statistic over the first k
    queries, and the probability that a member's statistic exceeds it (the paper's model)."""
    if freqs.size == 0:
        return np.zeros(0), np.zeros(0)
    rng = np.random.default_rng(seed)
    p0, p1, yes, no = _terms(freqs, n, hidden_below)
    null = np.cumsum(np.where(rng.random((DRAWS, freqs.size)) < p0, yes, no), axis=1)
    thresholds = np.quantile(null, 1.0 - alpha, axis=0, method="higher")
    alt = np.cumsum(np.where(rng.random((DRAWS, freqs.size)) < p1, yes, no), axis=1)
    return thresholds, (alt > thresholds).mean(axis=0)


def _test(
    heard: list[tuple[Hashable, bool]],
    freqs: Mapping[Hashable, float],
    n: int,
    *,
    alpha: float,
    hidden_below: int,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Statistic and threshold of the fixed-n test over ``heard``, plus the cumulative trace
    and per-k thresholds."""
    f = np.array([freqs[v] for v, _ in heard], dtype=float)
    hits = np.array([a for _, a in heard], dtype=bool)
    _, _, yes, no = _terms(f, n, hidden_below)
    trace = np.cumsum(np.where(hits, yes, no))
    thresholds, _ = _null_and_power(f, n, alpha=alpha, seed=1, hidden_below=hidden_below)
    if not heard:
        return 0.0, 0.0, trace, thresholds
    return float(trace[-1]), float(thresholds[-1]), trace, thresholds


def run_attack(
    victim_alleles: Sequence[Hashable],
    ask: Callable[[Hashable], bool | None],
    *,
    n_individuals: int,
    population_freqs: Mapping[Hashable, float],
    alpha: float = 0.05,
    power: float = 0.95,
    max_queries: int | None = None,
    hidden_below: int = 1,
) -> AttackResult:
    """Query the victim's alternate alleles rarest first and test membership.

    Parameters
    ----------
    victim_alleles
        The alternate alleles the victim carries (any hashable variant key ``ask`` takes).
    ask
        The Beacon: True (present), False (absent) or None (refused).
    n_individuals
        N, the Beacon dataset's diploid individuals (Beacons publish it).
    population_freqs
        The attacker's frequency of each allele, strictly between 0 and 1.
    alpha, power
        False-positive rate of the test, and the detection probability the attacker plans
        the number of queries for (from the paper's model, before asking anything).
    max_queries
        Ask at most this many (default: all the victim's alleles).
    hidden_below
        The attacker knows the Beacon answers "no" for alleles with fewer carriers than
        this (1: nothing hidden, the paper's setting).
    """
    order = sorted(victim_alleles, key=lambda v: (population_freqs[v], str(v)))
    if max_queries is not None:
        order = order[:max_queries]
    plan_freqs = np.array([population_freqs[v] for v in order], dtype=float)
    _, detect = _null_and_power(
        plan_freqs, n_individuals, alpha=alpha, seed=0, hidden_below=hidden_below
    )
    reach = np.flatnonzero(detect >= power)
    planned = int(reach[0]) + 1 if reach.size else len(order)
    heard: list[tuple[Hashable, bool]] = []
    heard_planned: list[tuple[Hashable, bool]] = []
    before_refusal: list[tuple[Hashable, bool]] | None = None
    refused = 0
    for k, variant in enumerate(order):
        answer = ask(variant)
        if answer is None:
            refused += 1
            if before_refusal is None:
                # A refusal depends on the refused answer's cost: read it as the worst
                # case, a "yes" to the refused query.
                before_refusal = [*heard, (variant, True)]
            continue
        heard.append((variant, bool(answer)))
        if k < planned:
            heard_planned.append((variant, bool(answer)))
    stat, thr, _, _ = _test(
        heard_planned, population_freqs, n_individuals, alpha=alpha, hidden_below=hidden_below
    )
    stat_all, thr_all, trace, thresholds = _test(
        heard, population_freqs, n_individuals, alpha=alpha, hidden_below=hidden_below
    )
    crossed = np.flatnonzero(trace > thresholds)
    result = AttackResult(
        planned=planned,
        asked=len(order),
        answered=len(heard),
        refused=refused,
        yes=sum(a for _, a in heard),
        statistic=stat,
        threshold=thr,
        member=bool(heard_planned) and stat > thr,
        statistic_all=stat_all,
        member_all=bool(heard) and stat_all > thr_all,
        first_crossing=int(crossed[0]) + 1 if crossed.size else None,
    )
    if before_refusal is not None:
        stat2, thr2, _, _ = _test(
            before_refusal, population_freqs, n_individuals, alpha=alpha, hidden_below=hidden_below
        )
        result.statistic_refusal_as_yes = stat2
        result.member_refusal_as_yes = stat2 > thr2
    return result
