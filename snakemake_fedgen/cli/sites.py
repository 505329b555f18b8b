"""``fedgen sites``: start a registry, validate it, write dataset references, check the sites.

``fedgen sites check`` is built from a list of per-site checks (:data:`CHECKS`); a later check
(e.g. data-use decisions) appends one function returning a column name and a cell text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

HELP = "Start, validate and check the site registry; write dataset references."

# A check takes (site, context) and returns (column, cell, ok). ``context`` carries command
# options so later checks (governance) can read their own flags.
SiteCheck = Callable[[Any, argparse.Namespace], tuple[str, str, bool]]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``init``, ``validate``, ``ref`` and ``check`` sub-subcommands."""
    sub = parser.add_subparsers(dest="sites_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "init",
        help="Write a commented sites.yaml and each site's node.yaml that match the workflow.",
    )
    p.add_argument(
        "--site", action="append", required=True, metavar="NAME", help="A site (repeat, in order)."
    )
    p.add_argument("--out", type=Path, default=Path("."), help="Folder to write (default: .).")
    p.add_argument(
        "--workflow", type=Path, default=None, help="Workflow folder (default: federated-gwas)."
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="The analysis config (dataset names, egress settings; default: the workflow's).",
    )
    p.add_argument("--assembly", help="GRCh37 or GRCh38 (default: the config's).")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="Put each site's paths under DIR/<site> (a trial on one machine).",
    )
    p.add_argument(
        "--base-port", type=int, default=None, help="Loopback TES URLs on ports N, N+1, ..."
    )
    p.set_defaults(_sites_run=_init)

    p = sub.add_parser("validate", help="Validate a sites.yaml against the registry schema.")
    p.add_argument("sites", metavar="SITES", help="Path to sites.yaml.")
    p.set_defaults(_sites_run=_validate)

    p = sub.add_parser("ref", help="Write a reference to a site dataset at PATH.")
    p.add_argument("--sites", required=True, metavar="SITES", help="Path to sites.yaml.")
    p.add_argument("--site", required=True, help="Site holding the dataset.")
    p.add_argument("--dataset", required=True, help="Dataset name in the registry.")
    p.add_argument("--output", required=True, metavar="PATH", help="Where to write the reference.")
    p.set_defaults(_sites_run=_ref)

    p = sub.add_parser("check", help="Check that each site answers (service-info), as a table.")
    p.add_argument("sites", metavar="SITES", help="Path to sites.yaml.")
    p.add_argument("--timeout", type=float, default=5.0, help="Seconds per request (default 5).")
    p.add_argument(
        "--purpose",
        metavar="CONFIG",
        help="YAML with the analysis purpose (a workflow config with 'purpose:'); adds each "
        "site's DUO data-use decision.",
    )
    p.add_argument(
        "--workflow",
        type=Path,
        default=None,
        help="Workflow folder whose images and approval each node is asked about "
        "(default: federated-gwas; 'none' skips).",
    )
    p.set_defaults(_sites_run=_check)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``fedgen sites`` action."""
    return int(args._sites_run(args))


def _init(args: argparse.Namespace) -> int:
    from snakemake_fedgen.onboarding import WORKFLOW, init_sites

    written = init_sites(
        args.out,
        args.site,
        workflow=args.workflow or WORKFLOW,
        config=args.config,
        assembly=args.assembly,
        data_root=args.data_root,
        base_port=args.base_port,
    )
    for path in written:
        print(f"wrote {path}")
    print(
        "next: each steward edits nodes/<site>/node.yaml and runs `fedgen node approve "
        "WORKFLOW`; you fill in sites.yaml (lines marked STEWARD) and run "
        "`fedgen sites check sites.yaml` (docs/own-data.md)"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from snakemake_executor_plugin_fedgen.sites import load_registry

    registry = load_registry(args.sites)
    print(f"{args.sites}: valid ({len(registry.sites)} sites: {', '.join(registry.sites)})")
    return 0


def _ref(args: argparse.Namespace) -> int:
    from snakemake_executor_plugin_fedgen.sites import write_dataset_reference

    write_dataset_reference(args.sites, args.site, args.dataset, args.output)
    return 0


def _reachability(site: Any, args: argparse.Namespace) -> tuple[str, str, bool]:
    from snakemake_executor_plugin_fedgen.errors import FedgenError
    from snakemake_executor_plugin_fedgen.tes.client import TesClient

    client = TesClient(site, timeout=args.timeout, max_attempts=1)
    try:
        info = client.service_info()
    except FedgenError as exc:
        return "service-info", f"unreachable: {exc}", False
    finally:
        client.close()
    name = info.name or info.id
    version = info.type.version or info.version
    return "service-info", f"ok: {name} (TES {version})", True


def _data_use(site: Any, args: argparse.Namespace) -> tuple[str, str, bool]:
    from snakemake_executor_plugin_fedgen.duo import site_check

    return site_check(site, args)


def _token(site: Any, args: argparse.Namespace) -> tuple[str, str, bool]:
    from snakemake_executor_plugin_fedgen.errors import FedgenError
    from snakemake_executor_plugin_fedgen.tes.client import TesClient

    client = TesClient(site, timeout=args.timeout, max_attempts=1)
    try:
        next(iter(client.iter_tasks(tags={"fedgen_check": "token"})), None)
    except FedgenError as exc:
        return "token", f"refused: {exc}", False
    finally:
        client.close()
    return "token", "ok", True


def _workflow(site: Any, args: argparse.Namespace) -> tuple[str, str, bool]:
    import httpx

    from snakemake_fedgen.onboarding import (
        WORKFLOW,
        release_digest,
        workflow_images,
        workflow_readiness,
    )

    if str(args.workflow) == "none":
        return "workflow", "not checked", True
    folder = args.workflow or WORKFLOW
    if args.workflow is None and not (folder / "workflow" / "Snakefile").exists():
        # an installed package without the repository's workflow folder
        return "workflow", "not checked (no --workflow)", True
    if not hasattr(args, "_release"):
        args._release = (workflow_images(folder), release_digest(folder))
    images, digest = args._release
    try:
        info = httpx.get(f"{site.tes_url.rstrip('/')}/service-info", timeout=args.timeout).json()
    except (httpx.HTTPError, ValueError) as exc:
        return "workflow", f"no service-info ({exc})", False
    cell, ok = workflow_readiness(info, images=images, digest=digest)
    return "workflow", cell, ok


CHECKS: list[SiteCheck] = [_reachability, _token, _data_use, _workflow]


def _check(args: argparse.Namespace) -> int:
    from snakemake_executor_plugin_fedgen.sites import load_registry

    registry = load_registry(args.sites)
    rows: list[list[str]] = []
    columns = ["site", "tes_url"]
    all_ok = True
    for site in registry.sites.values():
        row = [site.name, site.tes_url]
        for check in CHECKS:
            column, cell, ok = check(site, args)
            if column not in columns:
                columns.append(column)
            row.append(cell)
            all_ok = all_ok and ok
        rows.append(row)
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for r in [columns, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0 if all_ok else 1
