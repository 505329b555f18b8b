"""``fedgen risk``: the federated risk model (fit by rounds, evaluate, apply at a site)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Federated risk model: standardisation sums, Newton rounds, evaluation, scoring at a site."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen risk`` subcommands."""
    sub = parser.add_subparsers(dest="risk_command", metavar="STEP", required=True)
    _configure_model(sub)
    _configure_evaluate(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``fedgen risk`` subcommand."""
    return int(args._risk_run(args))


# == model: moments, terms, step, score (snakemake_fedgen.risk.model) =========================


def _configure_model(sub) -> None:
    """Subcommands of the model rounds; each sets ``_risk_run``."""


# == evaluate: site counts, centre metrics (snakemake_fedgen.risk.evaluate) ===================


def _configure_evaluate(sub) -> None:
    """Subcommands of the federated evaluation; each sets ``_risk_run``.

    At each site (round 1), then the centre, then each site (round 2), then the centre::

        fedgen risk eval-counts --predictions A.pred.tsv --site A --models clinical,clinical_pgs \\
            --round eval-1 --key x25519.key --registry sites.yaml --participants A,B,C \\
            --out A.counts.json --site-metrics A.site.json
        fedgen risk eval-summary --counts A.counts.json B.counts.json C.counts.json \\
            --out summary.json
        fedgen risk eval-placements --predictions A.pred.tsv --site A --summary summary.json \\
            --round eval-2 --key x25519.key --registry sites.yaml --participants A,B,C \\
            --out A.placements.json
        fedgen risk evaluate --counts *.counts.json --placements *.placements.json \\
            --site-metrics *.site.json --out eval.json --metrics-tsv eval.tsv --plot calib.png
    """
    p = sub.add_parser("eval-counts", help="site, round 1: histogram and metric sums")
    _site_inputs(p)
    p.add_argument("--models", default=None, help="prediction columns (default: all others)")
    p.add_argument("--reference", default=None, help="reference model (default: the first)")
    p.add_argument("--bins", type=int, default=2000, help="bins of logit(p) (default 2000)")
    p.add_argument(
        "--logit-range", default="-10,10", help="clamped logit range of the bins (default -10,10)"
    )
    p.add_argument(
        "--cutoffs",
        default="0.05,0.075,0.2",
        help="risk category cutoffs for NRI and category calibration (default: ACC/AHA 10-year "
        "ASCVD 5%%, 7.5%%, 20%%)",
    )
    p.add_argument("--groups", type=int, default=10, help="calibration groups (default deciles)")
    p.add_argument(
        "--min-n",
        type=int,
        default=50,
        help="release the site's own metrics only with at least this many cases and non-cases",
    )
    p.add_argument(
        "--site-metrics", type=Path, default=None, help="also write the site's own metrics"
    )
    _mask_args(p)
    p.set_defaults(_risk_run=_run_eval_counts)

    p = sub.add_parser("eval-summary", help="centre, after round 1: decile cuts and placements")
    p.add_argument("--counts", nargs="+", required=True, type=Path, help="round-1 uploads")
    p.add_argument("--out", required=True, type=Path, help="summary JSON for the sites")
    p.set_defaults(_risk_run=_run_eval_summary)

    p = sub.add_parser("eval-placements", help="site, round 2: deciles and DeLong placement sums")
    _site_inputs(p)
    p.add_argument("--models", default=None, help="prediction columns (default: the summary's)")
    p.add_argument("--summary", required=True, type=Path, help="the centre's round-1 summary")
    _mask_args(p)
    p.set_defaults(_risk_run=_run_eval_placements)

    p = sub.add_parser("evaluate", help="centre: pooled AUC, delta AUC, calibration, NRI")
    p.add_argument("--counts", nargs="+", required=True, type=Path, help="round-1 uploads")
    p.add_argument("--placements", nargs="+", required=True, type=Path, help="round-2 uploads")
    p.add_argument("--site-metrics", nargs="*", default=[], type=Path, help="sites' own metrics")
    p.add_argument("--min-n", type=int, default=50, help="smallest published calibration cell")
    p.add_argument(
        "--min-cell", type=int, default=5, help="smallest published events/non-events count"
    )
    p.add_argument("--out", required=True, type=Path, help="metrics JSON")
    p.add_argument("--metrics-tsv", type=Path, default=None, help="metrics table (TSV)")
    p.add_argument("--calibration-tsv", type=Path, default=None, help="calibration table (TSV)")
    p.add_argument("--sites-tsv", type=Path, default=None, help="per-site table (TSV)")
    p.add_argument("--plot", type=Path, default=None, help="calibration plot (PNG)")
    p.set_defaults(_risk_run=_run_evaluate)


def _site_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True, type=Path, help="ID, outcome, predictions")
    p.add_argument("--site", required=True, help="this site's name in the registry")
    p.add_argument("--outcome", default="event", help="outcome column: 0/1 or plink2 1/2")
    p.add_argument("--id-col", default=None, help="ID column (default IID, #IID, ID or FID)")
    p.add_argument("--round", required=True, dest="round_id", help="round id from the centre")
    p.add_argument("--out", required=True, type=Path, help="upload to write (fedgen-sums/1)")


def _mask_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("secure aggregation (all or none; as `fedgen exact mask`)")
    g.add_argument("--key", type=Path, default=None, help="this site's X25519 private key")
    g.add_argument("--registry", type=Path, default=None, help="sites.yaml with public keys")
    g.add_argument("--participants", default=None, help="comma-separated sites of this round")
    g.add_argument("--ledger", type=Path, default=None, help="round ledger (default: KEY.rounds)")


def _models(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _ship(sums, args: argparse.Namespace) -> str:
    """Mask ``sums`` when the key arguments are given, write it to ``args.out``."""
    from snakemake_fedgen.risk.sums import write_sums

    given = [args.key is not None, args.registry is not None, args.participants is not None]
    if any(given) and not all(given):
        from snakemake_executor_plugin_fedgen.errors import ConfigError

        raise ConfigError("masking needs --key, --registry and --participants together")
    if all(given):
        from snakemake_executor_plugin_fedgen.sites import load_registry

        from snakemake_fedgen.exact.secure import load_private_key
        from snakemake_fedgen.risk.evaluate import mask_upload

        registry = load_registry(args.registry)
        wanted = set(_models(args.participants) or [])
        unknown = sorted(wanted - set(registry.sites))
        if unknown:
            from snakemake_executor_plugin_fedgen.errors import ConfigError

            raise ConfigError(
                f"participant(s) {', '.join(unknown)} are not in {args.registry} "
                f"({', '.join(registry.sites)})"
            )
        order = [s for s in registry.sites if s in wanted]  # registry order at every site
        public = {name: s.public_key_x25519 or "" for name, s in registry.sites.items()}
        sums = mask_upload(
            sums,
            private_key=load_private_key(args.key),
            public_keys=public,
            participants=order,
            ledger=args.ledger or args.key.with_name(args.key.name + ".rounds"),
        )
    write_sums(sums, args.out)
    return f"masked for {','.join(sums.participants)}" if sums.masked else "plain"


def _run_eval_counts(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.evaluate import (
        BinSpec,
        EvalDesign,
        count_sums,
        read_predictions,
        site_metrics,
    )
    from snakemake_fedgen.risk.sums import write_sums

    pred = read_predictions(
        args.predictions,
        site=args.site,
        outcome=args.outcome,
        models=_models(args.models),
        id_column=args.id_col,
    )
    models = tuple(pred.p)
    try:
        lo, hi = (float(x) for x in args.logit_range.split(","))
        cutoffs = tuple(float(x) for x in args.cutoffs.split(","))
    except ValueError:
        from snakemake_executor_plugin_fedgen.errors import ConfigError

        raise ConfigError(
            f"--logit-range {args.logit_range!r} / --cutoffs {args.cutoffs!r}: give "
            "comma-separated numbers"
        ) from None
    design = EvalDesign(
        models=models,
        reference=args.reference or models[0],
        bins=BinSpec(args.bins, lo, hi),
        cutoffs=cutoffs,
        groups=args.groups,
    )
    how = _ship(count_sums(pred, design, round_id=args.round_id), args)
    note = ""
    if args.site_metrics is not None:
        own = site_metrics(pred, design, round_id=args.round_id, min_n=args.min_n)
        write_sums(own, args.site_metrics)
        note = f"; own metrics {'suppressed' if not own.names else 'released'} -> "
        note += str(args.site_metrics)
    print(
        f"site {args.site}: round {args.round_id}: {len(design.models)} model(s), "
        f"{design.bins.bins} bins, {how} -> {args.out}{note} ({pred.dropped} rows with missing "
        "values not used)",
        file=sys.stderr,
    )
    return 0


def _run_eval_summary(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.evaluate import summarise_counts, write_summary
    from snakemake_fedgen.risk.sums import add_sums, read_sums

    summary = summarise_counts(add_sums([read_sums(p) for p in args.counts]))
    write_summary(summary, args.out)
    print(
        f"round {summary.round_id} over sites {','.join(summary.sites)}: summary "
        f"{summary.digest()} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_eval_placements(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.evaluate import placement_sums, read_predictions, read_summary

    summary = read_summary(args.summary)
    pred = read_predictions(
        args.predictions,
        site=args.site,
        outcome=args.outcome,
        models=_models(args.models) or list(summary.design.models),
        id_column=args.id_col,
    )
    how = _ship(placement_sums(pred, summary, round_id=args.round_id), args)
    print(
        f"site {args.site}: round {args.round_id} (summary {summary.digest()}): {how} -> "
        f"{args.out}",
        file=sys.stderr,
    )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.evaluate import evaluate, write_evaluation
    from snakemake_fedgen.risk.sums import add_sums, read_sums

    result = evaluate(
        add_sums([read_sums(p) for p in args.counts]),
        add_sums([read_sums(p) for p in args.placements]),
        [read_sums(p) for p in args.site_metrics],
        min_n=args.min_n,
        min_cell=args.min_cell,
    )
    write_evaluation(
        result,
        json_path=args.out,
        metrics_tsv=args.metrics_tsv,
        calibration_tsv=args.calibration_tsv,
        sites_tsv=args.sites_tsv,
        plot=args.plot,
    )
    lines = [
        f"  {m}: AUC {v['auc']:.4f} ({v['auc_ci'][0]:.4f}-{v['auc_ci'][1]:.4f}), Brier "
        f"{v['brier']:.4f}, Nagelkerke R2 {v['nagelkerke_r2']:.4f}"
        for m, v in result["models"].items()
    ]
    lines += [
        f"  {c['model']} vs {c['reference']}: delta AUC {c['delta_auc']:+.4f} "
        f"({c['delta_auc_ci'][0]:+.4f} to {c['delta_auc_ci'][1]:+.4f}, p={c['p']:.2g}), "
        f"NRI categorical {c['nri']['categorical']['total']:+.4f}, continuous "
        f"{c['nri']['continuous']['total']:+.4f}"
        for c in result["comparisons"]
    ]
    print(
        f"pooled n={result['n']}, cases={result['n_cases']} over sites "
        f"{','.join(result['sites'])}; {result['suppressed_cells']} calibration cells "
        f"suppressed -> {args.out}\n" + "\n".join(lines),
        file=sys.stderr,
    )
    return 0
