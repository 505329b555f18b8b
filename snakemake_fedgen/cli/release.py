"""``fedgen release``: the steward reviews egress held by a node running with ``release: review``."""

from __future__ import annotations

import argparse

HELP = "Review egress a node holds (release: review): list, approve or deny it."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``list``, ``approve`` and ``deny``; each takes the node's ``--state-dir``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="releases waiting for review (--all: every one)")
    listing.add_argument("--all", action="store_true", help="also decided and ended releases")
    approve = sub.add_parser("approve", help="publish a held release")
    approve.add_argument("task", help="task id (from `fedgen release list`)")
    deny = sub.add_parser("deny", help="refuse a held release; the task fails with the reason")
    deny.add_argument("task", help="task id (from `fedgen release list`)")
    deny.add_argument("--reason", required=True, help="why (returned to the caller)")
    for p in (listing, approve, deny):
        p.add_argument("--state-dir", required=True, help="the node's state directory")
    for p in (approve, deny):
        p.add_argument("--by", default=None, help="who decides (default: the login name)")


def run(args: argparse.Namespace) -> int:
    """List or decide releases in the node's task database (the running node picks it up)."""
    import getpass
    from pathlib import Path

    from snakemake_fedgen.node.release import decide, describe, held

    state_dir = Path(args.state_dir)
    if args.action == "list":
        print(describe(held(state_dir, everything=args.all)))
        return 0
    by = args.by or getpass.getuser()
    if args.action == "approve":
        decide(state_dir, args.task, approve=True, by=by)
        print(f"release of task {args.task} approved by {by}; the node publishes it now")
    else:
        decide(state_dir, args.task, approve=False, by=by, reason=args.reason)
        print(f"release of task {args.task} denied by {by}: {args.reason}")
    return 0
