"""The demo (``fedgen demo``, ``make demo``): a federated GWAS over three simulated sites, one node each.

Run as ``fedgen demo [--out demo-run] [--scale small] [--seed 42]`` from a source checkout (it
runs the repository's workflow and profile). It checks
the tools, simulates the federation, starts one node per site (own storage roots, own token),
runs ``workflows/federated-gwas`` through ``snakemake --executor fedgen --profile profiles/demo``
with a progress display, writes the HTML report, prints the top hits next to the simulated truth
and says where the plots are. The nodes it started are stopped on success, failure, Ctrl-C and
SIGTERM.

Layout under ``--out``::

    data/                 what the sites hold (fedgen simulate): sites/<S>/ data, work, egress
    nodes/<S>/            each node's state, config, token file and log
    coordinator/          the Snakemake working directory: registry, references, results
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError, FedgenError

from snakemake_fedgen.assemblies import plink_chrom

# The source checkout: snakemake_fedgen/demo.py -> the repository root.
REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflows" / "federated-gwas" / "workflow" / "Snakefile"
CONFIGFILE = REPO / "workflows" / "federated-gwas" / "config" / "config.yaml"
PROFILE = REPO / "profiles" / "demo"
TOOLS = ("plink2", "bcftools", "beagle", "java")
#: The caller name the coordinator uses at every node (one token per caller and node).
CALLER = "coordinator"


# ------------------------------------------------------------------------------------------
# the federation: simulated data and one node per site
# ------------------------------------------------------------------------------------------


def check_tools(tools: Sequence[str] = TOOLS) -> None:
    """Raise ConfigError naming every missing command line tool and how to get it."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ConfigError(
            f"missing tools: {', '.join(missing)}; run `make install` (Debian packages plink2, "
            "bcftools, beagle, default-jre-headless) and retry."
        )


#: The demo's site that holds its phenotypes as GA4GH Phenopacket v2 files, not a table.
PHENOPACKETS_SITES = ("C",)


def simulate(
    data: Path,
    *,
    seed: int,
    scale: str,
    phenopackets_sites: Sequence[str] = (),
    chromosomes: Sequence[str] = ("20",),
) -> dict[str, Any]:
    """Simulate the federation into ``data`` unless the same one is already there.

    ``phenopackets_sites`` hold their phenotypes as a folder of Phenopacket v2 files (the
    registry's phenotypes dataset points at it); see ``fedgen simulate --phenopackets-sites``.
    ``chromosomes``: see ``fedgen simulate --chromosomes``.
    """
    truth_path = data / "truth.json"
    packets = sorted(phenopackets_sites)
    if truth_path.exists():
        truth = json.loads(truth_path.read_text())
        if (
            truth.get("seed") == seed
            and truth.get("scale") == scale
            and truth.get("phenopackets_sites", []) == packets
            and simulated_chromosomes(truth) == list(chromosomes)
        ):
            return truth
        shutil.rmtree(data)
    cmd = [
        *_fedgen(),
        "simulate",
        "--out",
        str(data),
        "--seed",
        str(seed),
        "--scale",
        scale,
        "--chromosomes",
        ",".join(chromosomes),
    ]
    if packets:
        cmd += ["--phenopackets-sites", ",".join(packets)]
    subprocess.run(cmd, check=True)
    return json.loads(truth_path.read_text())


def simulated_chromosomes(truth: dict[str, Any]) -> list[str]:
    """The chromosomes of a simulated federation, from its truth file."""
    region = truth.get("region", {})
    if "chromosomes" in region:
        return [str(c["chrom"]) for c in region["chromosomes"]]
    return [str(region.get("chrom", "20"))]


def _fedgen() -> list[str]:
    return [sys.executable, "-m", "snakemake_fedgen"]


