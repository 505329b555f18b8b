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
        help="the executor's run tag (default: the tag of a run from the current directory)",
    )
    crate.add_argument("--purpose", metavar="CONFIG", help="YAML with the purpose (or config)")
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
        from snakemake_fedgen.errors import ProvenanceError

        try:
            data = json.loads(Path(args.record).read_text())
        except (OSError, ValueError) as exc:
            raise ProvenanceError(f"{args.record}: cannot read it as JSON ({exc})") from exc
        provenance.validate(data, source=args.record)
        print(f"{args.record}: valid ({provenance.SCHEMA_ID})", file=sys.stderr)
        return 0
    from snakemake_fedgen.governance import crate, duo

    purpose = duo.load_purpose(args.purpose) if args.purpose else None
    run_id = args.run_id
    if not run_id:
        import os

        from snakemake_fedgen.executor.plugin import default_run_id

        run_id = default_run_id(os.getcwd())
    path = crate.crate_from_registry(
        args.out,
        sites=args.sites,
        run_id=run_id,
        purpose=purpose,
        workflow=args.workflow,
        outputs=args.output,
    )
    print(f"RO-Crate written: {path}", file=sys.stderr)
    return 0
