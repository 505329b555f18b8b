"""Releases checked on facts the site computes (issue 14, item 2), attacked by hostile tasks.

A real bwrap node; the steward registers the cohort with the real ``fedgen node dataset
register``. Each hostile task reads the site's genotypes inside the sandbox and tries to carry
them out in a file of an allowed kind. The control run at a site without registered datasets
shows what got through before (the issue's findings); with the dataset registered the same file
is refused, audited and nothing is published, or (trailing digits) the node's rounding removes
the payload from what it publishes.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.security.conftest import Site, executor, needs_bwrap, system_log, task

pytestmark = needs_bwrap

SAMPLES = 60
VARIANTS = 120
HEADER = (
    "chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\tstandard_error\t"
    "effect_allele_frequency\tp_value\tn\tvariant_id"
)


def _write_cohort(site: Site) -> tuple[list[str], np.ndarray]:
    """A real VCF of SAMPLES people x VARIANTS SNPs under the site's read root."""
    rng = np.random.default_rng(14)
    ids = [f"HG{n:05d}" for n in range(100, 100 + SAMPLES)]
    dosages = rng.integers(0, 3, size=(VARIANTS, SAMPLES))
    gt = {0: "0|0", 1: "0|1", 2: "1|1"}
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=20>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids),
    ]
    for v in range(VARIANTS):
        ref, alt = ("A", "G") if v % 2 else ("C", "T")
        calls = "\t".join(gt[int(d)] for d in dosages[v])
        lines.append(f"20\t{1000 + 10 * v}\trs{500 + v}\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{calls}")
    (site.data / "cohort.vcf").write_text("\n".join(lines) + "\n")
    return ids, dosages


def _register(site: Site) -> str:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "dataset",
            "register",
            "cohort",
            "--genotypes",
            str(site.data / "cohort.vcf"),
            "--state-dir",
            str(site.state),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return res.stdout


def _leak_task(site: Site, awk: str, out: str = "gwas.tsv") -> dict[str, Any]:
    """A task that runs ``awk`` over the cohort VCF in the sandbox and egresses ``out``."""
    script = f"awk -F'\\t' '{awk}' cohort.vcf > {out}"
    return task(
        executor(script),
        inputs=[{"url": (site.data / "cohort.vcf").as_uri(), "path": "/fedgen/work/cohort.vcf"}],
        outputs=[{"path": f"/fedgen/work/{out}", "url": (site.egress / "A" / out).as_uri()}],
    )


# Every person as one row: ID in variant_id, the genotype vector as the digits of beta, n simply
# written large enough for the MAC rule (the critical finding, 205 of 205 rebuilt).
IDS_IN_ROWS = (
    "/^#CHROM/{for(i=10;i<=NF;i++)name[i]=$i; next} /^#/{next} "
    "{for(i=10;i<=NF;i++) g[i]=g[i] (substr($i,1,1)+substr($i,3,1))} "
    f'END{{print "{HEADER}"; '
    'for(i=10;i<=NF;i++) printf "20\\t%d\\tA\\tG\\t0.%s\\t0.1\\t0.3\\t0.5\\t5000\\t%s\\n", '
    "1000+i, g[i], name[i]}"
)

# The careful attacker: real variants, a believable n, and each person's dosage at this variant
# hidden in the 7th+ significant digits of beta (a 0/1/2 digit per person).
DIGITS_IN_BETA = (
    f'/^#CHROM/{{print "{HEADER}"}} /^#/{{next}} '
    '{d=""; for(i=10;i<=NF;i++) d=d (substr($i,1,1)+substr($i,3,1)); '
    'printf "%s\\t%s\\t%s\\t%s\\t0.123456%s\\t0.1\\t0.4\\t0.5\\t60\\t%s:%s\\n", '
    "$1, $2, $5, $4, d, $1, $2}"
)


def _published(site: Site) -> list[Path]:
    return sorted(p for p in site.egress.rglob("*") if p.is_file())


def _airlock_records(site: Site) -> list[dict[str, Any]]:
    return [r for r in site.audit() if r.get("action") == "Airlock"]