def tool_env() -> dict[str, str]:
    """This environment with the Python installation's bin first (fedgen, snakemake on PATH)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Site:
    """A running site node and the token the coordinator uses with it."""

    name: str
    node: Any  # NodeProcess
    token_env: str
    token: str


def workflow_images() -> list[str]:
    """Approved toolset ids of the workflow (the container: images of its rules/common.smk)."""
    from snakemake_fedgen.onboarding import workflow_images as images

    return images(SNAKEFILE.parent.parent)


@contextlib.contextmanager
def federation(
    data: Path,
    nodes_dir: Path,
    registry_out: Path,
    *,
    runtime: str = "auto",
    airlock: dict[str, Any] | None = None,
    masking_keys: dict[str, Path] | None = None,
    approved_code: bool = True,
    site_config: dict[str, dict[str, Any]] | None = None,
) -> Iterator[dict[str, Site]]:
    """Start one ``fedgen node`` per simulated site and write the coordinator's registry.

    Parameters
    ----------
    data : Path
        ``fedgen simulate`` output (its ``sites.yaml`` and per-site ``node.yaml``).
    nodes_dir : Path
        Parent of each node's state directory.
    registry_out : Path
        Where the coordinator's ``sites.yaml`` (with the nodes' real ports) is written.
    runtime : str
        Node runtime (``auto`` = bubblewrap where it works).
    airlock : dict, optional
        Overrides of the simulated airlock policy.
    masking_keys : dict, optional
        Site name -> X25519 private key file (``fedgen exact keygen``): each node masks its
        site's secure-aggregation uploads with it, the peers' public keys pinned in its config.
    site_config : dict, optional
        Site name -> node.yaml keys that override that site's (e.g. ``{"runtime": "slurm",
        "slurm": {...}}`` to run one site on a Slurm cluster).
    approved_code : bool
        Each site's steward approves this repository's workflow release and the node runs
        approved code only (``approved_code: required``).

    Yields
    ------
    dict of str to Site
        The running sites; every node is stopped when the context exits, however it exits.
    """
    from snakemake_fedgen.node.process import NodeProcess, free_port

    registry = yaml.safe_load((data / "sites.yaml").read_text())
    peers: dict[str, str] = {}
    if masking_keys:
        from snakemake_fedgen.exact.secure import load_private_key, public_key_text

        peers = {s: public_key_text(load_private_key(k)) for s, k in masking_keys.items()}
    sites: dict[str, Site] = {}
    try:
        for name, entry in registry["sites"].items():
            node_cfg = yaml.safe_load((data / "sites" / name / "node.yaml").read_text())
            state = nodes_dir / name
            state.mkdir(parents=True, exist_ok=True)
            token = secrets.token_urlsafe(24)
            token_file = state / "tokens.yaml"
            token_file.write_text(yaml.safe_dump({CALLER: token}))
            token_file.chmod(0o600)
            node_cfg.update(
                runtime=runtime,
                token_file=str(token_file),
                allowed_images=workflow_images(),
            )
            if airlock:
                node_cfg["airlock"] = {**node_cfg.get("airlock", {}), **airlock}
            if masking_keys:
                node_cfg.update(
                    secure_aggregation_key=str(masking_keys[name]),
                    secure_aggregation_peers=peers,
                )
            register_site_datasets(state / "state", entry)
            if approved_code:
                from snakemake_fedgen.node.approvals import approve

                approve(state / "state", SNAKEFILE.parent.parent, by="demo steward")
                node_cfg["approved_code"] = "required"
            node_cfg.update((site_config or {}).get(name, {}))
            node = NodeProcess(state / "state", port=free_port(), config=node_cfg)
            sites[name] = Site(name, node, entry["token_env"], token)
            entry["tes_url"] = node.url
            entry["egress_read_url"] = node.egress_read_url
        registry_out.parent.mkdir(parents=True, exist_ok=True)
        registry_out.write_text(yaml.safe_dump(registry, sort_keys=False))
        yield sites
    finally:
        for site in sites.values():
            site.node.stop()


def register_site_datasets(state_dir: Path, entry: dict[str, Any]) -> None:
    """What a steward does before the first run: register the site's genotypes, with the
    public reference panel's variants, so every release is checked on the site's facts."""
    from snakemake_fedgen.egress.facts import register_dataset
    from snakemake_fedgen.governance.datasets import local_path

    datasets = entry.get("datasets") or {}
    panel = datasets.get("reference_panel", {}).get("url")
    register_dataset(
        state_dir,
        "genotypes",
        genotypes=Path(local_path(datasets["genotypes"]["url"])),
        variants=[Path(local_path(panel))] if panel else [],
    )


# ------------------------------------------------------------------------------------------
# running the workflow
# ------------------------------------------------------------------------------------------


_PROGRESS = re.compile(r"(\d+) of (\d+) steps \((\d+)%\) done")
_RULE = re.compile(r"^\s*(?:local)?rule (\w+):")
_WILDCARDS = re.compile(r"^\s*wildcards: (.*)$")
# The executor's per-site line: jobs done/failed/running/queued/waiting at each site.
_SITES = re.compile(r"fedgen: progress (.*)$")


def snakemake_command(
    workdir: Path,
    *,
    executor: str = "fedgen",
    cores: int = 2,
    extra_config: Sequence[str] = (),
    targets: Sequence[str] = (),
    configfile: Path = CONFIGFILE,
) -> list[str]:
    """The Snakemake command line of the demo (fedgen executor) or its local twin.

    ``configfile`` replaces the workflow's shipped config (the Snakefile's own ``configfile:``
    is relative to ``workdir``, so only this file's keys apply).
    """
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
    ]
    if executor == "fedgen":
        cmd += ["--profile", str(PROFILE), "--fedgen-sites", "sites.yaml"]
        config = ["sites=sites.yaml", "dataset_access=reference"]
    else:
        cmd += ["--cores", str(cores)]
        config = ["sites=sites.yaml", "dataset_access=local"]
    # Targets go before --config, which takes every following word as a key=value pair.
    return [*cmd, *targets, "--config", *config, *extra_config]


def _interruptible() -> None:
    """In the child: let SIGINT through even if this process was started with it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_snakemake(
    cmd: Sequence[str], *, env: dict[str, str], log_path: Path, show: bool = True
) -> float:
    """Run Snakemake, print a one-line-per-job progress display, keep the full log.

    Returns
    -------
    float
        Wall time in seconds.

    Raises
    ------
    FedgenError
        Snakemake failed; the message names the log and quotes its error lines.
    """
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rule = None
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            list(cmd),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_interruptible,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if not show:
                    continue
                if m := _RULE.match(line):
                    rule = m.group(1)
                elif rule and (m := _WILDCARDS.match(line)):
                    print(f"  started  {rule:<18} {m.group(1)}", flush=True)
                    rule = None
                elif m := _SITES.search(line):
                    print(f"  sites    {m.group(1)}", flush=True)
                elif m := _PROGRESS.search(line):
                    done, total, pct = int(m.group(1)), int(m.group(2)), int(m.group(3))
                    bar = "#" * (pct // 5)
                    print(
                        f"  [{bar:<20}] {done}/{total} jobs  {time.monotonic() - start:6.0f} s",
                        flush=True,
                    )
                elif "Error" in line or "error:" in line:
                    print(f"  {line.rstrip()}", flush=True)
            code = proc.wait()
        except BaseException:
            # Ask Snakemake to stop the way Ctrl-C does: it cancels its live tasks at every
            # site. Give it the time to do so before the nodes go down.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
            if proc.poll() is None:
                proc.kill()
            raise
    if code != 0:
        errors = [ln for ln in log_path.read_text().splitlines() if "rror" in ln][-8:]
        raise FedgenError(
            f"snakemake failed (exit {code}); full log: {log_path}\n" + "\n".join(errors)
        )
    return time.monotonic() - start


# ------------------------------------------------------------------------------------------
# results next to the truth
# ------------------------------------------------------------------------------------------


def read_meta(path: Path) -> list[dict[str, str]]:
    """Rows of a (gzipped) GWAS-SSF table as dicts."""
    with gzip.open(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, ln.rstrip("\n").split("\t"), strict=False)) for ln in f]


