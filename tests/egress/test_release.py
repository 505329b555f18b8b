"""The node's rounding at release never changes the airlock's verdict on a row.

Rounding a frequency to 4 significant digits can move a row's minor allele count across
``min_mac`` (0.0257732 at n = 194 is a count of 10.0000; 0.02577 is 9.9988): found in a real
workflow run, where the site's export had kept the row and the airlock then refused the file.
"""

from __future__ import annotations

import numpy as np
import pytest

from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
from snakemake_fedgen.egress.release import round_frequency, round_number, round_sumstats

HEADER = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn"
)


def test_round_number__significant_digits_and_text_left_alone():
    assert round_number("0.123456789", 4) == "0.1235"
    assert round_number("-1.23456e-12", 3) == "-1.23e-12"
    assert round_number("NA", 4) == "NA"
    assert round_number(" 1.5", 4) == " 1.5"  # not a plain number: the airlock judges it


@pytest.mark.parametrize(
    ("eaf", "n", "expected"),
    [
        ("0.0257732", "194", "0.02578"),  # passes as written; plain rounding would fail it
        ("0.9742268", "194", "0.9742"),  # the same from the other allele
        ("0.02577", "194", "0.02577"),  # fails as written, and still does
        ("0.3", "194", "0.3"),
    ],
)
def test_round_frequency__keeps_the_minor_allele_count_verdict(eaf, n, expected):
    assert round_frequency(eaf, 4, n=n, min_mac=10) == expected


def _passes(row: str) -> bool:
    cells = row.split("\t")
    eaf, n = float(cells[6]), int(cells[8])
    return 2 * n * min(eaf, 1 - eaf) >= 10


def test_round_sumstats__the_airlock_accepts_exactly_the_rows_it_accepted_before(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(2000):
        n = int(rng.integers(60, 400))
        # Frequencies at the min_mac boundary, written with 6 significant digits as plink2 does.
        maf = (10 + rng.normal(0, 0.002)) / (2 * n)
        eaf = maf if i % 2 else 1 - maf
        rows.append(f"20\t{1000 + i}\tA\tG\t0.1\t0.05\t{eaf:.6g}\t0.5\t{n}")
    policy = AirlockPolicy(min_n=50, min_mac=10)
    for keep in (True, False):
        chosen = [r for r in rows if _passes(r) == keep]
        src = tmp_path / f"in{keep}.tsv"
        src.write_text("\n".join([HEADER, *chosen]) + "\n")
        assert inspect(src, policy).accepted == keep
        out = tmp_path / f"out{keep}.tsv"
        report = round_sumstats(src, out, digits=4, name=out.name, max_bytes=1 << 30, min_mac=10)
        assert report is not None and report.rows == len(chosen) > 500
        decision = inspect(out, policy)
        assert decision.accepted == keep, decision.reason
        if not keep:
            assert f"{len(chosen)} of {len(chosen)} data rows violate" in decision.reason
