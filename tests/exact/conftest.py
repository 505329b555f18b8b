"""Fixtures for the exact-mode tests: a three-site study and its site aggregates."""

from __future__ import annotations

import pytest

from snakemake_fedgen.exact.aggregates import compute_aggregates

from .exact_study import Study, make_study


@pytest.fixture(scope="session")
def study3(tmp_path_factory) -> Study:
    """Sites A (200), B (300), C (150) samples, 120 dosage variants, age/sex covariates."""
    return make_study(tmp_path_factory.mktemp("study3"), sizes=(200, 300, 150), m=120, seed=7)


def site_aggregates(study: Study, sites=None, **kwargs):
    return [
        compute_aggregates(
            study.site_pfiles[s],
            study.site_pheno[s],
            pheno_name="qt",
            covar_names=study.covariates,
            site=s,
            sites=study.sites,
            **kwargs,
        )
        for s in (sites or study.sites)
    ]


@pytest.fixture(scope="session")
def aggs3(study3):
    """Plain aggregates of the three sites (min_n=50, min_mac=10)."""
    return site_aggregates(study3)