def test_ids_and_genotypes_in_sumstats_rows__refused_once_the_cohort_is_registered(make_site):
    control = make_site()
    ids, dosages = _write_cohort(control)
    control.start(runtime="bwrap")
    done = control.alice.run(_leak_task(control, IDS_IN_ROWS))
    # Without registered facts the airlock checks format only: every sample ID left the site
    # (the genotype digits are cut by the rounding every node now applies, see below).
    assert done["state"] == "COMPLETE", system_log(done)
    [leaked] = _published(control)
    rows = [line.split("\t") for line in leaked.read_text().splitlines()[1:]]
    assert sorted(r[9] for r in rows) == ids
    assert dosages.shape == (VARIANTS, SAMPLES)

    site = make_site()
    _write_cohort(site)
    out = _register(site)
    assert f"{SAMPLES} samples, {VARIANTS} variants registered" in out
    site.start(runtime="bwrap")
    done = site.alice.run(_leak_task(site, IDS_IN_ROWS))
    assert done["state"] == "SYSTEM_ERROR"
    reason = system_log(done)
    assert "airlock refused 1 egress file" in reason and "nothing was published" in reason
    assert _published(site) == []
    [record] = _airlock_records(site)
    assert record["outcome"] == "refused"
    assert f"above the {SAMPLES} samples of the largest dataset" in record["reason"]
    assert f"{SAMPLES} of {SAMPLES} data rows violate" in record["reason"]
    # No sample ID is quoted back in the refusal, to the caller or in the audit.
    assert not any(pid in reason or pid in record["reason"] for pid in ids)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # A made-up position: not a variant of the registered cohort.
        ("20\t999999\tA\tG\t0.1\t0.1\t0.4\t0.5\t60\tNA", "not in the datasets registered"),
        # A real variant, free text in variant_id.
        ("20\t1000\tT\tC\t0.1\t0.1\t0.4\t0.5\t60\tHG00100", "is not a label of the row's variant"),
        # A real position with alleles it does not have.
        ("20\t1000\tA\tG\t0.1\t0.1\t0.4\t0.5\t60\tNA", "not in the datasets registered"),
        # One variant twice (data in the repeated rows).
        (
            "20\t1000\tT\tC\t0.1\t0.1\t0.4\t0.5\t60\tNA\n20\t1000\tC\tT\t0.2\t0.1\t0.4\t0.5\t60\tNA",
            "appears a second time",
        ),
    ],
)
def test_rows_the_registered_cohort_does_not_hold__refused(make_site, row, expected):
    site = make_site()
    _write_cohort(site)
    _register(site)
    site.start(runtime="bwrap")
    body = f"{HEADER}\n{row}\n".replace("\t", "\\t").replace("\n", "\\n")
    done = site.alice.run(
        task(
            executor(f"printf '{body}' > gwas.tsv"),
            outputs=[
                {"path": "/fedgen/work/gwas.tsv", "url": (site.egress / "A" / "gwas.tsv").as_uri()}
            ],
        )
    )
    assert done["state"] == "SYSTEM_ERROR"
    assert expected in system_log(done)
    assert _published(site) == []


def test_genotypes_in_trailing_digits__rounded_away_at_release(make_site):
    site = make_site()
    _, dosages = _write_cohort(site)
    _register(site)
    site.start(runtime="bwrap")
    done = site.alice.run(_leak_task(site, DIGITS_IN_BETA))
    # Every row names a real variant with a believable n: the file passes the checks...
    assert done["state"] == "COMPLETE", system_log(done)
    [published] = _published(site)
    rows = [line.split("\t") for line in published.read_text().splitlines()[1:]]
    assert len(rows) == VARIANTS
    # ...but what leaves has 4 significant digits: the payload is gone.
    assert {r[4] for r in rows} == {"0.1235"}
    assert dosages.std() > 0  # there was something to carry
    [rounded] = [r for r in site.audit() if r.get("action") == "Rounded"]
    assert rounded["changed"] == VARIANTS and rounded["digits"] == 4
    [record] = _airlock_records(site)
    assert record["outcome"] == "accepted" and "rounded to 4 significant digits" in record["reason"]
    # The caller's task document reports the sha256 of the rounded bytes, as published.
    import hashlib

    hashes = json.loads(done["logs"][-1]["metadata"]["fedgen_output_sha256"])
    assert hashes["/fedgen/work/gwas.tsv"] == hashlib.sha256(published.read_bytes()).hexdigest()


