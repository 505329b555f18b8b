"""``fedgen discover``: one Beacon query across every site of the registry (docs/discovery.md)."""

from __future__ import annotations

import argparse

HELP = "Ask every site's Beacon one question (a variant, a range or phenotype filters) at once."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sites", required=True, metavar="YAML", help="the site registry")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--variant", metavar="CHR:POS:REF:ALT", help="a variant, POS 1-based (VCF)")
    what.add_argument("--range", metavar="CHR:START-END", help="a region, 1-based inclusive")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="TERM",
        help="a filter on individuals: a CURIE (NCIT:C16576 female, HP:..., MONDO:...) or "
        "ID OP VALUE (LOINC:39469-2>4.1, age>=P50Y); repeat for AND",
    )
    parser.add_argument(
        "--granularity", choices=["boolean", "count"], default="count", help="answer wanted"
    )
    parser.add_argument("--site", action="append", default=[], help="only these sites")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per site")
    parser.add_argument(
        "--include-sites-out",
        metavar="FILE",
        help="write the matching sites as a YAML list (the workflow's include_sites)",
    )
    parser.add_argument(
        "--min-count", type=int, metavar="N", help="a site matches with a count of at least N"
    )


def run(args: argparse.Namespace) -> int:
    import yaml
    from snakemake_executor_plugin_fedgen.errors import FedgenError
    from snakemake_executor_plugin_fedgen.fileio import write_text_atomic
    from snakemake_executor_plugin_fedgen.sites import load_registry

    from snakemake_fedgen.beacon.individuals import parse_filter
    from snakemake_fedgen.beacon.network import (
        discover,
        matching_sites,
        noise_sd,
        parse_range,
        parse_variant,
        request_body,
        total,
    )

    registry = load_registry(args.sites)
    names = args.site or list(registry.sites)
    sites = [registry.site(n) for n in names]
    filters = [parse_filter(f) for f in args.filter]
    if (args.variant or args.range) and filters:
        raise FedgenError(
            "give either --variant/--range or --filter: a Beacon here answers variant and "
            "phenotype questions separately."
        )
    if args.variant:
        entry, params = "genomicVariant", parse_variant(args.variant)
    elif args.range:
        entry, params = "genomicVariant", parse_range(args.range)
    else:
        entry, params = "individual", None
    body = request_body(parameters=params, filters=filters, granularity=args.granularity)
    answers = discover(sites, entry=entry, body=body, timeout=args.timeout)
    rows = [("site", "dataset", "exists", "count", "note")]
    for a in answers:
        exists = "-" if a.exists is None else ("yes" if a.exists else "no")
        count = "-" if a.count is None else str(a.count)
        rows.append((a.site, a.dataset or "-", exists, count, a.note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    summed = total(answers)
    answered = sorted({a.site for a in answers if a.answered})
    silent = [n for n in names if n not in answered]
    noise = noise_sd(answers)
    if summed is not None:
        value, lower = summed
        noisy = f" (noisy: sd {noise:.1f})" if noise is not None else ""
        print(f"total: {'>= ' if lower else ''}{value} over {len(answered)} site(s){noisy}")
    print(f"answered: {', '.join(answered) or 'none'}; no answer: {', '.join(silent) or 'none'}")
    if args.include_sites_out:
        chosen = matching_sites(answers, min_count=args.min_count)
        write_text_atomic(args.include_sites_out, yaml.safe_dump(chosen, default_flow_style=False))
        print(f"matching sites ({len(chosen)}) written to {args.include_sites_out}")
        if noise is not None and args.min_count is not None:
            print(
                f"note: --min-count {args.min_count} compared noisy counts; a site whose true "
                "count is near it may fall on either side"
            )
    return 0 if answered else 1
