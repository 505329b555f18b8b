"""The run's RO-Crate (Workflow Run Crate profile): sites, tasks, DUO decisions and outputs.

Built at the coordinator after a run. Every site task of the run (TES tag ``fedgen_run``,
:data:`~snakemake_executor_plugin_fedgen.tes.tags.RUN_TAG`) is one
``CreateAction`` whose facts come from the node's provenance record in the task log (inputs and
outputs as SHA-256 only: no site data enters the crate), its agent is the site, and each egress
file carries the airlock decision. The sites' DUO decisions for the declared purpose are
contextual entities; coordinator-side outputs (summary statistics, meta-analysis) are data
entities copied into the crate.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import FedgenError, ProvenanceError
from snakemake_executor_plugin_fedgen.tes.states import FAILED_STATES, TesState
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RULE_TAG, RUN_TAG, SITE_TAG

from snakemake_fedgen.governance.provenance import sha256_file

PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
STATUS = {
    TesState.COMPLETE.value: "http://schema.org/CompletedActionStatus",
    **{state.value: "http://schema.org/FailedActionStatus" for state in FAILED_STATES},
}
DUO_IRI = "http://purl.obolibrary.org/obo/"


def collect_tasks(
    registry: Any, run_id: str, *, sites: Iterable[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """FULL task documents of run ``run_id`` per site (one ListTasks per distinct endpoint).

    ``sites`` limits the sites asked (default: every site of the registry).
    """
    from snakemake_executor_plugin_fedgen.tes.client import TesClient

    by_url: dict[str, list[dict[str, Any]]] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    wanted = list(sites) if sites is not None else list(registry.sites)
    for name in wanted:
        site = registry.site(name)
        if site.tes_url not in by_url:
            # The executor's default retries: the crate is built at the end of a run, when a
            # transient error should not cost the run its provenance.
            client = TesClient(site)
            try:
                by_url[site.tes_url] = [
                    t.document() for t in client.list_tasks(tags={RUN_TAG: run_id}, view="FULL")
                ]
            finally:
                client.close()
        out[name] = [
            t for t in by_url[site.tes_url] if (t.get("tags") or {}).get(SITE_TAG, name) == name
        ]
    return out


def _add(crate: Any, ident: str, props: Mapping[str, Any]) -> Any:
    from rocrate.model.contextentity import ContextEntity

    return crate.add(ContextEntity(crate, ident, properties=dict(props)))


def _ref(entity: Any) -> dict[str, str]:
    return {"@id": entity.id}


def build_crate(
    out_dir: str | Path,
    *,
    registry: Any,
    run_id: str,
    tasks: Mapping[str, list[dict[str, Any]]],
    purpose: Mapping[str, Any] | None = None,
    workflow: str | Path | None = None,
    outputs: Iterable[str | Path] = (),
    name: str | None = None,
    sites: Iterable[str] | None = None,
    no_tasks_reason: str | None = None,
) -> Path:
    """Write the crate to ``out_dir`` and return the path of ``ro-crate-metadata.json``.

    Parameters
    ----------
    tasks
        Site name -> FULL TES task documents (:func:`collect_tasks`).
    purpose
        The workflow's ``purpose``; the sites' DUO decisions are recorded when given.
    workflow
        The Snakefile (becomes the crate's ``mainEntity``).
    outputs
        Coordinator files (relative paths) added as the run's results, with their SHA-256.
    sites
        The sites of the analysis (default: every site of the registry).
    no_tasks_reason
        Set when the run had no site tasks to list (e.g. site jobs ran locally); recorded on
        the run's action so a reader knows the empty task list is not a lost one.
    """
    from rocrate.rocrate import ROCrate
    from snakemake_executor_plugin_fedgen import duo

    from snakemake_fedgen.governance.provenance import from_task_log

    site_names = list(sites) if sites is not None else list(registry.sites)
    crate = ROCrate()
    root = crate.root_dataset
    root["name"] = name or f"fedgen run {run_id}"
    root["description"] = (
        "Federated analysis with snakemake-fedgen: site tasks ran at the sites through GA4GH "
        "TES; only airlock-approved summary files left them."
    )
    root["license"] = "https://spdx.org/licenses/CC-BY-4.0"
    root["conformsTo"] = [
        _ref(_add(crate, iri, {"@type": "CreativeWork", "name": label, "version": iri[-3:]}))
        for iri, label in PROFILES.items()
    ]

    if workflow is not None:
        wf = crate.add_workflow(
            str(workflow), dest_path=Path(workflow).name, main=True, lang="snakemake"
        )
    else:
        wf = _add(crate, "#workflow", {"@type": "ComputationalWorkflow", "name": "workflow"})
        root["mainEntity"] = _ref(wf)

    purpose_entity = None
    decisions: dict[str, Any] = {}
    if purpose is not None:
        purpose_entity = _add(
            crate,
            "#purpose",
            {
                "@type": "PropertyValue",
                "name": "declared purpose of the analysis",
                "value": json.dumps(dict(purpose), sort_keys=True),
            },
        )
        decisions = duo.decide_registry(registry, purpose, sites=site_names)

    results = []
    for rel in outputs:
        entity = crate.add_file(str(rel), dest_path=str(rel), record_size=True)
        entity["sha256"] = sha256_file(Path(rel))
        results.append(entity)

    actions = []
    start_times = []
    for site_name in site_names:
        site = registry.site(site_name)
        site_entity = _add(
            crate,
            f"#site-{site_name}",
            {"@type": "Organization", "name": f"site {site_name}", "url": site.tes_url},
        )
        if site_name in decisions:
            decision = decisions[site_name]
            terms = sorted({t for d in decision.datasets.values() for t in d.terms})
            term_refs = [
                _ref(
                    _add(
                        crate,
                        DUO_IRI + t.replace(":", "_"),
                        {"@type": "DefinedTerm", "termCode": t, "name": duo.ontology().name(t)},
                    )
                )
                for t in terms
            ]
            dec = _add(
                crate,
                f"#duo-{site_name}",
                {
                    "@type": "PropertyValue",
                    "name": f"DUO data-use decision for site {site_name}",
                    "value": "allowed" if decision.allowed else "refused",
                    "description": decision.summary(),
                    "about": _ref(purpose_entity),
                    "valueReference": term_refs,
                },
            )
            site_entity["subjectOf"] = _ref(dec)
        for doc in tasks.get(site_name, []):
            action = _task_action(crate, site_entity, doc, from_task_log)
            actions.append(action)
            if action.get("startTime"):
                start_times.append(action["startTime"])

    run = _add(
        crate,
        "#run",
        {
            "@type": "CreateAction",
            "name": f"fedgen run {run_id}",
            "identifier": run_id,
            "instrument": _ref(wf),
            "result": [_ref(r) for r in results],
            "endTime": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "actionStatus": _run_status(tasks, site_names),
        },
    )
    if no_tasks_reason:
        run["description"] = f"No site tasks are listed: {no_tasks_reason}"
    if start_times:
        run["startTime"] = min(start_times)
    if purpose_entity is not None:
        run["object"] = [_ref(purpose_entity)]
    root["mentions"] = [_ref(run)] + [_ref(a) for a in actions]
    out_dir = Path(out_dir)
    crate.write(out_dir)
    return out_dir / "ro-crate-metadata.json"


def _run_status(tasks: Mapping[str, list[dict[str, Any]]], site_names: list[str]) -> str:
    """Completed when every job's latest attempt completed.

    A resumed or retried run keeps the failed or cancelled attempts of a job (same
    ``fedgen_job_key``, :data:`JOB_KEY_TAG`) as tasks of the run; they appear in the crate as failed actions but do
    not make the run failed once a later attempt of the same job completed.
    """
    done: dict[str, bool] = {}
    for site in site_names:
        for doc in tasks.get(site, []):
            key = (doc.get("tags") or {}).get(JOB_KEY_TAG) or doc["id"]
            ok = doc.get("state") == TesState.COMPLETE
            done[f"{site}/{key}"] = done.get(f"{site}/{key}", False) or ok
    if all(done.values()):
        return "http://schema.org/CompletedActionStatus"
    return "http://schema.org/FailedActionStatus"


def _task_action(crate: Any, site_entity: Any, doc: Mapping[str, Any], from_task_log) -> Any:
    task_id = doc["id"]
    try:
        record = from_task_log(doc)
    except ProvenanceError:
        record = None
    tags = doc.get("tags") or {}
    execs = doc.get("executors") or []
    images = [e.get("image", "") for e in execs]
    instruments = [
        _ref(_add(crate, f"#image-{img}", {"@type": "SoftwareApplication", "name": img}))
        for img in dict.fromkeys(images)
    ]
    props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"{tags.get(RULE_TAG, doc.get('name', 'task'))} at {site_entity['name']}",
        "identifier": task_id,
        "agent": _ref(site_entity),
        "instrument": instruments,
        "actionStatus": STATUS.get(doc.get("state", ""), "http://schema.org/ActiveActionStatus"),
        "description": json.dumps({"tes_state": doc.get("state"), "tags": tags}, sort_keys=True),
    }
    logs = doc.get("logs") or [{}]
    if logs[-1].get("start_time"):
        props["startTime"] = logs[-1]["start_time"]
    if logs[-1].get("end_time"):
        props["endTime"] = logs[-1]["end_time"]
    if record is not None:
        props["object"] = [
            _ref(_file_entity(crate, task_id, "in", i, f)) for i, f in enumerate(record["inputs"])
        ]
        props["result"] = [
            _ref(_file_entity(crate, task_id, "out", i, f)) for i, f in enumerate(record["outputs"])
        ]
        props["startTime"] = record["start_time"]
        props["endTime"] = record["end_time"]
        tools = record.get("tool_versions") or {}
        props["instrument"] = instruments + [
            _ref(
                _add(
                    crate,
                    f"#tool-{tool}",
                    {"@type": "SoftwareApplication", "name": tool, "softwareVersion": version},
                )
            )
            for tool, version in sorted(tools.items())
        ]
        props["provenanceRecord"] = record["schema"]
    return _add(crate, f"#task-{task_id}", props)


def _file_entity(crate: Any, task_id: str, side: str, index: int, f: Mapping[str, Any]) -> Any:
    props: dict[str, Any] = {
        "@type": "File",
        "name": f["path"],
        "description": "held at the site; only its hash is recorded"
        if not f.get("egress")
        else "egress file",
    }
    if f.get("sha256"):
        props["sha256"] = f["sha256"]
    if f.get("size") is not None:
        props["contentSize"] = str(f["size"])
    if f.get("airlock"):
        a = f["airlock"]
        decision = _add(
            crate,
            f"#airlock-{task_id}-{index}",
            {
                "@type": "PropertyValue",
                "name": "airlock decision",
                "value": "accepted" if a["accepted"] else "refused",
                "propertyID": a["kind"],
                "description": a.get("reason", ""),
            },
        )
        props["subjectOf"] = _ref(decision)
    if f.get("encryption"):
        props["encodingFormat"] = "application/crypt4gh"
        props["publishedSha256"] = f.get("published_sha256")
    return _add(crate, f"#{side}-{task_id}-{index}", props)


def crate_from_registry(
    out_dir: str | Path,
    *,
    sites: str | Path,
    run_id: str,
    purpose: Mapping[str, Any] | None = None,
    workflow: str | Path | None = None,
    outputs: Iterable[str | Path] = (),
    include_sites: Iterable[str] | None = None,
    no_tasks_reason: str | None = None,
) -> Path:
    """Load the registry, fetch the run's tasks from every site and write the crate.

    With ``no_tasks_reason`` no site is contacted (no site tasks ran); the reason is recorded.
    """
    from snakemake_executor_plugin_fedgen.sites import load_registry

    registry = load_registry(sites)
    names = list(include_sites) if include_sites else list(registry.sites)
    unknown = [n for n in names if n not in registry.sites]
    if unknown:
        raise ProvenanceError(
            f"{sites}: no site {', '.join(unknown)}; known sites: {', '.join(registry.sites)}."
        )
    outputs = [str(o) for o in outputs]
    missing = [o for o in outputs if not Path(o).is_file()]
    if missing:
        raise ProvenanceError(
            f"--output {', '.join(missing)}: no such file (paths are relative to the working "
            "directory); name the run's coordinator outputs."
        )
    tasks: dict[str, list[dict[str, Any]]] = {}
    if no_tasks_reason is None:
        try:
            tasks = collect_tasks(registry, run_id, sites=names)
        except FedgenError as exc:
            raise ProvenanceError(f"cannot list the tasks of run {run_id}: {exc}") from exc
    return _write_atomically(
        Path(out_dir),
        lambda tmp: build_crate(
            tmp,
            registry=registry,
            run_id=run_id,
            tasks=tasks,
            purpose=purpose,
            workflow=workflow,
            outputs=outputs,
            sites=names,
            no_tasks_reason=no_tasks_reason,
        ),
    )


def _write_atomically(out_dir: Path, write: Any) -> Path:
    """Build the crate in a temporary sibling directory, then move it to ``out_dir``.

    A failure half-way (a site that stops answering, a missing output) leaves no partial crate.
    """
    import secrets
    import shutil

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # os.mkdir, not mkdtemp: the crate gets the umask's permissions, not 0700.
    tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        write(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "ro-crate-metadata.json"
