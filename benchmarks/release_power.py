"""Power of the federated GWAS under the release controls: rounding and differential privacy.

One run of the demo's federated GWAS (simulated federation, real nodes with approved code and
registered datasets, the real workflow), then the quantitative trait's per-site summary
statistics are released again under each protection and meta-analysed with the project's own
meta-analysis (``fedgen meta``):

* none: the sites' ``plink2 --glm`` results exported unrounded (what left before the rounding);
* rounding: 4 significant digits, as every node now releases;
* DP epsilon 1, 4, 16 (delta 1e-6 per release): the node's Gaussian mechanism, then rounding.

Printed per protection: causal variants found (p < 5e-8 and p < 1e-5, of the truth's causal
variants), the correlation of z with the unprotected meta-analysis, variants meta-analysed.
Run by hand (about 4 minutes at the default scale)::

    .venv/bin/python benchmarks/release_power.py --scale tiny --seed 42
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.reference import read_reference

from snakemake_fedgen import demo
from snakemake_fedgen.egress.export import export_glm
from snakemake_fedgen.egress.privacy import PrivacySettings
from snakemake_fedgen.egress.release import privatise_sumstats, round_sumstats

TRAIT = "qt"


def _site_file(work: Path, path: str) -> Path:
    """The site-side file behind a coordinator reference (the benchmark reads as the admin)."""
    from urllib.parse import unquote, urlparse

    import yaml

    ref = read_reference(work / path)
    assert ref is not None, path
    site = yaml.safe_load((work / "sites.yaml").read_text())["sites"][ref.site]
    url = urlparse(ref.url)
    real = Path(unquote(url.path))
    if real.exists():
        return real
    # The node keeps each caller's files in its area below the write root.
    work_root = Path(unquote(urlparse(site["work_url"]).path))
    rel = real.relative_to(work_root)
    [found] = [p for p in work_root.glob(f"*/{rel}") if p.is_file()]
    return found


def _meta(files: list[Path], out: Path) -> dict[tuple[int, str, str], tuple[float, float]]:
    """fedgen meta over the files; {(pos, effect, other): (z, p)}."""
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "meta", "--out", str(out), *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = demo.read_meta(Path(f"{out}.tsv.gz"))
    result = {}
    for r in rows:
        beta, se = float(r["beta"]), float(r["standard_error"])
        result[(int(r["base_pair_location"]), r["effect_allele"], r["other_allele"])] = (
            beta / se,
            float(r["p_value"]),
        )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="tiny", help="fedgen simulate scale (default tiny)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dp-seed", type=int, default=7, help="seed of the benchmark's DP noise")
    args = ap.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    out = Path(tempfile.mkdtemp(prefix="fedgen-release-power-"))
    work = out / "coordinator"
    t0 = time.monotonic()
    truth = demo.simulate(out / "data", seed=args.seed, scale=args.scale)
    with demo.federation(out / "data", out / "nodes", work / "sites.yaml") as sites:
        env = demo.tool_env()
        env.update({s.token_env: s.token for s in sites.values()})
        demo.run_snakemake(
            demo.snakemake_command(work), env=env, log_path=out / "snakemake.log", show=False
        )
    run_seconds = time.monotonic() - t0
    names = sorted(sites)
    # Unprotected per-site tables: the sites' own glm reports exported without rounding.
    plain: dict[str, Path] = {}
    for name in names:
        glm = _site_file(work, f"sites/{name}/gwas/{TRAIT}.linear.{TRAIT}.glm.linear")
        result = export_glm(
            glm, out / "none" / name / f"{TRAIT}.tsv.gz", site=name, assembly="GRCh38",
            trait_type="quantitative",
        )  # fmt: skip
        plain[name] = Path(result.data_path)
    rng = np.random.default_rng(args.dp_seed)
    scenarios: dict[str, list[Path]] = {"none": [plain[n] for n in names]}

    def released(label: str, eps: float | None) -> list[Path]:
        files = []
        for name in names:
            dest = out / label / name
            dest.mkdir(parents=True, exist_ok=True)
            src = plain[name]
            if eps is not None:
                settings = PrivacySettings(
                    epsilon=eps, delta=1e-6, total_epsilon=eps, total_delta=1e-6
                )
                noisy = dest / "noisy.tsv.gz"
                report = privatise_sumstats(
                    src, noisy, settings=settings, name="x.tsv.gz", rng=rng, min_mac=10
                )
                assert report is not None
                src = noisy
            final = dest / f"{TRAIT}.tsv.gz"
            kept = round_sumstats(
                src, final, digits=4, name=final.name, max_bytes=1 << 34, min_mac=10
            )
            if kept is None:
                raise SystemExit(f"{src}: not a summary-statistics table")
            shutil.copy(f"{plain[name]}-meta.yaml", f"{final}-meta.yaml")
            files.append(final)
        return files

    scenarios["rounding (4 digits)"] = released("rounded", None)
    for eps in (16.0, 4.0, 1.0):
        scenarios[f"DP epsilon {eps:g}"] = released(f"dp{eps:g}", eps)
    causal = [
        (int(c["pos"]), c["alt"], c["ref"]) for c in truth["causal_variants"] if c.get("beta")
    ]
    base = _meta(scenarios["none"], out / "meta-none")
    print(f"\nfederation: scale {args.scale}, seed {args.seed}, {len(names)} sites; workflow run "
          f"{run_seconds:.0f} s; {len(causal)} causal variants for {TRAIT}")  # fmt: skip
    print(f"{'protection':<22}{'p<5e-8':>8}{'p<1e-5':>8}{'z corr':>9}{'variants':>10}")
    for label, files in scenarios.items():
        meta = base if label == "none" else _meta(files, out / f"meta-{len(label)}-{label[:2]}")

        def p_of(key: tuple[int, str, str], meta=meta) -> float:
            pos, alt, ref = key
            hit = meta.get((pos, alt, ref)) or meta.get((pos, ref, alt))
            return hit[1] if hit else 1.0

        strong = sum(p_of(c) < 5e-8 for c in causal)
        weak = sum(p_of(c) < 1e-5 for c in causal)
        shared = [k for k in base if k in meta]
        r = float(np.corrcoef([base[k][0] for k in shared], [meta[k][0] for k in shared])[0, 1])
        print(f"{label:<22}{strong:>8}{weak:>8}{r:>9.3f}{len(meta):>10}")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
