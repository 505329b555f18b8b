"""``fedgen risk``: the federated risk model (fit by rounds, evaluate, apply at a site)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import ConfigError

HELP = "Federated risk model: standardisation sums, Newton rounds, evaluation, scoring at a site."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fedgen risk`` subcommands."""
    sub = parser.add_subparsers(dest="risk_command", metavar="STEP", required=True)
    _configure_model(sub)
    _configure_evaluate(sub)
    _configure_card(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``fedgen risk`` subcommand."""
    return int(args._risk_run(args))


# == model: moments, terms, step, score (snakemake_fedgen.risk.model) =========================


_MODEL_EPILOG = """\
One command per step, each reading and writing files (a Snakemake rule each):

  site:   fedgen risk moments --table pheno.tsv --join A.sscore --outcome event \\
              --features SCORE1_AVG,age,sex --site A --run cvd1 --out A.moments.json
  centre: fedgen risk init --moments A.moments.json B.moments.json C.moments.json \\
              --out state.0.json
  site:   fedgen risk terms --state state.0.json --table pheno.tsv --join A.sscore \\
              --site A --out A.terms.0.json
  centre: fedgen risk step --state state.0.json --terms A.terms.0.json ... --out state.1.json
          (repeat terms + step until the state says "stopped")
  centre: fedgen risk finish --state state.N.json --out model.json
  site:   fedgen risk score --model model.json --table pheno.tsv --out predictions.tsv

Masked uploads: add --key KEY --registry sites.yaml --participants A,B,C to moments and
--key KEY --registry sites.yaml to terms (the participants are the state's training sites).
"""


def _table_args(p: argparse.ArgumentParser, *, features: bool, outcome: bool) -> None:
    p.add_argument("--table", required=True, type=Path, help="site table (TSV with a header)")
    p.add_argument(
        "--join",
        type=Path,
        default=None,
        help="second table joined on the ID (e.g. plink2 --score output '#IID ... SCORE1_AVG'); "
        "features missing from --table are taken from it; 'none': no second table",
    )
    p.add_argument("--id", dest="id_column", default="IID", help="ID column (default IID)")
    if outcome:
        p.add_argument(
            "--coding",
            choices=("auto", "01", "plink2"),
            default="auto",
            help="outcome coding: 0/1, plink2's 1=control 2=case, or auto (default; the "
            "coding found is printed)",
        )
    if features:
        p.add_argument("--outcome", required=True, help="binary outcome column")
        p.add_argument(
            "--features", required=True, help="comma-separated feature columns, e.g. score,age"
        )


def _mask_args(p: argparse.ArgumentParser, *, participants: str) -> None:
    p.add_argument("--key", type=Path, default=None, help="this site's X25519 key: mask the upload")
    p.add_argument("--registry", type=Path, default=None, help="sites.yaml with public keys")
    p.add_argument("--participants", default=None, help=participants)
    p.add_argument("--ledger", type=Path, default=None, help="round ledger (default: KEY.rounds)")


def _configure_model(sub) -> None:
    """Subcommands of the model rounds; each sets ``_risk_run``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "moments",
        help="site: standardisation sums (n, cases, sum x, sum x^2) of the model's features",
        epilog=_MODEL_EPILOG,
        formatter_class=fmt,
    )
    _table_args(p, features=True, outcome=True)
    p.add_argument("--site", required=True, help="this site's name in the registry")
    p.add_argument("--run", required=True, help="run id from the centre (names every round)")
    p.add_argument("--min-n", type=int, default=50, help="refuse below this many people")
    p.add_argument(
        "--min-cases", type=int, default=10, help="refuse below this many cases or controls"
    )
    p.add_argument(
        "--min-cell", type=int, default=5, help="refuse features that single out fewer people"
    )
    _mask_args(p, participants="comma-separated training sites (registry order)")
    p.add_argument("--out", required=True, type=Path, help="sums to upload (JSON)")
    p.set_defaults(_risk_run=_run_moments)

    p = sub.add_parser("init", help="centre: initial model state from the sites' moments")
    p.add_argument("--moments", nargs="+", required=True, type=Path, help="every site's moments")
    p.add_argument("--ridge", type=float, default=0.0, help="L2 penalty lambda (default 0)")
    p.add_argument("--tol", type=float, default=1e-8, help="relative step tolerance")
    p.add_argument("--max-iter", type=int, default=25, help="most Newton rounds")
    p.add_argument(
        "--start",
        choices=("prevalence", "zero"),
        default="prevalence",
        help="intercept start: logit of the pooled prevalence (default) or zero",
    )
    p.add_argument("--out", required=True, type=Path, help="state file (JSON)")
    p.set_defaults(_risk_run=_run_init)

    p = sub.add_parser("terms", help="site: gradient, information and log-likelihood at a state")
    p.add_argument(
        "--masked-by",
        choices=("task", "node", "none"),
        default="task",
        help="who masks the upload of a masked run: this command (--key; default), the site's "
        "node at release (node: the plain sums go to the node, which masks them for the round "
        "the task asks for), or nobody (a plain run)",
    )
    p.add_argument(
        "--min-cell", type=int, default=5, help="refuse features that single out fewer people"
    )
    p.add_argument("--state", required=True, type=Path, help="the current state from the centre")
    _table_args(p, features=False, outcome=True)
    p.add_argument("--site", required=True, help="this site's name in the registry")
    _mask_args(p, participants="training sites (default and required: the state's)")
    p.add_argument("--out", required=True, type=Path, help="sums to upload (JSON)")
    p.set_defaults(_risk_run=_run_terms)

    p = sub.add_parser("step", help="centre: add one round's terms and take the Newton step")
    p.add_argument("--state", required=True, type=Path, help="the state the terms were made at")
    p.add_argument("--terms", nargs="+", required=True, type=Path, help="every site's terms")
    p.add_argument("--out", required=True, type=Path, help="next state (JSON)")
    p.set_defaults(_risk_run=_run_step)

    p = sub.add_parser("finish", help="centre: the model file from a converged state")
    p.add_argument("--state", required=True, type=Path, help="the final state")
    p.add_argument(
        "--provenance",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the model's provenance object (repeatable), e.g. weights_sha256=...",
    )
    p.add_argument(
        "--allow-unconverged", action="store_true", help="write a model that did not converge"
    )
    p.add_argument("--out", required=True, type=Path, help="model file (JSON)")
    p.set_defaults(_risk_run=_run_finish)

    p = sub.add_parser(
        "score",
        help="site only: linear predictor and probability per person (never leaves the site)",
        description="Apply a model file to this site's people. The output is individual-level "
        "(one row per person): it stays at the site and must never be uploaded. Rows with a "
        "missing feature are dropped and counted on stderr.",
    )
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="model file from fedgen risk finish; repeat as NAME=model.json for one probability "
        "column per model",
    )
    p.add_argument(
        "--outcome",
        default=None,
        help="also write this outcome column (0/1): the evaluation's input",
    )
    _table_args(p, features=False, outcome=True)
    p.add_argument("--out", required=True, type=Path, help="predictions TSV (stays at the site)")
    p.set_defaults(_risk_run=_run_score)


