"""The node configuration: ONE typed model, read from ``node.yaml`` and from ``fedgen node`` flags.

:class:`NodeConfig` is the single list of settings. Each field is a ``node.yaml`` key and a
``fedgen node serve`` flag of the same name (``max_task_seconds`` -> ``--max-task-seconds``):
:func:`add_config_flags` generates the flags from the fields (the field's ``description`` is the
``--help`` text, a :class:`Setting` marker may add a metavar, a YAML-only switch and the wording
of type errors), :func:`config_overrides` reads them back, and :func:`load_config` merges file
and flags, validates types with pydantic and then checks what needs the file system (roots
exist, egress inside a write root, ...). Adding a setting is adding one field.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticUndefined
from snakemake_executor_plugin_fedgen.errors import ConfigError

if TYPE_CHECKING:
    from snakemake_fedgen.beacon.config import BeaconSettings
    from snakemake_fedgen.egress.privacy import PrivacySettings

Runtime = Literal["auto", "bwrap", "host", "docker", "podman", "slurm"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def default_tool_paths() -> list[str]:
    """Host paths the sandbox shows read-only so tasks can run ``fedgen`` and Python tools.

    The Python installation of this node (venv and base interpreter) and the directories that
    hold the ``snakemake_fedgen`` and ``snakemake_executor_plugin_fedgen`` packages (an editable
    install imports them from the source tree).
    """
    import snakemake_executor_plugin_fedgen

    import snakemake_fedgen

    paths = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}
    for package in (snakemake_fedgen, snakemake_executor_plugin_fedgen):
        paths.add(str(Path(package.__file__ or ".").resolve().parent))
    # Paths already under /usr are visible anyway.
    return sorted(p for p in paths if not p.startswith("/usr/"))


@dataclass(frozen=True)
class Setting:
    """How a :class:`NodeConfig` field appears besides its YAML key (``Annotated`` metadata).

    Attributes
    ----------
    metavar
        Placeholder in ``--help`` (e.g. ``DIR``).
    flag
        False: a ``node.yaml`` key only (no command-line flag).
    expected
        What the value must be, for type errors ("a list of directories").
    """

    metavar: str | None = None
    flag: bool = True
    expected: str | None = None


def _listify(value: Any) -> Any:
    """A single string where a list is expected is a one-element list."""
    return [value] if isinstance(value, str | Path) else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()


def _absolute_all(paths: list[Path]) -> list[Path]:
    return [_absolute(p) for p in paths]


AbsPath = Annotated[Path, AfterValidator(_absolute)]
OptionalAbsPath = Annotated[AbsPath | None, BeforeValidator(_blank_is_none)]
AbsPathList = Annotated[list[Path], BeforeValidator(_listify), AfterValidator(_absolute_all)]
StrList = Annotated[list[str], BeforeValidator(_listify)]


class NodeConfig(BaseModel):
    """Everything a node needs to serve one site.

    Fields are the keys of ``node.yaml`` and the ``fedgen node`` flags of the same name
    (``state_dir`` is the ``--state-dir`` argument only).
    """

    model_config = ConfigDict(extra="forbid", validate_default=False)

    state_dir: Annotated[Path, Setting(flag=False)] = Field(
        description="directory for the task database, task directories and audit.jsonl"
    )
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8101, description="port to bind")
    node_id: str = Field("fedgen-node", description="name of this node in service-info")
    read_roots: Annotated[AbsPathList, Setting("DIR", expected="a list of directories")] = Field(
        default_factory=list,
        description="directories task inputs may be read from (write roots are readable too)",
    )
    write_roots: Annotated[AbsPathList, Setting("DIR", expected="a list of directories")] = Field(
        default_factory=list, description="directories task outputs may be written to"
    )
    egress_root: Annotated[OptionalAbsPath, Setting("DIR")] = Field(
        None, description="outputs here pass the airlock (must lie inside a write root)"
    )
    quarantine_dir: Annotated[OptionalAbsPath, Setting("DIR")] = Field(
        None, description="where refused egress files are kept (default STATE/quarantine)"
    )
    allowed_images: Annotated[StrList, Setting("PATTERN")] = Field(
        default_factory=list,
        description="image allow-list (fnmatch patterns); empty accepts every image",
    )
    runtime: Runtime = Field(
        "auto",
        description="how tasks run (auto: bwrap where it works; slurm: each executor is a "
        "Slurm job running the bwrap sandbox, see the slurm key)",
    )
    slurm: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict,
        description="runtime slurm: {task_root (required: an existing directory on the shared "
        "file system), partition, account, options (extra sbatch options), poll_seconds, conf "
        "(slurm.conf for the client commands)}",
    )
    token_file: Annotated[OptionalAbsPath, Setting("FILE")] = Field(
        None, description="YAML mapping 'caller: token'"
    )
    cpu_cores: int | None = Field(
        None, description="cores tasks may keep busy (default and maximum: all)"
    )
    airlock: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict, description="disclosure policy of the airlock (min_n, min_mac, ...)"
    )
    max_task_seconds: float | None = Field(
        None, description="kill tasks running longer (SYSTEM_ERROR with the reason)"
    )
    max_output_bytes: int = Field(
        10 * 1024**3, description="total size of one task's outputs (also caps http inputs)"
    )
    max_content_bytes: int = Field(1024 * 1024, description="largest inline `content` input")
    log_tail_bytes: int = Field(
        64 * 1024, description="stdout/stderr kept in the task log per executor"
    )
    redact_ids_from: Annotated[
        AbsPathList,
        Setting(
            "FILE",
            expected="a list of files holding sample IDs (genotype VCF, .psam/.fam, phenotype "
            "table)",
        ),
    ] = Field(
        default_factory=list,
        description="files with the site's sample IDs (VCF, .psam/.fam, phenotype table); these "
        "IDs are replaced by [sample-id] in the task logs callers get",
    )
    allowed_input_hosts: Annotated[StrList, Setting("PATTERN")] = Field(
        default_factory=list,
        description="hosts (fnmatch on host or host:port) http(s) inputs may be fetched from; "
        "default none",
    )
    tool_paths: Annotated[StrList, Setting("PATH")] = Field(
        default_factory=default_tool_paths,
        description="host paths visible read-only in the sandbox (default: this Python "
        "installation and the fedgen packages)",
    )
    task_user: str | None = Field(
        None,
        description="unprivileged user (name or uid[:gid]) tasks run as when the node runs as "
        "root; default nobody, except runtime host, which refuses to start as root without one",
    )
    # Governance (snakemake_fedgen.governance): JWT/Passport auth, visa-gated datasets,
    # Crypt4GH encryption of published egress files for the coordinator's public key.
    jwt: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict,
        description="JWT/GA4GH Passport authentication: {jwks, issuer, audience, ...}",
    )
    datasets_requiring_visa: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict, description="input URL prefix -> dataset id that needs a visa"
    )
    egress_recipient_key: Annotated[OptionalAbsPath, Setting("FILE")] = Field(
        None, description="Crypt4GH public key published egress files are encrypted for"
    )
    containers_conf: Annotated[OptionalAbsPath, Setting("FILE")] = Field(
        None, description="containers.conf the node hands podman (CONTAINERS_CONF)"
    )
    caller_logs: Annotated[StrList, Setting("CALLER")] = Field(
        default_factory=list,
        description="callers (token-file names or area names) that get their tasks' stdout/"
        "stderr and system_logs, redacted; everyone else gets state, exit codes and fixed "
        "reasons only",
    )
    release: Literal["auto", "review"] = Field(
        "auto",
        description="auto: files the airlock accepts are published at once; review: they wait "
        "for the steward (fedgen node release list/approve/deny)",
    )
    review_poll_seconds: float = Field(
        1.0, description="how often a task held for review looks for the steward's decision"
    )
    # Approved code (node/approvals.py).
    approved_code: Literal["off", "required"] = Field(
        "off",
        description="required: a task runs only if each command is a template of a workflow "
        "release the steward approved (fedgen node approve) rendered with safe values; off: "
        "any command runs (service-info, the start-up log and every egress record say so)",
    )
    # Secure aggregation done by the node (exact/site_masking.py).
    secure_aggregation_key: Annotated[OptionalAbsPath, Setting("FILE")] = Field(
        None,
        description="the site's X25519 private key (fedgen exact keygen); with it the node "
        "masks plain aggregates for secure-aggregation rounds and refuses task-made masked "
        "uploads. Keep it outside every read root",
    )
    secure_aggregation_peers: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict,
        description="site name -> public_key_x25519 of every participant, this site included, "
        "pinned by the steward after checking each with its site",
    )
    # Differential privacy for released summary statistics (egress/privacy.py).
    differential_privacy: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict,
        description="epsilon, delta per release and total_epsilon, total_delta per dataset "
        "(optional: trait_bound, min_maf): the node adds Gaussian noise to every released "
        "summary-statistics table and refuses releases past the budget; empty: off",
    )
    # Differencing control (egress/facts.py sample sets, the ledger in the task database).
    sample_sets: Literal["optional", "required"] = Field(
        "optional",
        description="required: egress only from tasks whose inputs trace back to exactly one "
        "registered sample set (fedgen node dataset sample-set)",
    )
    min_set_difference: int = Field(
        10,
        description="a release whose sample set differs from an earlier release's of the same "
        "dataset by fewer samples (but not 0) is refused: the pair would single them out",
    )
    # Network clients (node/guard.py, node/protocol.py).
    allowed_hosts: Annotated[StrList, Setting("NAME")] = Field(
        default_factory=list,
        description="Host header names besides loopback and the bind address (a node behind "
        "a reverse proxy lists its public names)",
    )
    max_request_bytes: int = Field(
        8 * 1024**2, description="largest request body (CreateTask); larger ones are answered 413"
    )
    header_timeout_seconds: float = Field(
        10.0, description="a connection whose request headers take longer is closed"
    )
    body_timeout_seconds: float = Field(
        30.0, description="a request body that takes longer to arrive is answered 408"
    )
    # Resource limits per task and per caller (exhaustion by a caller with a token).
    max_task_disk_gb: float = Field(
        100,
        description="scratch disk quota of a task: resources.disk_gb, at most this (also the "
        "default); past it the task is killed (SYSTEM_ERROR)",
    )
    max_task_ram_gb: float | None = Field(
        None,
        description="memory limit of a task: resources.ram_gb, at most this (also the default); "
        "default: no cap beyond the machine",
    )
    disk_check_seconds: float = Field(
        1.0, description="how often a running task's scratch usage and the free disk are checked"
    )
    min_free_disk_mb: int = Field(
        512,
        description="free space kept under the state directory: below it tasks are stopped "
        "and CreateTask answers 507",
    )
    # Ingress (node/ingress.py): larger coordinator inputs uploaded before the task.
    max_ingress_bytes: int = Field(
        256 * 1024**2,
        description="largest file one PUT /fedgen/v1/ingress/SHA256 accepts; larger ones are "
        "answered 413 and nothing is kept (0: no ingress endpoint)",
    )
    max_ingress_bytes_per_caller: int = Field(
        1024**3,
        description="total size of one caller's ingress files; an upload past it is answered "
        "413 and nothing is kept",
    )
    ingress_keep_days: float = Field(
        7.0,
        description="ingress files neither uploaded again nor used by a task for this long are "
        "removed (checked at start and on every upload)",
    )
    ingress_timeout_seconds: float = Field(
        600.0, description="an ingress upload whose body takes longer is answered 408"
    )
    max_queued_per_caller: int = Field(
        1000, description="tasks one caller may have waiting; more are answered 429"
    )
    max_running_per_caller: int | None = Field(
        None, description="tasks one caller may have running at once (default: no limit)"
    )
    # Discovery (snakemake_fedgen/beacon, docs/discovery.md).
    beacon: Annotated[dict[str, Any], Setting("YAML")] = Field(
        default_factory=dict,
        description="Beacon v2 under /api: {id, name, organization: {id, name}, min_cell "
        "(default: airlock min_cell, else 5), datasets: {ID: {name, description, genotypes "
        "(indexed .vcf.gz/.bcf), assembly, phenotypes (table) or phenopackets (folder), columns, "
        "visa, granularity: {anonymous, authenticated, visa}}}, budget: {...}, counts: {enabled, "
        "epsilon, total_epsilon, requesters}}; empty: no Beacon",
    )

    @property
    def node_cores(self) -> int:
        """Cores this node may keep busy (configured, never more than the machine has; under
        runtime slurm the cores of the cluster it keeps busy, ``cpu_cores`` as given)."""
        machine = os.cpu_count() or 1
        if self.runtime == "slurm" and self.cpu_cores:
            return self.cpu_cores
        return max(1, min(self.cpu_cores or machine, machine))

    @property
    def db_path(self) -> Path:
        return self.state_dir / "tasks.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    @property
    def tasks_dir(self) -> Path:
        """Task directories: STATE/tasks, or ``slurm.task_root`` (shared with the cluster)."""
        if self.runtime == "slurm" and self.slurm.get("task_root"):
            return Path(self.slurm["task_root"]).expanduser().absolute()
        return self.state_dir / "tasks"


def _setting(name: str) -> Setting:
    for meta in NodeConfig.model_fields[name].metadata:
        if isinstance(meta, Setting):
            return meta
    return Setting()


#: The node.yaml keys (every field but ``state_dir``).
CONFIG_KEYS: tuple[str, ...] = tuple(k for k in NodeConfig.model_fields if k != "state_dir")


# -- reading ------------------------------------------------------------------------------------


def load_config(
    state_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build and check a :class:`NodeConfig` from ``node.yaml`` and CLI overrides.

    Parameters
    ----------
    state_dir
        Directory holding the task database, task directories and the audit log.
    config_file
        Optional YAML file with the keys of :class:`NodeConfig`.
    overrides
        Values from CLI flags; ``None`` values are ignored. They win over the file.

    Raises
    ------
    ConfigError
        One message naming the file (or "command line"), the key and the fix.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"node config {path}: cannot read it ({exc.strerror}).") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"node config {path}: not valid YAML ({exc}).") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"node config {path}: expected a mapping of keys, got {loaded!r}.")
        data.update(loaded)
        source = str(path)
    else:
        source = "command line"
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    unknown = sorted(str(k) for k in set(data) - set(CONFIG_KEYS))
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            named.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ConfigError(
            f"node config {source}: unknown key(s) {', '.join(named)}; "
            f"known keys are {', '.join(sorted(CONFIG_KEYS))}."
        )
    try:
        cfg = NodeConfig.model_validate({**data, "state_dir": state_dir})
    except ValidationError as exc:
        raise ConfigError(f"node config {source}: {_type_problem(exc)}") from None
    return _check(cfg, source)


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "list": "a list",
    "dict": "a mapping",
    "string": "a string",
    "path": "a path",
}


def _type_problem(exc: ValidationError) -> str:
    """The first problem of a config that does not parse: ``key must be <expected>, got <v>.``"""
    err = exc.errors(include_url=False)[0]
    key = str(err["loc"][0]) if err["loc"] else "?"
    given = err.get("input")
    if err["type"] == "literal_error" and key == "runtime":
        return f"runtime {given!r} is not one of {', '.join(RUNTIMES)}."
    expected = _setting(key).expected if key in NodeConfig.model_fields else None
    if expected is None:
        kind = str(err["type"]).split("_")[0]
        expected = _EXPECTED.get(kind)
    if expected is None:
        return f"{key}: {err['msg']}, got {given!r}."
    return f"{key} must be {expected}, got {given!r}."


#: Lower bounds of numeric settings: key -> (strictly greater, bound). None means "not set".
_LOWER_BOUNDS: dict[str, tuple[bool, float]] = {
    "cpu_cores": (False, 1),
    "max_task_seconds": (True, 0),
    "max_task_disk_gb": (True, 0),
    "max_task_ram_gb": (True, 0),
    "disk_check_seconds": (True, 0),
    "header_timeout_seconds": (True, 0),
    "body_timeout_seconds": (True, 0),
    "min_free_disk_mb": (False, 0),
    "max_queued_per_caller": (False, 1),
    "max_running_per_caller": (False, 1),
    "max_request_bytes": (False, 1),
    "max_ingress_bytes": (False, 0),
    "max_ingress_bytes_per_caller": (False, 0),
    "ingress_keep_days": (True, 0),
    "ingress_timeout_seconds": (True, 0),
    "min_set_difference": (False, 1),
}


def privacy_settings(cfg: NodeConfig, source: str = "node.yaml") -> PrivacySettings | None:
    """The ``differential_privacy`` block as settings, or None when it is off.

    Raises
    ------
    ConfigError
        An unknown key, a missing one, or a value out of range (named).
    """
    from snakemake_fedgen.egress.privacy import PrivacySettings

    block = cfg.differential_privacy
    if not block:
        return None
    required = ("epsilon", "delta", "total_epsilon", "total_delta")
    known = (*required, "trait_bound", "min_maf")
    unknown = sorted(str(k) for k in block if k not in known)
    missing = [k for k in required if k not in block]
    if unknown or missing:
        raise ConfigError(
            f"node config {source}: differential_privacy: "
            + (f"unknown key(s) {', '.join(unknown)}; " if unknown else "")
            + (f"missing {', '.join(missing)}; " if missing else "")
            + f"keys are {', '.join(known)}"
        )
    values = {}
    for key, value in block.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(
                f"node config {source}: differential_privacy.{key} must be a number > 0; "
                f"got {value!r}"
            )
        values[key] = float(value)
    if values["delta"] >= 1 or values["total_delta"] >= 1 or values.get("min_maf", 0.05) >= 0.5:
        raise ConfigError(
            f"node config {source}: differential_privacy: delta and total_delta must be below "
            "1 and min_maf below 0.5"
        )
    if values["epsilon"] > values["total_epsilon"] or values["delta"] > values["total_delta"]:
        raise ConfigError(
            f"node config {source}: differential_privacy: one release (epsilon, delta) exceeds "
            "the total budget"
        )
    return PrivacySettings(**values)


@dataclass(frozen=True)
class SlurmSettings:
    """The ``slurm`` block of node.yaml (runtime slurm), checked.

    Attributes
    ----------
    task_root
        Existing directory on the file system the compute nodes share with the node; task
        directories live here instead of STATE/tasks.
    partition, account
        Where jobs go (None: the cluster's default partition, no account).
    options
        Further sbatch options the steward vetted (callers never add any).
    poll_seconds
        Seconds between the node's squeue queries (one query for all its jobs).
    conf
        slurm.conf for sbatch/squeue/scancel/scontrol/sinfo (SLURM_CONF), None: the default.
    """

    task_root: Path
    partition: str | None = None
    account: str | None = None
    options: tuple[str, ...] = ()
    poll_seconds: float = 2.0
    conf: Path | None = None


SLURM_KEYS = ("task_root", "partition", "account", "options", "poll_seconds", "conf")


def slurm_settings(cfg: NodeConfig, source: str = "node.yaml") -> SlurmSettings:
    """The ``slurm`` block as :class:`SlurmSettings`.

    Raises
    ------
    ConfigError
        An unknown key, a missing or non-existing task_root, a value of the wrong type (named).
    """
    block = cfg.slurm
    where = f"node config {source}: slurm"
    unknown = sorted(str(k) for k in block if k not in SLURM_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(SLURM_KEYS)}."
        )
    root = block.get("task_root")
    if not root:
        raise ConfigError(
            f"{where}.task_root is not set; runtime slurm keeps task directories on a file "
            "system the compute nodes share: create one (e.g. /shared/fedgen-tasks) and set "
            "slurm: {task_root: ...} in node.yaml."
        )
    task_root = Path(str(root)).expanduser().absolute()
    if not task_root.is_dir():
        raise ConfigError(
            f"{where}.task_root {task_root} is not an existing directory; create it on the "
            "file system the compute nodes share (and mount it there at the same path)."
        )
    if any(c in str(task_root) for c in "%\\\n"):
        raise ConfigError(
            f"{where}.task_root {task_root} contains '%', '\\' or a newline, which sbatch "
            "reads as file name patterns; choose a plain path."
        )
    texts: dict[str, str | None] = {}
    for key in ("partition", "account"):
        value = block.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where}.{key} must be a name (a string), got {value!r}.")
        texts[key] = value
    options = block.get("options") or []
    if isinstance(options, str) or not all(
        isinstance(o, str) and o.startswith("--") for o in options
    ):
        raise ConfigError(
            f"{where}.options must be a list of long sbatch options ('--qos=normal'), got "
            f"{options!r}."
        )
    poll = block.get("poll_seconds", 2.0)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not poll > 0:
        raise ConfigError(f"{where}.poll_seconds must be a number > 0, got {poll!r}.")
    conf = block.get("conf")
    conf_path = Path(str(conf)).expanduser().absolute() if conf else None
    if conf_path is not None and not conf_path.is_file():
        raise ConfigError(f"{where}.conf {conf_path} is not a file; name the site's slurm.conf.")
    return SlurmSettings(
        task_root=task_root.resolve(),
        partition=texts["partition"],
        account=texts["account"],
        options=tuple(options),
        poll_seconds=float(poll),
        conf=conf_path,
    )


def beacon_config(cfg: NodeConfig, source: str = "node.yaml") -> BeaconSettings | None:
    """The ``beacon`` block as settings (None: no Beacon); ConfigError names the key."""
    from snakemake_fedgen.beacon.config import beacon_settings

    min_cell = cfg.airlock.get("min_cell")
    return beacon_settings(
        cfg.beacon,
        read_roots=[*cfg.read_roots, *cfg.write_roots],
        airlock_min_cell=min_cell if isinstance(min_cell, int) else None,
        source=source,
    )


def _check(cfg: NodeConfig, source: str) -> NodeConfig:
    """What types cannot say: ranges, existing directories, egress inside a write root, ..."""
    for key, (strict, bound) in _LOWER_BOUNDS.items():
        value = getattr(cfg, key)
        if value is not None and (value <= bound if strict else value < bound):
            op = ">" if strict else ">="
            raise ConfigError(f"node config {source}: {key} must be {op} {bound}, got {value}.")
    for root in [*cfg.read_roots, *cfg.write_roots]:
        if not root.is_dir():
            raise ConfigError(
                f"node config {source}: root {root} is not an existing directory; "
                "create it or fix read_roots/write_roots."
            )
    cfg.read_roots = [r.resolve() for r in cfg.read_roots]
    cfg.write_roots = [r.resolve() for r in cfg.write_roots]
    if cfg.egress_root is not None:
        cfg.egress_root.mkdir(parents=True, exist_ok=True)
        cfg.egress_root = cfg.egress_root.resolve()
        if not any(cfg.egress_root.is_relative_to(w) for w in cfg.write_roots):
            raise ConfigError(
                f"node config {source}: egress_root {cfg.egress_root} must be inside one of the "
                "write_roots; add its parent to write_roots."
            )
    privacy_settings(cfg, source)
    if cfg.runtime == "slurm" or cfg.slurm:
        slurm_settings(cfg, source)
    from snakemake_fedgen.egress.airlock import AirlockPolicy

    try:
        AirlockPolicy.from_mapping(cfg.airlock)
    except ConfigError as exc:
        raise ConfigError(f"node config {source}: airlock: {exc}") from exc
    for path in cfg.redact_ids_from:
        if not path.is_file():
            raise ConfigError(
                f"node config {source}: redact_ids_from: {path} is not a file; list the site's "
                "genotype VCF, .psam/.fam or phenotype table (or remove the entry)."
            )
    if cfg.quarantine_dir is None:
        cfg.quarantine_dir = cfg.state_dir / "quarantine"
    if cfg.token_file is not None and not cfg.token_file.is_file():
        raise ConfigError(f"node config {source}: token_file {cfg.token_file} does not exist.")
    from snakemake_fedgen.governance.node import check_node_config

    check_node_config(cfg, source)
    beacon_config(cfg, source)
    if cfg.token_file is None and not cfg.jwt and cfg.host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"node config {source}: refusing to serve on {cfg.host} without a token_file; "
            "set token_file (YAML caller: token) or bind 127.0.0.1."
        )
    return cfg


# -- command-line flags -----------------------------------------------------------------------


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the value type, is a list) of a field annotation, with Optional/Annotated removed."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        elif origin is list:
            return get_args(annotation)[0], True
        else:
            return annotation, False


def _yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a flag value given as an inline YAML mapping (``'{min_n: 100}'``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a YAML mapping such as '{key: value}'")
    return value


def flag_of(key: str) -> str:
    """The command-line flag of a node.yaml key (``max_task_seconds`` -> ``--max-task-seconds``)."""
    return "--" + key.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`NodeConfig` field (help from the field's description).

    Every flag defaults to None, so :func:`config_overrides` passes on only what was given.
    """
    for key in CONFIG_KEYS:
        setting = _setting(key)
        if not setting.flag:
            continue
        field = NodeConfig.model_fields[key]
        value_type, is_list = _base_type(field.annotation)
        help_text = field.description or ""
        if field.default_factory is None and field.default not in (None, "", PydanticUndefined):
            help_text += f" (default {field.default})"
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": key}
        if setting.metavar:
            kwargs["metavar"] = setting.metavar
        if get_origin(value_type) is Literal:
            kwargs["choices"] = list(get_args(value_type))
        elif value_type in (int, float):
            kwargs["type"] = value_type
            kwargs.setdefault("metavar", "N")
        elif value_type is dict or get_origin(value_type) is dict:
            kwargs["type"] = _yaml_mapping
            kwargs["help"] = help_text + "; an inline YAML mapping"
        if is_list:
            kwargs.update(nargs="+", action="extend")
        parser.add_argument(flag_of(key), **kwargs)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the config flags in parsed ``args`` (None where a flag was not given)."""
    return {key: getattr(args, key, None) for key in CONFIG_KEYS if _setting(key).flag}
