"""refget end to end: export at two sites with --refget-vcf, the meta-analysis compares digests."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from snakemake_executor_plugin_fedgen.errors import HarmonisationError

from snakemake_fedgen.governance import refget
from snakemake_fedgen.meta.engine import run_meta
from tests.egress.test_export import glm_run  # noqa: F401  (module fixture: real plink2 --glm)


def _export(glm_dir, out, site, vcf):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "sumstats",
            "export",
            "--glm",
            str(glm_dir / "run.qt.glm.linear"),
            "--out",
            str(out),
            "--site",
            site,
            "--assembly",
            "GRCh38",
            "--min-n",
            "50",
            "--refget-vcf",
            str(vcf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out.with_name(out.name + ".tsv.gz")


def _renamed_vcf(src, dst, prefix):
    text = src.read_text()
    dst.write_text(re.sub(r"##contig=<ID=", f"##contig=<ID={prefix}", text))
    return dst


def test_export_refget_vcf__meta_refuses_different_references_naming_sites(glm_run, tmp_path):  # noqa: F811
    d = glm_run["dir"]
    vcf = d / "geno.vcf"
    a = _export(d, tmp_path / "A", "A", vcf)
    b = _export(d, tmp_path / "B", "B", vcf)
    meta_a = yaml.safe_load(a.with_name(a.name + "-meta.yaml").read_text())
    assert meta_a["fedgen"]["refget_seqcol_digest"] == refget.vcf_digest(vcf)
    assert run_meta([a, b], out=tmp_path / "same").variants > 0

    other = _renamed_vcf(vcf, tmp_path / "chr.vcf", "chr")  # same lengths, "chr" names
    c = _export(d, tmp_path / "C", "C", other)
    with pytest.raises(HarmonisationError) as err:
        run_meta([a, c], out=tmp_path / "mixed")
    msg = str(err.value)
    assert f"A={refget.vcf_digest(vcf)}" in msg and f"C={refget.vcf_digest(other)}" in msg
