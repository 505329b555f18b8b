"""TES 1.1 API of ``fedgen node``: a third-party client, schema validation, filters, errors."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import requests
import tes
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from tests.node.conftest import simple_task, wait_task

# Copies of the official GA4GH OpenAPI files (see spec/SOURCE.txt), so tests need no shared/.
SPEC_DIR = Path(__file__).parent / "spec"
SERVICE_INFO_URL = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"
)


def load_tes_spec(*, minimal_view: bool = False) -> OpenAPI:
    """The TES 1.1 OpenAPI document with its service-info $refs pointed at the local copy.

    ``minimal_view``: the spec defines the MINIMAL view as ONLY ``id`` and ``state``, which
    contradicts ``tesTask.required: [executors]`` in the same file. For MINIMAL responses that
    one ``required`` list is dropped; every property type is still checked.
    """
    text = (SPEC_DIR / "task_execution_service.openapi.yaml").read_text()
    text = text.replace(SERVICE_INFO_URL, "service-info.yaml")
    data = yaml.safe_load(text)
    # YAML reads the status code keys (200:) as integers; OpenAPI wants strings.
    for operations in data["paths"].values():
        for op in operations.values():
            op["responses"] = {str(k): v for k, v in op["responses"].items()}
    if minimal_view:
        del data["components"]["schemas"]["tesTask"]["required"]
    return OpenAPI.from_dict(data, base_uri=(SPEC_DIR / "openapi.yaml").as_uri())


@pytest.fixture(scope="module")
def tes_spec() -> OpenAPI:
    return load_tes_spec()


@pytest.fixture(scope="module")
def tes_spec_minimal() -> OpenAPI:
    return load_tes_spec(minimal_view=True)


def check_schema(spec: OpenAPI, method: str, url: str, **kwargs) -> requests.Response:
    """Send a real request and validate request and response against the TES spec."""
    req = requests.Request(method, url, **kwargs).prepare()
    resp = requests.Session().send(req, timeout=30)
    assert resp.status_code == 200, resp.text
    # The spec's server URL is the relative /ga4gh/tes/v1; openapi-core joins it to the host.
    spec.validate_response(RequestsOpenAPIRequest(req), RequestsOpenAPIResponse(resp))
    return resp


def test_py_tes__creates_lists_gets_cancels_and_writes_outputs(site, start_node):
    (site.data / "greeting.txt").write_text("hello site\n")
    node = start_node(site.state, config=site.config())
    client = tes.HTTPClient(node.base_url)
    task = tes.Task(
        name="py-tes",
        executors=[
            tes.Executor(
                image="fedgen/tools:0.1",
                command=["sh", "-c", "tr a-z A-Z < in/greeting.txt > out/upper.txt"],
                workdir="/fedgen/work",
            )
        ],
        inputs=[
            tes.Input(
                url=(site.data / "greeting.txt").as_uri(), path="/fedgen/work/in/greeting.txt"
            )
        ],
        outputs=[
            tes.Output(
                url=(site.work / "res" / "upper.txt").as_uri(), path="/fedgen/work/out/upper.txt"
            )
        ],
        tags={"fedgen_run": "r1"},
    )
    task_id = client.create_task(task)
    done = client.wait(task_id, timeout=60)
    assert done.state == "COMPLETE"
    assert (site.area() / "res" / "upper.txt").read_text() == "HELLO SITE\n"
    full = client.get_task(task_id, view="FULL")
    assert int(full.logs[0].outputs[0].size_bytes) == 11  # py-tes converts it
    assert full.logs[0].logs[0].exit_code == 0
    listed = client.list_tasks(view="MINIMAL")
    assert [t.id for t in listed.tasks] == [task_id]

    long_id = client.create_task(
        tes.Task(executors=[tes.Executor(image="fedgen/tools:0.1", command=["sleep", "60"])])
    )
    deadline = time.monotonic() + 30
    while client.get_task(long_id).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    client.cancel_task(long_id)
    # py-tes' wait() stops at CANCELING too (the kill is still being reaped); poll on.
    deadline = time.monotonic() + 30
    while client.get_task(long_id).state == "CANCELING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get_task(long_id).state == "CANCELED"


def test_api__every_endpoint_and_view_validates_against_tes_schema(
    site, start_node, tes_spec, tes_spec_minimal
):
    node = start_node(site.state, config=site.config())
    check_schema(tes_spec, "GET", f"{node.url}/service-info")
    task = simple_task(
        "cat conf.txt; echo out > result.txt",
        inputs=[{"path": "/fedgen/work/conf.txt", "content": "x=1\n"}],
        outputs=[{"path": "/fedgen/work/result.txt", "url": (site.work / "r.txt").as_uri()}],
        tags={"k": "v"},
        resources={"cpu_cores": 1},
    )
    task_id = check_schema(tes_spec, "POST", f"{node.url}/tasks", json=task).json()["id"]
    assert wait_task(node.url, task_id)["state"] == "COMPLETE"
    failing = check_schema(tes_spec, "POST", f"{node.url}/tasks", json=simple_task("exit 3"))
    assert wait_task(node.url, failing.json()["id"])["state"] == "EXECUTOR_ERROR"
    for view in ("MINIMAL", "BASIC", "FULL"):
        spec = tes_spec_minimal if view == "MINIMAL" else tes_spec
        got = check_schema(spec, "GET", f"{node.url}/tasks/{task_id}", params={"view": view})
        listed = check_schema(spec, "GET", f"{node.url}/tasks", params={"view": view})
        assert len(listed.json()["tasks"]) == 2
        doc = got.json()
        if view == "MINIMAL":
            assert set(doc) == {"id", "state"}
        elif view == "BASIC":
            assert "content" not in doc["inputs"][0]
            assert "stdout" not in doc["logs"][0]["logs"][0]
            assert "system_logs" not in doc["logs"][0]
            assert doc["logs"][0]["outputs"][0]["size_bytes"] == "4"
        else:
            assert doc["inputs"][0]["content"] == "x=1\n"
            assert doc["logs"][0]["logs"][0]["stdout"] == "x=1\n"
    page = check_schema(tes_spec_minimal, "GET", f"{node.url}/tasks", params={"page_size": 1})
    assert page.json()["next_page_token"]
    with pytest.raises(Exception, match="executors"):
        # The strict schema really is checked: a MINIMAL task lacks the required executors.
        check_schema(tes_spec, "GET", f"{node.url}/tasks/{task_id}", params={"view": "MINIMAL"})
    check_schema(tes_spec, "POST", f"{node.url}/tasks/{task_id}:cancel")


def test_service_info__reports_allow_list_and_storage(site, start_node):
    node = start_node(
        site.state,
        config=site.config(allowed_images=["fedgen/*"], allowed_input_hosts=["*.ebi.ac.uk"]),
    )
    info = httpx.get(f"{node.url}/service-info").json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info["fedgen"]["image_allow_list"] is True
    schemes = {"file", "http", "https", "content", "fedgen-ingress"}
    assert set(info["fedgen"]["storage_schemes"]) == schemes
    assert info["fedgen"]["ingress_path"] == "/fedgen/v1/ingress"
    assert site.work.as_uri() in info["storage"]


def test_list_tasks__filters_by_name_state_and_tags(site, start_node):
    node = start_node(site.state, config=site.config(runtime="host"))
    specs = [
        ("align-1", {"run": "r1", "rule": "align"}, "true"),
        ("align-2", {"run": "r1", "rule": "qc"}, "exit 1"),
        ("gwas-1", {"run": "r2", "rule": "align", "empty": ""}, "true"),
    ]
    ids = {}
    for name, tags, cmd in specs:
        ids[name] = httpx.post(
            f"{node.url}/tasks", json=simple_task(cmd, name=name, tags=tags)
        ).json()["id"]
    for task_id in ids.values():
        wait_task(node.url, task_id)

    def names(**params) -> set[str]:
        got = httpx.get(f"{node.url}/tasks", params={"view": "BASIC", **params}).json()["tasks"]
        return {t["name"] for t in got}

    assert names(name_prefix="align") == {"align-1", "align-2"}
    assert names(state="EXECUTOR_ERROR") == {"align-2"}
    assert names(tag_key="run", tag_value="r1") == {"align-1", "align-2"}
    assert names(tag_key=["run", "rule"], tag_value=["r1", "align"]) == {"align-1"}
    # A key without a value matches any value but requires the key.
    assert names(tag_key="rule") == {"align-1", "align-2", "gwas-1"}
    assert names(tag_key="empty") == {"gwas-1"}
    assert names(tag_key=["run", "rule"], tag_value=["r2"]) == {"gwas-1"}
    assert names(tag_key="run", tag_value="r3") == set()


def test_list_tasks__600_tasks_in_pages_of_256_each_exactly_once(site, start_node):
    # One core and a first task that blocks it: the 600 listed tasks stay QUEUED until they
    # are canceled, so creating them is cheap.
    node = start_node(site.state, config=site.config(runtime="host", cpu_cores=1))
    blocker = httpx.post(f"{node.url}/tasks", json=simple_task("sleep 120")).json()["id"]
    created = set()
    with httpx.Client() as client:
        for i in range(600):
            resp = client.post(f"{node.url}/tasks", json=simple_task("true", name=f"p{i}"))
            created.add(resp.json()["id"])
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            params = {"page_size": 256, "name_prefix": "p"}
            if token:
                params["page_token"] = token
            body = client.get(f"{node.url}/tasks", params=params).json()
            pages += 1
            seen.extend(t["id"] for t in body["tasks"])
            token = body.get("next_page_token")
            if not token:
                break
        minimal = client.get(f"{node.url}/tasks", params={"page_size": 2048}).json()
        assert len(minimal["tasks"]) == 601 and "next_page_token" not in minimal
        # FULL pages are bounded at 256 documents; the token continues the listing.
        full = client.get(f"{node.url}/tasks", params={"page_size": 2048, "view": "FULL"}).json()
        assert len(full["tasks"]) == 256 and full["next_page_token"]
        for task_id in [*created, blocker]:
            client.post(f"{node.url}/tasks/{task_id}:cancel")
    assert pages == 3
    assert len(seen) == 600
    assert set(seen) == created


def test_create_task__invalid_tasks_answer_400_with_message(site, start_node):
    node = start_node(site.state, config=site.config(allowed_images=["fedgen/*"]))
    cases = [
        ({"executors": []}, "executors"),
        ({"executors": [{"image": "fedgen/x", "command": "ls"}]}, "command"),
        (
            simple_task("true") | {"executors": [{"image": "evil/miner:1", "command": ["ls"]}]},
            "evil/miner:1",
        ),
        (simple_task("true", inputs=[{"path": "relative", "content": "x"}]), "absolute"),
        (simple_task("true", inputs=[{"path": "/usr/bin/x", "content": "x"}]), "system directory"),
        (simple_task("true", outputs=[{"path": "/fedgen/work/o", "url": "s3://b/o"}]), "file://"),
        (simple_task("true", inputs=[{"path": "/fedgen/work/i", "url": "s3://b/i"}]), "'s3'"),
        (
            simple_task(
                "true", outputs=[{"path": "/fedgen/work/*.txt", "url": (site.work).as_uri()}]
            ),
            "path_prefix",
        ),
    ]
    for body, fragment in cases:
        resp = httpx.post(f"{node.url}/tasks", json=body)
        assert resp.status_code == 400, body
        assert fragment in resp.json()["message"], resp.json()
    resp = httpx.post(
        f"{node.url}/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    for path in ("/tasks/nope", "/tasks/nope:cancel"):
        method = "POST" if path.endswith(":cancel") else "GET"
        resp = httpx.request(method, node.url + path)
        assert resp.status_code == 404
        assert "not found" in resp.json()["message"]
    assert httpx.get(f"{node.url}/tasks", params={"view": "HUGE"}).status_code == 400
    assert httpx.get(f"{node.url}/tasks", params={"page_token": "zz"}).status_code == 400


def test_create_task__no_allow_list_accepts_any_image_and_says_so(site, start_node):
    node = start_node(site.state, config=site.config())
    info = httpx.get(f"{node.url}/service-info").json()
    assert info["fedgen"]["image_allow_list"] is False
    resp = httpx.post(f"{node.url}/tasks", json=simple_task("true") | {"name": "any"})
    assert resp.status_code == 200
    assert "no allowed_images" in node.log_tail()
