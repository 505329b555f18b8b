"""Where a job's files come from and go to, and how finished outputs land on the coordinator.

Inputs: a reference becomes its site URL (same site only), a small coordinator file travels as
TES ``content``; a larger or binary one goes to a fedgen node's ingress first (uploaded before
the task, named ``fedgen-ingress:sha256:<hex>``: :mod:`.tes.ingress`) where the site's node has
one, and is refused elsewhere (Funnel, TESK). Outputs: egress paths go to the site's egress root
and are downloaded after the task (temp file, size and sha256 checked, then renamed); every other
output stays at the site and becomes a reference file at its path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote, unquote, urlparse

from snakemake_executor_plugin_fedgen.crypt import is_encrypted, unseal_download
from snakemake_executor_plugin_fedgen.errors import SiteDataError, StorageError
from snakemake_executor_plugin_fedgen.fileio import AtomicFile, write_text_atomic
from snakemake_executor_plugin_fedgen.reference import Reference, read_reference, write_reference
from snakemake_executor_plugin_fedgen.sites import Site
from snakemake_executor_plugin_fedgen.tes.client import TesClient, egress_too_large
from snakemake_executor_plugin_fedgen.tes.ingress import ingress_digest, ingress_url, is_ingress_url
from snakemake_executor_plugin_fedgen.tes.models import (
    TesExecutorLog,
    TesFileType,
    TesInput,
    TesOutput,
    TesTask,
)
from snakemake_executor_plugin_fedgen.tes.states import TesState
from snakemake_executor_plugin_fedgen.tes.tags import OUTPUT_SHA256_KEY

CONTAINER_ROOT = "/fedgen/work"
# Coordinator files up to this size travel inside the task as `content` (config, sample lists).
MAX_CONTENT_BYTES = 128 * 1024
# The task's last executor prints one line per file output; the coordinator records size and
# sha256 in the reference (and checks downloaded egress files against them).
CHECKSUM_SCRIPT = (
    'for f in "$@"; do '
    'if [ -f "$f" ]; then '
    'printf "fedgen-checksum %s %s %s\\n" "$(stat -c %s -- "$f")" '
    '"$(sha256sum < "$f" | cut -d" " -f1)" "$f"; fi; done'
)
CHECKSUM_PREFIX = "fedgen-checksum "


@dataclass(frozen=True)
class OutputPlan:
    """One output of a task: Snakemake path, site URL, whether it leaves the site."""

    path: str
    url: str
    egress: bool
    is_directory: bool = False


def task_relpath(path: str) -> str:
    """Return ``path`` relative to the workflow directory, refusing paths outside it.

    Raises
    ------
    StorageError
        ``path`` is absolute or climbs out of the working directory.
    """
    rel = os.path.normpath(path)
    if os.path.isabs(rel):
        rel = os.path.relpath(rel, os.getcwd())
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        raise StorageError(
            f"{path} is outside the workflow directory; site jobs see their files at "
            f"{CONTAINER_ROOT}/<relative path>, so use a path inside the working directory."
        )
    return rel


def container_path(path: str) -> str:
    """Return the path of a Snakemake file inside the task."""
    return f"{CONTAINER_ROOT}/{task_relpath(path)}"


@dataclass(frozen=True)
class Upload:
    """A coordinator file the site's ingress must hold before the task is created."""

    path: str
    sha256: str
    size: int


#: ``ingress_limit(site)``: the largest file the site's ingress takes, None without ingress.
IngressLimit = Callable[[Site], "int | None"]


