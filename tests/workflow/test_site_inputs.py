"""Inputs as sites hold them: ``fedgen qc import`` / ``phenotypes`` / ``covariates`` and the
onboarding files, on the real 1000 Genomes genotypes of ``bio-eagle-examples``.

Every format must give the same fileset as PLINK 2 reading the package's own PLINK 1 files; the
counts of what the import drops are checked against records injected for that purpose.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen import qc
from snakemake_fedgen.egress.export import read_rsids
from snakemake_fedgen.egress.facts import genotype_files, read_samples
from snakemake_fedgen.onboarding import init_sites, workflow_images, workflow_readiness
from tests.workflow.real_federation import EXAMPLES, unpack_plink

FEDGEN = [sys.executable, "-m", "snakemake_fedgen"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("eur")
    unpack_plink(d, "eur")
    return d


def _pvar_keys(prefix: Path) -> list[str]:
    rows = [ln.split("\t") for ln in Path(f"{prefix}.pvar").read_text().splitlines()]
    return [f"{r[0]}:{r[1]}:{r[3]}:{r[4]}" for r in rows if not r[0].startswith("#")]


def test_import__vcf_folder_plink_and_chr_prefix_give_one_fileset(
    source: Path, tmp_path: Path
) -> None:
    # PLINK 1 folder, as shipped.
    plink_dir = tmp_path / "plink"
    plink_dir.mkdir()
    for ext in ("bed", "bim", "fam"):
        (plink_dir / f"array.{ext}").write_bytes((source / f"eur.{ext}").read_bytes())
    a = qc.import_genotypes(plink_dir, out_prefix=tmp_path / "a" / "raw")
    # One VCF per chromosome, chr-prefixed.
    folder = tmp_path / "vcfs"
    folder.mkdir()
    for chrom in ("21", "22"):
        text = subprocess.run(
            ["bcftools", "view", "-t", chrom, str(EXAMPLES / "EUR_test.vcf.gz")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        text = "\n".join(
            ln.replace("##contig=<ID=", "##contig=<ID=chr") if ln.startswith("#") else "chr" + ln
            for ln in text.splitlines()
        )
        # named against the genome order: the import must sort the files itself
        (folder / f"{'a' if chrom == '22' else 'b'}.vcf").write_text(text + "\n")
    b = qc.import_genotypes(folder, out_prefix=tmp_path / "b" / "raw")
    assert a["variants"] == b["variants"] == 2000
    assert _pvar_keys(tmp_path / "a" / "raw") == _pvar_keys(tmp_path / "b" / "raw")
    # Same sample count as the package's .fam; --double-id for the VCF names.
    assert len(read_samples(tmp_path / "a" / "raw.psam")) == 379
    assert len(read_samples(tmp_path / "b" / "raw.psam")) == 379


def test_import__counts_every_record_it_does_not_carry_on(tmp_path: Path) -> None:
    text = subprocess.run(
        ["bcftools", "view", "-t", "22", str(EXAMPLES / "EUR_test.vcf.gz")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    head = [ln for ln in text.splitlines() if ln.startswith("#")]
    body = [ln.split("\t") for ln in text.splitlines() if not ln.startswith("#")]
    injected = []
    for k, (ref, alt) in enumerate((("A", "AT"), ("C", "G,T"), ("G", "A"), ("T", "<DEL>"))):
        row = list(body[10 + 10 * k])
        if k != 2:
            row[1] = str(int(row[1]) + 1)
        row[2:5] = [".", ref, alt]
        injected.append(row)
    decoy = list(body[0])
    decoy[0] = "GL000207.1"  # an unplaced contig
    rows = [*sorted(body + injected, key=lambda r: int(r[1])), decoy]
    head.insert(1, "##contig=<ID=GL000207.1,length=4262>")
    (tmp_path / "g.vcf").write_text("\n".join(head + ["\t".join(r) for r in rows]) + "\n")
    counts = qc.import_genotypes(tmp_path / "g.vcf", out_prefix=tmp_path / "out" / "raw")
    assert counts == {
        "variants": len(body) + 5,
        "variants_other_contig": 1,
        "variants_multiallelic": 1,
        "variants_not_snp": 2,  # the indel and the symbolic allele
        "variants_duplicate_position": 2,  # both SNPs of the shared position
    }
    kept = qc._count_rows(tmp_path / "out" / "raw.pvar")
    assert kept == len(body) - 1
    table = (tmp_path / "out" / "raw.import.counts.tsv").read_text().splitlines()
    assert table[0] == "step\tquantity\tcount" and len(table) == 6
    # Nothing half-made is left next to the outputs.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "raw.afreq", "raw.import.counts.tsv", "raw.log", "raw.pgen", "raw.psam", "raw.pvar",
    ]  # fmt: skip


def test_import__folder_of_vcfs_with_other_samples_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    names = subprocess.run(
        ["bcftools", "query", "-l", str(EXAMPLES / "EUR_test.vcf.gz")],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for chrom, keep in (("21", names[:10]), ("22", names[5:15])):
        subprocess.run(
            ["bcftools", "view", "-t", chrom, "-s", ",".join(keep), "-Oz", "-o",
             str(folder / f"chr{chrom}.vcf.gz"), str(EXAMPLES / "EUR_test.vcf.gz")],
            check=True, capture_output=True,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="its samples differ from those of"):
        qc.import_genotypes(folder, out_prefix=tmp_path / "out" / "raw")
    assert not list((tmp_path / "out").glob("raw.p*"))


def _psam(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("#FID\tIID\tSEX\n" + "".join(f"{f}\t{i}\tNA\n" for f, i in rows))
    return path


def test_phenotypes__iid_only_fid_iid_duplicates_and_counts(tmp_path: Path) -> None:
    psam = _psam(tmp_path / "g.psam", [("1", "HG1"), ("2", "HG2"), ("HG3", "HG3"), ("4", "HG4")])
    (tmp_path / "iid.tsv").write_text(
        "IID\tage\tsex\tqt\nHG1\t50\t1\t0.5\nHG2\t40\t2\t0.1\nHG2\t41\t2\t0.2\nXX\t1\t1\t1\n"
    )
    counts = qc.match_phenotypes(
        tmp_path / "iid.tsv", psam, output=tmp_path / "o.tsv", counts=tmp_path / "c.tsv"
    )
    assert counts == {
        "samples_genotyped": 4,
        "samples_matched": 1,
        "samples_without_phenotypes": 3,
        "rows_without_genotypes": 1,
        "rows_duplicated": 2,
    }
    # keyed as the genotypes (FID 1), sex moved to column 3 for plink2 --update-sex col-num=3
    assert (tmp_path / "o.tsv").read_text() == "#FID\tIID\tsex\tage\tqt\n1\tHG1\t1\t50\t0.5\n"
    # FID+IID: an exact pair wins; a wrong FID falls back to the unique IID.
    (tmp_path / "pair.tsv").write_text("#FID\tIID\tqt\nHG3\tHG3\t1\n9\tHG4\t2\n")
    counts = qc.match_phenotypes(
        tmp_path / "pair.tsv", psam, output=tmp_path / "o2.tsv", counts=tmp_path / "c2.tsv"
    )
    assert counts["samples_matched"] == 2
    assert (tmp_path / "o2.tsv").read_text().splitlines()[1:] == ["HG3\tHG3\t1", "4\tHG4\t2"]
    # Nothing matches: one message that says what IID must be.
    (tmp_path / "none.tsv").write_text("IID\tqt\nZ1\t1\n")
    with pytest.raises(ConfigError, match="IID column must hold the genotype sample IDs"):
        qc.match_phenotypes(
            tmp_path / "none.tsv", psam, output=tmp_path / "o3.tsv", counts=tmp_path / "c3.tsv"
        )
    assert not (tmp_path / "o3.tsv").exists()


def test_covariates__collinear_pc_left_out_of_the_glm_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 60
    pc1 = rng.normal(size=n)
    pc2 = 2 * pc1 + rng.normal(scale=0.01, size=n)  # the same contrast, as at a 2-population site
    pc3 = rng.normal(size=n)
    ids = [f"S{i}" for i in range(n)]
    (tmp_path / "pcs.tsv").write_text(
        "#FID\tIID\tPC1\tPC2\tPC3\n"
        + "".join(
            f"{s}\t{s}\t{a}\t{b}\t{c}\n" for s, a, b, c in zip(ids, pc1, pc2, pc3, strict=True)
        )
    )
    (tmp_path / "ph.tsv").write_text(
        "#FID\tIID\tage\n" + "".join(f"{s}\t{s}\t{40 + i % 20}\n" for i, s in enumerate(ids))
    )
    qc.covariates(
        tmp_path / "ph.tsv", tmp_path / "pcs.tsv", output=tmp_path / "all.tsv", columns=["age"],
        pcs=3, collinear_output=tmp_path / "glm.tsv",
    )  # fmt: skip
    assert (tmp_path / "all.tsv").read_text().splitlines()[0] == "#FID\tIID\tage\tPC1\tPC2\tPC3"
    assert (tmp_path / "glm.tsv").read_text().splitlines()[0] == "#FID\tIID\tage\tPC1\tPC3"
    # independent check: plink2 itself refuses the full file and accepts the reduced one
    y = tmp_path / "y.tsv"
    y.write_text("#FID\tIID\ty\n" + "".join(f"{s}\t{s}\t{rng.normal()}\n" for s in ids))
    geno = tmp_path / "g"
    subprocess.run(
        ["plink2", "--dummy", str(n), "20", "0.1", "--make-pgen", "--out", str(geno)],
        check=True, capture_output=True,
    )  # fmt: skip
    psam = Path(f"{geno}.psam")
    psam.write_text("#FID\tIID\tSEX\n" + "".join(f"{s}\t{s}\tNA\n" for s in ids))

    def glm(covar: Path) -> int:
        return subprocess.run(
            ["plink2", "--pfile", str(geno), "--pheno", str(y), "--covar", str(covar),
             "--covar-variance-standardize", "--glm", "hide-covar", "--out", str(tmp_path / "x")],
            capture_output=True, check=False,
        ).returncode  # fmt: skip

    assert glm(tmp_path / "all.tsv") != 0
    assert glm(tmp_path / "glm.tsv") == 0


def test_het_outliers__an_outlier_cannot_pull_the_pc_fit(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 80
    pc = rng.normal(size=n)
    f = 0.02 * pc + rng.normal(scale=0.01, size=n)
    # A contaminated sample: far lower F, and its genotypes also push its PC to an extreme.
    pc[0], f[0] = 6.0, -0.12
    (tmp_path / "het").write_text(
        "#FID\tIID\tO(HOM)\tE(HOM)\tOBS_CT\tF\n"
        + "".join(f"S{i}\tS{i}\t1\t1\t1\t{v}\n" for i, v in enumerate(f))
    )
    (tmp_path / "pcs").write_text(
        "#FID\tIID\tPC1\n" + "".join(f"S{i}\tS{i}\t{v}\n" for i, v in enumerate(pc))
    )
    n_out = qc.het_outliers(
        tmp_path / "het", output=tmp_path / "out", sd=3.0, eigenvec=tmp_path / "pcs", pcs=1
    )
    assert "S0\tS0" in (tmp_path / "out").read_text().splitlines()
    assert n_out <= 2


def test_rsids__read_for_the_export_with_chr_prefixes_dropped(tmp_path: Path) -> None:
    (tmp_path / "r.tsv").write_text("chr21:100:A:G\trs1\n21:200:C:T\t.;rs2\n21:300:A:C\tx\n")
    assert read_rsids(tmp_path / "r.tsv") == {"21:100:A:G": "rs1", "21:200:C:T": "rs2"}


def test_genotype_files__forms_the_node_registers(source: Path, tmp_path: Path) -> None:
    assert genotype_files(source / "eur.bed") == (source / "eur.fam", [source / "eur.bim"])
    plink_dir = tmp_path / "p"
    plink_dir.mkdir()
    for ext in ("bed", "bim", "fam"):
        (plink_dir / f"x.{ext}").write_bytes((source / f"eur.{ext}").read_bytes())
    assert genotype_files(plink_dir) == (plink_dir / "x.fam", [plink_dir / "x.bim"])
    # a dotted prefix (release names) keeps its dots
    dotted = tmp_path / "d"
    dotted.mkdir()
    for ext in ("bed", "bim", "fam"):
        (dotted / f"cohort.v2.{ext}").write_bytes((source / f"eur.{ext}").read_bytes())
    assert genotype_files(dotted) == (dotted / "cohort.v2.fam", [dotted / "cohort.v2.bim"])
    assert qc.import_genotypes(dotted, out_prefix=tmp_path / "o" / "raw")["variants"] == 2000


def test_sites_init__writes_valid_files_that_match_the_workflow(tmp_path: Path) -> None:
    from snakemake_executor_plugin_fedgen.sites import load_registry

    from snakemake_fedgen.node.config import load_config

    written = init_sites(tmp_path, ["big", "small"], assembly="GRCh37", base_port=8800)
    assert [p.name for p in written] == ["sites.yaml", "node.yaml", "node.yaml"]
    registry = load_registry(tmp_path / "sites.yaml")
    assert list(registry.sites) == ["big", "small"]
    assert registry.site("small").tes_url == "http://127.0.0.1:8801/ga4gh/tes/v1"
    assert registry.site("big").datasets["genotypes"].assembly == "GRCh37"
    node = yaml.safe_load((tmp_path / "nodes" / "big" / "node.yaml").read_text())
    assert node["allowed_images"] == workflow_images()
    assert node["approved_code"] == "required" and node["airlock"]["min_mac"] == 10
    load_config(tmp_path / "nodes" / "big" / "node.yaml")  # the node accepts it as written
    with pytest.raises(ConfigError, match="already exist"):
        init_sites(tmp_path, ["big"])


def test_workflow_readiness__names_what_a_node_would_refuse() -> None:
    images = workflow_images()
    node = {"image_allow_list": True, "allowed_images": ["fedgen/tools:*"]}
    cell, ok = workflow_readiness({"fedgen": node}, images=images, digest="ab" * 32)
    assert not ok and "refuses image(s) quay.io/biocontainers/plink2" in cell
    node = {
        "image_allow_list": True,
        "allowed_images": images,
        "approved_code": "required",
        "approved_releases": ["cd" * 32],
    }
    cell, ok = workflow_readiness({"fedgen": node}, images=images, digest="ab" * 32)
    assert not ok and "is not approved" in cell
    node["approved_releases"] = ["ab" * 32]
    assert workflow_readiness({"fedgen": node}, images=images, digest="ab" * 32)[1]
    assert workflow_readiness({"name": "funnel"}, images=images, digest=None)[1]


def test_align__genotypes_of_another_build_are_refused(source: Path, tmp_path: Path) -> None:
    """Positions moved as a liftover would move them: the few chance matches must not pass."""
    qc.import_genotypes(source / "eur.bed", out_prefix=tmp_path / "raw")
    panel = tmp_path / "panel.tsv"
    subprocess.run(
        f"bcftools +fill-tags {EXAMPLES / 'phased.vcf.gz'} -Ou -- -t AF"
        f" | bcftools query -f '%CHROM\\t%POS\\t%REF\\t%ALT\\t%AF\\n' > {panel}",
        shell=True, check=True, capture_output=True,
    )  # fmt: skip
    counts = qc.align(tmp_path / "raw.afreq", panel, out_prefix=tmp_path / "same")
    qc.check_alignment(counts, afreq=tmp_path / "raw.afreq", panel=panel)  # the right build
    rows = (tmp_path / "raw.afreq").read_text().splitlines()
    moved = [rows[0]]
    for i, row in enumerate(rows[1:]):
        f = row.split("\t")
        chrom, pos = f[1].split(":")
        # most positions move; every tenth stays, as chance matches would
        f[1] = f"{chrom}:{int(pos) + (0 if i % 10 == 0 else 123_457)}"
        moved.append("\t".join(f))
    (tmp_path / "moved.afreq").write_text("\n".join(moved) + "\n")
    counts = qc.align(tmp_path / "moved.afreq", panel, out_prefix=tmp_path / "moved")
    assert 0 < counts["match"] < 0.5 * sum(counts.values())
    with pytest.raises(ConfigError, match="look like different genome builds"):
        qc.check_alignment(counts, afreq=tmp_path / "moved.afreq", panel=panel)


def test_covariates__pcs_zero_keeps_only_the_named_columns(tmp_path: Path) -> None:
    (tmp_path / "pcs.tsv").write_text("#FID\tIID\tPC1\nS1\tS1\t0.1\nS2\tS2\t0.2\n")
    (tmp_path / "ph.tsv").write_text("#FID\tIID\tage\tPC1_site\nS1\tS1\t40\t1\nS2\tS2\t50\t2\n")
    proc = subprocess.run(
        [*FEDGEN, "qc", "covariates", "--pheno", str(tmp_path / "ph.tsv"), "--eigenvec",
         str(tmp_path / "pcs.tsv"), "--columns", "age,PC1_site", "--pcs", "0",
         "--output", str(tmp_path / "c.tsv"), "--collinear-output", str(tmp_path / "g.tsv")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        tmp_path / "c.tsv"
    ).read_text() == "#FID\tIID\tage\tPC1_site\nS1\tS1\t40\t1\nS2\tS2\t50\t2\n"
    assert (tmp_path / "g.tsv").read_text() == (tmp_path / "c.tsv").read_text()