def test_honest_sumstats__pass_with_rounding_gzip_kept(make_site):
    site = make_site()
    _write_cohort(site)
    _register(site)
    site.start(runtime="bwrap")
    rows = [
        f"20\t{1000 + 10 * v}\t{'G' if v % 2 else 'T'}\t{'A' if v % 2 else 'C'}\t"
        f"{0.01 * v - 0.3:.6f}\t0.0512345\t0.4123456\t{0.5 / (v + 1):.6g}\t58\t20:{1000 + 10 * v}"
        for v in range(VARIANTS)
    ]
    body = "\n".join([HEADER, *rows]) + "\n"
    (site.data / "honest.tsv").write_text(body)
    done = site.alice.run(
        task(
            executor("gzip -c honest.tsv > gwas.tsv.gz"),
            inputs=[
                {"url": (site.data / "honest.tsv").as_uri(), "path": "/fedgen/work/honest.tsv"}
            ],
            outputs=[
                {
                    "path": "/fedgen/work/gwas.tsv.gz",
                    "url": (site.egress / "A" / "gwas.tsv.gz").as_uri(),
                }
            ],
        )
    )
    assert done["state"] == "COMPLETE", system_log(done)
    [published] = _published(site)
    got = [
        line.split("\t") for line in gzip.decompress(published.read_bytes()).decode().splitlines()
    ]
    want = [line.split("\t") for line in body.splitlines()]
    assert got[0] == want[0] and len(got) == len(want)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert g[:4] == w[:4] and g[8:] == w[8:]  # positions, alleles, n, labels untouched
        for col in (4, 5, 6, 7):
            assert float(g[col]) == pytest.approx(float(w[col]), rel=5e-4, abs=1e-12)
            assert len(g[col].lstrip("-0.").replace(".", "").split("e")[0]) <= 4


COUNTS_LEAK = (
    # Lower-cased IDs as quantity names (each a short token), the dosages as counts.
    "/^#CHROM/{for(i=10;i<=NF;i++)name[i]=tolower($i); next} /^#/{next} "
    "{for(i=10;i<=NF;i++) g[i]=g[i] (substr($i,1,1)+substr($i,3,1))} "
    'END{print "step\\tquantity\\tcount"; '
    'for(i=10;i<=NF;i++) printf "qc\\t%s\\t1%s\\n", name[i], substr(g[i],1,15)}'
)


def test_ids_in_a_counts_table__refused_once_the_cohort_is_registered(make_site):
    control = make_site()
    _write_cohort(control)
    control.start(runtime="bwrap")
    done = control.alice.run(_leak_task(control, COUNTS_LEAK, out="qc_counts.tsv"))
    assert done["state"] == "COMPLETE", system_log(done)  # before: it left the site

    site = make_site()
    _write_cohort(site)
    _register(site)
    site.start(runtime="bwrap")
    done = site.alice.run(_leak_task(site, COUNTS_LEAK, out="qc_counts.tsv"))
    assert done["state"] == "SYSTEM_ERROR"
    assert "is not one of the workflow's QC steps" in system_log(done)
    assert _published(site) == []


