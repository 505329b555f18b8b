"""``fedgen exact``: exact pooled linear regression from site aggregates (issue 8).

At a site::

    fedgen exact aggregate --pfile imputed --pheno pheno.tsv --pheno-name qt \\
        --covar-name age,sex --site B --registry sites.yaml --out B.aggregates.tsv
    fedgen exact keygen --out secure/x25519.key             # once; prints the public key
    fedgen exact mask --aggregates B.aggregates.tsv --key secure/x25519.key \\
        --registry sites.yaml --round r1 --participants A,B,C --variants panel.pvar \\
        --out B.aggregates.masked.tsv

At the centre::

    fedgen exact solve --aggregates A.aggregates.tsv B.aggregates.tsv ... --out pooled.tsv
    fedgen exact solve --masked A.aggregates.masked.tsv ... --out pooled.tsv

The solve also writes ``pooled.unsolved.tsv`` (``--unsolved``): how many variants were seen at
any site, solved, and not solved because absent at some site (per site for plain aggregates) or
singular.

Binary traits (pooled logistic regression by federated Newton-Raphson rounds,
:mod:`snakemake_fedgen.exact.logistic`)::

    fedgen exact logit-init --round r1.bt --sites A,B,C --out state.0.json       # centre
    fedgen exact logit-terms --pfile imputed --pheno pheno.tsv --pheno-name bt \
        --covar-name age,sex --site B --sites A,B,C --variants panel.tsv \
        --state state.0.json --out B.terms.1.sums.json                           # each site
    fedgen exact logit-step --state state.0.json --terms *.terms.1.sums.json \
        --out state.1.json                                                       # centre
    ...  (until the state says stopped)
    fedgen exact logit-finish --state state.6.json --out bt.tsv.gz               # centre
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Exact pooled linear regression from site aggregates, with secure aggregation."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``aggregate``, ``keygen``, ``mask`` and ``solve`` sub-subcommands."""
    sub = parser.add_subparsers(dest="exact_command", metavar="STEP", required=True)

    p = sub.add_parser("aggregate", help="site: compute per-variant aggregates (runs at a site)")
    p.add_argument("--pfile", required=True, help="PLINK 2 fileset prefix (.pgen/.pvar/.psam)")
    p.add_argument("--pheno", required=True, type=Path, help="plink2-style phenotype table")
    p.add_argument("--pheno-name", required=True, help="quantitative trait column")
    p.add_argument("--covar", type=Path, default=None, help="covariate table (default: --pheno)")
    p.add_argument("--covar-name", default="", help="comma-separated shared covariates")
    p.add_argument(
        "--site-covar-name",
        default="",
        help="comma-separated covariates with a slope per site (e.g. PC1,...,PC5 from each "
        "site's own PCA)",
    )
    p.add_argument("--site", required=True, help="this site's name in the registry")
    order = p.add_mutually_exclusive_group(required=True)
    order.add_argument("--registry", type=Path, help="sites.yaml: its site order is used")
    order.add_argument("--sites", help="global site order, comma-separated (as in the registry)")
    p.add_argument("--min-n", type=int, default=50, help="refuse below this many samples")
    p.add_argument("--min-mac", type=float, default=10.0, help="drop variants below this MAC")
    p.add_argument("--out", required=True, type=Path, help="aggregates table to write")
    p.set_defaults(_exact=_run_aggregate)

    p = sub.add_parser("keygen", help="site: create an X25519 key pair for secure aggregation")
    p.add_argument("--out", required=True, type=Path, help="private key file (mode 0600)")
    p.set_defaults(_exact=_run_keygen)

    p = sub.add_parser("mask", help="site: mask aggregates for one secure-aggregation round")
    p.add_argument("--aggregates", required=True, type=Path, help="this site's aggregates")
    p.add_argument("--key", required=True, type=Path, help="this site's X25519 private key")
    p.add_argument("--registry", required=True, type=Path, help="sites.yaml with public keys")
    p.add_argument("--round", required=True, dest="round_id", help="round id from the centre")
    p.add_argument("--participants", required=True, help="comma-separated sites of this round")
    p.add_argument(
        "--variants",
        type=Path,
        default=None,
        help="public variant list shared by all participants (.pvar or aggregates table); "
        "default: this site's own variants, which works only if every site kept the same ones",
    )
    p.add_argument("--frac-bits", type=int, default=40, help="fixed-point fractional bits")
    p.add_argument("--ledger", type=Path, default=None, help="round ledger (default: KEY.rounds)")
    p.add_argument("--force", action="store_true", help="allow fewer than three participants")
    p.add_argument("--out", required=True, type=Path, help="masked upload to write")
    p.set_defaults(_exact=_run_mask)

    p = sub.add_parser("solve", help="centre: pooled beta, se, t, p per variant")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--aggregates", nargs="+", type=Path, help="plain site aggregates")
    src.add_argument("--masked", nargs="+", type=Path, help="masked uploads of one round")
    p.add_argument("--out", required=True, type=Path, help="results table (TSV)")
    p.add_argument(
        "--unsolved",
        type=Path,
        default=None,
        help="counts of the variants seen at any site, solved and not solved by reason "
        "(absent at a site, singular); default: OUT without .tsv(.gz) plus .unsolved.tsv",
    )
    p.add_argument("--manhattan", type=Path, default=None, help="also draw a Manhattan plot (PNG)")
    p.add_argument("--qq", type=Path, default=None, help="also draw a QQ plot (PNG)")
    p.set_defaults(_exact=_run_solve)

    p = sub.add_parser("logit-init", help="centre: the state before a binary trait's first round")
    p.add_argument("--round", required=True, dest="round_id", help="fresh round id (per trait)")
    p.add_argument("--sites", required=True, help="the sites of every round, in registry order")
    p.add_argument("--max-iter", type=int, default=25, help="most Newton rounds")
    p.add_argument("--tol", type=float, default=1e-10, help="relative step that ends a variant")
    p.add_argument("--out", required=True, type=Path, help="state file to write")
    p.set_defaults(_exact=_run_logit_init)

    p = sub.add_parser(
        "logit-terms", help="site: per-variant Newton terms at the state's coefficients"
    )
    p.add_argument("--pfile", required=True, help="PLINK 2 fileset prefix (.pgen/.pvar/.psam)")
    p.add_argument("--pheno", required=True, type=Path, help="plink2-style phenotype table")
    p.add_argument("--pheno-name", required=True, help="case/control column (1/2, 0/-9/NA)")
    p.add_argument("--covar", type=Path, default=None, help="covariate table (default: --pheno)")
    p.add_argument("--covar-name", default="", help="comma-separated shared covariates")
    p.add_argument(
        "--site-covar-name", default="none", help="covariates with a slope per site (or none)"
    )
    p.add_argument("--site", required=True, help="this site's name in the registry")
    p.add_argument("--sites", required=True, help="global site order, comma-separated")
    p.add_argument(
        "--variants", required=True, type=Path, help="the shared public variant list (panel)"
    )
    p.add_argument("--state", required=True, type=Path, help="the centre's current state")
    p.add_argument("--min-n", type=int, default=50, help="refuse below this many samples")
    p.add_argument("--min-mac", type=float, default=10.0, help="withhold variants below this MAC")
    p.add_argument("--out", required=True, type=Path, help="plain sums (.sums.json) to write")
    p.set_defaults(_exact=_run_logit_terms)

    p = sub.add_parser("logit-step", help="centre: add a round's uploads and take Newton steps")
    p.add_argument("--state", required=True, type=Path, help="the state the round started from")
    p.add_argument("--terms", required=True, nargs="+", type=Path, help="every site's upload")
    p.add_argument("--out", required=True, type=Path, help="next state to write")
    p.set_defaults(_exact=_run_logit_step)

    p = sub.add_parser("logit-finish", help="centre: results of a final state")
    p.add_argument("--state", required=True, type=Path, help="the final (stopped) state")
    p.add_argument("--out", required=True, type=Path, help="results table (TSV)")
    p.add_argument(
        "--unsolved", type=Path, default=None, help="counts of variants not solved, by reason"
    )
    p.add_argument("--manhattan", type=Path, default=None, help="also draw a Manhattan plot (PNG)")
    p.add_argument("--qq", type=Path, default=None, help="also draw a QQ plot (PNG)")
    p.set_defaults(_exact=_run_logit_finish)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen step."""
    return int(args._exact(args) or 0)


def _names(text: str) -> list[str]:
    """Comma-separated names; ``none`` is the empty list (a workflow passes every option)."""
    if text.strip() == "none":
        return []
    return [x.strip() for x in text.split(",") if x.strip()]


def _run_aggregate(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.aggregates import compute_aggregates, write_aggregates

    if args.registry is not None:
        from snakemake_executor_plugin_fedgen.sites import load_registry

        sites = list(load_registry(args.registry).sites)
    else:
        sites = _names(args.sites)
    agg = compute_aggregates(
        args.pfile,
        args.pheno,
        pheno_name=args.pheno_name,
        covar=args.covar,
        covar_names=_names(args.covar_name),
        site_covar_names=_names(args.site_covar_name),
        site=args.site,
        sites=sites,
        min_n=args.min_n,
        min_mac=args.min_mac,
    )
    write_aggregates(agg, args.out)
    print(
        f"site {agg.site}: n={agg.n}, {agg.m} variants written to {args.out}, "
        f"{agg.meta['variants_suppressed']} suppressed (min_mac={args.min_mac:g})",
        file=sys.stderr,
    )
    return 0


def _run_keygen(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.secure import generate_key

    public = generate_key(args.out)
    print(f"public_key_x25519: {public}")
    return 0


def _run_mask(args: argparse.Namespace) -> int:
    from snakemake_executor_plugin_fedgen.sites import load_registry

    from snakemake_fedgen.exact.aggregates import read_aggregates, read_variant_table
    from snakemake_fedgen.exact.secure import load_private_key, mask_aggregates, write_masked

    agg = read_aggregates(args.aggregates)
    registry = load_registry(args.registry)
    if list(registry.sites) != list(agg.sites):
        from snakemake_executor_plugin_fedgen.errors import ConfigError

        raise ConfigError(
            f"{args.aggregates} was computed with site order {','.join(agg.sites)} but "
            f"{args.registry} lists {','.join(registry.sites)}; recompute the aggregates"
        )
    public_keys = {name: s.public_key_x25519 or "" for name, s in registry.sites.items()}
    universe = read_variant_table(args.variants or args.aggregates)
    upload = mask_aggregates(
        agg,
        private_key=load_private_key(args.key),
        public_keys=public_keys,
        participants=_names(args.participants),
        round_id=args.round_id,
        universe=universe,
        frac_bits=args.frac_bits,
        force=args.force,
        ledger=args.ledger or args.key.with_name(args.key.name + ".rounds"),
    )
    write_masked(upload, args.out)
    print(
        f"site {agg.site}: round {args.round_id}: masked {len(upload.table)} variants for "
        f"participants {','.join(upload.participants)} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_solve(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.solve import (
        solve,
        sum_aggregates,
        variant_counts,
        write_results,
        write_variant_counts,
    )

    if args.masked:
        from snakemake_fedgen.exact.secure import read_masked, unmask_sum

        total = unmask_sum([read_masked(p) for p in args.masked])
        note = f"secure round {total.meta['round']} over sites {total.meta['sites_summed']}"
    else:
        from snakemake_fedgen.exact.aggregates import read_aggregates

        total = sum_aggregates([read_aggregates(p) for p in args.aggregates])
        note = f"plain aggregates of sites {total.meta['sites_summed']}"
    dropped = total.meta["variants_not_at_every_site"]
    result = solve(total)
    write_results(result, args.out, note=f"{note}; {dropped} variants not at every site dropped")
    counts = variant_counts(total, result)
    unsolved = args.unsolved or _unsolved_path(args.out)
    write_variant_counts(counts, unsolved)
    if args.manhattan or args.qq:
        _plots(result, manhattan=args.manhattan, qq=args.qq)
    print(
        f"pooled n={result.n} ({note}): {counts.summary()} -> {args.out}, {unsolved}",
        file=sys.stderr,
    )
    return 0


def _run_logit_init(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.logistic import init_state, write_state

    state = init_state(
        round_id=args.round_id, sites=_names(args.sites), max_iter=args.max_iter, tol=args.tol
    )
    write_state(state, args.out)
    print(f"round {args.round_id}: initial state -> {args.out}", file=sys.stderr)
    return 0


def _run_logit_terms(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.aggregates import read_variant_table
    from snakemake_fedgen.exact.logistic import LogisticSite, read_state, site_round_terms
    from snakemake_fedgen.exact.sums import write_sums

    state = read_state(args.state)
    site = LogisticSite.load(
        args.pfile,
        args.pheno,
        pheno_name=args.pheno_name,
        site=args.site,
        sites=_names(args.sites),
        covar=args.covar,
        covar_names=_names(args.covar_name),
        site_covar_names=_names(args.site_covar_name),
        min_n=args.min_n,
        min_mac=args.min_mac,
    )
    sums, counts = site_round_terms(site, state, read_variant_table(args.variants))
    write_sums(sums, args.out)
    print(
        f"site {args.site}: round {sums.round_id}: n={len(site.y)} ({int(site.y.sum())} cases); "
        f"{counts['sent']} of {counts['layout']} panel variants sent, "
        f"{counts['withheld_mac']} withheld (min_mac={args.min_mac:g}), "
        f"{counts['refused_steep']} refused (linear predictor beyond the bound), "
        f"{counts['not_on_layout']} of the site's variants not on the panel -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_logit_step(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.logistic import centre_step, read_state, write_state
    from snakemake_fedgen.exact.sums import read_sums

    state = read_state(args.state)
    new = centre_step(state, [read_sums(p) for p in args.terms])
    write_state(new, args.out)
    moving = sum(1 for d in new["done"] if not d)
    print(
        f"round {new['round']}.it{new['iteration']}: n={new['n']}, {moving} of "
        f"{len(new['done'])} variants still moving"
        + ("; stopped" if new["stopped"] else "")
        + f" -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _run_logit_finish(args: argparse.Namespace) -> int:
    from snakemake_fedgen.exact.aggregates import atomic_write_text
    from snakemake_fedgen.exact.logistic import read_state, state_result
    from snakemake_fedgen.exact.solve import write_results

    state = read_state(args.state)
    result, counts = state_result(state)
    note = (
        f"exact-logistic (Wald z in t_statistic) round {state['round']} over sites "
        f"{','.join(state['sites'])}, {state['iteration']} Newton rounds"
    )
    write_results(result, args.out, note=note, method="exact-logistic")
    unsolved = args.unsolved or _unsolved_path(args.out)
    atomic_write_text(
        unsolved,
        ["status\tvariants", *(f"{k}\t{v}" for k, v in counts.items())],
    )
    if args.manhattan or args.qq:
        _plots(result, manhattan=args.manhattan, qq=args.qq, model="logistic")
    print(
        f"pooled n={result.n}: {counts['solved']} of {counts['seen']} variants solved, "
        f"{counts['not_usable']} not usable (absent or withheld at a site, or singular), "
        f"{counts['not_converged']} not converged -> {args.out}, {unsolved}",
        file=sys.stderr,
    )
    return 0


def _unsolved_path(out: Path) -> Path:
    """``results/exact/qt.tsv.gz`` -> ``results/exact/qt.unsolved.tsv``."""
    name = out.name.removesuffix(".gz").removesuffix(".tsv")
    return out.with_name(f"{name}.unsolved.tsv")


def _plots(result, *, manhattan: Path | None, qq: Path | None, model: str = "linear") -> None:
    """Manhattan/QQ plots of the pooled fit with the meta-analysis' plotting code."""
    import numpy as np

    from snakemake_fedgen.meta import plots
    from snakemake_fedgen.sumstats.columns import chromosome_code

    mlog10p = np.asarray(result.neg_log10_p, dtype=np.float64)
    if manhattan is not None:
        chrom = np.array([chromosome_code(str(c)) for c in result.chrom], dtype=np.int64)
        pos = np.asarray(result.pos, dtype=np.int64)
        plots.manhattan(
            manhattan,
            chrom=chrom,
            pos=pos,
            neg_log10_p=mlog10p,
            title=f"Exact pooled {model} regression (n={result.n})",
        )
    if qq is not None:
        # Genomic inflation from the t statistics (t^2 ~ chi^2_1 for large df).
        t2 = np.square(np.asarray(result.t, dtype=np.float64))
        t2 = t2[np.isfinite(t2)]
        lam = float(np.median(t2) / 0.454936423119572) if len(t2) else float("nan")
        plots.qq(qq, neg_log10_p=mlog10p, lambda_gc=lam)