def input_for(
    path: str, *, site: Site, rule: str, ingress_limit: IngressLimit | None = None
) -> tuple[TesInput, str]:
    """Return the TES input for the Snakemake input ``path`` and a fingerprint for the job key.

    A coordinator file too large for content, or binary, becomes an ingress input
    (``fedgen-ingress:sha256:<hex>``; :func:`upload_of` names the upload it needs) where
    ``ingress_limit`` gives the site's ingress cap. Its fingerprint is ``content:<sha256>`` as
    for content, so the job key (and resuming a run) does not depend on how the file travels.

    Raises
    ------
    SiteDataError
        ``path`` refers to data of another site.
    StorageError
        ``path`` is a coordinator file too large (or not text) to send as content, and the site
        has no ingress (or a smaller cap).
    """
    rel = task_relpath(path)
    ref = read_reference(path)
    if ref is not None:
        if ref.site != site.name:
            raise SiteDataError(
                f"rule {rule}: input {rel} is held at site {ref.site}; data of site {ref.site} "
                f"cannot go to site {site.name}. Run this step at site {ref.site} or bring "
                "only summary statistics back through egress."
            )
        spec = TesInput(
            name=rel,
            url=ref.url,
            path=f"{CONTAINER_ROOT}/{rel}",
            type=TesFileType.DIRECTORY if ref.is_directory else TesFileType.FILE,
        )
        return spec, f"ref:{ref.url}:{ref.sha256 or ref.task or ''}"
    p = Path(path)
    if p.is_dir():
        raise StorageError(
            f"rule {rule}: input {rel} is a directory on the coordinator; only files up to "
            f"{MAX_CONTENT_BYTES // 1024} KiB can be sent to site {site.name}. Produce it at the "
            "site instead."
        )
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise StorageError(f"rule {rule}: input {rel} does not exist on the coordinator.") from None
    raw = p.read_bytes() if size <= MAX_CONTENT_BYTES else b""
    if size > MAX_CONTENT_BYTES or not _is_text(raw):
        limit = ingress_limit(site) if ingress_limit is not None else None
        if limit is not None:
            return _ingress_input(p, rel, size=size, limit=limit, site=site, rule=rule)
    if size > MAX_CONTENT_BYTES:
        raise StorageError(
            f"rule {rule}: input {rel} is a {size}-byte coordinator file; only files up to "
            f"{MAX_CONTENT_BYTES // 1024} KiB travel to site {site.name} as task content. Make it "
            "a site dataset (fedgen sites ref) or produce it at the site."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StorageError(
            f"rule {rule}: input {rel} is a binary coordinator file; TES content must be text. "
            "Make it a site dataset or produce it at the site."
        ) from None
    spec = TesInput(name=rel, content=text, path=f"{CONTAINER_ROOT}/{rel}", type=TesFileType.FILE)
    return spec, f"content:{hashlib.sha256(raw).hexdigest()}"


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _ingress_input(
    p: Path, rel: str, *, size: int, limit: int, site: Site, rule: str
) -> tuple[TesInput, str]:
    if size > limit:
        raise StorageError(
            f"rule {rule}: input {rel} is a {size}-byte coordinator file; site {site.name} takes "
            f"uploads up to {limit} bytes (its node's max_ingress_bytes). Make it a site "
            "dataset (fedgen sites ref), produce it at the site, or ask the site for a larger cap."
        )
    sha = hashlib.sha256()
    with p.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    digest = sha.hexdigest()
    spec = TesInput(
        name=rel, url=ingress_url(digest), path=f"{CONTAINER_ROOT}/{rel}", type=TesFileType.FILE
    )
    return spec, f"content:{digest}"


def upload_of(spec: TesInput, path: str) -> Upload | None:
    """The upload an input built by :func:`input_for` needs (None: not an ingress input)."""
    if not spec.url or not is_ingress_url(spec.url):
        return None
    return Upload(path=path, sha256=ingress_digest(spec.url), size=Path(path).stat().st_size)


def output_for(path: str, *, site: Site, rule: str, is_directory: bool = False) -> OutputPlan:
    """Return where the task writes the Snakemake output ``path``.

    Raises
    ------
    StorageError
        ``path`` may leave the site but the site has no ``egress_url``.
    """
    rel = task_relpath(path)
    if site.is_egress(rel):
        if not site.egress_url or not site.egress_read_url:
            raise StorageError(
                f"rule {rule}: output {rel} matches the egress allow-list of site {site.name}, "
                "but the site has no egress_url/egress_read_url in the registry; add them."
            )
        return OutputPlan(rel, _join(site.egress_url, rel), True, is_directory)
    return OutputPlan(rel, _join(site.work_url, rel), False, is_directory)


def tes_output(plan: OutputPlan) -> TesOutput:
    """Return the TES output object for ``plan``."""
    return TesOutput(
        name=plan.path,
        url=plan.url,
        path=f"{CONTAINER_ROOT}/{plan.path}",
        type=TesFileType.DIRECTORY if plan.is_directory else TesFileType.FILE,
    )


class LandingPlan(Protocol):
    """What :func:`land_outputs` needs of a task plan (:class:`~.tasks.TaskPlan`)."""

    @property
    def site(self) -> Site: ...

    @property
    def outputs(self) -> Sequence[OutputPlan]: ...

    @property
    def benchmarks(self) -> Sequence[str]: ...


def _join(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + quote(rel)


# -- after the task ---------------------------------------------------------------------------


def write_site_reference(
    plan: OutputPlan,
    *,
    site: Site,
    task_id: str,
    checksum: tuple[int, str] | None,
) -> None:
    """Write the reference for a site-held output at its coordinator path."""
    size, sha = checksum if checksum else (None, None)
    write_reference(
        plan.path,
        Reference(
            site=site.name,
            url=plan.url,
            size=size,
            sha256=sha,
            task=task_id,
            is_directory=plan.is_directory,
        ),
    )


def fetch_egress(
    plan: OutputPlan,
    *,
    site: Site,
    client: TesClient,
    checksum: tuple[int, str] | None,
    published: tuple[int, str] | None = None,
) -> tuple[int, str]:
    """Download a published output to a temp file, verify it, and rename it into place.

    The coordinator trusts no node: the download stops past the site's ``max_egress_bytes``;
    the bytes must match a hash the node committed to (its ``X-Fedgen-Sha256`` header or
    ``published``, the size/sha256 in the task log) or the task's own ``checksum``, and a
    download with no hash at all is refused; where the registry asks for Crypt4GH, a plaintext
    answer is refused. Returns (size, sha256) of the (decrypted) file.

    Raises
    ------
    StorageError
        The file cannot be read, is too large, unverifiable or does not match; nothing is left
        at the output path. The message names the site.
    """
    if plan.is_directory:
        raise StorageError(
            f"output {plan.path} is a directory; only files can leave site {site.name} "
            "through egress. Write individual summary files instead."
        )
    read_url = _join(site.egress_read_url or "", plan.path)
    download = AtomicFile(plan.path, "wb")
    try:
        with download as sink:
            hashing = _HashingWriter(sink)
            header_sha = None
            limit = site.max_egress_bytes
            if read_url.startswith("file://"):
                with open(unquote(urlparse(read_url).path), "rb") as src:
                    while block := src.read(1 << 20):
                        if hashing.size + len(block) > limit:
                            raise egress_too_large(site.name, read_url, limit)
                        hashing.write(block)
            else:
                headers = client.download(read_url, hashing, max_bytes=limit)
                header_sha = headers.get("X-Fedgen-Sha256")
            sink.flush()
            size, sha = hashing.size, hashing.sha.hexdigest()
            if header_sha is None and published is None and checksum is None:
                raise StorageError(
                    f"site {site.name}: {plan.path} came without any sha256 from the node (no "
                    "X-Fedgen-Sha256 header, none in the task log) and none from the task; an "
                    "unverifiable download is not kept. Ask the site's admin to check the node."
                )
            if published is not None and published != (size, sha):
                raise StorageError(
                    f"site {site.name}: downloaded {plan.path} has size {size} sha256 {sha} but "
                    f"the task log says size {published[0]} sha256 {published[1]}; the file was "
                    "not kept. Rerun the job."
                )
            if site.crypt4gh_recipient_key and not is_encrypted(download.tmp):
                raise StorageError(
                    f"site {site.name}: {plan.path} arrived as plaintext although the registry "
                    "asks this site for Crypt4GH egress (crypt4gh_recipient_key); the file was "
                    "not kept. Ask the site's admin to check the node's Crypt4GH setting."
                )
            # Crypt4GH egress (issue 6): check the ciphertext, decrypt in place (a new file at
            # download.tmp, which the commit moves into place), then compare.
            size, sha, header_sha = unseal_download(
                download.tmp, size=size, sha256=sha, header_sha256=header_sha, site=site
            )
            problems = []
            if header_sha and header_sha.lower() != sha:
                problems.append(f"the node announced sha256 {header_sha}")
            if checksum and (checksum[0] != size or checksum[1] != sha):
                problems.append(f"the task computed size {checksum[0]} sha256 {checksum[1]}")
            if problems:
                raise StorageError(
                    f"site {site.name}: downloaded {plan.path} has size {size} sha256 {sha} but "
                    f"{' and '.join(problems)}; the file was not kept. Rerun the job."
                )
        return size, sha
    except FileNotFoundError:
        raise StorageError(
            f"site {site.name}: published output {plan.path} is not at {read_url}; the airlock "
            "may have refused it (see the site's quarantine) or egress_read_url is wrong."
        ) from None


class _HashingWriter:
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, block: bytes) -> int:
        self.sha.update(block)
        self.size += len(block)
        return self.sink.write(block)

    def restart(self) -> None:
        """Empty the file and the digest, so a cut download can be fetched again."""
        self.sink.seek(0)
        self.sink.truncate()
        self.sha = hashlib.sha256()
        self.size = 0


def write_benchmark(path: str, *, seconds: float | None) -> None:
    """Write a Snakemake benchmark TSV from the task's timing (other columns NA)."""
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    if seconds is None:
        row = "\t".join(["NA"] * 10)
    else:
        h, rem = divmod(int(seconds), 3600)
        m, s = divmod(rem, 60)
        row = "\t".join([f"{seconds:.4f}", f"{h}:{m:02d}:{s:02d}", *(["NA"] * 8)])
    write_text_atomic(path, header + "\n" + row + "\n")


def parse_checksums(stdout: str | None) -> dict[str, tuple[int, str]]:
    """Parse the checksum executor's stdout into {relative path: (size, sha256)}."""
    out: dict[str, tuple[int, str]] = {}
    for line in (stdout or "").splitlines():
        if not line.startswith(CHECKSUM_PREFIX):
            continue
        parts = line[len(CHECKSUM_PREFIX) :].split(" ", 2)
        if len(parts) == 3 and parts[0].isdigit() and len(parts[1]) == 64:
            out[os.path.normpath(parts[2])] = (int(parts[0]), parts[1])
    return out


def node_checksums(task: TesTask) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of the files a fedgen node says it published.

    A fedgen node lists each output's size in ``outputs`` and its sha256 in the task log's
    ``metadata`` (:data:`~snakemake_executor_plugin_fedgen.tes.tags.OUTPUT_SHA256_KEY`); it
    does not return stdout by default, so the checksum executor's lines may be missing.
    """
    attempts = task.logs or []
    if not attempts:
        return {}
    last = attempts[-1]
    try:
        hashes = json.loads((last.metadata or {}).get(OUTPUT_SHA256_KEY, "{}"))
    except ValueError:
        return {}
    if not isinstance(hashes, dict):
        return {}
    prefix = CONTAINER_ROOT + "/"
    out: dict[str, tuple[int, str]] = {}
    for log in last.outputs or []:
        sha = hashes.get(log.path)
        size = str(log.size_bytes or "")
        if (
            isinstance(sha, str)
            and len(sha) == 64
            and size.isdigit()
            and log.path.startswith(prefix)
        ):
            out[os.path.normpath(log.path[len(prefix) :])] = (int(size), sha.lower())
    return out


def executor_logs(task: TesTask) -> list[TesExecutorLog]:
    """Return the executor logs of the task's last attempt (FULL view)."""
    attempts = task.logs or []
    return list(attempts[-1].logs) if attempts else []


def task_seconds(task: TesTask) -> float | None:
    """Return the wall time of the task's last attempt from its RFC 3339 start/end times."""
    from datetime import datetime

    attempts = task.logs or []
    if not attempts:
        return None
    start, end = attempts[-1].start_time, attempts[-1].end_time
    if not start or not end:
        return None
    try:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (t1 - t0).total_seconds())


