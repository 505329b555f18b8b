"""A coordinator crash in the middle of chunked imputation: the rerun reuses every finished chunk.

The federated GWAS workflow imputes each chromosome in chunks, one TES task per chunk (group
``impute_chunk``: rules ``impute_window`` + ``impute_beagle``). Snakemake runs on three loopback
``fedgen node`` sites with 10 Mb chunks (seven per site on chromosome 20) and is SIGKILLed, with
its whole process group and without cancelling anything, once some chunk tasks are COMPLETE at
their site (and not yet landed at the coordinator) while others are still live. The rerun in the
same directory must reuse each finished chunk task, reattach to each live one (or reuse it if it
ended meanwhile) and send no finished chunk again: every node ends with exactly one COMPLETE task
per chunk. Only a task that failed at its site while the coordinator was down is replaced, as
the executor replaces any failed task.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from snakemake_executor_plugin_fedgen.tes.states import LIVE_STATES, TesState
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RULE_TAG, SITE_TAG

from snakemake_fedgen import demo
from snakemake_fedgen.assemblies import chrom_length

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 7
CHUNK_MB = 10
CHUNK_RULES = "impute_window,impute_beagle"
# A chunk task's Beagle output names its chromosome and chunk (a group task's name does not).
CHUNK_OUTPUT = re.compile(r"impute/(?P<chrom>[^/]+)/chunk(?P<chunk>\d+)\.beagle\.vcf\.gz$")
# The crashed run polls the sites this often (s): a finished task stays unlanded at the
# coordinator for a few seconds, the state a crash leaves behind that the rerun must reuse.
CRASHED_RUN_POLL_S = 4
LIVE = {s.value for s in LIVE_STATES}
COMPLETE = TesState.COMPLETE.value


@dataclass(frozen=True)
class ChunkTask:
    """One chunk task as a node lists it."""

    id: str
    site: str
    chrom: str
    chunk: str
    key: str
    state: str

    @property
    def chunk_id(self) -> tuple[str, str, str]:
        """Site, chromosome and chunk number: what the task computes."""
        return (self.site, self.chrom, self.chunk)

    @property
    def output(self) -> str:
        """The chunk's Beagle output, relative to the coordinator's working directory."""
        return f"sites/{self.site}/impute/{self.chrom}/chunk{self.chunk}.beagle.vcf.gz"


def _tasks(site: demo.Site) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{site.node.url}/tasks",
        params={"view": "BASIC", "page_size": 2048},
        headers={"Authorization": f"Bearer {site.token}"},
    )
    resp.raise_for_status()
    return resp.json().get("tasks", [])


def _chunk_tasks(sites: dict[str, demo.Site]) -> list[ChunkTask]:
    found = []
    for site in sites.values():
        for t in _tasks(site):
            tags = t.get("tags") or {}
            if tags.get(RULE_TAG) != CHUNK_RULES:
                continue
            (m,) = [m for o in t["outputs"] if (m := CHUNK_OUTPUT.search(o["path"]))]
            found.append(
                ChunkTask(
                    t["id"], tags[SITE_TAG], m["chrom"], m["chunk"], tags[JOB_KEY_TAG], t["state"]
                )
            )
    return found


def _config(path: Path) -> Path:
    """The shipped config with 10 Mb chunks and one trait (the run is about the chunks)."""
    config = yaml.safe_load(demo.CONFIGFILE.read_text())
    config["traits"] = {"qt": config["traits"]["qt"]}
    config["impute"]["chunk_mb"] = CHUNK_MB
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _at_crash_point(work: Path, sites: dict[str, demo.Site]) -> bool:
    """Two chunk tasks are COMPLETE at their site but not yet landed here, one is still live."""
    chunks = _chunk_tasks(sites)
    unlanded = [c for c in chunks if c.state == COMPLETE and not (work / c.output).exists()]
    return len(unlanded) >= 2 and any(c.state in LIVE for c in chunks)


def test_chunked_imputation__rerun_after_coordinator_crash_reuses_every_finished_chunk(
    tmp_path: Path,
) -> None:
    data, work = tmp_path / "data", tmp_path / "coordinator"
    demo.simulate(data, seed=SEED, scale="tiny")
    work.mkdir()
    cmd = demo.snakemake_command(work, configfile=_config(tmp_path / "config.yaml"))
    with demo.federation(data, tmp_path / "nodes", work / "sites.yaml") as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})

        start = time.monotonic()
        with (tmp_path / "crashed.log").open("w") as log:
            # Its own process group: the kill takes Snakemake and everything it started.
            proc = subprocess.Popen(
                [*cmd, "--fedgen-poll-interval-min", str(CRASHED_RUN_POLL_S)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                while not _at_crash_point(work, sites):
                    assert proc.poll() is None, f"snakemake ended first; see {log.name}"
                    assert time.monotonic() - start < 600, "no crash point within 600 s"
                    time.sleep(0.1)
                os.killpg(proc.pid, signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        crashed_at = time.monotonic() - start
        # What the nodes held right after the crash (a task that ended since the crash point
        # shows as COMPLETE: the rerun must reuse it all the same).
        at_crash = {c.id: c for c in _chunk_tasks(sites)}
        landed = {c.id for c in at_crash.values() if (work / c.output).exists()}
        assert not (work / "results" / "meta" / "qt.tsv.gz").exists()

        start = time.monotonic()
        subprocess.run([*cmd, "--unlock"], env=env, check=True, capture_output=True)
        demo.run_snakemake(
            [*cmd, "--rerun-incomplete"], env=env, log_path=tmp_path / "rerun.log", show=False
        )
        rerun_s = time.monotonic() - start
        final = _chunk_tasks(sites)

    rerun_log = (tmp_path / "rerun.log").read_text()
    reused = set(re.findall(r"fedgen: reusing finished task (\S+) at site", rerun_log))
    reattached = set(re.findall(r"fedgen: reattached to task (\S+) at site", rerun_log))
    complete = {c.id for c in at_crash.values() if c.state == COMPLETE}
    live = {c.id for c in at_crash.values() if c.state in LIVE}
    ended = {c.id: c.state for c in final}
    tasks_per_chunk = Counter(c.chunk_id for c in final)
    complete_per_chunk = Counter(c.chunk_id for c in final if c.state == COMPLETE)
    complete_per_key = Counter(c.key for c in final if c.state == COMPLETE)
    failed = sorted((c.chunk_id, c.state) for c in final if c.state != COMPLETE)
    print(
        f"\ncrash after {crashed_at:.0f} s; rerun {rerun_s:.0f} s\n"
        f"chunk tasks at the crash: {len(at_crash)} ({len(complete)} COMPLETE, of which "
        f"{len(landed)} already landed at the coordinator; {len(live)} live)\n"
        f"rerun: reused {len(reused & set(at_crash))} finished chunk task(s), reattached "
        f"{len(reattached & set(at_crash))}, created {len(final) - len(at_crash)}\n"
        f"chunk tasks in the end: {len(final)} for {len(tasks_per_chunk)} chunks at "
        f"{len({c.site for c in final})} sites, at most {max(complete_per_key.values())} COMPLETE "
        f"per job key; not COMPLETE: {failed or 'none'}"
    )

    assert (work / "results" / "meta" / "qt.tsv.gz").exists()
    # Every 10 Mb chunk of chromosome 20 at each of the three sites has one COMPLETE task.
    chunks = -(-chrom_length("GRCh38", "20") // (CHUNK_MB * 10**6))
    assert len(complete_per_chunk) == 3 * chunks, sorted(complete_per_chunk)
    assert set(complete_per_chunk.values()) == {1}, complete_per_chunk
    assert set(complete_per_key.values()) == {1}, complete_per_key
    # A chunk finished at the crash was never sent again.
    finished_chunks = [c.chunk_id for c in at_crash.values() if c.id in complete]
    assert all(tasks_per_chunk[chunk] == 1 for chunk in finished_chunks), tasks_per_chunk
    # Finished but not landed before the crash: the rerun takes the result from the same task.
    # (Landed ones were done for Snakemake, or are reused too if it had not recorded them.)
    unlanded = complete - landed
    assert unlanded, "every finished chunk had landed before the crash: nothing was tested"
    assert unlanded <= reused, f"finished chunk tasks run again: {sorted(unlanded - reused)}"
    # Live at the crash: the rerun follows the same task (reused if it has ended meanwhile).
    # Only a task that failed at its site is replaced, as any failed task is.
    followed = {t for t in live if ended[t] == COMPLETE}
    assert followed <= reattached | reused, sorted(followed - reattached - reused)
    assert {c.chunk_id for c in at_crash.values() if c.id in followed} <= {
        chunk for chunk, n in tasks_per_chunk.items() if n == 1
    }
