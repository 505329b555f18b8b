"""Logs stay home: what a hostile task can print never reaches its caller by default.

A real bwrap node; the callers are not under ``caller_logs`` unless a test says so. The
steward reads the full logs with the real ``fedgen node logs`` command.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from tests.security.conftest import Site, executor, logs_text, needs_bwrap, system_log, task

pytestmark = needs_bwrap

# The task computes what it prints, so nothing of it is in the task document it was sent as.
SECRET = "HG00096"
MAKE_SECRET = "s=$(printf 'HG%05d' 96)"
GENOTYPES = f"{SECRET} 0 1 2 1 0 2"
SUMSTATS_HEAD = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\n"
)


def _steward_logs(site: Site, task_id: str) -> str:
    argv = ["node", "logs", task_id, "--state-dir", str(site.state)]
    res = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return res.stdout


def test_default_caller__gets_exit_codes_and_times_but_no_stdout_or_stderr(make_site) -> None:
    site = make_site().start(runtime="bwrap", caller_logs=[])
    doc = site.alice.run(
        task(executor(f'{MAKE_SECRET}; echo "$s 0 1 2 1 0 2"; echo "$s 0 1 2 1 0 2" >&2; exit 3'))
    )
    assert doc["state"] == "EXECUTOR_ERROR"
    entry = doc["logs"][-1]["logs"][0]
    assert entry["exit_code"] == 3
    assert "start_time" in entry and "end_time" in entry
    assert "stdout" not in entry and "stderr" not in entry
    assert SECRET not in logs_text(doc), logs_text(doc)
    full = _steward_logs(site, doc["id"])
    assert f"stdout:\n{GENOTYPES}" in full and f"stderr:\n{GENOTYPES}" in full


def test_airlock_refusal__the_refused_content_never_reaches_the_caller(make_site) -> None:
    """The airlock's reason quotes the bad value; the caller gets a fixed sentence."""
    site = make_site().start(runtime="bwrap", caller_logs=[])
    row = "20\\t1000\\tA\\tG\\tPERSON-$s-0120\\t0.05\\t0.3\\t0.04\\t500\\n"
    doc = site.alice.run(
        task(
            executor(f'{MAKE_SECRET}; printf "{SUMSTATS_HEAD}{row}" > gwas.tsv'),
            outputs=[{"path": "/fedgen/work/gwas.tsv", "url": (site.egress / "gwas.tsv").as_uri()}],
        )
    )
    assert doc["state"] == "SYSTEM_ERROR"
    assert doc["logs"][-1]["system_logs"] == [
        "the airlock refused egress output(s); nothing was published; details stay at the "
        "site: ask its steward (fedgen node logs TASK)"
    ]
    assert SECRET not in logs_text(doc), logs_text(doc)
    assert f"PERSON-{SECRET}-0120" in _steward_logs(site, doc["id"])


