"""``fedgen node``: serve a site's GA4GH TES 1.1 endpoint; ``fedgen node release|logs``: the
steward's commands against a node's state directory."""

from __future__ import annotations

import argparse

HELP = "Run a site node: a GA4GH TES 1.1 server that runs tasks next to the site's data."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen node`` flags: one per node.yaml key, generated from ``NodeConfig``."""
    from snakemake_fedgen.node.config import add_config_flags

    parser.add_argument(
        "--state-dir",
        default=None,
        help="directory for the task database, task directories and audit.jsonl (required)",
    )
    parser.add_argument(
        "--config", default=None, help="node.yaml with the keys below (flags win over it)"
    )
    add_config_flags(parser)
    # The steward's commands; without one, `fedgen node` serves.
    steward = parser.add_subparsers(
        dest="node_action", metavar="[approve|approvals|release|logs|dataset]"
    )
    approve_wf = steward.add_parser(
        "approve",
        help="show a workflow release's rule templates as shell; with --yes approve them",
    )
    approve_wf.add_argument(
        "workflow", help="the workflow's directory (or a Workflow RO-Crate directory or zip)"
    )
    approve_wf.add_argument(
        "--yes", action="store_true", help="record the release as approved (after reading it)"
    )
    approve_wf.add_argument("--by", default=None, help="who approves (default: the login name)")
    approvals = steward.add_parser("approvals", help="the workflow releases approved here")
    release = steward.add_parser(
        "release", help="review egress a node holds (release: review): list, approve, deny"
    )
    actions = release.add_subparsers(dest="release_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="releases waiting for review (--history: every one)")
    listing.add_argument("--history", action="store_true", help="also decided and ended releases")
    approve = actions.add_parser("approve", help="publish a held release")
    approve.add_argument("task", help="task id (from `fedgen node release list`)")
    deny = actions.add_parser("deny", help="refuse a held release; the task fails with the reason")
    deny.add_argument("task", help="task id (from `fedgen node release list`)")
    deny.add_argument("--reason", required=True, help="why (returned to the caller)")
    for p in (approve, deny):
        p.add_argument("--by", default=None, help="who decides (default: the login name)")
    logs = steward.add_parser(
        "logs", help="a task's full logs as the site keeps them (stdout, stderr, system_logs)"
    )
    logs.add_argument("task", help="task id")
    dataset = steward.add_parser(
        "dataset",
        help="register a dataset's facts (samples, variants) that every release is checked on",
    )
    ds_actions = dataset.add_subparsers(dest="dataset_action", metavar="ACTION", required=True)
    register = ds_actions.add_parser(
        "register", help="read a dataset's genotypes (and reference panel) and record its facts"
    )
    register.add_argument("name", help="dataset name (letters, digits, . _ -)")
    register.add_argument(
        "--genotypes",
        required=True,
        help="the site's genotypes: a .vcf.gz/.bcf, a folder of them (one per chromosome), or a "
        "PLINK 1/2 fileset (.bed/.pgen or its folder): samples and variants",
    )
    register.add_argument(
        "--variants",
        action="append",
        default=[],
        metavar="FILE",
        help="further variants released results may name, e.g. the reference panel the site "
        "imputes from (repeatable)",
    )
    sample_set = ds_actions.add_parser(
        "sample-set",
        help="register a fixed sample set (a PLINK keep file under a read root) studies run on",
    )
    sample_set.add_argument("name", help="sample set name (letters, digits, . _ -)")
    sample_set.add_argument("--dataset", required=True, help="the registered dataset it is of")
    sample_set.add_argument(
        "--keep", required=True, help="PLINK keep file (IID, or FID IID per line) tasks read"
    )
    ds_list = ds_actions.add_parser("list", help="the registered datasets and sample sets")
    for p in (approve_wf, approvals, listing, approve, deny, logs, register, sample_set, ds_list):
        p.add_argument("--state-dir", required=True, help="the node's state directory")


def run(args: argparse.Namespace) -> int:
    """Serve (no action), or run the steward's ``release``/``logs`` action."""
    if args.node_action in ("approve", "approvals"):
        return _approve(args)
    if args.node_action == "release":
        return _release(args)
    if args.node_action == "logs":
        return _logs(args)
    if args.node_action == "dataset":
        return _dataset(args)
    if args.state_dir is None:
        raise SystemExit("fedgen node: error: the following arguments are required: --state-dir")
    return _serve(args)