def land_outputs(
    plan: LandingPlan, task: TesTask, *, client: TesClient
) -> dict[str, tuple[int, str] | None]:
    """Put every output of a COMPLETE task in place on the coordinator.

    Egress outputs are downloaded and verified; site-held outputs become references; benchmark
    files are written from the task's timing. Returns {path: (size, sha256) or None}.
    """
    logs = executor_logs(task)
    checksums = parse_checksums(logs[-1].stdout if logs else None)
    landed: dict[str, tuple[int, str] | None] = {}
    # Downloads first: if one fails, no reference claims the job is done.
    published = node_checksums(task)
    for out in plan.outputs:
        if out.egress:
            # A fedgen node may rewrite an egress file at release (numbers rounded): what it
            # published is what counts; the task's own hash only where the node gave none.
            node_hash = published.get(out.path)
            landed[out.path] = fetch_egress(
                out,
                site=plan.site,
                client=client,
                checksum=None if node_hash else checksums.get(out.path),
                published=node_hash,
            )
    # Site-held files: the task's own checksum lines, else what the node says it published
    # (egress files are checked against the node's header at download instead; a sealed file's
    # published hash is the ciphertext's).
    held = {**published, **checksums}
    for out in plan.outputs:
        if not out.egress:
            write_site_reference(
                out, site=plan.site, task_id=str(task.id), checksum=held.get(out.path)
            )
            landed[out.path] = held.get(out.path)
    for bench in plan.benchmarks:
        write_benchmark(bench, seconds=task_seconds(task))
    return landed


