"""The executor's per-site progress line: jobs done/failed/running/queued/waiting per site."""

from __future__ import annotations

from snakemake_executor_plugin_fedgen.status import SiteProgress
from snakemake_executor_plugin_fedgen.tes.states import TesState


def test_site_progress__counts_each_phase_per_site_in_registry_order() -> None:
    progress = SiteProgress(["B", "A", "C"])
    for _ in range(3):
        progress.ended_one("A", ok=True)
    progress.ended_one("B", ok=False)
    states = {
        "t1": ("A", TesState.RUNNING),
        "t2": ("A", TesState.QUEUED),
        "t3": ("A", TesState.INITIALIZING),
        "t4": ("B", TesState.RUNNING),
        "t5": ("X", TesState.RUNNING),  # not a site of the registry: not shown
    }
    line = progress.line(states, {"C": 4})
    assert line == "B 1 failed, 1 running | A 3 done, 1 running, 2 queued | C 4 waiting"


def test_site_progress__nothing_to_show_is_empty() -> None:
    assert SiteProgress(["A"]).line({}, {}) == ""
