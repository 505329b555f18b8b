"""The TES 1.1 models against the official specification and against a running node.

* Every schema of the official OpenAPI (and of GA4GH service-info 1.0.0, which it extends) has a
  model with exactly the specification's fields, and every ``example:`` in the two files
  validates, alone and assembled into whole example documents. Three property examples of the
  specification contradict their own property types; they are listed in ``SPEC_ERRATA`` with
  the reason, checked to be refused, and replaced by the value they mean.
* Invalid documents are refused: a missing required field, an unknown state, a relative path
  where the specification wants an absolute one, unknown fields, coerced types.
* What a real ``fedgen node`` serves (CreateTask, GetTask in each view, ListTasks, CancelTask,
  service-info) parses with the strict models.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel, ValidationError
from snakemake_executor_plugin_fedgen.tes import models as m
from snakemake_executor_plugin_fedgen.tes.states import (
    ENDED_BADLY,
    FAILED_STATES,
    FINAL_STATES,
    LIVE_STATES,
    TesState,
)
from snakemake_executor_plugin_fedgen.tes.tags import FEDGEN_TAGS, RUN_TAG

from snakemake_fedgen.node.app import NodeServiceInfo
from tests.node.conftest import simple_task, site, start_node, wait_task  # noqa: F401

SPEC_DIR = Path(__file__).parents[1] / "node" / "spec"
SERVICE_INFO_REF = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/"
    "service-info.yaml#/components/schemas/"
)


class _JsonLikeLoader(yaml.SafeLoader):
    """YAML as the JSON form of the spec reads it: ``2020-10-02T10:00:00-05:00`` stays a string.

    (PyYAML implements YAML 1.1, which turns unquoted timestamps into datetime objects; OpenAPI
    schemas describe JSON, where they are the strings the ``type: string`` fields say.)
    """


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load(name: str) -> dict[str, Any]:
    with open(SPEC_DIR / name) as fh:
        return yaml.load(fh, Loader=_JsonLikeLoader)


TES = _load("task_execution_service.openapi.yaml")["components"]["schemas"]
SERVICE_INFO = _load("service-info.yaml")["components"]["schemas"]

#: Schema name -> model. The MINIMAL-view models (MinimalTask, ...) have no schema of their own.
MODELS: dict[str, type[BaseModel]] = {
    "tesCancelTaskResponse": m.TesCancelTaskResponse,
    "tesCreateTaskResponse": m.TesCreateTaskResponse,
    "tesExecutor": m.TesExecutor,
    "tesExecutorLog": m.TesExecutorLog,
    "tesInput": m.TesInput,
    "tesListTasksResponse": m.TesListTasksResponse,
    "tesOutput": m.TesOutput,
    "tesOutputFileLog": m.TesOutputFileLog,
    "tesResources": m.TesResources,
    "tesServiceType": m.TesServiceType,
    "tesServiceInfo": m.TesServiceInfo,
    "tesTask": m.TesTask,
    "tesTaskLog": m.TesTaskLog,
    "Service": m.Service,
    "ServiceType": m.ServiceType,
}
ENUMS = {"tesState": TesState, "tesFileType": m.TesFileType}

#: (schema, property) -> (why the specification's example is wrong, the value it means).
SPEC_ERRATA: dict[tuple[str, str], tuple[str, Any]] = {
    ("tesOutputFileLog", "size_bytes"): (
        "the example is a list, the property a string (an int64 coded as a string)",
        "1024",
    ),
    ("tesResources", "zones"): ("the example is a string, the property an array", ["us-west-1"]),
    ("tesTaskLog", "metadata"): (
        "the example has the number 123456, the property maps strings to strings",
        {"host": "worker-001", "slurmm_id": "123456"},
    ),
}


#: Values for required properties the specification gives no example for (taken from the
#: descriptions or from the examples of the same object elsewhere in the specification).
FILLERS: dict[tuple[str, str], Any] = {
    ("tesCreateTaskResponse", "id"): "job-0012345",
    ("tesExecutorLog", "exit_code"): 0,
    ("tesOutput", "path"): "/data/outfile",
    ("tesOutput", "url"): "s3://my-object-store/outfile-1",
    ("tesOutputFileLog", "path"): "/data/outfile",
    ("tesOutputFileLog", "url"): "s3://bucket/file.txt",
}


def _schema(name: str) -> dict[str, Any]:
    return TES[name] if name in TES else SERVICE_INFO[name]


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _parts(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owning schema, schema part) of ``name``, following allOf into service-info."""
    schema = _schema(name)
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            yield from _parts(_ref_name(part["$ref"]))
        else:
            yield name, part


