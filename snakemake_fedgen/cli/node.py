"""``fedgen node``: serve a site's GA4GH TES 1.1 endpoint."""

from __future__ import annotations

import argparse

HELP = "Run a site node: a GA4GH TES 1.1 server that runs tasks next to the site's data."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen node`` flags (each config key has a flag of the same meaning)."""
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8101)")
    parser.add_argument(
        "--state-dir",
        required=True,
        help="directory for the task database, task directories and audit.jsonl",
    )
    parser.add_argument("--config", default=None, help="node.yaml with the keys below")
    parser.add_argument(
        "--read-roots", nargs="+", action="extend", default=None, metavar="DIR",
        help="directories task inputs may be read from (write roots are readable too)",
    )  # fmt: skip
    parser.add_argument(
        "--write-roots", nargs="+", action="extend", default=None, metavar="DIR",
        help="directories task outputs may be written to",
    )  # fmt: skip
    parser.add_argument("--egress-root", default=None, help="outputs here pass the airlock")
    parser.add_argument("--quarantine-dir", default=None, help="default STATE/quarantine")
    parser.add_argument(
        "--allowed-images", nargs="+", action="extend", default=None, metavar="PATTERN",
        help="image allow-list (fnmatch patterns, name@sha256:... pins a digest); empty "
        "accepts every image under bwrap/host, docker/podman refuse to start without one",
    )  # fmt: skip
    parser.add_argument(
        "--runtime", default=None, choices=["auto", "bwrap", "host", "docker", "podman"]
    )
    parser.add_argument("--token-file", default=None, help="YAML mapping 'caller: token'")
    parser.add_argument("--cpu-cores", type=int, default=None, help="cores tasks may use")
    parser.add_argument("--node-id", default=None, help="name of this node in service-info")
    parser.add_argument(
        "--max-task-seconds", type=float, default=None, help="kill tasks running longer"
    )
    parser.add_argument(
        "--allowed-input-hosts", nargs="+", action="extend", default=None, metavar="PATTERN",
        help="hosts (fnmatch on host or host:port) http(s) inputs may be fetched from; "
        "default none",
    )  # fmt: skip
    parser.add_argument(
        "--redact-ids-from", nargs="+", action="extend", default=None, metavar="FILE",
        help="files with the site's sample IDs (VCF, .psam/.fam, phenotype table); these IDs "
        "are replaced by [sample-id] in the task logs callers get",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Load the config, check the runtime and serve until SIGTERM/SIGINT."""
    import logging
    from pathlib import Path

    import uvicorn

    from snakemake_fedgen.node.app import create_app
    from snakemake_fedgen.node.auth import LoopbackAuthenticator, TokenFileAuthenticator
    from snakemake_fedgen.node.config import load_config
    from snakemake_fedgen.node.runtime import make_runtime

    logging.basicConfig(level=logging.INFO, format="fedgen node: %(levelname)s: %(message)s")
    log = logging.getLogger("snakemake_fedgen.node")
    overrides = {
        key: getattr(args, key)
        for key in (
            "host",
            "port",
            "read_roots",
            "write_roots",
            "egress_root",
            "quarantine_dir",
            "allowed_images",
            "runtime",
            "token_file",
            "cpu_cores",
            "node_id",
            "max_task_seconds",
            "redact_ids_from",
            "allowed_input_hosts",
        )
    }
    state_dir = Path(args.state_dir).absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(state_dir, config_file=args.config, overrides=overrides)
    runtime = make_runtime(
        cfg.runtime,
        tool_paths=cfg.tool_paths,
        allowed_images=cfg.allowed_images,
        container_user=cfg.container_user,
        containers_conf=cfg.containers_conf,
    )
    if cfg.token_file is not None:
        authenticator = TokenFileAuthenticator.from_file(cfg.token_file)
    elif not cfg.jwt:
        log.warning("no token_file: every caller is 'anonymous'; serving loopback only.")
        authenticator = LoopbackAuthenticator()
    if cfg.jwt:
        from snakemake_fedgen.governance.node import jwt_authenticator

        fallback = authenticator if cfg.token_file is not None else None
        authenticator = jwt_authenticator(cfg, fallback=fallback)
    if not cfg.allowed_images:
        log.warning("no allowed_images: tasks with any image are accepted.")
    if runtime.name == "host":
        log.warning("runtime host: tasks are not sandboxed (no network or filesystem isolation).")
    if cfg.egress_root is None:
        log.warning("no egress_root: no output can leave this site through the airlock.")
    if not cfg.redact_ids_from:
        log.warning(
            "no redact_ids_from: task logs returned to callers are not checked for sample IDs."
        )
    log.info(
        "serving TES 1.1 at http://%s:%d/ga4gh/tes/v1 (runtime %s, %d core(s))",
        cfg.host,
        cfg.port,
        runtime.name,
        cfg.node_cores,
    )
    app = create_app(cfg, runtime=runtime, authenticator=authenticator)
    # access_log off: request lines are not needed (the audit log has them) and must never
    # carry credentials.
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="warning")
    return 0
