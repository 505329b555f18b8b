"""Turn a Snakemake job (or group job) into one GA4GH TES task in direct command mode.

The task runs the rule's own formatted shell command, ``bash -c 'set -euo pipefail; <cmd>'``,
in the rule's container image (or the site's default image) with workdir ``/fedgen/work`` and
every input/output at its Snakemake relative path below it, so a site reviewer sees exactly
what will run. A last executor prints size and sha256 of each file output so the coordinator can
record them in references without the data leaving the site.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError

from snakemake_executor_plugin_fedgen import approval, resume, staging
from snakemake_executor_plugin_fedgen.crypt import recipient_tags
from snakemake_executor_plugin_fedgen.sites import Registry, Site
from snakemake_executor_plugin_fedgen.tes.models import (
    TesExecutor,
    TesInput,
    TesResources,
    TesTask,
)
from snakemake_executor_plugin_fedgen.tes.tags import JOB_KEY_TAG, RULE_TAG, RUN_TAG, SITE_TAG

# Resources that never go to backend_parameters: Snakemake internals, coordinator paths and
# the ones mapped to TES fields.
_MAPPED = {"_cores", "_nodes", "_job_count", "threads", "tmpdir", "site", "mem_mb", "mem_mib"}
_MAPPED |= {"disk_mb", "disk_mib", "mem", "disk"}


@dataclass
class TaskPlan:
    """A TES task for one job plus what the coordinator needs once it finishes."""

    site: Site
    task: TesTask
    job_key: str
    outputs: list[staging.OutputPlan] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    #: Coordinator files the site's ingress must hold before the task is created.
    uploads: list[staging.Upload] = field(default_factory=list)


def subjobs(job: Any) -> list[Any]:
    """Return the single jobs of ``job`` in execution (topological) order."""
    if job.is_group():
        return [j for level in job.toposorted for j in sorted(level, key=lambda j: j.jobid)]
    return [job]


def site_of(job: Any, registry: Registry) -> Site:
    """Return the site a (group) job runs at.

    The site comes from the resource ``site`` or the wildcard ``site``; without either, the
    registry's ``default_site``.

    Raises
    ------
    WorkflowError
        No site can be determined, or the jobs of a group name different sites.
    """
    names: dict[str, str] = {}
    for j in subjobs(job):
        name = _named_site(j) or registry.default_site
        if name is None:
            raise WorkflowError(
                f"rule {j.rule.name} (job {j.jobid}) names no site and {registry.path} has no "
                'default_site. Give the rule `resources: site="<site>"` or a {site} wildcard, '
                "mark it `localrule: True` to run on the coordinator, or set default_site in the "
                "registry."
            )
        names[j.rule.name] = name
    distinct = set(names.values())
    if len(distinct) > 1:
        detail = ", ".join(f"{rule}: {site}" for rule, site in names.items())
        raise WorkflowError(
            f"group job {job.name} spans several sites ({detail}); a group runs as one task at "
            "one site. Put rules of different sites in different groups."
        )
    try:
        return registry.site(distinct.pop())
    except Exception as exc:
        raise WorkflowError(str(exc)) from None


def _named_site(job: Any) -> str | None:
    value = job.resources.get("site") if hasattr(job.resources, "get") else None
    if isinstance(value, str) and value:
        return value
    wildcard = (job.wildcards_dict or {}).get("site")
    return str(wildcard) if wildcard else None


def check_direct_command(job: Any) -> str:
    """Return the job's formatted shell command or refuse non-shell rules.

    Raises
    ------
    WorkflowError
        The rule uses run:, script:, notebook:, wrapper:, template_engine: or cwl:.
    """
    rule = job.rule
    kind = None
    if rule.is_script:
        kind = "script:"
    elif rule.is_notebook:
        kind = "notebook:"
    elif rule.is_wrapper:
        kind = "wrapper:"
    elif getattr(rule, "is_template_engine", False):
        kind = "template_engine:"
    elif getattr(rule, "is_cwl", False):
        kind = "cwl:"
    elif not rule.is_shell:
        kind = "run:"
    if kind:
        raise WorkflowError(
            f"rule {rule.name} uses {kind}, but site jobs run the rule's shell command directly "
            "(sites have no Snakemake). Rewrite it with shell: calling a CLI (e.g. a fedgen "
            "subcommand or a tool), or mark it `localrule: True` if it needs no site data."
        )
    cmd = str(job.shellcmd)
    if any(getattr(f, "is_pipe", False) or _flagged(f, "pipe") for f in job.output):
        raise WorkflowError(f"rule {rule.name}: pipe() outputs are not supported at sites.")
    return cmd.strip()


def _flagged(f: Any, flag: str) -> bool:
    flags = getattr(f, "flags", None) or {}
    return bool(flags.get(flag))


def image_of(job: Any, site: Site) -> str:
    """Return the job's image: the rule's container: or the site's default image."""
    url = job.container_img_url
    if url:
        return str(url).removeprefix("docker://")
    if site.default_image:
        return site.default_image
    raise WorkflowError(
        f"rule {job.rule.name} has no container: and site {site.name} has no default_image; "
        "add one of them (the site checks the image against its approved list)."
    )


