"""``fedgen provenance``: task provenance records (site) and the run's RO-Crate (centre)."""

from __future__ import annotations

import argparse
import sys

HELP = "Write or check task provenance records; build the run's RO-Crate (Workflow Run Crate)."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``record``, ``validate`` and ``crate``."""
    sub = parser.add_subparsers(dest="provenance_command", metavar="ACTION", required=True)
    rec = sub.add_parser(
        "record",
        help="write a provenance record from inside a task",
        description="Write a provenance record (generator 'task') for files of the current task: "
        "SHA-256 of inputs and outputs, tool versions, times. A fedgen node writes its own "
        "record for every task; use this on other TES servers. Name it *.prov.json under the "
        "egress path so the airlock publishes it (kind 'provenance').",
    )
    rec.add_argument(
        "--out", required=True, help="record path (e.g. results/sumstats/A/x.prov.json)"
    )
    rec.add_argument("--input", action="append", default=[], metavar="FILE")
    rec.add_argument("--output", action="append", default=[], metavar="FILE")
    rec.add_argument("--command", help="the command that ran (as given to bash -c)")
    rec.add_argument("--image", help="the task image identifier")
    rec.add_argument("--site", help="site name")
    rec.add_argument("--task-id", help="TES task id if known")
    rec.add_argument("--start-time", help="RFC 3339 start time (default: now)")
    rec.add_argument(
        "--tool", action="append", default=None, metavar="NAME", help="tools to version (repeat)"
    )

    val = sub.add_parser("validate", help="validate a record against the schema")
    val.add_argument("record", metavar="FILE")

    crate = sub.add_parser(
        "crate",
        help="build the run's RO-Crate at the coordinator",
        description="Fetch every task of the run from the sites (TES tag fedgen_run, FULL view) "
        "and write an RO-Crate (Workflow Run Crate profile) with sites, tasks, their provenance "
        "records, DUO decisions and the coordinator's outputs.",
    )
    crate.add_argument("--sites", required=True, metavar="SITES", help="site registry")
    crate.add_argument(
        "--run-id",
        help="the executor's run tag (default: $FEDGEN_RUN_ID, which the fedgen executor sets "
        "for the localrules of its run, else the tag of a run from the current directory)",
    )
    crate.add_argument(
        "--purpose",
        metavar="CONFIG",
        help="YAML file with the purpose (or a workflow config), or the purpose as inline JSON",
    )
    crate.add_argument(
        "--site",
        action="append",
        default=None,
        metavar="NAME",
        help="a site of the analysis (repeat; default: every site of the registry)",
    )
    crate.add_argument(
        "--no-site-tasks",
        action="store_true",
        help="contact no site: the site jobs ran in the coordinator's Snakemake on local files "
        "(dataset_access: local); the crate says so instead of listing tasks",
    )
    crate.add_argument("--workflow", metavar="SNAKEFILE", help="the workflow's Snakefile")
    crate.add_argument(
        "--output", action="append", default=[], metavar="FILE", help="coordinator output to add"
    )
    crate.add_argument("--out", required=True, metavar="DIR", help="crate directory")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    import json
    from pathlib import Path

    from snakemake_fedgen.governance import provenance

    if args.provenance_command == "record":
        record = provenance.task_record(
            inputs=args.input,
            outputs=args.output,
            command=args.command,
            image=args.image,
            site=args.site,
            task_id=args.task_id,
            start_time=args.start_time,
            tools=args.tool,
        )
        provenance.write_json(Path(args.out), record)
        return 0
    if args.provenance_command == "validate":
        from snakemake_executor_plugin_fedgen.errors import ProvenanceError

        try:
            data = json.loads(Path(args.record).read_text())
        except (OSError, ValueError) as exc:
            raise ProvenanceError(f"{args.record}: cannot read it as JSON ({exc})") from exc
        provenance.validate(data, source=args.record)
        print(f"{args.record}: valid ({provenance.SCHEMA_ID})", file=sys.stderr)
        return 0
    from snakemake_executor_plugin_fedgen import duo

    from snakemake_fedgen.governance import crate

    purpose = None
    if args.purpose and args.purpose.lstrip().startswith("{"):
        from snakemake_executor_plugin_fedgen.errors import ConfigError

        try:
            purpose = duo.validate_purpose(json.loads(args.purpose))
        except ValueError as exc:
            raise ConfigError(f"--purpose is not a JSON object ({exc})") from exc
    elif args.purpose:
        purpose = duo.load_purpose(args.purpose)
    run_id = args.run_id
    source = "--run-id"
    if not run_id:
        import os

        from snakemake_executor_plugin_fedgen.executor import RUN_ID_ENV, default_run_id

        run_id = os.environ.get(RUN_ID_ENV)
        source = f"${RUN_ID_ENV} (set by the fedgen executor)"
        if not run_id:
            run_id = default_run_id(os.getcwd())
            source = f"the working directory {os.getcwd()}"
    reason = None
    if args.no_site_tasks:
        reason = (
            "the site jobs ran in the coordinator's Snakemake process on local files "
            "(dataset_access: local), not as TES tasks at the sites"
        )
    else:
        print(f"run tag {run_id} (from {source})", file=sys.stderr)
    path = crate.crate_from_registry(
        args.out,
        sites=args.sites,
        run_id=run_id,
        purpose=purpose,
        workflow=args.workflow,
        outputs=args.output,
        include_sites=args.site,
        no_tasks_reason=reason,
    )
    print(f"RO-Crate written: {path}", file=sys.stderr)
    return 0