def test_free_text_in_a_sidecar__refused_once_the_cohort_is_registered(make_site):
    # The IDs of the cohort as "trait descriptions": short enough for each old limit.
    awk = (
        '/^#CHROM/{print "file_type: GWAS-SSF v1.0"; print "trait_description:"; '
        'for(i=10;i<=NF;i+=6){l="  - "; for(j=i;j<i+6&&j<=NF;j++) l=l $j " "; print l}; exit}'
    )
    control = make_site()
    _write_cohort(control)
    control.start(runtime="bwrap")
    done = control.alice.run(_leak_task(control, awk, out="gwas.tsv-meta.yaml"))
    assert done["state"] == "COMPLETE", system_log(done)

    site = make_site()
    _write_cohort(site)
    _register(site)
    site.start(runtime="bwrap")
    done = site.alice.run(_leak_task(site, awk, out="gwas.tsv-meta.yaml"))
    assert done["state"] == "SYSTEM_ERROR"
    assert "key trait_description: more than 4 items" in system_log(done)
    assert _published(site) == []


# -- differencing (issue 14, item 4) ---------------------------------------------------------------

# Allele frequencies of the samples in keep file $1 (IDs), one GWAS-SSF row per variant.
EAF_OF_KEPT = (
    "FNR==NR{keep[$1]=1; n++; next} "
    '/^#CHROM/{for(i=10;i<=NF;i++) if($i in keep) col[i]=1; print "' + HEADER + '"; next} '
    "/^#/{next} "
    "{s=0; for(i in col) s+=substr($i,1,1)+substr($i,3,1); "
    'printf "%s\\t%s\\t%s\\t%s\\t0.1\\t0.1\\t%.6f\\t0.5\\t%d\\tNA\\n", $1, $2, $5, $4, s/(2*n), n}'
)


def _eaf_task(site: Site, keep_url: str, *, out: str, egress: bool = True) -> dict[str, Any]:
    target = site.egress / "A" / out if egress else site.work / "mid" / out
    return task(
        executor(f"awk -F'\\t' '{EAF_OF_KEPT}' keep.txt cohort.vcf > {out}"),
        inputs=[
            {"url": keep_url, "path": "/fedgen/work/keep.txt"},
            {"url": (site.data / "cohort.vcf").as_uri(), "path": "/fedgen/work/cohort.vcf"},
        ],
        outputs=[{"path": f"/fedgen/work/{out}", "url": target.as_uri()}],
    )


def _copy_task(site: Site, src: Path, out: str) -> dict[str, Any]:
    """A second task that releases what the first one wrote in the caller's work area."""
    return task(
        executor(f"cp in.tsv {out}"),
        inputs=[{"url": src.as_uri(), "path": "/fedgen/work/in.tsv"}],
        outputs=[{"path": f"/fedgen/work/{out}", "url": (site.egress / "A" / out).as_uri()}],
    )


