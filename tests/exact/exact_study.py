"""Simulated multi-site studies for the exact-mode tests: real VCF -> plink2 -> pgen filesets.

Dosages go through a real ``plink2 --vcf ... dosage=DS --make-pgen`` conversion; each site's
fileset is cut from the pooled one with ``plink2 --keep``, so the site files and the pooled
reference analysis hold the very same stored dosages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pgenlib

PLINK2 = "/usr/bin/plink2"


@dataclass
class Study:
    root: Path
    sites: tuple[str, ...]
    pooled: Path  # pfile prefix of all samples
    site_pfiles: dict[str, Path]
    pheno: Path  # pooled phenotype/covariate table (with site indicator columns)
    site_pheno: dict[str, Path]
    covariates: tuple[str, ...]
    causal: int  # index of the causal variant in the pvar
    beta: float


def run_plink2(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [PLINK2, "--threads", "1", "--memory", "1000", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"plink2 {' '.join(args)} failed:\n{proc.stdout[-2000:]}")


def simulate_arrays(sizes, m, rng, *, beta=0.25, causal=3, site_shift=0.6, missing_pheno=0):
    """Return per-sample arrays: site index, dosages (N, m), age, sex, y."""
    site_of = np.repeat(np.arange(len(sizes)), sizes)
    n = len(site_of)
    base = rng.uniform(0.03, 0.5, m)
    # Allele frequencies drift between sites, and sites differ in mean phenotype: the
    # situation the site indicators are there for.
    freqs = np.clip(base[None, :] + rng.normal(0, 0.03, (len(sizes), m)), 0.01, 0.99)
    p = freqs[site_of]
    dos = rng.binomial(2, p).astype(float)
    dos = np.clip(dos + rng.normal(0, 0.15, dos.shape), 0, 2)
    dos = np.round(dos, 3)
    age = np.round(rng.normal(55, 9, n), 2)
    sex = rng.integers(1, 3, n).astype(float)
    shifts = rng.normal(0, site_shift, len(sizes))
    y = shifts[site_of] + 0.03 * age + 0.2 * sex + beta * dos[:, causal] + rng.normal(0, 1, n)
    y = np.round(y, 5)
    if missing_pheno:
        y[rng.choice(n, missing_pheno, replace=False)] = np.nan
    return site_of, dos, age, sex, y


def write_vcf(path: Path, iids: list[str], dos: np.ndarray) -> None:
    m = dos.shape[1]
    with path.open("w") as f:
        f.write("##fileformat=VCFv4.2\n##contig=<ID=20,length=64444167>\n")
        f.write('##FORMAT=<ID=DS,Number=1,Type=Float,Description="ALT dosage">\n')
        f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(iids) + "\n")
        alleles = [("A", "G"), ("C", "T"), ("G", "A"), ("T", "C")]
        for j in range(m):
            ref, alt = alleles[j % 4]
            pos = 100000 + 137 * j
            values = "\t".join(f"{x:.3f}" for x in dos[:, j])
            f.write(f"20\t{pos}\t20:{pos}:{ref}:{alt}\t{ref}\t{alt}\t.\tPASS\t.\tDS\t{values}\n")


def make_study(
    root: Path,
    sizes=(200, 300, 150),
    m=120,
    seed=7,
    *,
    names=None,
    beta=0.25,
    missing_pheno=0,
) -> Study:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sites = tuple(names or "ABCDEFGH"[: len(sizes)])
    site_of, dos, age, sex, y = simulate_arrays(
        sizes, m, rng, beta=beta, missing_pheno=missing_pheno
    )
    iids = [f"{sites[s]}_{i}" for i, s in enumerate(site_of)]
    write_vcf(root / "pooled.vcf", iids, dos)
    run_plink2(
        "--vcf", "pooled.vcf", "dosage=DS", "--double-id", "--make-pgen", "--out", "pooled",
        cwd=root,
    )  # fmt: skip
    covariates = ("age", "sex")
    indicator_names = [f"site_{s}" for s in sites[1:]]
    header = ["#FID", "IID", "age", "sex", "qt", *indicator_names]
    rows = []
    for i, iid in enumerate(iids):
        ind = [("1" if site_of[i] == j else "0") for j in range(1, len(sites))]
        qt = "NA" if np.isnan(y[i]) else f"{y[i]:.5f}"
        rows.append([iid, iid, f"{age[i]:.2f}", f"{sex[i]:.0f}", qt, *ind])
    pheno = root / "pheno.tsv"
    pheno.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    site_pfiles, site_pheno = {}, {}
    for j, site in enumerate(sites):
        keep = root / f"{site}.keep"
        keep.write_text("".join(f"{iid}\t{iid}\n" for i, iid in enumerate(iids) if site_of[i] == j))
        run_plink2("--pfile", "pooled", "--keep", keep.name, "--make-pgen", "--out", site, cwd=root)
        # A site's own table carries only its own samples and no indicator columns: the
        # indicators are built by `fedgen exact aggregate` from the registry's site order.
        ph = root / f"{site}.pheno.tsv"
        ph.write_text(
            "\n".join(
                "\t".join(r[:5])
                for r in [header, *(r for i, r in enumerate(rows) if site_of[i] == j)]
            )
            + "\n"
        )
        site_pfiles[site] = root / site
        site_pheno[site] = ph
    return Study(
        root=root,
        sites=sites,
        pooled=root / "pooled",
        site_pfiles=site_pfiles,
        pheno=pheno,
        site_pheno=site_pheno,
        covariates=covariates,
        causal=3,
        beta=beta,
    )


def read_glm(path: Path) -> dict[str, dict[str, str]]:
    """Read a plink2 ``.glm.linear`` file keyed by variant ID."""
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    return {
        row[2]: dict(zip(header, row, strict=True)) for row in (x.split("\t") for x in lines[1:])
    }


def pooled_glm(study: Study, out: str = "pooled_glm", *, pheno: Path | None = None, names=None):
    """Run plink2 --glm on all samples with covariates + site indicators; return the path(s)."""
    covars = [*study.covariates, *(f"site_{s}" for s in study.sites[1:])]
    args = [
        "--pfile", "pooled", "--pheno", str(pheno or study.pheno), "--covar", str(study.pheno),
        "--covar-name", ",".join(covars), "--glm", "hide-covar", "cols=+a1freq",
        "--out", out,
    ]  # fmt: skip
    if names:
        args[args.index("--pheno") + 2 : args.index("--pheno") + 2] = ["--pheno-name", names]
    else:
        args[args.index("--pheno") + 2 : args.index("--pheno") + 2] = ["--pheno-name", "qt"]
    run_plink2(*args, cwd=study.root)
    return study.root


def write_pfile(prefix: Path, iids: list[str], dos: np.ndarray, *, chrom="20") -> None:
    """Write dosages (m, n) as a PLINK 2 fileset with pgenlib (faster than a VCF round trip)."""
    m, n = dos.shape
    writer = pgenlib.PgenWriter(
        bytes(prefix.with_suffix(".pgen")), n, variant_ct=m, dosage_present=True
    )
    for j in range(m):
        writer.append_dosages(np.ascontiguousarray(dos[j], dtype=np.float64))
    writer.close()
    lines = ["#CHROM\tPOS\tID\tREF\tALT"]
    for j in range(m):
        pos = 200000 + 101 * j
        lines.append(f"{chrom}\t{pos}\t{chrom}:{pos}:A:G\tA\tG")
    prefix.with_suffix(".pvar").write_text("\n".join(lines) + "\n")
    prefix.with_suffix(".psam").write_text("#FID\tIID\n" + "".join(f"{i}\t{i}\n" for i in iids))


def readable_by_task_user(path: Path) -> None:
    """Let the node's task user read a site secret, as a steward does (group, not world).

    A node running as root runs tasks as ``nobody``; the key keeps mode 0640 with the group
    ``nogroup`` (65534), the task user's group.
    """
    if os.geteuid() == 0:
        os.chown(path, -1, 65534)
        path.chmod(0o640)


def add_site_keys(registry: dict, key_path: Callable[[str], Path]) -> None:
    """Give every site of ``registry`` an X25519 key pair made by ``fedgen exact keygen``.

    The private key (at ``key_path(site)``) becomes the site dataset ``x25519_key``, the printed
    public key the site's ``public_key_x25519``.
    """
    for name, entry in registry["sites"].items():
        key = key_path(name)
        key.parent.mkdir(parents=True, exist_ok=True)
        printed = subprocess.run(
            [sys.executable, "-m", "snakemake_fedgen", "exact", "keygen", "--out", str(key)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        entry["public_key_x25519"] = printed.split(":", 1)[1].strip()
        entry["datasets"]["x25519_key"] = {"url": key.as_uri()}
        readable_by_task_user(key)
