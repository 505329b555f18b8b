"""docs/reliability.md is the rendered scenario table, and every scenario is exercised."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reliability.report import DOC
from tests.reliability.scenarios import SCENARIOS, render


def test_reliability_doc__matches_the_scenarios():
    assert DOC.read_text() == render(), "run: python -m tests.reliability.report"


def test_scenarios__each_is_checked_by_a_test():
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    used = set(re.findall(r'observed\(\s*"([a-z_0-9]+)"', sources))
    assert used == set(SCENARIOS)
