"""Secure aggregation: masks cancel exactly, uploads look like noise, dropouts are rerun."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from snakemake_executor_plugin_fedgen.errors import ConfigError, SecureAggregationError

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.aggregates import read_variant_table
from snakemake_fedgen.exact.solve import solve, sum_aggregates, variant_counts

from .conftest import site_aggregates
from .exact_study import make_study


@pytest.fixture(scope="module")
def study4(tmp_path_factory):
    """Four small sites, 600 variants: about 5,000 values per upload."""
    return make_study(tmp_path_factory.mktemp("study4"), sizes=(60, 80, 70, 90), m=600, seed=11)


@pytest.fixture(scope="module")
def keys4(study4):
    private = {s: X25519PrivateKey.generate() for s in study4.sites}
    public = {s: secure.public_key_text(k) for s, k in private.items()}
    return private, public


@pytest.fixture(scope="module")
def aggs4(study4):
    return site_aggregates(study4, min_mac=3)


def _round(aggs, keys, participants, round_id, universe, tmp_path, **kwargs):
    private, public = keys
    uploads = []
    for agg in aggs:
        if agg.site not in participants:
            continue
        up = secure.mask_aggregates(
            agg,
            private_key=private[agg.site],
            public_keys=public,
            participants=participants,
            round_id=round_id,
            universe=universe,
            **kwargs,
        )
        path = tmp_path / f"{agg.site}.{round_id}.aggregates.masked.tsv"
        secure.write_masked(up, path)
        uploads.append(secure.read_masked(path))
    return uploads


def _flat_truth(agg, universe):
    once, table, _ = secure._flatten(agg, universe)
    return np.concatenate([once, table.ravel()])


def test_ring__matches_python_integers():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**64, size=(500, 2), dtype=np.uint64)
    b = rng.integers(0, 2**64, size=(500, 2), dtype=np.uint64)
    a[:5, 0] = 0  # carry/borrow edge cases
    b[5:10, 0] = np.uint64(2**64 - 1)

    def as_int(w):
        return [int(hi) << 64 | int(lo) for lo, hi in w]

    mod = 1 << 128
    assert as_int(secure.ring_add(a, b)) == [
        (x + y) % mod for x, y in zip(as_int(a), as_int(b), strict=True)
    ]
    assert as_int(secure.ring_neg(a)) == [(-x) % mod for x in as_int(a)]
    values = np.concatenate([rng.normal(0, 1e6, 300), -rng.exponential(1e20, 100), [0.0, -0.0]])
    enc = as_int(secure.encode(values, 40))
    assert enc == [round(v * 2**40) % mod for v in values]
    assert np.array_equal(
        secure.decode(secure.encode(values, 40), 40), np.round(values * 2**40) / 2**40
    )


def test_pair_seed__same_at_both_ends_and_fresh_per_round():
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pa, pb = secure.public_key_text(a), secure.public_key_text(b)
    s_ab = secure.pair_seed(a, pb, round_id="r1", site="A", peer="B", context="c")
    s_ba = secure.pair_seed(b, pa, round_id="r1", site="B", peer="A", context="c")
    assert s_ab == s_ba and len(s_ab) == 32
    assert s_ab != secure.pair_seed(a, pb, round_id="r2", site="A", peer="B", context="c")
    assert s_ab != secure.pair_seed(a, pb, round_id="r1", site="A", peer="B", context="d")


def test_mask_aggregates__upload_uncorrelated_with_truth(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    uploads = _round(aggs4, keys4, list(study4.sites), "r-noise", universe, tmp_path)
    for agg, up in zip(aggs4, uploads, strict=True):
        truth = _flat_truth(agg, universe)
        words = np.concatenate([up.once, up.table.reshape(-1, 2)])
        assert len(truth) > 4000
        as_signed = secure.decode(words, up.frac_bits)
        for view in (as_signed, words[:, 1].astype(float), words[:, 0].astype(float)):
            assert abs(np.corrcoef(view, truth)[0, 1]) < 0.1
        # Uniform on the ring: the top bit is set about half the time, and the plain fixed-point
        # values (small positive numbers, top bit clear) do not show through.
        top = (words[:, 1] >> np.uint64(63)).mean()
        assert 0.45 < top < 0.55
        assert not np.any(secure.encode(truth, up.frac_bits)[:, 1] == words[:, 1])


def test_unmask_sum__equals_plain_sum(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    uploads = _round(aggs4, keys4, list(study4.sites), "r-sum", universe, tmp_path)
    masked_total = secure.unmask_sum(uploads)
    plain_total = sum_aggregates(aggs4)
    assert masked_total.n == plain_total.n == 300
    assert masked_total.variant_keys() == plain_total.variant_keys()
    # Fixed point with F=40: each site's value is rounded to 2^-40 ~ 9e-13.
    tol = len(aggs4) * 2.0**-41
    for attr in ("yty", "cty", "ctc", "gtg", "gty", "ctg"):
        np.testing.assert_allclose(
            getattr(masked_total, attr), getattr(plain_total, attr), rtol=1e-15, atol=tol
        )
    a, b = solve(masked_total), solve(plain_total)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-8)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-8)


def test_unmask_sum__variant_failing_a_site_guard_is_dropped(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    a_cut = aggs4[0].subset(np.arange(2, aggs4[0].m))  # site A suppressed two variants
    aggs = [a_cut, *aggs4[1:]]
    total = secure.unmask_sum(_round(aggs, keys4, list(study4.sites), "r-cut", universe, tmp_path))
    plain = sum_aggregates(aggs)
    assert total.variant_keys() == plain.variant_keys()
    assert int(total.meta["variants_not_at_every_site"]) == len(universe["pos"]) - plain.m
    np.testing.assert_allclose(solve(total).beta, solve(plain).beta, rtol=1e-8)
    # The same account as the plain sum, except which site lacks a variant.
    counts, plain_counts = variant_counts(total, solve(total)), variant_counts(plain, solve(plain))
    assert counts.absent_at_site is None and plain_counts.absent_at_site is not None
    assert plain_counts.absent_at_site["A"] >= 2
    assert (counts.seen, counts.solved, counts.absent, counts.singular) == (
        plain_counts.seen,
        plain_counts.solved,
        plain_counts.absent,
        plain_counts.singular,
    )
    assert "which site: hidden by secure aggregation" in counts.summary()


def test_unmask_sum__dropout_is_named_and_rerun_matches_run_without_site(
    study4, keys4, aggs4, tmp_path
):
    universe = read_variant_table(study4.root / "pooled.pvar")
    uploads = _round(aggs4, keys4, ["A", "B", "C", "D"], "r1", universe, tmp_path)
    # Site D fails mid-round: its upload never arrives.
    with pytest.raises(SecureAggregationError, match=r"no upload from site\(s\) D") as err:
        secure.unmask_sum(uploads[:3])
    assert "--participants A,B,C --round <new id>" in str(err.value)
    rerun = _round(aggs4, keys4, ["A", "B", "C"], "r2", universe, tmp_path)
    total = secure.unmask_sum(rerun)
    without_d = sum_aggregates(aggs4[:3])
    got, want = solve(total), solve(without_d)
    assert got.n == want.n == 210
    assert got.columns_used == want.columns_used == ("intercept", "age", "sex", "site_B", "site_C")
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-8)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-8)
    # The same after the reference site A drops out: its indicator is the reference level.
    rerun = _round(aggs4, keys4, ["B", "C", "D"], "r3", universe, tmp_path)
    got, want = solve(secure.unmask_sum(rerun)), solve(sum_aggregates(aggs4[1:]))
    assert got.columns_used == ("intercept", "age", "sex", "site_C", "site_D")
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-8)


def test_unmask_sum__refuses_uploads_of_different_rounds(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    r1 = _round(aggs4[:3], keys4, ["A", "B", "C"], "x1", universe, tmp_path)
    r2 = _round(aggs4[:3], keys4, ["A", "B", "C"], "x2", universe, tmp_path)
    with pytest.raises(SecureAggregationError, match="round_id="):
        secure.unmask_sum([r1[0], r1[1], r2[2]])


def test_mask_aggregates__refuses_two_participants_unless_forced(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    with pytest.raises(ConfigError, match="reveals each site's aggregates to the other"):
        _round(aggs4, keys4, ["A", "B"], "two", universe, tmp_path)
    forced = _round(aggs4, keys4, ["A", "B"], "two", universe, tmp_path, force=True)
    assert secure.unmask_sum(forced).n == 140


def test_mask_aggregates__refuses_round_id_reuse_for_other_data(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    private, public = keys4
    ledger = tmp_path / "x25519.key.rounds"
    kwargs = dict(
        private_key=private["A"],
        public_keys=public,
        participants=["A", "B", "C"],
        round_id="once",
        universe=universe,
        ledger=ledger,
    )
    first = secure.mask_aggregates(aggs4[0], **kwargs)
    again = secure.mask_aggregates(aggs4[0], **kwargs)  # same data: an idempotent retry
    assert np.array_equal(first.table, again.table)
    changed = aggs4[0].subset(np.arange(aggs4[0].m))
    changed.gty = changed.gty + 1.0
    with pytest.raises(SecureAggregationError, match="already used by this site"):
        secure.mask_aggregates(changed, **kwargs)


def test_mask_aggregates__refuses_values_too_large_for_ring(study4, keys4, aggs4, tmp_path):
    universe = read_variant_table(study4.root / "pooled.pvar")
    big = aggs4[0].subset(np.arange(aggs4[0].m))
    big.yty = 2.0**90
    with pytest.raises(ConfigError, match="value yty is too large"):
        _round([big, *aggs4[1:]], keys4, ["A", "B", "C"], "big", universe, tmp_path)


def test_mask_aggregates__refuses_missing_public_key(study4, keys4, aggs4):
    universe = read_variant_table(study4.root / "pooled.pvar")
    private, public = keys4
    with pytest.raises(ConfigError, match="no public_key_x25519 in the registry for site"):
        secure.mask_aggregates(
            aggs4[0],
            private_key=private["A"],
            public_keys={"A": public["A"], "B": public["B"]},
            participants=["A", "B", "C"],
            round_id="k",
            universe=universe,
        )