def resources_of(job: Any) -> TesResources:
    """Map Snakemake resources to TES ``resources`` and ``backend_parameters``.

    threads -> cpu_cores; mem_mb -> ram_gb (1 GB = 1000 MB); disk_mb -> disk_gb; runtime (minutes)
    and any other resource -> backend_parameters (as strings).
    """
    res = job.resources
    out = TesResources(cpu_cores=max(1, int(job.threads)))
    mem = _number(res.get("mem_mb"))
    if mem:
        out.ram_gb = round(mem / 1000.0, 3)
    disk = _number(res.get("disk_mb"))
    if disk:
        out.disk_gb = round(disk / 1000.0, 3)
    backend: dict[str, str] = {}
    # Snakemake's ResourceList iterates over values, so the keys are asked for explicitly.
    for key in res.keys():  # noqa: SIM118
        if key in _MAPPED or key.startswith("_"):
            continue
        value = res.get(key)
        if value is None:
            continue
        backend[key] = str(value)
    out.backend_parameters = backend or None
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def build_task(
    job: Any,
    *,
    registry: Registry,
    run_id: str,
    ingress_limit: staging.IngressLimit | None = None,
) -> TaskPlan:
    """Build the TES task for ``job`` (a single job or a group job).

    ``ingress_limit(site)`` says whether (and up to which size) a site takes coordinator files
    through its ingress; it is asked only for inputs too large or binary for content.

    Raises
    ------
    WorkflowError
        The job cannot run at a site as written (see messages).
    SiteDataError, StorageError
        An input cannot reach the site (other site's data, large coordinator file).
    """
    site = site_of(job, registry)
    jobs = subjobs(job)
    produced = {os.path.normpath(str(f)) for j in jobs for f in [*j.output, *j.log]}
    inputs: list[TesInput] = []
    fingerprints: list[str] = []
    seen: set[str] = set()
    commands: list[tuple[str, str, str]] = []
    job_logs: list[list[str]] = []
    outputs: list[staging.OutputPlan] = []
    benchmarks: list[str] = []
    uploads: list[staging.Upload] = []
    for j in jobs:
        cmd = check_direct_command(j)
        image = image_of(j, site)
        commands.append((j.rule.name, image, cmd))
        job_logs.append([str(f) for f in j.log])
        for f in j.input:
            norm = os.path.normpath(str(f))
            if norm in produced or norm in seen:
                continue
            seen.add(norm)
            spec, fingerprint = staging.input_for(
                str(f), site=site, rule=j.rule.name, ingress_limit=ingress_limit
            )
            inputs.append(spec)
            if (upload := staging.upload_of(spec, str(f))) is not None:
                uploads.append(upload)
            fingerprints.append(f"{spec.name}={fingerprint}")
        for f in [*j.output, *j.log]:
            outputs.append(
                staging.output_for(
                    str(f),
                    site=site,
                    rule=j.rule.name,
                    is_directory=bool(getattr(f, "is_directory", False)),
                )
            )
        if j.benchmark:
            benchmarks.append(str(j.benchmark))

    key = resume.job_key(
        rules=[j.rule.name for j in jobs],
        wildcards=[dict(j.wildcards_dict or {}) for j in jobs],
        commands=[c for _, _, c in commands],
        images=[i for _, i, _ in commands],
        inputs=fingerprints,
        outputs=[(o.path, o.url) for o in outputs],
    )
    executors: list[TesExecutor] = []
    dirs = sorted({os.path.dirname(o.path) for o in outputs if os.path.dirname(o.path)})
    if dirs:
        # Output parent directories exist in a Snakemake run because Snakemake creates them;
        # at the site nobody else does.
        executors.append(_executor(commands[0][1], ["mkdir", "-p", "--", *dirs]))
    approvals: list[dict[str, Any]] = [{"kind": "mkdir"}] if dirs else []
    for j, (_, image, cmd), logs in zip(jobs, commands, job_logs, strict=True):
        executors.append(_executor(image, approval.rule_command(cmd, logs)))
        approvals.append(_approval_entry(j, logs))
    files = [o.path for o in outputs if not o.is_directory]
    if files:
        executors.append(
            _executor(
                commands[-1][1], ["bash", "-c", staging.CHECKSUM_SCRIPT, "fedgen-checksum", *files]
            )
        )
        approvals.append({"kind": "checksum"})
    rule_tag = ",".join(dict.fromkeys(j.rule.name for j in jobs))
    name = f"{rule_tag}:{_wildcard_label(jobs[0])}" if len(jobs) == 1 else f"group:{rule_tag}"
    tags = {RUN_TAG: run_id, JOB_KEY_TAG: key, RULE_TAG: rule_tag[:200], SITE_TAG: site.name}
    # Approved code: what a fedgen node needs to check each command against the templates its
    # steward approved (other TES servers ignore the tag).
    tags[approval.APPROVAL_TAG] = approval.approval_tag(approvals)
    # Crypt4GH egress (issue 6): the node encrypts published files for the coordinator's key.
    tags.update(recipient_tags(site))
    task = TesTask(
        name=name[:200],
        description=f"snakemake-fedgen job {job.jobid} at site {site.name}",
        inputs=inputs,
        outputs=[staging.tes_output(o) for o in outputs],
        resources=resources_of(job),
        executors=executors,
        tags=tags,
    )
    return TaskPlan(
        site=site,
        task=task,
        job_key=key,
        outputs=outputs,
        benchmarks=benchmarks,
        uploads=uploads,
    )


def _approval_entry(job: Any, logs: list[str]) -> dict[str, Any]:
    """The approval facts of one rule's executor: rule, template id, each field's value.

    Each value is what Snakemake renders the field to in this job (its own formatter), so the
    node rebuilds exactly the command Snakemake produced.
    """
    template = str(job.rule.shellcmd)
    try:
        keys = approval.fields(template)
    except approval.UnapprovedCommand:
        keys = []
    values = {key: str(job.format_wildcards("{" + key + "}")) for key in keys}
    return {
        "kind": "rule",
        "rule": job.rule.name,
        "template": approval.template_id(template),
        "values": values,
        "logs": logs,
    }


def _executor(image: str, command: list[str]) -> TesExecutor:
    return TesExecutor(image=image, command=command, workdir=staging.CONTAINER_ROOT)


def _wildcard_label(job: Any) -> str:
    wc = job.wildcards_dict or {}
    return ",".join(f"{k}={v}" for k, v in wc.items()) or str(job.jobid)


def describe_command(task: TesTask) -> str:
    """Return the task's commands as shell text (for messages)."""
    return "\n".join(shlex.join(e.command) for e in task.executors)
