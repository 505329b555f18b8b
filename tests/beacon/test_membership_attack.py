"""The Shringarpure-Bustamante attack against a simulated Beacon site, without and with the budget.

A site's "Beacon cohort" (300 people) and a reference population (1,500) come from the
project's simulator (msprime under the stdpopsim American admixture model, European
individuals, six 1 Mb loci with their rare variants). The Beacon oracle answers allele
presence from the cohort's VCF read with bcftools. The attacker (tests/beacon/attack.py) takes
population frequencies from the reference, as the risk model assumes.

The Beacon configurations: no budget (the paper's Beacon); alleles of fewer than
``hide_below`` = 5 copies answered as absent without a budget; the shipped budget
(``QueryBudget.answer``: hiding, charging, refusing once less than the dearest answer is left),
in process and through a real node's ``/api/g_variants``; the plain ``query_cost`` + ``charge``
with nothing hidden, where a singleton costs ``inf`` and is refused, so that the refusal
itself says "present" (why ``answer`` hides and reserves); and a sweep of budget sizes.

Run with ``pytest -s`` to see the numbers.
"""

from __future__ import annotations

import math
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from snakemake_fedgen.beacon.budget import (
    DEFAULT_HIDE_BELOW,
    DEFAULT_PER_DATASET,
    BudgetExhausted,
    QueryBudget,
    query_cost,
)
from snakemake_fedgen.simulate.genomes import simulate_genomes
from snakemake_fedgen.simulate.vcf import write_vcf
from tests.beacon.attack import AttackResult, run_attack

N_COHORT = 300
N_REFERENCE = 1500
N_OUTSIDE = 10
N_INSIDE = 10
N_BUDGET_INSIDE = 30
ALPHA = 0.05
POWER = 0.95
#: Queries per victim (the victim's rarest alleles; enough for the unbudgeted attack).
MAX_QUERIES = 150

Variant = tuple[str, int, str, str]


