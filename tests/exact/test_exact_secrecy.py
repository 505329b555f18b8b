"""Secure aggregation keeps each site's aggregates secret, not only "masks cancel".

Each test plays an attacker who knows everything public: the registry (every site's
``public_key_x25519``), the round id, each upload's header (participants, context) and the
uploads it is given. The attacker recomputes the pairwise masks the way the sites do, but, not
holding a site's private key, with a key of its own. That fails only because every mask seed
depends on the X25519 shared secret: with the secret dropped from the seed (mutation
``secure-seed-without-shared-secret`` in ``benchmarks/mutation_check.py``, which replaces it by
a constant) the attacker's masks equal the sites' and each test below fails, while the tests
of ``test_exact_secure.py`` (masks cancel, uploads look like noise) still pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.aggregates import read_variant_table

from .conftest import site_aggregates
from .exact_study import make_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Four small sites, 300 variants."""
    return make_study(tmp_path_factory.mktemp("secrecy"), sizes=(60, 80, 70, 90), m=300, seed=23)


@pytest.fixture(scope="module")
def keys(study):
    private = {s: X25519PrivateKey.generate() for s in study.sites}
    return private, {s: secure.public_key_text(k) for s, k in private.items()}


@pytest.fixture(scope="module")
def aggs(study):
    return site_aggregates(study, min_mac=3)


@pytest.fixture(scope="module")
def universe(study):
    return read_variant_table(study.root / "pooled.pvar")


def _upload(agg, keys, participants, round_id, universe) -> secure.MaskedUpload:
    private, public = keys
    return secure.mask_aggregates(
        agg,
        private_key=private[agg.site],
        public_keys=public,
        participants=participants,
        round_id=round_id,
        universe=universe,
    )


def _words(up: secure.MaskedUpload) -> np.ndarray:
    return np.concatenate([up.once, up.table.reshape(-1, 2)])


def _truth(agg, universe) -> np.ndarray:
    once, table, _ = secure._flatten(agg, universe)
    return np.concatenate([once, table.ravel()])


def _masks(up: secure.MaskedUpload, key, public: dict[str, str], *, only: set[str] | None = None):
    """The masks of ``up``'s site as computed with ``key`` (the attacker's or a colluder's),
    restricted to peers in ``only``."""
    peers = [p for p in up.participants if p == up.site or only is None or p in only]
    zero = np.zeros((len(_words(up)), 2), dtype=np.uint64)
    return secure.mask_vector(
        zero,
        private_key=key,
        public_keys=public,
        site=up.site,
        participants=peers,
        round_id=up.round_id,
        context=up.context,
    )


def _recovered(words: np.ndarray, truth: np.ndarray, frac_bits: int) -> bool:
    """Whether ``words`` decode to ``truth`` (to fixed-point precision)."""
    return bool(np.allclose(secure.decode(words, frac_bits), truth, atol=1e-6, rtol=1e-9))


def test_upload_cannot_be_unmasked_from_public_data(study, keys, aggs, universe) -> None:
    """Every upload, with all public data and the other uploads but one: not unmasked."""
    participants = list(study.sites)
    uploads = [_upload(a, keys, participants, "r-public", universe) for a in aggs]
    _private, public = keys
    attacker = X25519PrivateKey.generate()
    for agg, up in zip(aggs, uploads, strict=True):
        guess = secure.ring_add(_words(up), secure.ring_neg(_masks(up, attacker, public)))
        assert not _recovered(guess, _truth(agg, universe), up.frac_bits), up.site
        decoded = secure.decode(guess, up.frac_bits)
        assert abs(np.corrcoef(decoded, _truth(agg, universe))[0, 1]) < 0.1
    # The other uploads minus one: their sum still carries the masks shared with the missing
    # site, which the attacker cannot compute.
    for missing in range(len(uploads)):
        given = [u for i, u in enumerate(uploads) if i != missing]
        total = _words(given[0])
        for u in given[1:]:
            total = secure.ring_add(total, _words(u))
        for u in given:
            total = secure.ring_add(
                total, secure.ring_neg(_masks(u, attacker, public, only={uploads[missing].site}))
            )
        truth = sum(_truth(a, universe) for i, a in enumerate(aggs) if i != missing)
        assert not _recovered(total, truth, uploads[0].frac_bits), uploads[missing].site


def test_coalition_of_centre_and_all_but_two_learns_only_their_sum(
    study, keys, aggs, universe
) -> None:
    """Sites C and D hand their private keys and aggregates to the centre: A + B is known (the
    round's purpose), A alone is not."""
    participants = list(study.sites)
    uploads = {a.site: _upload(a, keys, participants, "r-coalition", universe) for a in aggs}
    truth = {a.site: _truth(a, universe) for a in aggs}
    private, public = keys
    honest, colluders = participants[:2], participants[2:]
    a_site, b_site = honest
    f = uploads[a_site].frac_bits
    # What the round reveals to everyone: the total, hence A + B given C's and D's data.
    total = secure.unmask_sum(list(uploads.values()))
    assert total.n == sum(a.n for a in aggs)
    # A alone: the colluders' keys remove every mask of A's upload except the one it shares
    # with B, which needs A's or B's private key.
    a_up = uploads[a_site]
    guess = _words(a_up)
    for c in colluders:
        shared = secure.pair_seed(
            private[c], public[a_site], round_id=a_up.round_id, site=c, peer=a_site,
            context=a_up.context,
        )  # fmt: skip
        mask = secure._mask_words(shared, len(guess))
        j, me = participants.index(c), participants.index(a_site)
        guess = secure.ring_add(guess, secure.ring_neg(mask) if j > me else mask)
    # Left: x_A + m_AB. With the attacker's own key in place of A's, m_AB is not removable.
    attacker = X25519PrivateKey.generate()
    attempt = secure.ring_add(guess, secure.ring_neg(_masks(a_up, attacker, public, only={b_site})))
    assert not _recovered(attempt, truth[a_site], f)
    assert abs(np.corrcoef(secure.decode(attempt, f), truth[a_site])[0, 1]) < 0.1
    # Sanity of the attack itself: with A's real key the same steps do recover x_A.
    real = secure.ring_add(guess, secure.ring_neg(_masks(a_up, private[a_site], public,
                                                         only={b_site})))  # fmt: skip
    assert _recovered(real, truth[a_site], f)


def test_same_aggregates_under_two_round_ids_are_unrelated(study, keys, aggs, universe) -> None:
    """A site that uploads the same aggregates twice under two round ids: an attacker with all
    public data cannot even tell the two uploads hold the same values."""
    participants = list(study.sites)
    agg = aggs[0]
    first = _upload(agg, keys, participants, "r-one", universe)
    second = _upload(agg, keys, participants, "r-two", universe)
    _private, public = keys
    attacker = X25519PrivateKey.generate()
    difference = secure.ring_add(_words(first), secure.ring_neg(_words(second)))
    removed = secure.ring_add(
        difference,
        secure.ring_neg(
            secure.ring_add(
                _masks(first, attacker, public), secure.ring_neg(_masks(second, attacker, public))
            )
        ),
    )
    # The same data would leave exactly zero once the masks are removed.
    assert np.count_nonzero(removed) > 0.99 * removed.size
    top = (removed[:, 1] >> np.uint64(63)).mean()
    assert 0.4 < top < 0.6  # uniform on the ring, not a small difference of data
