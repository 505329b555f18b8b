"""Differential privacy for released summary statistics (issue 14, item 4).

The noise scale and the budget are checked against an independent implementation, IBM's
diffprivlib (its analytic Gaussian mechanism and its BudgetAccountant); the released rows
against what the module documents.
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from diffprivlib.accountant import BudgetAccountant
from diffprivlib.mechanisms import GaussianAnalytic
from diffprivlib.utils import BudgetError
from snakemake_executor_plugin_fedgen.errors import ConfigError, EgressRefused

from snakemake_fedgen.egress.privacy import (
    PrivacySettings,
    basic_composition,
    gaussian_delta,
    gaussian_sigma,
    privatise_rows,
)
from snakemake_fedgen.egress.release import privatise_sumstats


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 4.0, 16.0])
@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3])
@pytest.mark.parametrize("sensitivity", [0.01, 1.0, math.sqrt(2 * 5000)])
def test_gaussian_sigma__equals_diffprivlib_analytic_gaussian(epsilon, delta, sensitivity):
    ours = gaussian_sigma(epsilon=epsilon, delta=delta, sensitivity=sensitivity)
    theirs = GaussianAnalytic(epsilon=epsilon, delta=delta, sensitivity=sensitivity)._scale
    # diffprivlib searches with a tolerance (at epsilon 16 it is 0.1% off either way).
    assert ours == pytest.approx(theirs, rel=1e-3)
    # Theorem 8 evaluated in 50-digit arithmetic: ours reaches delta exactly, so it is the
    # least sigma that gives (epsilon, delta).
    assert _exact_delta(ours, epsilon, sensitivity) == pytest.approx(delta, rel=1e-8)
    assert gaussian_delta(ours * 0.99, epsilon=epsilon, sensitivity=sensitivity) > delta


def _exact_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    import mpmath

    with mpmath.workdps(50):
        a = mpmath.mpf(sensitivity) / (2 * mpmath.mpf(sigma))
        b = mpmath.mpf(epsilon) * mpmath.mpf(sigma) / mpmath.mpf(sensitivity)
        return float(mpmath.ncdf(a - b) - mpmath.exp(epsilon) * mpmath.ncdf(-a - b))


def test_gaussian_sigma__refuses_meaningless_parameters():
    for bad in ({"epsilon": 0}, {"delta": 0}, {"delta": 1}, {"sensitivity": -1}):
        args = {"epsilon": 1.0, "delta": 1e-6, "sensitivity": 1.0, **bad}
        with pytest.raises(ValueError, match="need epsilon > 0"):
            gaussian_sigma(**args)


def test_budget__sequential_composition_equals_diffprivlib_accountant():
    releases = [(0.5, 1e-7), (1.0, 1e-6), (0.25, 0.0), (2.0, 5e-7)]
    acc = BudgetAccountant(epsilon=4.0, delta=2e-6)
    for eps, delta in releases:
        acc.spend(eps, delta)
    eps, delta = basic_composition(releases)
    assert (eps, delta) == pytest.approx(tuple(acc.total()), rel=1e-12)
    # The next release that would pass the total is refused by both.
    with pytest.raises(BudgetError):
        acc.check(0.5, 0.0)
    assert eps + 0.5 > 4.0


def test_privatise_rows__noise_has_the_documented_scale():
    settings = PrivacySettings(epsilon=4.0, delta=1e-6, total_epsilon=8.0, total_delta=1e-5)
    m = 20_000
    rng = np.random.default_rng(1)
    beta = np.zeros(m)
    eaf = np.full(m, 0.3)
    n = np.full(m, 5001.0)
    noisy, f, se, p, keep, report = privatise_rows(beta, eaf, n, settings, rng)
    sigma = gaussian_sigma(epsilon=4.0, delta=1e-6, sensitivity=math.sqrt(2 * m))
    assert report.sigma_unit == pytest.approx(sigma)
    v0 = 2 * 0.05 * 0.95
    d_beta = 4 * 3.0 / (5000 * v0)
    assert np.std(noisy) == pytest.approx(sigma * d_beta, rel=0.03)
    assert np.std(f - 0.3) == pytest.approx(sigma / 5000, rel=0.03)
    # The released SE accounts for the noise: z of a null variant stays about N(0, 1).
    z = noisy[keep] / se[keep]
    assert 0.95 < np.std(z) < 1.0 and abs(np.mean(z)) < 0.03
    assert np.allclose(p, 2 * (1 - __import__("scipy").stats.norm.cdf(np.abs(noisy / se))))


def test_privatise_rows__rare_variants_are_withheld_and_counted():
    settings = PrivacySettings(epsilon=16, delta=1e-6, total_epsilon=16, total_delta=1e-6)
    eaf = np.array([0.01, 0.3, 0.98, 0.5])
    _, _, _, _, keep, report = privatise_rows(
        np.zeros(4), eaf, np.full(4, 1e6), settings, np.random.default_rng(0)
    )
    assert list(keep) == [False, True, False, True]
    assert (report.rows, report.released, report.withheld_maf) == (4, 2, 2)


HEADER = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\tinfo"
)


def test_privatise_sumstats__rewrites_a_gzip_table(tmp_path):
    rows = [f"20\t{1000 + i}\tA\tG\t0.1\t0.05\t0.4\t0.04\t800\t0.99" for i in range(50)]
    src = tmp_path / "in.tsv.gz"
    src.write_bytes(gzip.compress(("\n".join([HEADER, *rows]) + "\n").encode()))
    settings = PrivacySettings(epsilon=1.0, delta=1e-6, total_epsilon=1.0, total_delta=1e-6)
    report = privatise_sumstats(
        src,
        tmp_path / "out.tsv.gz",
        settings=settings,
        name="x.tsv.gz",
        rng=np.random.default_rng(3),
    )
    assert report is not None and report.rows == 50
    out = gzip.decompress((tmp_path / "out.tsv.gz").read_bytes()).decode().splitlines()
    assert out[0] == HEADER and len(out) == 1 + report.released
    cells = [line.split("\t") for line in out[1:]]
    assert all(c[9] == "NA" for c in cells)  # info is not released under DP
    assert len({c[4] for c in cells}) == len(cells)  # every beta noised independently


def test_privatise_sumstats__odds_ratios_refused(tmp_path):
    src = tmp_path / "bt.tsv"
    src.write_text(
        HEADER.replace("beta", "odds_ratio") + "\n20\t1\tA\tG\t1.1\t0.1\t0.3\t0.5\t90\t1\n"
    )
    settings = PrivacySettings(epsilon=1.0, delta=1e-6, total_epsilon=1.0, total_delta=1e-6)
    with pytest.raises(EgressRefused, match="needs the column"):
        privatise_sumstats(
            src, tmp_path / "o.tsv", settings=settings, name="bt.tsv", rng=np.random.default_rng()
        )


def test_node_config__differential_privacy_block_checked(tmp_path):
    from snakemake_fedgen.node.config import load_config

    for block, message in (
        ({"epsilon": 1}, "missing delta, total_epsilon, total_delta"),
        ({"epsilon": 1, "delta": 1e-6, "total_epsilon": 1, "total_delta": 1e-6, "eps": 2}, "eps"),
        ({"epsilon": 2, "delta": 1e-6, "total_epsilon": 1, "total_delta": 1e-6}, "exceeds"),
        ({"epsilon": -1, "delta": 1e-6, "total_epsilon": 1, "total_delta": 1e-6}, "> 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "state", overrides={"differential_privacy": block})
