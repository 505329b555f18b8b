"""``release: review``: egress the airlock accepted waits for the site's steward.

A real bwrap node holds the release; the steward decides with the real ``fedgen node release``
command against the node's state directory while the node runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from tests.security.conftest import Client, Site, executor, needs_bwrap, system_log, task

pytestmark = needs_bwrap

SUMSTATS = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\n"
    "20\t1000\tA\tG\t0.1\t0.05\t0.3\t0.04\t500\n"
)


def _fedgen_release(site: Site, *args: str) -> str:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "release",
            *args,
            "--state-dir",
            str(site.state),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return res.stdout


def _egress_task(site: Site) -> dict[str, Any]:
    return task(
        executor(f"printf '{SUMSTATS}' > gwas.tsv"),
        outputs=[
            {"path": "/fedgen/work/gwas.tsv", "url": (site.egress / "A" / "gwas.tsv").as_uri()}
        ],
    )


def _wait_state(client: Client, task_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(task_id).json()
        if doc["state"] == state:
            return doc
        assert time.monotonic() < deadline, f"task {task_id} is {doc['state']}, not {state}"
        time.sleep(0.1)


def _published(site: Site) -> list[str]:
    return sorted(p.name for p in site.egress.rglob("*") if p.is_file())


def test_held_release__nothing_published_until_the_steward_approves(make_site) -> None:
    site = make_site().start(runtime="bwrap", release="review", review_poll_seconds=0.2)
    task_id = site.alice.create(_egress_task(site))
    doc = _wait_state(site.alice, task_id, "PAUSED")
    assert "held for review" in system_log(doc)
    time.sleep(1)
    assert site.alice.get(task_id, "MINIMAL").json()["state"] == "PAUSED"
    assert _published(site) == []
    listing = _fedgen_release(site, "list")
    assert task_id in listing and "sumstats" in listing and "A/gwas.tsv" in listing
    _fedgen_release(site, "approve", task_id, "--by", "steward-anna")
    done = site.alice.wait(task_id)
    assert done["state"] == "COMPLETE", system_log(done)
    assert _published(site) == ["gwas.tsv"]
    got = site.alice.egress(site.node.egress_read_url, "A/gwas.tsv")
    assert got.text == SUMSTATS
    decided = [r for r in site.audit() if r["action"] == "ReleaseDecided"]
    assert [(r["outcome"], r["by"]) for r in decided] == [("approved", "steward-anna")]
    assert _fedgen_release(site, "list") == "no releases\n"


def test_denied_release__task_fails_with_the_reason_and_nothing_leaves(make_site) -> None:
    site = make_site().start(runtime="bwrap", release="review", review_poll_seconds=0.2)
    task_id = site.alice.create(_egress_task(site))
    _wait_state(site.alice, task_id, "PAUSED")
    _fedgen_release(site, "deny", task_id, "--reason", "study not approved by the board")
    done = site.alice.wait(task_id)
    assert done["state"] == "SYSTEM_ERROR"
    assert "release denied by the site's steward: study not approved by the board" in system_log(
        done
    )
    assert _published(site) == []
    quarantined = list((site.state / "quarantine").rglob("gwas.tsv"))
    assert len(quarantined) == 1 and quarantined[0].read_text() == SUMSTATS


def test_paused_task_gives_its_core_back_and_can_be_canceled(make_site) -> None:
    """One core: while alice's release waits, bob's task runs; alice cancels hers."""
    site = make_site().start(
        runtime="bwrap", release="review", review_poll_seconds=0.2, cpu_cores=1
    )
    task_id = site.alice.create(_egress_task(site))
    _wait_state(site.alice, task_id, "PAUSED")
    assert site.bob.run(task(executor("echo bob")), timeout=30)["state"] == "COMPLETE"
    site.alice.cancel(task_id)
    assert site.alice.wait(task_id)["state"] == "CANCELED"
    assert _published(site) == []
    assert "no releases" in _fedgen_release(site, "list")
    ended = _fedgen_release(site, "list", "--history")
    assert task_id in ended and "ended" in ended


def test_deciding_twice_or_an_unknown_task__one_clear_error(make_site) -> None:
    site = make_site().start(runtime="bwrap", release="review", review_poll_seconds=0.2)
    task_id = site.alice.create(_egress_task(site))
    _wait_state(site.alice, task_id, "PAUSED")
    _fedgen_release(site, "approve", task_id)
    site.alice.wait(task_id)
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "release",
            "deny",
            task_id,
            "--reason",
            "late",
            "--state-dir",
            str(site.state),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1
    assert f"the release of task {task_id} is approved, not pending" in again.stderr