def _mlog10p(row: dict[str, str]) -> float:
    return float(row.get("neg_log_10_p_value") or "nan")


def _locus(chrom: object, pos: object) -> tuple[str, int]:
    return plink_chrom(str(chrom)), int(str(pos))


def summary(workdir: Path, truth: dict[str, Any], *, traits: Sequence[str] = ("qt", "bt")) -> str:
    """Top hit per trait and every causal variant's meta-analysis result next to the truth."""
    lines = []
    for trait in traits:
        path = workdir / "results" / "meta" / f"{trait}.tsv.gz"
        if not path.exists():
            continue
        rows = read_meta(path)
        by_pos = {_locus(r["chromosome"], r["base_pair_location"]): r for r in rows}
        top = max(rows, key=_mlog10p)
        lines.append(
            f"{trait}: top hit {top['chromosome']}:{top['base_pair_location']} "
            f"{top['other_allele']}>"
            f"{top['effect_allele']} beta={float(top['beta']):+.3f} "
            f"p={float(top['p_value']):.2e} (n={top.get('n', '?')}, sites={top.get('direction', '?')})"
        )
        lines.append(
            f"  {'causal variant':<24}{'true beta':>10}{'meta beta':>11}{'p':>11}  rank  verdict"
        )
        ranked = sorted(rows, key=_mlog10p, reverse=True)
        rank = {
            _locus(r["chromosome"], r["base_pair_location"]): i + 1 for i, r in enumerate(ranked)
        }
        for c in truth["causal_variants"]:
            key = "beta" if trait == "qt" else "liability_beta"
            chrom = str(c.get("chrom", "20"))
            locus = _locus(chrom, c["pos"])
            r = by_pos.get(locus)
            label = f"{c['id']} {chrom}:{c['pos']}"
            if r is None:
                lines.append(f"  {label:<24}{c[key]:>+10.3f}{'(not imputed/kept)':>22}")
                continue
            beta = float(r["beta"])
            if r["effect_allele"] != c["alt"]:
                beta = -beta  # truth effects are per ALT allele
            p = float(r["p_value"])
            verdict = "genome-wide significant" if p < 5e-8 else ""
            lines.append(
                f"  {label:<24}{c[key]:>+10.3f}{beta:>+11.3f}{p:>11.2e}  {rank[locus]:>4}  "
                f"{verdict}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def risk_config(out: Path, data: Path, *, seed: int) -> Path:
    """The demo's workflow config with the risk target on (docs/risk-prediction.md).

    The score's weights come from the meta-analysis of ``bt``, which shares the simulated
    causal variants with the CVD event (a score for a related trait, as often in practice);
    every node masks its round sums (secure aggregation).
    """
    config = yaml.safe_load(CONFIGFILE.read_text())
    config["risk"].update(
        enabled=True,
        secure=True,
        run=f"demo-{seed}",
        gwas_trait="bt",
        pgs={**config["risk"]["pgs"], "ld_panel": str(data / "reference" / "panel.vcf.gz")},
    )
    path = out / "workflow-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def masking_keys(keys_dir: Path, sites: Sequence[str]) -> dict[str, Path]:
    """Each site steward's X25519 key for its node (outside every read root)."""
    from snakemake_fedgen.exact.secure import generate_key

    keys = {}
    for site in sites:
        keys[site] = keys_dir / site / "x25519.key"
        if not keys[site].exists():
            generate_key(keys[site])
    return keys


def risk_summary(workdir: Path) -> str:
    """AUC, Brier and the score's gain over the clinical model, in-sample and held out."""
    lines = []
    for evalset, label in (("insample", "in-sample"), ("loso", "leave-one-site-out")):
        path = workdir / "results" / "risk" / "eval" / f"{evalset}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        lines.append(
            f"{label}: n={result['n']} ({result['n_cases']} events) at sites "
            f"{','.join(result['sites'])}"
        )
        for m, v in result["models"].items():
            lo, hi = v["auc_ci"]
            lines.append(
                f"  {m:<14} AUC {v['auc']:.3f} ({lo:.3f}-{hi:.3f})  Brier {v['brier']:.4f}  "
                f"Nagelkerke R2 {v['nagelkerke_r2']:.3f}  O/E {v['oe_ratio']:.2f}"
            )
        for c in result.get("comparisons", []):
            lo, hi = c["delta_auc_ci"]
            nri = c.get("nri", {}).get("categorical", {}).get("total", float("nan"))
            lines.append(
                f"  {c['model']} vs {c['reference']}: delta AUC {c['delta_auc']:+.3f} "
                f"({lo:+.3f} to {hi:+.3f}, p={c['p']:.2g}), categorical NRI {nri:+.3f}"
            )
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(
    out: Path,
    *,
    scale: str = "small",
    seed: int = 42,
    runtime: str = "auto",
    chromosomes: Sequence[str] = ("20",),
    risk: bool = True,
) -> int:
    """Run the whole demo under ``out``; returns the process exit code."""
    # Background jobs start with SIGINT ignored; the demo must stop its nodes on Ctrl-C anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    out = Path(out).absolute()
    work = out / "coordinator"
    try:
        print("== checking tools")
        check_tools()
        print(f"== simulating the federation ({scale}, seed {seed}) into {out / 'data'}")
        truth = simulate(
            out / "data",
            seed=seed,
            scale=scale,
            phenopackets_sites=PHENOPACKETS_SITES,
            chromosomes=chromosomes,
        )
        # The workflow analyses the simulated chromosomes (config `chromosomes`).
        analysed = ["chromosomes=[" + ",".join(f'"{c}"' for c in chromosomes) + "]"]
        configfile, keys = CONFIGFILE, None
        if risk:
            configfile = risk_config(out, out / "data", seed=seed)
            keys = masking_keys(out / "keys", list(truth["sites"]))
        print("== starting one fedgen node per site")
        with federation(
            out / "data", out / "nodes", work / "sites.yaml", runtime=runtime, masking_keys=keys
        ) as sites:
            for s in sites.values():
                print(f"  site {s.name}: {s.node.url} (state {s.node.state_dir})")
            env = tool_env()
            env.update({s.token_env: s.token for s in sites.values()})
            what = "GWAS and risk model" if risk else "GWAS"
            print(f"== running the federated {what} (snakemake --executor fedgen --profile demo)")
            seconds = run_snakemake(
                snakemake_command(work, extra_config=analysed, configfile=configfile),
                env=env,
                log_path=out / "snakemake.log",
            )
            print(f"  done in {seconds:.0f} s (log: {out / 'snakemake.log'})")
            print("== writing the report")
            report = out / "report.html"
            run_snakemake(
                [
                    *snakemake_command(work, extra_config=analysed, configfile=configfile),
                    f"--report={report}",
                ],
                env=env,
                log_path=out / "report.log",
                show=False,
            )
        print("== nodes stopped")
        print("== results (meta-analysis over the three sites) next to the simulated truth")
        print(summary(work, truth))
        if risk:
            print("== risk model for the CVD event (clinical features, then + polygenic score)")
            print(risk_summary(work))
            print(
                f"Model card:         {work / 'results' / 'risk' / 'clinical_pgs.model_card.html'}"
            )
        print(f"\nManhattan/QQ plots: {work / 'results' / 'meta'}/{{qt,bt}}.{{manhattan,qq}}.png")
        print(f"QC counts per site: {work / 'results' / 'qc' / 'qc_counts.tsv'}")
        print(f"HTML report:        {report}")
        crate = work / "provenance" / "ro-crate" / "ro-crate-metadata.json"
        print(f"RO-Crate (run):     {crate}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: the nodes were stopped", file=sys.stderr)
        return 130
    except (FedgenError, subprocess.CalledProcessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
