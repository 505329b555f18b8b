"""Sample IDs never leave a site in task logs: the node redacts them (``redact_ids_from``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.node.config import load_config
from snakemake_fedgen.node.redact import MARK, IdRedactor, sample_ids
from tests.node.conftest import simple_task, wait_task

IDS = ["HOSP-0001", "HOSP-0002", "HOSP-0003", "HOSP-0004"]


def _site_files(data: Path) -> tuple[Path, Path]:
    """A real bgzipped VCF (plink2 --dummy, renamed samples) and a phenotype table."""
    subprocess.run(
        ["plink2", "--dummy", "4", "20", "--seed", "1", "--make-pgen", "--out", str(data / "d")],
        check=True,
        capture_output=True,
    )
    (data / "d.psam").write_text("#IID\tSEX\n" + "".join(f"{i}\t1\n" for i in IDS))
    subprocess.run(
        ["plink2", "--pfile", str(data / "d"), "--export", "vcf", "bgz", "--out", str(data / "g")],
        check=True,
        capture_output=True,
    )
    pheno = data / "phenotypes.tsv"
    pheno.write_text(
        "#FID\tIID\tage\tqt\n" + "".join(f"0\t{i}\t{40 + k}\t1.{k}\n" for k, i in enumerate(IDS))
    )
    return data / "g.vcf.gz", pheno


def test_sample_ids__read_from_vcf_psam_fam_and_phenotype_tables(tmp_path: Path) -> None:
    vcf, pheno = _site_files(tmp_path)
    assert sample_ids(vcf) == set(IDS)
    assert sample_ids(tmp_path / "d.psam") == set(IDS)
    assert sample_ids(pheno) == {"0", *IDS}  # FID 0 is read; it is too short to redact
    fam = tmp_path / "x.fam"
    fam.write_text("FAM1 IND1 0 0 1 -9\nFAM1 IND2 0 0 2 -9\n")
    assert sample_ids(fam) == {"FAM1", "IND1", "IND2"}
    bad = tmp_path / "counts.tsv"
    bad.write_text("step\tcount\nqc\t5\n")
    with pytest.raises(ConfigError, match=r"counts\.tsv has no sample-ID column"):
        sample_ids(bad)


def test_redact__replaces_ids_in_any_case_prefixed_or_reversed(tmp_path: Path) -> None:
    """A hostile task disguises IDs: lower case, a prefix or suffix, written backwards."""
    _, pheno = _site_files(tmp_path)
    r = IdRedactor([pheno])
    text = (
        "Error: sample 'HOSP-0002' missing; HOSP-0003: bad sex; 0_HOSP-0004 dropped.\n"
        "hosp-0001 xHOSP-0002y 3000-psoh NOTHOSP-0004, 0 variants, age 41\n"
    )
    out = r.redact(text)
    folded = out.casefold()
    assert not any(i.casefold() in folded or i[::-1].casefold() in folded for i in IDS), out
    assert out == (
        "Error: sample '[sample-id]' missing; [sample-id]: bad sex; [sample-id] dropped.\n"
        "[sample-id] x[sample-id]y [sample-id] NOT[sample-id], 0 variants, age 41\n"
    )


def test_redact__short_ids_only_as_whole_words(tmp_path: Path) -> None:
    """IDs under MIN_SUBSTRING_LENGTH characters would blank ordinary words inside others."""
    pheno = tmp_path / "short.tsv"
    pheno.write_text("FID\tIID\ny\tab1\ny\tQ42\n")
    r = IdRedactor([pheno])
    assert r.redact("ab1 lab12 q42 24q tab1x") == "[sample-id] lab12 [sample-id] [sample-id] tab1x"


def test_redact__rereads_the_id_files_when_they_change(tmp_path: Path) -> None:
    _, pheno = _site_files(tmp_path)
    r = IdRedactor([pheno])
    assert r.redact("HOSP-0099") == "HOSP-0099"
    with pheno.open("a") as fh:
        fh.write("0\tHOSP-0099\t50\t2.0\n")
    # Make sure the change is visible on file systems with coarse timestamps.
    st = pheno.stat()
    os.utime(pheno, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert r.redact("HOSP-0099") == MARK


def test_config__missing_redact_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"redact_ids_from: .*nope\.vcf\.gz is not a file"):
        load_config(
            tmp_path / "state", overrides={"redact_ids_from": [str(tmp_path / "nope.vcf.gz")]}
        )


def test_node__task_logs_carry_no_sample_id(site, start_node) -> None:
    vcf, pheno = _site_files(site.data)
    node = start_node(site.state, config=site.config(redact_ids_from=[str(vcf), str(pheno)]))
    # A rule that lists the samples (bcftools) and dumps the phenotype table into its error
    # output, then fails: exactly the log a coordinator would otherwise receive.
    task = simple_task(
        "bcftools query -l data/g.vcf.gz; cat data/phenotypes.tsv >&2; exit 3",
        inputs=[
            {"path": "/fedgen/work/data/g.vcf.gz", "url": vcf.as_uri()},
            {"path": "/fedgen/work/data/phenotypes.tsv", "url": pheno.as_uri()},
        ],
    )
    resp = httpx.post(f"{node.url}/tasks", json=task)
    assert resp.status_code == 200, resp.text
    doc = wait_task(node.url, resp.json()["id"])
    assert doc["state"] == "EXECUTOR_ERROR", doc
    log = doc["logs"][0]["logs"][0]
    assert log["exit_code"] == 3
    assert log["stdout"].split() == [MARK] * 4  # bcftools listed four samples
    assert log["stderr"].splitlines()[0] == "#FID\tIID\tage\tqt"
    assert log["stderr"].splitlines()[1] == f"0\t{MARK}\t40\t1.0"
    served = json.dumps(doc)
    assert not any(i in served for i in IDS)
    # ListTasks FULL serves the stored document: no ID there either.
    listing = httpx.get(f"{node.url}/tasks", params={"view": "FULL"}).text
    assert not any(i in listing for i in IDS)