def _fedgen_node(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "node", *args, "--state-dir", str(site.state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _eafs(path: Path) -> tuple[np.ndarray, int]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return np.array([float(r[6]) for r in rows]), int(rows[0][8])


def test_differencing_pair__recovers_a_person_unless_the_ledger_stops_it(make_site):
    control = make_site()
    ids, dosages = _write_cohort(control)
    control.start(runtime="bwrap")
    everyone = "\n".join(ids) + "\n"
    all_but_one = "\n".join(ids[1:]) + "\n"
    # Without registered sample sets the coordinator supplies its own keep lists.
    for name, keep in (("all.tsv", everyone), ("minus.tsv", all_but_one)):
        doc = _eaf_task(control, "file:///unused", out=name)
        doc["inputs"][0] = {"content": keep, "path": "/fedgen/work/keep.txt"}
        done = control.alice.run(doc)
        assert done["state"] == "COMPLETE", system_log(done)
    (eaf_all, n_all), (eaf_minus, n_minus) = (
        _eafs(next(control.egress.rglob(name))) for name in ("all.tsv", "minus.tsv")
    )
    # Two releases, rounded to 4 digits, still give the left-out person's every genotype.
    rebuilt = np.rint(eaf_all * 2 * n_all - eaf_minus * 2 * n_minus).astype(int)
    assert (n_all, n_minus) == (SAMPLES, SAMPLES - 1)
    assert list(rebuilt) == list(dosages[:, 0])

    site = make_site()
    _write_cohort(site)
    _register(site)
    (site.data / "all.keep").write_text(everyone)
    (site.data / "minus.keep").write_text(all_but_one)
    for name in ("all", "minus"):
        res = _fedgen_node(
            site,
            "dataset",
            "sample-set",
            name,
            "--dataset",
            "cohort",
            "--keep",
            str(site.data / f"{name}.keep"),
        )
        assert res.returncode == 0, res.stderr
    listing = _fedgen_node(site, "dataset", "list").stdout
    assert f"sample set all of cohort\t{SAMPLES} samples" in listing
    site.start(runtime="bwrap", sample_sets="required", min_set_difference=10)

    # A coordinator-made keep list is not a registered sample set: nothing leaves.
    doc = _eaf_task(site, "file:///unused", out="own.tsv")
    doc["inputs"][0] = {"content": everyone, "path": "/fedgen/work/keep.txt"}
    done = site.alice.run(doc)
    assert done["state"] == "SYSTEM_ERROR"
    assert "releases results only from a registered sample set" in system_log(done)

    done = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="all.tsv"))
    assert done["state"] == "COMPLETE", system_log(done)
    # The second of the pair, through an intermediate file: the node traces it back.
    mid = site.alice.run(
        _eaf_task(site, (site.data / "minus.keep").as_uri(), out="minus.tsv", egress=False)
    )
    assert mid["state"] == "COMPLETE", system_log(mid)
    done = site.alice.run(_copy_task(site, site.work / "mid" / "minus.tsv", "minus.tsv"))
    assert done["state"] == "SYSTEM_ERROR"
    reason = system_log(done)
    assert "sample set minus differs from sample set all" in reason
    assert "by 1 sample(s)" in reason and "min_set_difference=10" in reason
    assert [p.name for p in site.egress.rglob("*.tsv")] == ["all.tsv"]
    ledger = [r for r in site.audit() if r.get("action") == "Ledger"]
    assert [(r["task"], r["outcome"]) for r in ledger][-1] == (done["id"], "refused")
    # The same set again is an honest rerun, not a difference.
    again = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="again.tsv"))
    assert again["state"] == "COMPLETE", system_log(again)
    # A sample set changed after registration is refused before the task runs its commands.
    (site.data / "all.keep").write_text(all_but_one)
    changed = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="x.tsv"))
    assert changed["state"] == "SYSTEM_ERROR"
    assert "changed since it was registered" in system_log(changed)


# -- differential privacy (issue 14, item 4) -------------------------------------------------------


def test_differential_privacy__noise_at_release_and_a_budget_that_survives_restarts(make_site):
    site = make_site()
    _write_cohort(site)
    _register(site)
    dp = {"epsilon": 1.0, "delta": 1e-6, "total_epsilon": 2.0, "total_delta": 1e-5}
    site.start(runtime="bwrap", differential_privacy=dp)
    (site.data / "all.keep").write_text("\n".join(f"HG{n:05d}" for n in range(100, 160)) + "\n")
    done = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="r1.tsv"))
    assert done["state"] == "COMPLETE", system_log(done)
    [published] = list(site.egress.rglob("r1.tsv"))
    rows = [line.split("\t") for line in published.read_text().splitlines()[1:]]
    # beta was 0.1 in every row the task wrote; what left carries noise, rounded.
    assert {r[4] for r in rows} != {"0.1"} and len({r[4] for r in rows}) > len(rows) // 2
    [charged] = [r for r in site.audit() if r.get("action") == "Privacy"]
    assert charged["epsilon"] == 1.0 and charged["datasets"] == "cohort"
    # The budget is kept in the node's database: a restart does not reset it.
    site.node.stop()
    site.start(runtime="bwrap", differential_privacy=dp)
    second = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="r2.tsv"))
    assert second["state"] == "COMPLETE", system_log(second)
    third = site.alice.run(_eaf_task(site, (site.data / "all.keep").as_uri(), out="r3.tsv"))
    assert third["state"] == "SYSTEM_ERROR"
    assert "the privacy budget of dataset cohort is spent (epsilon 2 of 2" in system_log(third)
    assert not list(site.egress.rglob("r3.tsv"))