def _join(args: argparse.Namespace) -> Path | None:
    """The --join table; ``none`` (a workflow's way of saying no table) is no table."""
    return None if args.join is None or str(args.join) == "none" else args.join


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _masking(args: argparse.Namespace, default_participants: list[str] | None):
    """(private key, public keys, participants in registry order, ledger) or None."""
    if args.key is None:
        if args.registry is not None or args.participants is not None:
            raise ConfigError("--registry and --participants mask an upload only with --key")
        return None
    from snakemake_executor_plugin_fedgen.sites import load_registry

    from snakemake_fedgen.exact.secure import load_private_key

    if args.registry is None:
        raise ConfigError("--key needs --registry (the sites' public keys)")
    registry = load_registry(args.registry)
    if args.participants is None and default_participants is None:
        raise ConfigError("--key needs --participants (the training sites of the run)")
    wanted = _names(args.participants) if args.participants else list(default_participants or [])
    if default_participants is not None and sorted(wanted) != sorted(default_participants):
        raise ConfigError(
            f"--participants {','.join(wanted)} differ from the state's training sites "
            f"{','.join(default_participants)}"
        )
    unknown = [s for s in wanted if s not in registry.sites]
    if unknown:
        raise ConfigError(f"participant(s) {', '.join(unknown)} not in {args.registry}")
    order = default_participants or [s for s in registry.sites if s in wanted]
    public = {name: s.public_key_x25519 or "" for name, s in registry.sites.items()}
    ledger = args.ledger or args.key.with_name(args.key.name + ".rounds")
    return load_private_key(args.key), public, order, ledger


