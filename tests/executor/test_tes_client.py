"""The TES client against a real node, with faults injected by the fault proxy.

The proxy (tests/reliability/faultproxy.py) is a fake only in the sense the brief allows: it
injects faults a real node does not produce on demand (HTTP 503, a response lost after the
node created the task) and otherwise forwards every request to the real node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import TesError
from snakemake_executor_plugin_fedgen.resume import ResumeIndex
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.status import StatusPoller
from snakemake_executor_plugin_fedgen.tes.client import TesClient
from snakemake_executor_plugin_fedgen.tes.models import TesTask
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RUN_TAG

from tests.reliability.faultproxy import FaultProxy

from .conftest import start_site


@pytest.fixture
def proxied(tmp_path: Path, monkeypatch):
    site_node = start_site(tmp_path, "A")
    monkeypatch.setenv(site_node.token_env, site_node.token)
    proxy = FaultProxy(("127.0.0.1", site_node.node.port), rate=0.0)
    site = Site(
        name="A",
        tes_url=proxy.base_url + "/ga4gh/tes/v1",
        work_url=f"file://{site_node.work}",
        token_env=site_node.token_env,
    )
    client = TesClient(site, timeout=10, max_attempts=3, backoff_base=0.05)
    try:
        yield proxy, client, site_node
    finally:
        client.close()
        proxy.stop()
        site_node.node.stop()


def _task(key: str, run: str = "test-run") -> TesTask:
    return TesTask.model_validate(
        {
            "name": "probe",
            "executors": [
                {"image": "fedgen/tools:0.1", "command": ["true"], "workdir": "/fedgen/work"}
            ],
            "tags": {JOB_KEY_TAG: key, RUN_TAG: run},
        }
    )


def test_request__retries_5xx_then_succeeds(proxied):
    proxy, client, _ = proxied
    proxy.forced = {"GET /ga4gh/tes/v1/service-info": [503, 503]}
    info = client.service_info()
    assert info.type.artifact == "tes"
    assert proxy.seen.count("GET /ga4gh/tes/v1/service-info") == 3


def test_request__gives_up_after_bounded_attempts_without_leaking_token(proxied):
    proxy, client, site_node = proxied
    proxy.forced = {"GET /ga4gh/tes/v1/service-info": [502, 502, 502]}
    with pytest.raises(TesError) as err:
        client.service_info()
    msg = str(err.value)
    assert "site A" in msg and "3 attempts" in msg and "HTTP 502" in msg
    assert site_node.token not in msg


def test_create_task_once__lost_response_does_not_create_a_second_task(proxied):
    proxy, client, _ = proxied
    # The node creates the task, but the answer never reaches the client.
    proxy.forced = {"POST /ga4gh/tes/v1/tasks": ["drop_after"]}
    task_id = client.create_task_once(_task("key-1"), job_key="key-1")
    tasks = client.list_tasks(tags={JOB_KEY_TAG: "key-1"}, view="BASIC")
    assert [t.id for t in tasks] == [task_id]
    assert proxy.seen.count("POST /ga4gh/tes/v1/tasks") == 1
    assert proxy.injected["drop_after"] == 1  # the answer was lost


def test_create_task_once__5xx_before_creation_retries_and_creates_once(proxied):
    proxy, client, _ = proxied
    proxy.forced = {"POST /ga4gh/tes/v1/tasks": [503]}
    task_id = client.create_task_once(_task("key-2"), job_key="key-2")
    tasks = client.list_tasks(tags={JOB_KEY_TAG: "key-2"}, view="BASIC")
    assert [t.id for t in tasks] == [task_id]
    assert proxy.seen.count("POST /ga4gh/tes/v1/tasks") == 2


def test_list_tasks__follows_every_page(proxied, monkeypatch):
    _, client, _ = proxied
    ids = {client.create_task(_task(f"page-{i}")) for i in range(5)}
    monkeypatch.setattr("snakemake_executor_plugin_fedgen.tes.client.LIST_PAGE_SIZE", 2)
    listed = client.list_tasks(tags={RUN_TAG: "test-run"})
    assert {t.id for t in listed} == ids
    assert client.counts["GET /tasks"] >= 3


@pytest.mark.parametrize("server_filters_tags", [True, False])
def test_status_poll__one_list_per_site_or_per_task_gets_when_tags_are_ignored(
    proxied, server_filters_tags
):
    proxy, client, _ = proxied
    client.create_task(_task("foreign", run="another-run"))
    ours = [client.create_task(_task(f"ours-{i}", run="our-run")) for i in range(4)]
    proxy.ignore_tag_filters = not server_filters_tags
    index = ResumeIndex("our-run")
    index.load("A", client)
    assert index.ignores_tag_filter["A"] is (not server_filters_tags)
    assert index.find("A", "ours-2").id == ours[2]
    poller = StatusPoller("our-run", {"A": client})
    poller.per_task_fallback["A"] = index.ignores_tag_filter["A"]
    proxy.seen.clear()
    answer = poller.poll({"A": ours})["A"]
    poller.close()
    assert answer.error is None and set(answer.states) == set(ours)
    if server_filters_tags:
        assert len(proxy.seen) == 1 and proxy.seen[0].startswith("GET /ga4gh/tes/v1/tasks?")
    else:
        assert sorted(proxy.seen) == sorted(
            f"GET /ga4gh/tes/v1/tasks/{i}?view=MINIMAL" for i in ours
        )
