"""The node configuration: ``node.yaml`` keys, the equivalent CLI flags, and their checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError

RUNTIMES = ("auto", "bwrap", "host", "docker", "podman")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def default_tool_paths() -> list[str]:
    """Host paths the sandbox shows read-only so tasks can run ``fedgen`` and Python tools.

    The Python installation of this node (venv and base interpreter) and the directory that
    holds the ``snakemake_fedgen`` package (an editable install imports it from the source tree).
    """
    import snakemake_fedgen

    package_dir = Path(snakemake_fedgen.__file__).resolve().parent
    paths = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}
    paths.add(str(package_dir))
    plugin = package_dir.parent / "snakemake_executor_plugin_fedgen"
    if plugin.is_dir():
        paths.add(str(plugin))
    # Paths already under /usr are visible anyway.
    return sorted(p for p in paths if not p.startswith("/usr/"))


@dataclass
class NodeConfig:
    """Everything a node needs to serve one site.

    Attributes mirror the keys of ``node.yaml`` (and the ``fedgen node`` flags of the same name).
    """

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8101
    node_id: str = "fedgen-node"
    read_roots: list[Path] = field(default_factory=list)
    write_roots: list[Path] = field(default_factory=list)
    egress_root: Path | None = None
    quarantine_dir: Path | None = None
    allowed_images: list[str] = field(default_factory=list)
    runtime: str = "auto"
    token_file: Path | None = None
    cpu_cores: int | None = None
    airlock: dict[str, Any] = field(default_factory=dict)
    max_task_seconds: float | None = None
    max_output_bytes: int = 10 * 1024**3
    max_content_bytes: int = 1024 * 1024
    log_tail_bytes: int = 64 * 1024
    # Files holding the site's sample IDs (VCF, .psam/.fam, phenotype tables): every ID is
    # replaced in the stdout/stderr a task log returns (snakemake_fedgen.node.redact).
    redact_ids_from: list[Path] = field(default_factory=list)
    # Hosts (fnmatch patterns on host or host:port) http(s) task inputs may come from; none by
    # default, since the node fetches from inside the site network.
    allowed_input_hosts: list[str] = field(default_factory=list)
    tool_paths: list[str] = field(default_factory=default_tool_paths)
    # Governance (issue 6, snakemake_fedgen.governance): JWT/Passport auth, visa-gated datasets,
    # Crypt4GH encryption of published egress files for the coordinator's public key.
    jwt: dict[str, Any] = field(default_factory=dict)
    datasets_requiring_visa: dict[str, str] = field(default_factory=dict)
    egress_recipient_key: Path | None = None
    # runtime docker/podman (snakemake_fedgen.node.runtime.EngineRuntime): the uid:gid tasks
    # run as inside the container, and a containers.conf the node hands podman (CONTAINERS_CONF).
    container_user: str = "65534:65534"
    containers_conf: Path | None = None

    @property
    def node_cores(self) -> int:
        """Cores this node may keep busy (configured, never more than the machine has)."""
        machine = os.cpu_count() or 1
        return max(1, min(self.cpu_cores or machine, machine))

    @property
    def db_path(self) -> Path:
        return self.state_dir / "tasks.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    @property
    def tasks_dir(self) -> Path:
        return self.state_dir / "tasks"


_PATH_KEYS = {
    "egress_root",
    "quarantine_dir",
    "token_file",
    "state_dir",
    "egress_recipient_key",
    "containers_conf",
}
_PATH_LIST_KEYS = {"read_roots", "write_roots"}


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
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"node config {source}: unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(known - {'state_dir'}))}."
        )
    data["state_dir"] = state_dir
    return _check(_convert(data, source), source)


def _convert(data: dict[str, Any], source: str) -> NodeConfig:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _PATH_KEYS:
            out[key] = None if value in (None, "") else Path(value).expanduser().absolute()
        elif key in _PATH_LIST_KEYS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"node config {source}: {key} must be a list of directories.")
            out[key] = [Path(v).expanduser().absolute() for v in value]
        elif key == "redact_ids_from":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"node config {source}: redact_ids_from must be a list of files holding "
                    "sample IDs (genotype VCF, .psam/.fam, phenotype table)."
                )
            out[key] = [Path(v).expanduser().absolute() for v in value]
        elif key in ("allowed_images", "tool_paths", "allowed_input_hosts"):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"node config {source}: {key} must be a list of strings.")
            out[key] = list(value)
        elif key in (
            "port",
            "cpu_cores",
            "max_output_bytes",
            "max_content_bytes",
            "log_tail_bytes",
        ):
            try:
                out[key] = int(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"node config {source}: {key} must be an integer, got {value!r}."
                ) from exc
        elif key == "max_task_seconds":
            try:
                out[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"node config {source}: max_task_seconds must be a number, got {value!r}."
                ) from exc
        elif key in ("airlock", "jwt", "datasets_requiring_visa"):
            if not isinstance(value, dict):
                raise ConfigError(f"node config {source}: {key} must be a mapping.")
            out[key] = dict(value)
        else:
            out[key] = value
    return NodeConfig(**out)


def _check(cfg: NodeConfig, source: str) -> NodeConfig:
    if cfg.runtime not in RUNTIMES:
        raise ConfigError(
            f"node config {source}: runtime {cfg.runtime!r} is not one of {', '.join(RUNTIMES)}."
        )
    if cfg.cpu_cores is not None and cfg.cpu_cores < 1:
        raise ConfigError(f"node config {source}: cpu_cores must be >= 1, got {cfg.cpu_cores}.")
    if cfg.max_task_seconds is not None and cfg.max_task_seconds <= 0:
        raise ConfigError(f"node config {source}: max_task_seconds must be > 0.")
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
    if cfg.token_file is None and not cfg.jwt and cfg.host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"node config {source}: refusing to serve on {cfg.host} without a token_file; "
            "set token_file (YAML caller: token) or bind 127.0.0.1."
        )
    return cfg