def _approve(args: argparse.Namespace) -> int:
    """Show (and with --yes record) a workflow release, or list the approved ones."""
    import getpass
    from pathlib import Path

    from snakemake_fedgen.node.approvals import approve, approved_releases, describe, read_release

    state_dir = Path(args.state_dir)
    if args.node_action == "approvals":
        for r in approved_releases(state_dir):
            print(f"{r.digest}  {len(r.templates)} templates  approved {r.approved} by {r.by}")
            print(f"  from {r.source}")
        return 0
    release = read_release(Path(args.workflow))
    print(describe(release))
    if not args.yes:
        print(
            "\nnot recorded: read the commands above, then run again with --yes to approve "
            "this release"
        )
        return 0
    done = approve(state_dir, Path(args.workflow), by=args.by or getpass.getuser())
    print(
        f"\napproved release {done.digest} ({len(done.templates)} templates) by {done.by}; "
        "nodes with approved_code: required run its commands from now on"
    )
    return 0


def _release(args: argparse.Namespace) -> int:
    """List or decide held releases in the node's task database (the running node polls it)."""
    import getpass
    from pathlib import Path

    from snakemake_fedgen.node.steward import decide, describe, held

    state_dir = Path(args.state_dir)
    if args.release_action == "list":
        print(describe(held(state_dir, everything=args.history)))
        return 0
    by = args.by or getpass.getuser()
    if args.release_action == "approve":
        decide(state_dir, args.task, approve=True, by=by)
        print(f"release of task {args.task} approved by {by}; the node publishes it now")
    else:
        decide(state_dir, args.task, approve=False, by=by, reason=args.reason)
        print(f"release of task {args.task} denied by {by}: {args.reason}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    """Register a dataset's facts or list the registered ones."""
    from pathlib import Path

    from snakemake_fedgen.egress.facts import (
        register_dataset,
        register_sample_set,
        registered,
        sample_sets,
    )

    state_dir = Path(args.state_dir)
    if args.dataset_action == "sample-set":
        entry = register_sample_set(
            state_dir, args.name, dataset=args.dataset, keep=Path(args.keep)
        )
        print(
            f"sample set {entry.name} of {entry.dataset}: {len(entry.members)} samples from "
            f"{entry.path}; tasks reading this file release results from it"
        )
        return 0
    if args.dataset_action == "register":
        facts = register_dataset(
            state_dir,
            args.name,
            genotypes=Path(args.genotypes),
            variants=[Path(v) for v in args.variants],
        )
        print(
            f"dataset {facts.name}: {facts.samples} samples, {facts.variants} variants "
            f"registered; releases are checked on them from now on"
        )
        return 0
    for d in registered(state_dir):
        print(f"{d.name}\t{d.samples} samples\t{d.variants} variants\tregistered {d.registered}")
    for e in sample_sets(state_dir).values():
        print(f"  sample set {e.name} of {e.dataset}\t{len(e.members)} samples\t{e.path}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    """Print a task's logs as the site keeps them."""
    from pathlib import Path

    from snakemake_fedgen.node.steward import site_logs

    print(site_logs(Path(args.state_dir), args.task))
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Load the config, check the runtime and serve until SIGTERM/SIGINT."""
    import logging
    from pathlib import Path

    import uvicorn

    from snakemake_fedgen.node.app import create_app
    from snakemake_fedgen.node.auth import make_authenticator
    from snakemake_fedgen.node.config import config_overrides, load_config, slurm_settings
    from snakemake_fedgen.node.protocol import protocol_with_header_timeout
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
        slurm=slurm_settings(cfg, str(args.config or "command line"))
        if cfg.runtime == "slurm"
        else None,
    )
    authenticator = make_authenticator(cfg)
    if not cfg.allowed_images:
        log.warning("no allowed_images: tasks with any image are accepted.")
    if runtime.name == "host":
        log.warning("runtime host: tasks are not sandboxed (no network or filesystem isolation).")
    if cfg.egress_root is None:
        log.warning("no egress_root: no output can leave this site through the airlock.")
    if cfg.approved_code != "required":
        log.warning(
            "approved_code off: tasks may run any command (not approved code); every egress "
            "record says so."
        )
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
    uvicorn.run(
        app,
        host=cfg.host,
        port=cfg.port,
        access_log=False,
        log_level="warning",
        # Slowloris: a connection whose headers do not complete in time is closed.
        http=protocol_with_header_timeout(cfg.header_timeout_seconds),
        timeout_keep_alive=5,
    )
    return 0