def properties(name: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Property -> (the schema that declares it, its schema); later allOf parts win."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for owner, part in _parts(name):
        for prop, spec in (part.get("properties") or {}).items():
            out[prop] = (owner, spec)
    return out


def required(name: str) -> set[str]:
    return {r for _, part in _parts(name) for r in part.get("required", [])}


def example_of(name: str) -> dict[str, Any]:
    """A whole example document of schema ``name`` assembled from the spec's examples.

    A property takes its own example (corrected where SPEC_ERRATA says so); a property that
    refers to another object schema takes that schema's assembled example, an array of them a
    one-element list. ``Service.type`` refers to ServiceType, whose example artifact ``beacon``
    is fine there; ``tesServiceInfo.type`` is a ``tesServiceType`` (artifact ``tes``).
    """
    doc: dict[str, Any] = {}
    for prop, (owner, spec) in properties(name).items():
        if (owner, prop) in SPEC_ERRATA:
            doc[prop] = copy.deepcopy(SPEC_ERRATA[owner, prop][1])
        elif "example" in spec:
            doc[prop] = copy.deepcopy(spec["example"])
        elif (owner, prop) in FILLERS:
            doc[prop] = FILLERS[owner, prop]
        elif "$ref" in spec and _ref_name(spec["$ref"]) in ENUMS:
            enum = _schema(_ref_name(spec["$ref"]))
            doc[prop] = enum.get("example", enum.get("default"))
        elif "$ref" in spec:
            doc[prop] = example_of(_ref_name(spec["$ref"]))
        elif spec.get("type") == "array" and "$ref" in spec.get("items", {}):
            doc[prop] = [example_of(_ref_name(spec["items"]["$ref"]))]
        elif spec.get("type") == "object" and "properties" in spec:
            doc[prop] = {k: v["example"] for k, v in spec["properties"].items() if "example" in v}
    missing = required(name) - doc.keys()
    assert not missing, f"{name}: add FILLERS for required {missing}"
    return doc


def _all_examples() -> list[tuple[str, str]]:
    return [
        (owner, prop)
        for name in MODELS
        for prop, (owner, spec) in properties(name).items()
        if "example" in spec and owner == name
    ]


# -- the models follow the specification --------------------------------------------------------


def test_every_schema_has_a_model_with_the_spec_fields():
    for name in [*TES, *SERVICE_INFO]:
        assert name in MODELS or name in ENUMS, f"no model for {name}"
    for name, model in MODELS.items():
        assert set(model.model_fields) == set(properties(name)), name
        for field in required(name):
            assert model.model_fields[field].is_required(), f"{name}.{field} must be required"
        for field, info in model.model_fields.items():
            if field not in required(name):
                assert not info.is_required(), f"{name}.{field} is optional in the spec"
    for name, enum in ENUMS.items():
        assert [e.value for e in enum] == _schema(name)["enum"], name


def test_every_example_in_the_spec_validates():
    checked = set()
    for owner, prop in _all_examples():
        spec = properties(owner)[prop][1]
        base = example_of(owner)
        if (owner, prop) in SPEC_ERRATA:
            with pytest.raises(ValidationError):
                MODELS[owner].model_validate({**base, prop: spec["example"]})
        else:
            MODELS[owner].model_validate({**base, prop: spec["example"]})
        checked.add((owner, prop))
    assert TesState(_schema("tesState")["example"]) is TesState.COMPLETE
    organization = m.Service.model_validate(example_of("Service")).organization
    assert organization.url == "https://example.com"
    # Every `example:` anywhere in the two files was one of those checked above.
    for path in _example_paths(TES, "") + _example_paths(SERVICE_INFO, ""):
        parts = path.split("/")
        if len(parts) > 2 and parts[-2] == "properties" and parts[0] in MODELS:
            assert (parts[0], parts[-1]) in checked or parts[:3] == [
                "Service",
                "properties",
                "organization",
            ], path
        else:
            assert path == "tesState", path
    assert set(SPEC_ERRATA) <= checked and len(checked) == 43


def _example_paths(node: Any, path: str) -> list[str]:
    found = [path] if isinstance(node, dict) and "example" in node else []
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "example":
                found += _example_paths(value, f"{path}/{key}".lstrip("/"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _example_paths(value, f"{path}/{i}")
    return found


@pytest.mark.parametrize("name", sorted(MODELS))
def test_assembled_spec_examples_validate(name):
    doc = example_of(name)
    if name == "tesListTasksResponse":
        doc["next_page_token"] = "1"
    parsed = MODELS[name].model_validate(doc)
    # Nothing is lost or added on the way back to JSON.
    dumped = parsed.model_dump(mode="json", exclude_none=True)
    assert dumped == _with_defaults(name, doc)


def _with_defaults(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the spec's defaults the models fill in (tesInput/tesOutput ``type``)."""
    out = copy.deepcopy(doc)
    for prop, (_, spec) in properties(name).items():
        ref = spec.get("$ref") or spec.get("items", {}).get("$ref")
        if prop not in out or ref is None:
            continue
        target = _ref_name(ref)
        if target == "tesFileType":
            out.setdefault(prop, "FILE")
        elif target in MODELS and spec.get("type") == "array":
            out[prop] = [_with_defaults(target, x) for x in out[prop]]
        elif target in MODELS:
            out[prop] = _with_defaults(target, out[prop])
    if name in ("tesInput", "tesOutput"):
        out.setdefault("type", "FILE")
    return out


# -- invalid documents --------------------------------------------------------------------------


def _task(**extra: Any) -> dict[str, Any]:
    return {"executors": [{"image": "ubuntu:20.04", "command": ["true"]}], **extra}


@pytest.mark.parametrize(
    ("model", "doc", "fragment"),
    [
        (m.TesTask, {"name": "no executors"}, "executors: Field required"),
        (m.TesTask, {"executors": [{"command": ["true"]}]}, "executors[0].image: Field required"),
        (m.TesTask, _task(outputs=[{"path": "/o"}]), "outputs[0].url: Field required"),
        (m.TesTask, _task(inputs=[{"url": "s3://b/k"}]), "inputs[0].path: Field required"),
        (m.TesExecutorLog, {"stdout": "x"}, "exit_code: Field required"),
        (m.TesTaskLog, {"logs": []}, "outputs: Field required"),
        (m.TesCreateTaskResponse, {}, "id: Field required"),
        (m.TesListTasksResponse, {}, "tasks: Field required"),
        (m.TesTask, _task(state="FINISHED"), "state: Input should be"),
        (m.MinimalTask, {"id": "t", "state": "done"}, "state: Input should be"),
        (m.TesTask, _task(inputs=[{"path": "/i", "type": "LINK"}]), "inputs[0].type"),
        (m.TesTask, _task(inputs=[{"path": "data/x", "url": "s3://b/k"}]), "absolute path"),
        (m.TesTask, _task(outputs=[{"path": "out.txt", "url": "file:///o"}]), "absolute path"),
        (
            m.TesTask,
            {"executors": [{"image": "i", "command": ["ls"], "stdout": "log.txt"}]},
            "executors[0].stdout: must be an absolute path, got 'log.txt'",
        ),
        (m.TesOutputFileLog, {"url": "u", "path": "o", "size_bytes": "1"}, "absolute path"),
        (m.TesOutputFileLog, {"url": "u", "path": "/o", "size_bytes": "1e3"}, "size_bytes"),
        (m.TesOutputFileLog, {"url": "u", "path": "/o", "size_bytes": 1024}, "valid string"),
        (m.TesTask, _task(outputs=[{"path": "/w/*.txt", "url": "file:///o/"}]), "path_prefix"),
        (
            m.TesTask,
            _task(outputs=[{"path": "/w/*.txt", "url": "file:///o/", "path_prefix": "/x"}]),
            "not a prefix",
        ),
        (m.TesTask, _task(resources={"cpu_cores": "4"}), "resources.cpu_cores"),
        (m.TesTask, _task(resources={"cpu_cores": 2**31}), "resources.cpu_cores"),
        (m.TesTask, _task(resources={"preemptible": "yes"}), "resources.preemptible"),
        (m.TesTask, _task(tags={"k": 1}), "tags.k"),
        (m.TesTask, _task(executors=[{"image": "i", "command": "ls"}]), "command"),
        (m.TesTask, _task(priority=3), "priority: unknown field"),
        (
            m.TesTask,
            {"executors": [{"image": "i", "command": ["ls"], "ignore_errors": True}]},
            "executors[0].ignore_errors: unknown field",
        ),
        (m.TesServiceInfo, {**example_of("tesServiceInfo"), "organization": None}, "organization"),
        (
            m.TesServiceInfo,
            {**example_of("tesServiceInfo"), "type": example_of("ServiceType")},
            "type.artifact",
        ),
    ],
)
def test_invalid_documents_are_refused_with_the_field_named(model, doc, fragment):
    with pytest.raises(ValidationError) as err:
        model.model_validate(doc)
    assert fragment in m.describe_errors(err.value)


def test_documents_from_other_servers_keep_types_strict_and_drop_extensions():
    doc = _task(backend_extension={"x": 1})
    doc["executors"][0]["vendor_field"] = True
    parsed = m.TesTask.model_validate(doc, extra="ignore")
    assert "backend_extension" not in parsed.document()
    with pytest.raises(ValidationError):
        m.TesTask.model_validate(_task(resources={"cpu_cores": "4"}), extra="ignore")
    # service-info is extensible by design: extra blocks are kept.
    info = m.TesServiceInfo.model_validate({**example_of("tesServiceInfo"), "x-vendor": {"a": 1}})
    assert info.document()["x-vendor"] == {"a": 1}


def test_states_partition_and_tags():
    assert LIVE_STATES | FINAL_STATES | {TesState.CANCELING} == set(TesState)
    assert FAILED_STATES | {TesState.COMPLETE} == FINAL_STATES
    assert TesState.COMPLETE not in ENDED_BADLY and TesState.CANCELING in ENDED_BADLY
    assert TesState.QUEUED == "QUEUED" and f"{TesState.QUEUED}" == "QUEUED"
    assert len(set(FEDGEN_TAGS)) == 4 and all(t.startswith("fedgen_") for t in FEDGEN_TAGS)


# -- what a running node serves -----------------------------------------------------------------


def test_node_answers_parse_with_the_models(site, start_node):  # noqa: F811
    (site.data / "in.txt").write_text("input\n")
    node = start_node(site.state, config=site.config(runtime="host"))
    info = httpx.get(f"{node.url}/service-info").json()
    m.TesServiceInfo.model_validate(info)
    NodeServiceInfo.model_validate(info)  # the fedgen block too, no unknown field
    assert m.TesServiceInfo.model_validate(info).type.artifact == "tes"

    task = simple_task(
        "cat conf.txt in.txt > result.txt; echo done",
        inputs=[
            {"path": "/fedgen/work/conf.txt", "content": "x=1\n"},
            {"path": "/fedgen/work/in.txt", "url": (site.data / "in.txt").as_uri()},
        ],
        outputs=[{"path": "/fedgen/work/result.txt", "url": (site.work / "r.txt").as_uri()}],
        resources={"cpu_cores": 1, "ram_gb": 0.5},
        tags={RUN_TAG: "models"},
        volumes=["/fedgen/shared"],
    )
    task["executors"][0]["env"] = {"A": "1"}
    m.TesTask.model_validate(task)  # the request itself is a valid tesTask
    created = httpx.post(f"{node.url}/tasks", json=task)
    task_id = m.TesCreateTaskResponse.model_validate(created.json()).id
    failing = httpx.post(f"{node.url}/tasks", json=simple_task("echo oops >&2; exit 3")).json()
    assert wait_task(node.url, task_id)["state"] == "COMPLETE"
    assert wait_task(node.url, failing["id"])["state"] == "EXECUTOR_ERROR"

    full = m.TesTask.model_validate(
        httpx.get(f"{node.url}/tasks/{task_id}", params={"view": "FULL"}).json()
    )
    assert full.state is TesState.COMPLETE and full.logs
    assert full.logs[0].outputs[0].size_bytes == str(len("x=1\ninput\n"))
    assert full.logs[0].logs[0].stdout == "done\n"
    assert full.inputs and full.inputs[0].content == "x=1\n"
    basic = m.TesTask.model_validate(
        httpx.get(f"{node.url}/tasks/{task_id}", params={"view": "BASIC"}).json()
    )
    assert basic.inputs and basic.inputs[0].content is None
    minimal = m.MinimalTask.model_validate(httpx.get(f"{node.url}/tasks/{task_id}").json())
    assert minimal.state is TesState.COMPLETE
    failed = m.TesTask.model_validate(
        httpx.get(f"{node.url}/tasks/{failing['id']}", params={"view": "FULL"}).json()
    )
    assert failed.logs and failed.logs[0].logs[0].exit_code == 3

    for view in ("BASIC", "FULL"):
        listed = m.TesListTasksResponse.model_validate(
            httpx.get(f"{node.url}/tasks", params={"view": view}).json()
        )
        assert {t.id for t in listed.tasks} == {task_id, failing["id"]}
    page = m.MinimalListTasksResponse.model_validate(
        httpx.get(f"{node.url}/tasks", params={"page_size": 1}).json()
    )
    assert len(page.tasks) == 1 and page.next_page_token
    cancel = httpx.post(f"{node.url}/tasks/{task_id}:cancel")
    m.TesCancelTaskResponse.model_validate(cancel.json())