def _upload(args: argparse.Namespace, sums, mask) -> None:
    from snakemake_fedgen.exact.sums import mask_with_ledger, write_sums

    if mask is not None:
        key, public, participants, ledger = mask
        sums = mask_with_ledger(
            sums, private_key=key, public_keys=public, participants=participants, ledger=ledger
        )
    write_sums(sums, args.out)
    how = f"masked among {','.join(sums.participants)}" if sums.masked else "plain"
    print(f"site {sums.site}: round {sums.round_id}: {how} -> {args.out}", file=sys.stderr)


def _run_moments(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.model import read_site_table, site_moments

    mask = _masking(args, None)
    data = read_site_table(
        args.table, features=_names(args.features), outcome=args.outcome, join=_join(args),
        id_column=args.id_column, coding=args.coding,
    )  # fmt: skip
    print(f"site {args.site}: {data.describe()}", file=sys.stderr)
    sums = site_moments(
        data, site=args.site, run_id=args.run, outcome=args.outcome, min_n=args.min_n,
        min_cases=args.min_cases,
        min_cell=args.min_cell,
    )  # fmt: skip
    _upload(args, sums, mask)
    return 0


def _run_init(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.sums import add_sums, read_sums
    from snakemake_fedgen.risk.model import init_state, write_state

    uploads = [read_sums(p) for p in args.moments]
    masked = uploads[0].masked
    outcomes = {u.meta.get("outcome", "") for u in uploads}
    if len(outcomes) != 1:
        raise ConfigError(f"the sites' moments name different outcomes: {sorted(outcomes)}")
    sites = list(uploads[0].participants) if masked else [u.site for u in uploads]
    total = add_sums(uploads)
    state = init_state(
        total, sites=sites, ridge=args.ridge, tol=args.tol,
        max_iter=args.max_iter, start=args.start, masked=masked,
    )  # fmt: skip
    write_state(state, args.out)
    print(
        f"run {state['run']}: n={state['n']} ({state['n_cases']} cases, {state['n_dropped']} "
        f"rows dropped at the sites) over {','.join(sites)}; features "
        f"{','.join(state['terms'][1:])}; state {state['digest'][:12]} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_terms(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.model import read_site_table, read_state, site_terms

    state = read_state(args.state)
    by_node = args.masked_by == "node"
    if by_node and args.key is not None:
        raise ConfigError("--masked-by node: this site's node masks the upload; leave out --key")
    if state["masked"] != (args.key is not None or by_node):
        raise ConfigError(
            f"run {state['run']} is {'masked' if state['masked'] else 'plain'} (as its moments "
            "were): "
            + (
                "pass --key and --registry, or --masked-by node where the site's node masks"
                if state["masked"]
                else "leave out --key and --masked-by node"
            )
        )
    mask = _masking(args, state["sites"])
    data = read_site_table(
        args.table, features=[f["name"] for f in state["features"]], outcome=state["outcome"],
        join=_join(args), id_column=args.id_column, coding=args.coding,
    )  # fmt: skip
    print(f"site {args.site}: {data.describe()}", file=sys.stderr)
    _upload(args, site_terms(data, state, site=args.site, min_cell=args.min_cell), mask)
    return 0


def _run_step(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.sums import read_sums
    from snakemake_fedgen.risk.model import newton_step, read_state, sum_terms, write_state

    state = read_state(args.state)
    nxt = newton_step(state, sum_terms(state, [read_sums(p) for p in args.terms]))
    write_state(nxt, args.out)
    last = nxt["deviance_history"][-1]
    dev = "not finite" if last["deviance"] is None else f"{last['deviance']:.10g}"
    halved = " (higher than the last accepted: step halved)" if last["halved"] else ""
    print(
        f"run {nxt['run']} round {state['iteration']}: deviance {dev}{halved}, "
        f"relative step {last['step']:.3g} -> iteration {nxt['iteration']}, "
        f"converged={str(nxt['converged']).lower()} -> {args.out}",
        file=sys.stderr,
    )
    if nxt["stopped"] == "max_iter":
        print(
            f"WARNING: run {nxt['run']} did NOT converge in max_iter={nxt['max_iter']} rounds "
            f"(relative step {last['step']:.3g} > tol {nxt['tol']:g}); the state says "
            "converged: false, stopped: max_iter and fedgen risk finish will refuse it",
            file=sys.stderr,
        )
    return 0


def _run_finish(args: argparse.Namespace) -> int:
    from snakemake_fedgen.risk.model import finish_model, read_state, write_model

    provenance = {}
    for item in args.provenance:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--provenance {item!r}: expected KEY=VALUE")
        provenance[key] = value
    model = finish_model(
        read_state(args.state), provenance=provenance, allow_unconverged=args.allow_unconverged
    )
    write_model(model, args.out)
    print(
        f"model of run {model['run']}: {model['iterations']} rounds, converged="
        f"{str(model['converged']).lower()}, n={model['n']}, deviance {model['deviance']:.10g} "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_score(args: argparse.Namespace) -> int:
    import dataclasses

    from snakemake_executor_plugin_fedgen.fileio import atomic_write

    from snakemake_fedgen.risk.model import (
        predict,
        read_model,
        read_site_table,
        write_predictions,
    )

    named = [m.split("=", 1) if "=" in str(m) else [None, m] for m in args.model]
    if len(named) > 1 and any(name is None for name, _ in named):
        raise ConfigError("with several --model, name each: --model NAME=model.json")
    models = [(name, read_model(Path(path))) for name, path in named]
    features = list(dict.fromkeys(f["name"] for _, m in models for f in m["features"]))
    data = read_site_table(
        args.table, features=features, join=_join(args), id_column=args.id_column,
        outcome=args.outcome, coding=args.coding,
    )  # fmt: skip
    probs = []
    for _, model in models:
        cols = [features.index(f["name"]) for f in model["features"]]
        view = dataclasses.replace(
            data, features=tuple(features[i] for i in cols), x=data.x[:, cols]
        )
        probs.append(predict(model, view))
    if len(models) == 1 and models[0][0] is None and args.outcome is None:
        write_predictions(args.out, data, *probs[0])
    else:
        # The evaluation's table: ID, the outcome (0/1), one probability column per model.
        names = [name or "probability" for name, _ in models]
        with atomic_write(Path(args.out)) as f:
            head = [data.id_column, *([args.outcome] if args.outcome else []), *names]
            f.write("\t".join(head) + "\n")
            for i, pid in enumerate(data.ids):
                row = [pid]
                if data.y is not None:
                    row.append(str(int(data.y[i])))
                row += [repr(float(prob[i])) for _, prob in probs]
                f.write("\t".join(row) + "\n")
    print(
        f"{data.describe()}; {len(data.ids)} people scored by {len(models)} model(s) -> "
        f"{args.out} (individual-level: keep it at the site)",
        file=sys.stderr,
    )
    return 0


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
    _eval_mask_args(p)
    p.set_defaults(_risk_run=_run_eval_counts)

    p = sub.add_parser("eval-summary", help="centre, after round 1: decile cuts and placements")
    p.add_argument("--counts", nargs="+", required=True, type=Path, help="round-1 uploads")
    p.add_argument("--out", required=True, type=Path, help="summary JSON for the sites")
    p.set_defaults(_risk_run=_run_eval_summary)

    p = sub.add_parser("eval-placements", help="site, round 2: deciles and DeLong placement sums")
    _site_inputs(p)
    p.add_argument("--models", default=None, help="prediction columns (default: the summary's)")
    p.add_argument("--summary", required=True, type=Path, help="the centre's round-1 summary")
    _eval_mask_args(p)
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


def _eval_mask_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("secure aggregation (all or none; as `fedgen exact mask`)")
    g.add_argument("--key", type=Path, default=None, help="this site's X25519 private key")
    g.add_argument("--registry", type=Path, default=None, help="sites.yaml with public keys")
    g.add_argument("--participants", default=None, help="comma-separated sites of this round")
    g.add_argument("--ledger", type=Path, default=None, help="round ledger (default: KEY.rounds)")


def _models(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _ship(sums, args: argparse.Namespace) -> str:
    """Mask ``sums`` when the key arguments are given (as the model's steps do), write it to
    ``args.out``."""
    from snakemake_fedgen.exact.sums import mask_with_ledger, write_sums

    mask = _masking(args, None)
    if mask is not None:
        key, public, participants, ledger = mask
        sums = mask_with_ledger(
            sums, private_key=key, public_keys=public, participants=participants, ledger=ledger
        )
    write_sums(sums, args.out)
    return f"masked for {','.join(sums.participants)}" if sums.masked else "plain"


def _run_eval_counts(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.sums import write_sums
    from snakemake_fedgen.risk.evaluate import (
        BinSpec,
        EvalDesign,
        count_sums,
        read_predictions,
        site_metrics,
    )

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
    from snakemake_fedgen.exact.sums import add_sums, read_sums
    from snakemake_fedgen.risk.evaluate import summarise_counts, write_summary

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
    from snakemake_fedgen.exact.sums import add_sums, read_sums
    from snakemake_fedgen.risk.evaluate import evaluate, write_evaluation

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


# == card: the model card for the report (snakemake_fedgen.risk.card) ========================


def _configure_card(sub) -> None:
    p = sub.add_parser("card", help="centre: the model card (HTML) of a model and its evaluations")
    p.add_argument("--model", required=True, type=Path, help="model file")
    p.add_argument("--name", required=True, help="model name on the card")
    p.add_argument(
        "--evaluation",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an evaluation's results (fedgen risk evaluate --out), repeatable",
    )
    p.add_argument(
        "--plot", action="append", default=[], metavar="NAME=PNG", help="its calibration plot"
    )
    p.add_argument("--out", required=True, type=Path, help="card (HTML)")
    p.set_defaults(_risk_run=_run_card)


def _pairs(items: list[str], what: str) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{what} {item!r}: write NAME=PATH")
        out[name] = Path(path)
    return out


def _run_card(args: argparse.Namespace) -> int:
    import json

    from snakemake_fedgen.risk.card import render_card, write_card
    from snakemake_fedgen.risk.model import read_model

    evaluations = {
        name: json.loads(path.read_text())
        for name, path in _pairs(args.evaluation, "--evaluation").items()
    }
    card = render_card(
        read_model(args.model),
        name=args.name,
        evaluations=evaluations,
        calibration_plots=_pairs(args.plot, "--plot"),
    )
    write_card(args.out, card)
    print(f"model card of {args.name} -> {args.out}", file=sys.stderr)
    return 0
