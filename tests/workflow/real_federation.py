"""A small federation of real genotypes, laid out the way sites hold their files.

Source: Debian's ``bio-eagle-examples`` (379 European 1000 Genomes samples, 2,000 SNPs of
chromosomes 21 and 22 with rsIDs, GRCh37; as a PLINK 1 fileset, an unphased VCF and an Eagle-phased VCF). Built here:

* a reference panel of 200 samples (the phased VCF), disjoint from the sites' samples;
* three sites from the other 179 samples, each hiding every fifth SNP from its "array" (those
  must be imputed), each holding its files differently:

  - ``A`` (46 samples): a PLINK 1 fileset in a folder, a phenotype table keyed by IID alone;
  - ``B`` (62): a folder of VCFs, one per chromosome, samples renamed to their IIDs, a table
    keyed by FID and IID;
  - ``C`` (71): one VCF with ``chr``-prefixed chromosome names and the package's ``FID_IID``
    sample names, a table keyed by FID and IID. Its array also carries records the real array
    lacks, injected here so that the import must count them: an indel, a multi-allelic site and
    a second SNP at one position; its table has two people without genotypes and one ID twice.

* a quantitative trait: 1.3 per ALT allele of one hidden SNP, plus age and sex effects and
  standard normal noise.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXAMPLES = Path("/usr/share/doc/bio-eagle/examples")
SITE_SIZES = {"A": 46, "B": 62, "C": 71}
PANEL_SIZE = 200
HIDE_EVERY = 5
BETA = 1.3
SEED = 2026
PALINDROMIC = {("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")}


@dataclass
class RealFederation:
    """Where the sites' files are and what the trait's truth is."""

    root: Path
    causal: dict[str, object]
    injected: dict[str, int]
    hidden: int


def unpack_plink(folder: Path, stem: str = "EUR_test") -> Path:
    """The package's PLINK 1 fileset, unpacked into ``folder`` as ``stem.bed/.bim/.fam``;
    returns the prefix. Fails (not skips) when ``make install`` did not install the package."""
    if not (EXAMPLES / "EUR_test.bed.gz").exists():
        raise AssertionError("bio-eagle-examples is not installed: run `make install`")
    for ext in ("bed", "bim", "fam"):
        (folder / f"{stem}.{ext}").write_bytes(
            gzip.decompress((EXAMPLES / f"EUR_test.{ext}.gz").read_bytes())
        )
    return folder / stem


def _sh(*argv: str, stdout: Path | None = None) -> str:
    if stdout is None:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    with stdout.open("wb") as f:
        subprocess.run(argv, check=True, stdout=f, stderr=subprocess.PIPE)
    return ""


def _bgzip_index(path: Path) -> None:
    _sh("bcftools", "index", "-f", str(path))


def _lines(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join(rows) + "\n")


def build(root: Path) -> RealFederation:
    """Write the panel, the three sites' files and the truth under ``root``."""
    rng = np.random.default_rng(SEED)
    tmp = root / "tmp"
    tmp.mkdir(parents=True)
    ref = root / "reference"
    ref.mkdir()
    vcf_names = _sh("bcftools", "query", "-l", str(EXAMPLES / "phased.vcf.gz")).split()
    panel, rest = vcf_names[:PANEL_SIZE], vcf_names[PANEL_SIZE:]
    groups: dict[str, list[str]] = {}
    start = 0
    for site, n in SITE_SIZES.items():
        groups[site] = rest[start : start + n]
        start += n
    _lines(tmp / "panel.txt", panel)
    _sh(
        "bcftools", "view", "-S", str(tmp / "panel.txt"), "-Oz", "-o",
        str(ref / "panel.vcf.gz"), str(EXAMPLES / "phased.vcf.gz"),
    )  # fmt: skip
    _bgzip_index(ref / "panel.vcf.gz")

    # Variants: every fifth SNP is not on the sites' arrays.
    records = [
        ln.split("\t")
        for ln in _sh(
            "bcftools", "query", "-f", "%CHROM\t%POS\t%ID\t%REF\t%ALT\n",
            str(EXAMPLES / "EUR_test.vcf.gz"),
        ).splitlines()
    ]  # fmt: skip
    hidden = [r for i, r in enumerate(records) if i % HIDE_EVERY == 2]
    _lines(tmp / "hidden.txt", [r[2] for r in hidden])
    _lines(tmp / "hidden.regions", [f"{r[0]}\t{r[1]}" for r in hidden])

    # Genotypes of the site samples (unphased VCF): the causal SNP is a hidden, common,
    # non-palindromic one.
    site_samples = [s for g in groups.values() for s in g]
    _lines(tmp / "sites.txt", site_samples)
    gt = _sh(
        "bcftools", "query", "-S", str(tmp / "sites.txt"), "-f", "%ID\t%REF\t%ALT[\t%GT]\n",
        str(EXAMPLES / "EUR_test.vcf.gz"),
    ).splitlines()  # fmt: skip
    dosage: dict[str, np.ndarray] = {}
    alleles: dict[str, tuple[str, str]] = {}
    for line in gt:
        f = line.split("\t")
        calls = [c.replace("|", "/") for c in f[3:]]
        d = np.array([np.nan if "." in c else c.count("1") for c in calls], dtype=float)
        dosage[f[0]] = d
        alleles[f[0]] = (f[1], f[2])
    hidden_ids = {r[2] for r in hidden}
    candidates = [
        rs
        for rs, d in dosage.items()
        if rs in hidden_ids
        and alleles[rs] not in PALINDROMIC
        and not np.isnan(d).any()
        and 0.3 <= np.nanmean(d) / 2 <= 0.45
    ]
    causal = sorted(candidates)[len(candidates) // 2]
    pos = next(int(r[1]) for r in records if r[2] == causal)

    # Phenotypes.
    n = len(site_samples)
    age = rng.normal(50, 10, n).round(1)
    sex = rng.integers(1, 3, n)
    qt = BETA * dosage[causal] + 0.03 * (age - 50) + 0.4 * (sex - 1.5) + rng.normal(0, 1, n)
    pheno = {s: (f"{age[i]}", f"{sex[i]}", f"{qt[i]:.4f}") for i, s in enumerate(site_samples)}

    def iid(vcf_name: str) -> str:
        return vcf_name.split("_", 1)[1]

    # Site A: PLINK 1 fileset (FID IID as in the package's .fam), table keyed by IID alone.
    a = root / "A" / "data"
    (a / "genotypes").mkdir(parents=True)
    unpack_plink(tmp)
    _lines(tmp / "A.keep", [" ".join(s.split("_", 1)) for s in groups["A"]])
    _sh(
        "plink2", "--bfile", str(tmp / "EUR_test"), "--keep", str(tmp / "A.keep"),
        "--exclude", str(tmp / "hidden.txt"), "--make-bed", "--out", str(a / "genotypes" / "array"),
    )  # fmt: skip
    (a / "genotypes" / "array.log").unlink()
    _lines(
        a / "phenotypes.tsv",
        ["IID\tage\tsex\tqt", *(f"{iid(s)}\t" + "\t".join(pheno[s]) for s in groups["A"])],
    )

    # Site B: VCFs split by region, samples named by IID, table keyed by FID and IID.
    b = root / "B" / "data"
    (b / "genotypes").mkdir(parents=True)
    _lines(tmp / "B.txt", groups["B"])
    _lines(tmp / "B.rename", [f"{s}\t{iid(s)}" for s in groups["B"]])
    _sh(
        "bcftools", "view", "-S", str(tmp / "B.txt"), "-T", "^" + str(tmp / "hidden.regions"),
        "-Oz", "-o", str(tmp / "B.vcf.gz"), str(EXAMPLES / "EUR_test.vcf.gz"),
    )  # fmt: skip
    _sh(
        "bcftools", "reheader", "-s", str(tmp / "B.rename"), "-o", str(tmp / "B.named.vcf.gz"),
        str(tmp / "B.vcf.gz"),
    )  # fmt: skip
    _bgzip_index(tmp / "B.named.vcf.gz")
    for chrom in ("21", "22"):
        _sh(
            "bcftools", "view", "-r", chrom, "-Oz", "-o", str(b / "genotypes" / f"chr{chrom}.vcf.gz"),
            str(tmp / "B.named.vcf.gz"),
        )  # fmt: skip
    _lines(
        b / "phenotypes.tsv",
        [
            "FID\tIID\tage\tsex\tqt",
            *(f"{iid(s)}\t{iid(s)}\t" + "\t".join(pheno[s]) for s in groups["B"]),
        ],
    )

    # Site C: one VCF, chr-prefixed, FID_IID sample names; injected non-SNP records.
    c = root / "C" / "data"
    c.mkdir(parents=True)
    _lines(tmp / "C.txt", groups["C"])
    text = _sh(
        "bcftools", "view", "-S", str(tmp / "C.txt"), "-T", "^" + str(tmp / "hidden.regions"),
        str(EXAMPLES / "EUR_test.vcf.gz"),
    )  # fmt: skip
    head = [ln for ln in text.splitlines() if ln.startswith("#")]
    body = [ln.split("\t") for ln in text.splitlines() if not ln.startswith("#")]
    head = [ln.replace("##contig=<ID=", "##contig=<ID=chr") for ln in head]
    extra = []
    for k, (ref_allele, alt) in enumerate((("A", "AT"), ("C", "G,T"), ("G", "A"))):
        template = body[100 + 10 * k]
        row = list(template)
        if k < 2:
            row[1] = str(int(row[1]) + 1)  # a new position next to an array SNP
        row[2], row[3], row[4] = ".", ref_allele, alt  # k == 2: a second SNP at the same POS
        extra.append(row)
    rows = sorted(body + extra, key=lambda r: (int(r[0]), int(r[1])))
    vcf_text = "\n".join(head + ["\t".join(["chr" + r[0], *r[1:]]) for r in rows]) + "\n"
    (tmp / "C.vcf").write_text(vcf_text)
    _sh("bgzip", "-c", str(tmp / "C.vcf"), stdout=c / "genotypes.vcf.gz")
    table = ["FID\tIID\tage\tsex\tqt", *(f"{s}\t{s}\t" + "\t".join(pheno[s]) for s in groups["C"])]
    table += ["X_NOBODY1\tX_NOBODY1\t40\t1\t0.1", "X_NOBODY2\tX_NOBODY2\t41\t2\t0.2"]
    table.append(table[1])  # one person listed twice
    _lines(c / "phenotypes.tsv", table)
    truth = {
        "causal": {"rsid": causal, "pos": pos, "ref": alleles[causal][0], "alt": alleles[causal][1]},
        "hidden": len(hidden),
        # multi-allelic, indel, and the two SNPs sharing one position (both dropped)
        "injected": {"variants_not_snp": 1, "variants_multiallelic": 1,
                     "variants_duplicate_position": 2},
    }  # fmt: skip
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    return RealFederation(root, truth["causal"], truth["injected"], len(hidden))