class Site:
    """A simulated Beacon site: cohort VCF, reference frequencies, victims' alleles."""

    def __init__(self, tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g = simulate_genomes(
                {"EUR": N_COHORT + N_REFERENCE + N_OUTSIDE},
                n_loci=[6],
                locus_bp=1_000_000,
                n_background=[0],
                rng=np.random.default_rng(2015),
            )
        eur = np.flatnonzero(g.population == "EUR")
        geno = g.haps[:, 0::2] + g.haps[:, 1::2]  # (variants, individuals) ALT counts
        self.cohort = eur[:N_COHORT]
        self.reference = eur[N_COHORT : N_COHORT + N_REFERENCE]
        self.outside = eur[N_COHORT + N_REFERENCE :]
        self.geno = geno
        self.variants: list[Variant] = [
            (str(c), int(p), str(r), str(a))
            for c, p, r, a in zip(g.chrom, g.pos, g.ref, g.alt, strict=True)
        ]
        ref_counts = geno[:, self.reference].sum(axis=1)
        # The attacker's frequency: the reference count with half an allele added, so an allele
        # unseen in 2 * N_REFERENCE haplotypes is rare but not impossible.
        freqs = (ref_counts + 0.5) / (2 * N_REFERENCE + 1)
        self.freqs = dict(zip(self.variants, freqs.tolist(), strict=True))
        self.cohort_counts = geno[:, self.cohort].sum(axis=1)
        self.vcf = tmp / "cohort.vcf.gz"
        write_vcf(
            self.vcf,
            samples=[f"P{i:04d}" for i in range(N_COHORT)],
            chrom=g.chrom,
            pos=g.pos,
            ids=[f"v{i}" for i in range(g.n_variants)],
            ref=g.ref,
            alt=g.alt,
            codes=geno[:, self.cohort].astype(np.uint8),
            phased=False,
            source="test_membership_attack",
        )
        self._counts: dict[Variant, int] = {}

    def alleles_of(self, person: int) -> list[Variant]:
        """The alternate alleles one person carries."""
        return [self.variants[i] for i in np.flatnonzero(self.geno[:, person] > 0)]

    def alt_count(self, variant: Variant) -> int:
        """ALT alleles of ``variant`` in the cohort, read from its VCF with bcftools."""
        if variant not in self._counts:
            chrom, pos, ref, alt = variant
            out = subprocess.run(
                [
                    "bcftools",
                    "query",
                    "-r",
                    f"{chrom}:{pos}",
                    "-f",
                    "%POS\t%REF\t%ALT[\t%GT]\n",
                    str(self.vcf),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            count = 0
            for line in out.splitlines():
                p, r, a, *gts = line.split("\t")
                if (int(p), r, a) == (pos, ref, alt):
                    count += sum(gt.count("1") for gt in gts)
            self._counts[variant] = count
        return self._counts[variant]

    def beacon(
        self,
        budget: QueryBudget | None,
        requester: str,
        *,
        hide_below: int = 1,
        naive: bool = False,
    ) -> Callable[[Variant], bool | None]:
        """The Beacon's allele-presence answer from the cohort VCF.

        With a budget: ``budget.answer`` (hides counts below its ``hide_below``, charges,
        refuses); ``naive``: the plain ``query_cost`` + ``charge`` of the interface, nothing
        hidden. Without a budget, alleles below ``hide_below`` copies are answered "no".
        """

        def ask(variant: Variant) -> bool | None:
            count = self.alt_count(variant)
            chrom, pos, ref, alt = variant
            query = f"g_variants {chrom}:{pos}{ref}>{alt}"
            counts = [count] if count else []
            if budget is None:
                return count >= max(hide_below, 1)
            try:
                if naive:
                    budget.charge(requester, "cohort", query_cost(counts, N_COHORT), query)
                    return count > 0
                return bool(budget.answer(requester, "cohort", counts, N_COHORT, query))
            except BudgetExhausted:
                return None

        return ask

    def attack(
        self, person: int, ask: Callable[[Variant], bool | None], *, hidden_below: int = 1
    ) -> AttackResult:
        return run_attack(
            self.alleles_of(person),
            ask,
            n_individuals=N_COHORT,
            population_freqs=self.freqs,
            alpha=ALPHA,
            power=POWER,
            max_queries=MAX_QUERIES,
            hidden_below=hidden_below,
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("beacon_site"))


def _line(label: str, r: AttackResult) -> str:
    decided = "MEMBER" if r.member else "not decided"
    text = (
        f"{label}: planned {r.planned}, asked {r.asked}, answered {r.answered} ({r.yes} yes), "
        f"refused {r.refused}; statistic {r.statistic:.2f} vs threshold {r.threshold:.2f}: "
        f"{decided}; over all answers {r.statistic_all:.2f} "
        f"({'MEMBER' if r.member_all else 'not decided'})"
    )
    if r.statistic_refusal_as_yes is not None:
        text += (
            f"; first refusal read as yes: {r.statistic_refusal_as_yes:.2f} "
            f"({'MEMBER' if r.member_refusal_as_yes else 'not decided'})"
        )
    return text


def _spent(budget: QueryBudget, requester: str) -> float:
    return sum(c.cost for c in budget.history(requester, "cohort") if c.outcome == "charged")


def test_oracle__bcftools_counts_match_the_simulated_genotypes(site: Site) -> None:
    rng = np.random.default_rng(0)
    for i in rng.choice(len(site.variants), size=40, replace=False):
        assert site.alt_count(site.variants[i]) == int(site.cohort_counts[i])


def test_attack__decides_membership_without_the_budget(site: Site) -> None:
    no_budget = site.beacon(None, "anonymous:192.0.2.1")
    print()
    inside = [site.attack(int(p), no_budget) for p in site.cohort[:N_INSIDE]]
    for p, r in zip(site.cohort[:N_INSIDE], inside, strict=True):
        print(_line(f"no budget, inside victim {p}", r))
    outside = [site.attack(int(p), no_budget) for p in site.outside]
    for p, r in zip(site.outside, outside, strict=True):
        print(_line(f"no budget, outside victim {p}", r))
    planned = [r.planned for r in inside]
    print(f"inside victims: planned queries (K) min {min(planned)} max {max(planned)}")
    # Every inside victim is found with the planned number of their rarest alleles ...
    assert all(r.member for r in inside)
    assert max(planned) <= 40
    # ... and outside victims are not, but for the test's false positives (alpha = 0.05).
    assert sum(r.member for r in outside) <= 2
    assert all(r.refused == 0 for r in inside + outside)


def _budgeted(
    site: Site, budget: QueryBudget, victims: list[int], *, label: str, naive: bool = False
) -> list[AttackResult]:
    hidden = 1 if naive else budget.settings.hide_below
    results = []
    for p in victims:
        requester = f"caller:attacker-{label}-{p}"
        r = site.attack(p, site.beacon(budget, requester, naive=naive), hidden_below=hidden)
        where = "inside" if p in site.cohort else "outside"
        spent = _spent(budget, requester)
        print(_line(f"{label}, {where} victim {p}", r) + f"; charged {spent:.2f} nats")
        assert spent <= budget.budget_for(requester)
        results.append(r)
    return results


def test_attack__hiding_small_counts_alone_does_not_stop_it(site: Site) -> None:
    print()
    k = DEFAULT_HIDE_BELOW
    rs = [
        site.attack(int(p), site.beacon(None, "anonymous:192.0.2.2", hide_below=k), hidden_below=k)
        for p in site.cohort[:N_BUDGET_INSIDE]
    ]
    for p, r in zip(site.cohort[:N_BUDGET_INSIDE], rs, strict=True):
        print(_line(f"no budget, alleles below {k} copies hidden, inside victim {p}", r))
    found = sum(r.member or r.member_all for r in rs)
    print(f"no budget, alleles below {k} copies hidden: members found {found}/{len(rs)}")
    # An attacker who knows that the Beacon hides small counts still finds half the members
    # (the default budget: under a third, test_attack__stopped_by_the_default_budget).
    assert found >= len(rs) // 2


def test_attack__stopped_by_the_default_budget(site: Site, tmp_path: Path) -> None:
    print()
    inside = [int(p) for p in site.cohort[:N_BUDGET_INSIDE]]
    outside = [int(p) for p in site.outside]
    budget = QueryBudget.open(tmp_path, {})
    try:
        rin = _budgeted(site, budget, inside, label="default budget")
        rout = _budgeted(site, budget, outside, label="default budget")
    finally:
        budget.close()
    found = sum(r.member or r.member_all for r in rin)
    false = sum(r.member or r.member_all for r in rout)
    bound = math.exp(DEFAULT_PER_DATASET) * ALPHA
    answered = [r.answered for r in rin]
    print(
        f"default budget: inside victims declared members {found}/{len(rin)} (bound "
        f"exp(B) * alpha = {bound:.2f}; the paper's attack: {POWER}), outside "
        f"{false}/{len(rout)}; answers before refusal min {min(answered)} median "
        f"{int(np.median(answered))} max {max(answered)}; largest statistic "
        f"{max(r.statistic_all for r in rin):.2f}"
    )
    assert all(r.refused > 0 for r in rin)
    # Far from the published confidence (power 0.95 at alpha 0.05): the rate at which members
    # are found stays within the budget's bound (plus 2 sd of binomial noise on 30 victims).
    sd = math.sqrt(bound * (1 - bound) / len(rin))
    assert found / len(rin) <= bound + 2 * sd
    assert false <= 2


def test_attack__singleton_refusal_leaks_without_hiding(site: Site, tmp_path: Path) -> None:
    """query_cost + charge alone, nothing hidden: a singleton costs inf and is refused, and
    the refusal itself says "present" (why ``QueryBudget.answer`` hides and reserves)."""
    print()
    budget = QueryBudget.open(tmp_path, {})
    try:
        rs = _budgeted(
            site, budget, [int(p) for p in site.cohort[:N_INSIDE]], label="naive", naive=True
        )
    finally:
        budget.close()
    leaked = [r.statistic_refusal_as_yes or 0.0 for r in rs]
    print(
        f"naive: answered max {max(r.answered for r in rs)}, members found from answers "
        f"{sum(r.member or r.member_all for r in rs)}/{len(rs)}; first refusal read as yes: "
        f"statistic max {max(leaked):.2f}, members found {sum(r.member_refusal_as_yes for r in rs)}"
    )
    # Nothing was answered, yet the refusal of the victim's rarest allele is worth a rare
    # allele's "yes" to the attacker: more than the whole default budget.
    assert max(r.answered for r in rs) <= 1
    assert max(leaked) > DEFAULT_PER_DATASET


def test_attack__budget_sweep(site: Site, tmp_path: Path) -> None:
    """Members found and answers given per budget (the numbers in docs/discovery.md)."""
    print()
    found = {}
    for per_dataset in (1.5, 3.0, 6.0, 12.0):
        budget = QueryBudget.open(tmp_path / str(per_dataset), {"per_dataset": per_dataset})
        try:
            rs = [
                site.attack(
                    int(p), site.beacon(budget, f"caller:a{p}"), hidden_below=DEFAULT_HIDE_BELOW
                )
                for p in site.cohort[:N_BUDGET_INSIDE]
            ]
        finally:
            budget.close()
        found[per_dataset] = sum(r.member or r.member_all for r in rs)
        print(
            f"per_dataset {per_dataset}: members found {found[per_dataset]}/{len(rs)}, answers "
            f"median {int(np.median([r.answered for r in rs]))} max "
            f"{max(r.answered for r in rs)}, largest statistic "
            f"{max(r.statistic_all for r in rs):.2f}"
        )
    assert found[1.5] < found[12.0]


def test_attack__through_a_node_beacon_is_stopped_by_its_default_budget(
    site: Site, federation: Path, tmp_path: Path
) -> None:
    """The same attack against a real node's Beacon (``POST /api/g_variants``, anonymous,
    the shipped budget): the node's answers agree with the oracle while it answers, and it
    refuses (403) before the attack reaches its decision on most members."""
    from tests.beacon.conftest import beacon_node

    print()
    block = {
        "id": "org.example.attack.beacon",
        "name": "attack",
        "organization": {"id": "org.example", "name": "Example"},
        "datasets": {
            "cohort": {"name": "cohort", "genotypes": str(site.vcf), "assembly": "GRCh38"}
        },
    }
    results = []
    for p in [int(x) for x in site.cohort[:8]]:
        state = tmp_path / f"node-{p}"
        read_roots = [str(federation), str(site.vcf.parent)]
        with beacon_node(federation, "A", state, beacon=block, read_roots=read_roots) as client:

            def ask(variant: Variant) -> bool | None:
                chrom, pos, ref, alt = variant
                params = {"referenceName": chrom, "start": [pos - 1], "referenceBases": ref,
                          "alternateBases": alt, "assemblyId": "GRCh38"}  # fmt: skip
                body = {"meta": {"apiVersion": "v2.1.1"},
                        "query": {"requestParameters": {"g_variant": params}}}  # fmt: skip
                r = client.post("/api/g_variants", json=body)
                if r.status_code == 403:
                    return None
                assert r.status_code == 200, r.text
                exists = r.json()["responseSummary"]["exists"]
                # The node's answer is the oracle's with alleles below 5 copies hidden.
                assert exists == (site.alt_count(variant) >= DEFAULT_HIDE_BELOW), variant
                return bool(exists)

            r = site.attack(p, ask, hidden_below=DEFAULT_HIDE_BELOW)
        print(_line(f"node Beacon, default budget, inside victim {p}", r))
        results.append(r)
    found = sum(r.member or r.member_all for r in results)
    print(f"node Beacon, default budget: members found {found}/{len(results)}")
    assert all(r.refused > 0 for r in results)
    bound = math.exp(DEFAULT_PER_DATASET) * ALPHA
    assert found / len(results) <= bound + 2 * math.sqrt(bound * (1 - bound) / len(results))
