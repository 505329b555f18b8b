"""Site-side aggregates: guards, file round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError, EgressRefused

from snakemake_fedgen.exact.aggregates import (
    compute_aggregates,
    read_aggregates,
    write_aggregates,
)

from .conftest import site_aggregates


def test_compute_aggregates__mac_guard_drops_variants(study3, aggs3):
    strict = site_aggregates(study3, sites=["C"], min_mac=60)[0]
    full = aggs3[2]
    ac = full.ctg[:, 0]
    mac = np.minimum(ac, 2 * full.n - ac)
    assert 0 < strict.m < full.m
    assert strict.m == int((mac >= 60).sum())
    assert int(strict.meta["variants_suppressed"]) == full.m - strict.m
    kept_ac = strict.ctg[:, 0]
    assert np.all(np.minimum(kept_ac, 2 * strict.n - kept_ac) >= 60)


def test_compute_aggregates__min_n_guard_refuses(study3):
    with pytest.raises(EgressRefused, match=r"only 150 samples .* below min_n=151"):
        site_aggregates(study3, sites=["C"], min_n=151)


def test_compute_aggregates__indicator_columns_follow_registry_order(aggs3):
    a, b, c = aggs3
    assert a.columns == ("intercept", "age", "sex", "site_B", "site_C")
    assert np.all(a.ctg[:, 3:] == 0) and a.ctc[3, 3] == 0 and a.ctc[4, 4] == 0
    assert b.ctc[3, 3] == b.n and np.array_equal(b.ctg[:, 3], b.ctg[:, 0])
    assert c.ctc[4, 4] == c.n and np.all(c.ctg[:, 3] == 0)


def test_write_aggregates__round_trip_is_exact(aggs3, tmp_path):
    path = tmp_path / "B.aggregates.tsv"
    write_aggregates(aggs3[1], path)
    back = read_aggregates(path)
    for attr in ("n", "yty", "site", "sites", "columns", "trait"):
        assert getattr(back, attr) == getattr(aggs3[1], attr)
    for attr in ("cty", "ctc", "gtg", "gty", "ctg", "pos"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(aggs3[1], attr))
    assert back.variant_keys() == aggs3[1].variant_keys()


def test_compute_aggregates__names_bad_phenotype_value(study3, tmp_path):
    lines = study3.site_pheno["A"].read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tabc"
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bad.tsv: line 4 column 'qt': 'abc' is not a number"):
        compute_aggregates(
            study3.site_pfiles["A"], bad, pheno_name="qt", covar_names=("age", "sex"),
            site="A", sites=study3.sites,
        )  # fmt: skip


def test_compute_aggregates__site_not_in_order(study3):
    with pytest.raises(ConfigError, match="site 'A' is not in the global site order B,C"):
        compute_aggregates(
            study3.site_pfiles["A"], study3.site_pheno["A"], pheno_name="qt", site="A",
            sites=("B", "C"),
        )  # fmt: skip
