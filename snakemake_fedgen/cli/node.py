"""``fedgen node``: serve a site's GA4GH TES 1.1 endpoint."""

from __future__ import annotations

import argparse

HELP = "Run a site node: a GA4GH TES 1.1 server that runs tasks next to the site's data."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen node`` flags: one per node.yaml key, generated from ``NodeConfig``."""
    from snakemake_fedgen.node.config import add_config_flags

    parser.add_argument(
        "--state-dir",
        required=True,
        help="directory for the task database, task directories and audit.jsonl",
    )
    parser.add_argument(
        "--config", default=None, help="node.yaml with the keys below (flags win over it)"
    )
    add_config_flags(parser)


def run(args: argparse.Namespace) -> int:
    """Load the config, check the runtime and serve until SIGTERM/SIGINT."""
    import logging
    from pathlib import Path

    import uvicorn

    from snakemake_fedgen.node.app import create_app
    from snakemake_fedgen.node.auth import make_authenticator
    from snakemake_fedgen.node.config import config_overrides, load_config
    from snakemake_fedgen.node.runtime import make_runtime

    logging.basicConfig(level=logging.INFO, format="fedgen node: %(levelname)s: %(message)s")
    log = logging.getLogger("snakemake_fedgen.node")
    state_dir = Path(args.state_dir).absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(state_dir, config_file=args.config, overrides=config_overrides(args))
    runtime = make_runtime(
        cfg.runtime,
        tool_paths=cfg.tool_paths,
        allowed_images=cfg.allowed_images,
        containers_conf=cfg.containers_conf,
    )
    authenticator = make_authenticator(cfg)
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