def test_wildcard_output_names__not_listed_to_the_caller(make_site) -> None:
    """File names a task chooses under a wildcard output are a channel: only declared outputs
    are listed; the files themselves stay in the caller's work area."""
    site = make_site().start(runtime="bwrap", caller_logs=[])
    declared = {"path": "/fedgen/work/summary.txt", "url": (site.work / "summary.txt").as_uri()}
    pattern = {
        "path": "/fedgen/work/per/*.txt",
        "path_prefix": "/fedgen/work/per/",
        "url": (site.work / "per").as_uri(),
    }
    doc = site.alice.run(
        task(
            executor(f"{MAKE_SECRET}; mkdir -p per; echo x > per/$s.txt; echo done > summary.txt"),
            outputs=[declared, pattern],
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    assert [o["path"] for o in doc["logs"][-1]["outputs"]] == ["/fedgen/work/summary.txt"]
    assert SECRET not in logs_text(doc), logs_text(doc)


def test_published_outputs__size_and_sha256_from_the_node(make_site) -> None:
    """Without stdout the coordinator still learns each output's size and sha256."""
    site = make_site().start(runtime="bwrap", caller_logs=[])
    doc = site.alice.run(
        task(
            executor("printf 'abc\\n' > out.txt"),
            outputs=[{"path": "/fedgen/work/out.txt", "url": (site.work / "out.txt").as_uri()}],
        )
    )
    assert doc["state"] == "COMPLETE", system_log(doc)
    last = doc["logs"][-1]
    assert last["outputs"][0]["size_bytes"] == "4"
    hashes = json.loads(last["metadata"]["fedgen_output_sha256"])
    assert hashes == {"/fedgen/work/out.txt": hashlib.sha256(b"abc\n").hexdigest()}


def test_caller_allowed_logs__ids_redacted_in_any_disguise(make_site) -> None:
    """A caller under caller_logs gets stdout, with the site's IDs redacted even when the task
    lower-cases, prefixes or reverses them; another caller still gets none."""
    site = make_site()
    ids = site.data / "samples.tsv"
    ids.write_text("FID\tIID\nHOSP-0042\tHOSP-0042\nHOSP-0043\tHOSP-0043\n")
    site.start(runtime="bwrap", caller_logs=["alice"], redact_ids_from=[str(ids)])
    printed = "hosp-0042 xHOSP-0043x 2400-PSOH"
    doc = site.alice.run(task(executor(f"echo '{printed}'")))
    assert doc["logs"][-1]["logs"][0]["stdout"] == "[sample-id] x[sample-id]x [sample-id]\n"
    other = site.bob.run(task(executor(f"echo '{printed}'")))
    assert "stdout" not in other["logs"][-1]["logs"][0]


def test_redaction__ids_from_each_of_three_files_on_every_channel(make_site) -> None:
    """Three ID files holding different IDs (VCF header, .psam, phenotype table); a caller under
    caller_logs gets stdout, stderr, system_logs (an airlock refusal of a file holding an ID)
    and the provenance record with none of them. Each file's IDs are printed: a redactor that read only
    some of the files fails here."""
    site = make_site()
    vcf = site.data / "genotypes.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tVCF-ALPHA-01\tVCF-BRAVO-02\n"
        "1\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\t0/0\n"
    )
    psam = site.data / "cohort.psam"
    psam.write_text("#FID\tIID\tSEX\nPSAM-CHARLIE-03\tPSAM-CHARLIE-03\t1\n")
    pheno = site.data / "phenotypes.tsv"
    pheno.write_text("FID\tIID\tbmi\nPHENO-DELTA-04\tPHENO-DELTA-04\t22.1\n")
    site.start(
        runtime="bwrap", caller_logs=["alice"], redact_ids_from=[str(vcf), str(psam), str(pheno)]
    )
    ids = ["VCF-ALPHA-01", "VCF-BRAVO-02", "PSAM-CHARLIE-03", "PHENO-DELTA-04"]
    # Built inside the task (reversed back), so no ID is in the task document itself.
    build = "; ".join(f"i{n}=$(echo '{i[::-1]}' | rev)" for n, i in enumerate(ids))
    row = "20\\t1000\\tA\\tG\\t$i3\\t0.05\\t0.3\\t0.04\\t500\\n"
    doc = site.alice.run(
        task(
            executor(
                f'{build}; echo "$i0 $i2"; echo "$i1 $i3" >&2; printf "{SUMSTATS_HEAD}{row}" > gwas.tsv'
            ),
            outputs=[{"path": "/fedgen/work/gwas.tsv", "url": (site.egress / "gwas.tsv").as_uri()}],
        )
    )
    assert doc["state"] == "SYSTEM_ERROR"
    entry = doc["logs"][-1]["logs"][0]
    assert entry["stdout"] == "[sample-id] [sample-id]\n"
    assert entry["stderr"] == "[sample-id] [sample-id]\n"
    system = system_log(doc)
    # The airlock's refusal names line and rule; the refused value itself is never quoted.
    assert "airlock refused" in system and "line 2 column [value]: [value] is not a" in system
    text = logs_text(doc)
    for i in ids:
        assert i not in text, i
    # The steward's copy keeps the airlock's full reason.
    assert "PHENO-DELTA-04" in _steward_logs(site, doc["id"])