def failure_message(task: TesTask, *, site: str, rule: str, tail_lines: int = 20) -> str:
    """Describe a failed task: site, task id, state, exit code, stderr tail, system logs."""
    state = task.state or TesState.UNKNOWN
    logs = executor_logs(task)
    failing = next((e for e in logs if e.exit_code != 0), logs[-1] if logs else None)
    exit_code = failing.exit_code if failing is not None else None
    lines = [
        f"site {site}: task {task.id} (rule {rule}) ended in state {state}"
        + (f" with exit code {exit_code}" if exit_code not in (None, 0) else "")
        + "."
    ]
    stderr = ((failing.stderr if failing is not None else None) or "").rstrip()
    if stderr:
        tail = stderr.splitlines()[-tail_lines:]
        lines.append(f"stderr (last {len(tail)} lines):")
        lines.extend("    " + line for line in tail)
    elif failing is not None and failing.stderr is None:
        lines.append(
            f"the site keeps task logs; its steward can show them (fedgen node logs {task.id}) "
            "or list you under caller_logs."
        )
    attempts = task.logs or []
    system = [s for a in attempts for s in (a.system_logs or [])]
    if system:
        lines.append("site system log: " + " | ".join(system[-3:]))
    return "\n".join(lines)


def refuse_local_reads(dag: Any, *, site_of: Any) -> None:
    """Refuse, before anything runs, localrules that would read data held at a site.

    A local job (not a plain target rule like ``all``) may read coordinator files and egress
    outputs only. Its input is site data if it exists here as a reference, or if a site job
    produces it and the path is not on that site's egress allow-list.

    Raises
    ------
    SiteDataError
        Naming the rule, the file and the site that holds it.
    """
    # Sorted, so the same workflow always reports the same first offender.
    for job in sorted(dag.local_needrun_jobs, key=lambda j: (j.rule.name, j.jobid)):
        if job.rule.norun:
            continue
        producers = dag.dependencies.get(job, {})
        for f in job.input:
            site_name = None
            producer = next((dep for dep, files in producers.items() if f in files), None)
            if producer is not None and not producer.is_local:
                site = site_of(producer)
                if not site.is_egress(task_relpath(str(f))):
                    site_name = site.name
            elif producer is None and (ref := read_reference(str(f))) is not None:
                site_name = ref.site
            if site_name is not None:
                raise SiteDataError(
                    f"localrule {job.rule.name} reads {f}, which is held at site {site_name}; "
                    "only egress outputs (the site's egress_allow) reach the coordinator. Run "
                    f"that step at site {site_name}, or read a summary that may leave the site."
                )
