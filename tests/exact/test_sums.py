"""Named sums: plain and masked uploads add to the same totals; mismatched rounds are refused."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from snakemake_executor_plugin_fedgen.errors import SecureAggregationError

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.sums import SiteSums, add_sums, mask_sums, read_sums, write_sums

SITES = ("A", "B", "C")


def _site_sums(rng: np.random.Generator) -> dict[str, SiteSums]:
    return {
        s: SiteSums(
            site=s,
            round_id="r1",
            kind="test",
            names=("n", "sum_x", "sum_x2"),
            values=rng.normal(size=3) * 100,
        )
        for s in SITES
    }


def test_masked_sums_add_to_the_plain_total_and_hide_each_site(tmp_path):
    rng = np.random.default_rng(1)
    plain = _site_sums(rng)
    keys = {s: X25519PrivateKey.generate() for s in SITES}
    public = {s: secure.public_key_text(k) for s, k in keys.items()}
    uploads = []
    for s in SITES:
        masked = mask_sums(plain[s], private_key=keys[s], public_keys=public, participants=SITES)
        write_sums(masked, tmp_path / f"{s}.json")
        back = read_sums(tmp_path / f"{s}.json")
        assert back.masked
        # One upload alone decodes to noise, not to the site's values.
        alone = secure.decode(back.words, back.frac_bits)
        assert np.abs(alone - plain[s].values).min() > 1e3
        uploads.append(back)
    total = add_sums(uploads)
    expected = sum(p.values for p in plain.values())
    np.testing.assert_allclose(total.values, expected, rtol=0, atol=1e-9)
    assert total.as_dict()["n"] == pytest.approx(expected[0], abs=1e-9)
    with pytest.raises(SecureAggregationError, match="no upload from site"):
        add_sums(uploads[:2])


def test_add_sums_refuses_uploads_of_different_rounds(tmp_path):
    plain = _site_sums(np.random.default_rng(2))
    plain["B"].round_id = "r2"
    with pytest.raises(SecureAggregationError, match="round_id"):
        add_sums(list(plain.values()))
    write_sums(plain["A"], tmp_path / "a.json")
    assert read_sums(tmp_path / "a.json").as_dict() == plain["A"].as_dict()
