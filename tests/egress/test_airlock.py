"""The egress airlock on real genotype files (plink2, bcftools) and on summary tables."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.egress.airlock import KINDS, AirlockDecision, AirlockPolicy, inspect
from snakemake_fedgen.sumstats.columns import MANDATORY

# The mandatory GWAS-SSF columns plus `n`, which egress and meta-analysis need.
SSF_HEADER = [*MANDATORY, "n"]


def _ssf_row(pos: int, *, eaf: str = "0.25", n: str = "1000", beta: str = "0.01") -> list[str]:
    return ["1", str(pos), "A", "G", beta, "0.02", eaf, "0.5", n]


def _write_ssf(path: Path, rows: list[list[str]], header: list[str] = SSF_HEADER) -> Path:
    text = "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _refused(decision: AirlockDecision, kind: str) -> str:
    assert not decision.accepted, decision
    assert decision.kind == kind, decision
    return decision.reason


@pytest.fixture(scope="module")
def plink_files(tmp_path_factory) -> dict[str, Path]:
    """Real genotype files: PLINK 1 bed/bim/fam, PLINK 2 pgen/pvar/psam, BGZF VCF, BCF."""
    d = tmp_path_factory.mktemp("plink")
    run = dict(cwd=d, capture_output=True)
    subprocess.run(
        ["plink2", "--dummy", "30", "20", "acgt", "--seed", "7", "--make-bed", "--out", "g"],
        **run,
        check=True,
    )
    subprocess.run(["plink2", "--bfile", "g", "--make-pgen", "--out", "g"], **run, check=True)
    subprocess.run(["plink2", "--bfile", "g", "--export", "vcf", "--out", "g"], **run, check=True)
    subprocess.run(["bgzip", "-k", "g.vcf"], **run, check=True)
    subprocess.run(["bcftools", "view", "-Ob", "-o", "g.bcf", "g.vcf.gz"], **run, check=True)
    return {p.name: p for p in d.iterdir()}


def _renamed(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


# -- policy ------------------------------------------------------------------------------------


def test_from_mapping__defaults_and_overrides():
    assert AirlockPolicy.from_mapping(None) == AirlockPolicy()
    p = AirlockPolicy.from_mapping(
        {"min_n": 100, "min_mac": 20, "min_cell": 10, "allowed_columns": SSF_HEADER}
    )
    assert (p.min_n, p.min_mac, p.min_cell) == (100, 20.0, 10)
    assert p.allowed_columns == frozenset(SSF_HEADER)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"min_nn": 5}, r"unknown key\(s\) min_nn; valid keys are min_n, min_mac"),
        ({"min_n": True}, r"min_n must be an integer; got True"),
        ({"min_n": "50"}, r"min_n must be an integer; got '50'"),
        ({"min_mac": "ten"}, r"min_mac must be a number; got 'ten'"),
        ({"min_n": 0}, r"min_n must be >= 1; got min_n=0"),
        ({"min_cell": -1}, r"min_cell must be >= 1"),
        ({"min_mac": -1.0}, r"min_mac must be a finite number >= 0"),
        ({"allowed_columns": "beta"}, r"allowed_columns must be a list"),
        ({"allowed_columns": ["beta", "IID"]}, r"non-GWAS-SSF name\(s\) IID"),
        ([1, 2], r"airlock policy must be a mapping"),
    ],
)
def test_from_mapping__bad_input_names_key_and_value(mapping, message):
    with pytest.raises(ConfigError, match=message):
        AirlockPolicy.from_mapping(mapping)


def test_kinds__registry_lists_each_kind_once():
    assert {"sumstats", "counts", "sumstats-meta"} <= set(KINDS)
    assert all(name == kind.name for name, kind in KINDS.items())


# -- refusal of individual-level data, by content ------------------------------------------------


def test_inspect__refuses_real_bgzipped_vcf_by_name_and_by_content(plink_files, tmp_path):
    vcf = plink_files["g.vcf.gz"]
    assert vcf.read_bytes()[12:14] == b"BC"  # really BGZF
    assert "VCF" in _refused(inspect(vcf, AirlockPolicy()), "vcf")
    disguised = _renamed(vcf, tmp_path, "results.tsv.gz")
    assert "content is VCF" in _refused(inspect(disguised, AirlockPolicy()), "vcf")
    plain = _renamed(plink_files["g.vcf"], tmp_path, "table.tsv")
    _refused(inspect(plain, AirlockPolicy()), "vcf")


def test_inspect__refuses_real_bcf(plink_files, tmp_path):
    disguised = _renamed(plink_files["g.bcf"], tmp_path, "sumstats.tsv.gz")
    assert "BCF" in _refused(inspect(disguised, AirlockPolicy()), "bcf")


def test_inspect__refuses_real_pgen_and_bed_whatever_their_name(plink_files, tmp_path):
    assert plink_files["g.pgen"].read_bytes()[:3] == b"\x6c\x1b\x10"
    assert plink_files["g.bed"].read_bytes()[:3] == b"\x6c\x1b\x01"
    reason = _refused(inspect(plink_files["g.pgen"], AirlockPolicy()), "pgen")
    assert "PLINK 2 .pgen" in reason
    _refused(inspect(_renamed(plink_files["g.pgen"], tmp_path, "a.tsv"), AirlockPolicy()), "pgen")
    reason = _refused(inspect(plink_files["g.bed"], AirlockPolicy()), "plink-bed")
    assert "PLINK 1 .bed" in reason
    _refused(
        inspect(_renamed(plink_files["g.bed"], tmp_path, "b.tsv"), AirlockPolicy()), "plink-bed"
    )


def test_inspect__refuses_plink_sample_and_variant_tables(plink_files, tmp_path):
    policy = AirlockPolicy()
    _refused(inspect(_renamed(plink_files["g.fam"], tmp_path, "f.tsv"), policy), "plink-fam")
    _refused(inspect(_renamed(plink_files["g.bim"], tmp_path, "b.tsv"), policy), "plink-bim")
    _refused(inspect(_renamed(plink_files["g.pvar"], tmp_path, "v.tsv"), policy), "pvar")
    reason = _refused(
        inspect(_renamed(plink_files["g.psam"], tmp_path, "s.tsv"), policy), "sample-table"
    )
    assert "'#IID'" in reason
    _refused(inspect(plink_files["g.fam"], policy), "plink-fam")


@pytest.mark.parametrize("column", ["IID", "#FID", "Sample_ID", "participant", "iid"])
def test_inspect__refuses_table_with_sample_id_column(tmp_path, column):
    path = _write_ssf(tmp_path / "x.tsv", [[*_ssf_row(1), "p001"]], [*SSF_HEADER, column])
    reason = _refused(inspect(path, AirlockPolicy()), "sample-table")
    assert f"sample-identifier column {column!r}" in reason


def test_inspect__refuses_unknown_symlink_empty_and_oversized(tmp_path):
    policy = AirlockPolicy()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    assert "not a file kind the airlock publishes" in _refused(inspect(notes, policy), "unknown")
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _refused(inspect(png, policy), "unknown")

    good = _write_ssf(tmp_path / "good.tsv", [_ssf_row(1)])
    link = tmp_path / "link.tsv"
    link.symlink_to(good)
    assert "symbolic link" in _refused(inspect(link, policy), "symlink")
    empty = tmp_path / "empty.tsv"
    empty.touch()
    _refused(inspect(empty, policy), "empty")
    reason = _refused(inspect(good, AirlockPolicy(max_bytes=10)), "too-large")
    assert "exceeds max_bytes=10" in reason
    _refused(inspect(tmp_path / "missing.tsv", policy), "missing")


def test_inspect__refuses_compression_mismatch(tmp_path):
    plain = _write_ssf(tmp_path / "x.tsv", [_ssf_row(1)])
    lying = tmp_path / "x.tsv.gz"
    shutil.copyfile(plain, lying)
    assert "disagree about compression" in _refused(inspect(lying, AirlockPolicy()), "sumstats")


# -- sumstats ------------------------------------------------------------------------------------


def test_inspect__accepts_valid_sumstats_with_size_and_sha256(tmp_path):
    path = _write_ssf(tmp_path / "A.tsv.gz", [_ssf_row(i) for i in range(1, 101)])
    d = inspect(path, AirlockPolicy(), name="results/sumstats/A/A.tsv.gz")
    assert d.accepted and d.kind == "sumstats", d
    assert d.size == os.path.getsize(path)
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert d.reason.startswith("results/sumstats/A/A.tsv.gz: accepted")
    assert "100 rows" in d.reason


def test_inspect__min_n_violation_names_line_column_and_count(tmp_path):
    rows = [_ssf_row(i) for i in range(1, 11)]
    rows[3] = _ssf_row(4, n="49")
    rows[7] = _ssf_row(8, n="12")
    path = _write_ssf(tmp_path / "s.tsv", rows)
    reason = _refused(inspect(path, AirlockPolicy(min_n=50)), "sumstats")
    assert "line 5 column 'n': n=49 is below min_n=50" in reason
    assert "2 of 10 data rows violate the policy (min_n: 2)" in reason
    assert inspect(path, AirlockPolicy(min_n=12, min_mac=6)).accepted  # MAC 2*12*0.25


def test_inspect__min_mac_uses_minor_allele(tmp_path):
    # MAC = 2 * n * min(eaf, 1 - eaf): eaf 0.996 with n 1000 gives MAC 8.
    rows = [_ssf_row(1), _ssf_row(2, eaf="0.996"), _ssf_row(3, eaf="0.004"), _ssf_row(4)]
    path = _write_ssf(tmp_path / "s.tsv", rows)
    reason = _refused(inspect(path, AirlockPolicy(min_mac=10)), "sumstats")
    assert "line 3 column 'effect_allele_frequency'" in reason
    assert "=8 is below min_mac=10" in reason
    assert "2 of 4 data rows" in reason
    assert inspect(path, AirlockPolicy(min_mac=8)).accepted


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([[*_ssf_row(1), "x"]], SSF_HEADER, "line 2: 10 fields but the header has 9"),
        ([_ssf_row(1, beta="big")], SSF_HEADER, "line 2 column 'beta': 'big' is not a finite"),
        ([_ssf_row(1, n="NA")], SSF_HEADER, "line 2 column 'n': 'NA' is not a count"),
        ([_ssf_row(1, eaf="1.5")], SSF_HEADER, "'effect_allele_frequency': '1.5' is not a freq"),
        ([_ssf_row(1)[:-1]], SSF_HEADER[:-1], "missing mandatory column(s) n"),
        ([[*_ssf_row(1), "x"]], [*SSF_HEADER, "note"], "column 10: column 'note' is not allowed"),
        ([[*_ssf_row(1), "1.1"]], [*SSF_HEADER, "odds_ratio"], "exactly one effect column"),
        ([], SSF_HEADER, "header but no data rows"),
    ],
)
def test_inspect__malformed_sumstats_refused_with_position(tmp_path, rows, header, message):
    path = _write_ssf(tmp_path / "s.tsv", rows, header)
    assert message in _refused(inspect(path, AirlockPolicy()), "sumstats")


def test_inspect__free_text_in_identifier_columns_refused(tmp_path):
    header = [*SSF_HEADER, "rsid", "variant_id"]
    ok = _write_ssf(tmp_path / "ok.tsv", [[*_ssf_row(1), "rs123", "1:1:G:A"]], header)
    assert inspect(ok, AirlockPolicy()).accepted
    bad = _write_ssf(tmp_path / "bad.tsv", [[*_ssf_row(1), "patient 17", "1:1:G:A"]], header)
    assert "column 'rsid'" in _refused(inspect(bad, AirlockPolicy()), "sumstats")
    bad2 = _write_ssf(tmp_path / "bad2.tsv", [[*_ssf_row(1), "NA", "John Smith"]], header)
    assert "column 'variant_id'" in _refused(inspect(bad2, AirlockPolicy()), "sumstats")


def test_inspect__policy_may_narrow_allowed_columns(tmp_path):
    header = [*SSF_HEADER, "info"]
    path = _write_ssf(tmp_path / "s.tsv", [[*_ssf_row(1), "0.9"]], header)
    assert inspect(path, AirlockPolicy()).accepted
    narrow = AirlockPolicy(allowed_columns=frozenset(SSF_HEADER))
    assert "column 'info' is not allowed" in _refused(inspect(path, narrow), "sumstats")


def test_inspect__million_rows_streamed_in_bounded_memory(tmp_path):
    path = tmp_path / "big.tsv.gz"
    with gzip.open(path, "wt", compresslevel=1) as f:
        f.write("\t".join(SSF_HEADER) + "\n")
        tail = "\tA\tG\t0.0123\t0.0456\t0.234\t0.5\t1000\n"
        for i in range(1, 1_000_001):
            f.write(f"1\t{i}{tail}")
        f.write("1\t1000001\tA\tG\t0.01\t0.02\t0.234\t0.5\t20\n")  # the last row violates min_n
    decompressed = 1_000_000 * 40
    # Measure peak RSS in a fresh interpreter: growth while inspecting must stay far below the
    # decompressed size (~40 MB of text, several times that as Python objects).
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        from snakemake_fedgen.egress.airlock import AirlockPolicy, inspect
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        d = inspect(Path({str(path)!r}), AirlockPolicy())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)
        print(d.reason)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    growth_kib = int(out[0])
    assert "line 1000002 column 'n': n=20 is below min_n=50" in out[1]
    assert "1 of 1000001 data rows violate" in out[1]
    assert growth_kib * 1024 < decompressed / 4, f"RSS grew by {growth_kib} KiB"


# -- counts --------------------------------------------------------------------------------------


def _write_counts(path: Path, rows: list[str], header: str = "step\tquantity\tcount") -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_inspect__counts_table_with_suppressed_cells_accepted(tmp_path):
    path = _write_counts(
        tmp_path / "qc_counts.tsv",
        ["sample_qc\tsamples_in\t412", "sample_qc\tduplicates_removed\t<5", "relatedness\tx\t0"],
    )
    d = inspect(path, AirlockPolicy(min_cell=5))
    assert d.accepted and d.kind == "counts", d


def test_inspect__counts_below_min_cell_refused(tmp_path):
    path = _write_counts(
        tmp_path / "qc_counts.tsv",
        ["qc\ta\t100", "qc\tb\t3", "qc\tc\t1", "qc\td\t<3"],
    )
    reason = _refused(inspect(path, AirlockPolicy(min_cell=5)), "counts")
    assert "line 3 column 'count': count=3 is below min_cell=5; write it as '<5'" in reason
    assert "3 of 4 data rows violate the policy (min_cell: 3)" in reason


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["qc\tok\t10"], "step\tquantity\tcount\textra", "header must be exactly"),
        (["qc\tsample per0 removed because\t10"], None, "is not a short token"),
        (["qc\t" + "a" * 60 + "\t10"], None, "is not a short token"),
        (["qc\tok\t10.5"], None, "neither a non-negative integer nor '<5'"),
        (["qc\tok"], None, "line 2: 2 fields but the header has 3"),
    ],
)
def test_inspect__malformed_counts_refused(tmp_path, rows, header, message):
    path = _write_counts(tmp_path / "qc_counts.tsv", rows, header or "step\tquantity\tcount")
    assert message in _refused(inspect(path, AirlockPolicy()), "counts")


def test_inspect__counts_table_row_limit(tmp_path):
    path = _write_counts(tmp_path / "qc_counts.tsv", [f"qc\tq{i}\t10" for i in range(11)])
    assert inspect(path, AirlockPolicy(max_count_rows=11)).accepted
    reason = _refused(inspect(path, AirlockPolicy(max_count_rows=10)), "counts")
    assert "more than max_count_rows=10" in reason


# -- sumstats-meta ---------------------------------------------------------------------------------


def _meta(**extra) -> dict:
    doc = {
        "file_type": "GWAS-SSF v1.0",
        "data_file_name": "A.tsv.gz",
        "genome_assembly": "GRCh38",
        "samples": [{"sample_size": 400, "sample_ancestry": ["EUR"]}],
        "fedgen": {"site": "A", "variants_dropped": {"min_n": 3}},
    }
    doc.update(extra)
    return doc


def test_inspect__sidecar_with_known_keys_accepted_unknown_refused(tmp_path):
    import yaml

    good = tmp_path / "A.tsv.gz-meta.yaml"
    good.write_text(yaml.safe_dump(_meta()))
    d = inspect(good, AirlockPolicy())
    assert d.accepted and d.kind == "sumstats-meta", d

    bad = tmp_path / "B.tsv.gz-meta.yaml"
    bad.write_text(yaml.safe_dump(_meta(sample_ids=["p1", "p2"])))
    assert "unknown top-level key(s) sample_ids" in _refused(
        inspect(bad, AirlockPolicy()), "sumstats-meta"
    )
    many = tmp_path / "C.tsv.gz-meta.yaml"
    many.write_text(yaml.safe_dump(_meta(adjusted_covariates=[f"p{i}" for i in range(200)])))
    assert "sample lists never leave the site" in _refused(
        inspect(many, AirlockPolicy()), "sumstats-meta"
    )
    nested = tmp_path / "D.tsv.gz-meta.yaml"
    nested.write_text(yaml.safe_dump(_meta(samples=[{"sample_size": 4, "ids": ["p1"]}])))
    assert "samples[0]: unknown key(s) ids" in _refused(
        inspect(nested, AirlockPolicy()), "sumstats-meta"
    )


def _facts():
    import numpy as np

    from snakemake_fedgen.egress.facts import DatasetFacts, ReleaseFacts

    dataset = DatasetFacts("genotypes", 400, 10, (), "2026-01-01T00:00:00Z")
    return ReleaseFacts((dataset,), np.arange(10, dtype=np.uint64), np.zeros(0, dtype=np.uint64))


PANEL_DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("facts", [False, True], ids=["any-site", "registered-datasets"])
@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "0123456789ABCDEF" * 4,  # upper case
        "sha256:" + "0123456789abcdef" * 4 + "0",  # 65 digits
        "sha256:" + "0123456789abcdef" * 4 + " 1000G",  # a digest and a note
        "0123456789abcdef" * 4,  # no algorithm
        "md5:0123456789abcdef0123456789abcdef",
        "1000 Genomes phase 3, EUR subset",
        12345,
        ["sha256:" + "0123456789abcdef" * 4],
        {"sha256": 1},
    ],
)
def test_inspect__aligned_panel_must_be_a_sha256_digest(tmp_path, facts, value):
    import dataclasses

    import yaml

    policy = AirlockPolicy()
    if facts:
        policy = dataclasses.replace(policy, facts=_facts())
    good = tmp_path / "A.tsv.gz-meta.yaml"
    good.write_text(yaml.safe_dump(_meta(fedgen={"site": "A", "aligned_panel": PANEL_DIGEST})))
    assert inspect(good, policy).accepted, inspect(good, policy)
    bad = tmp_path / "B.tsv.gz-meta.yaml"
    bad.write_text(yaml.safe_dump(_meta(fedgen={"site": "A", "aligned_panel": value})))
    reason = _refused(inspect(bad, policy), "sumstats-meta")
    assert "key fedgen.aligned_panel" in reason and "format" in reason, reason


@pytest.mark.parametrize(
    ("fedgen", "samples", "policy", "message"),
    [
        ({"n_cases": 150, "n_controls": 240}, None, {}, None),
        ({"n_cases": 8, "n_controls": 240}, None, {}, r"fedgen\.n_cases: 8 is below min_cases=10"),
        ({}, None, {}, r"case/control study without fedgen\.n_cases/n_controls"),
        (
            {"n_cases": 150, "n_controls": 240},
            [{"sample_size": 390, "case_count": 150, "control_count": 9}],
            {},
            r"samples\[0\]\.control_count: 9 is below min_cases=10",
        ),
        (
            {"n_cases": 150, "n_controls": 240},
            None,
            {"min_cases": 200},
            r"150 is below min_cases=200",
        ),
    ],
)
def test_inspect__case_control_sidecar_needs_min_cases(tmp_path, fedgen, samples, policy, message):
    import yaml

    doc = _meta(fedgen={"site": "A", "trait_type": "binary", **fedgen})
    if samples is not None:
        doc["samples"] = samples
    path = tmp_path / "A.tsv.gz-meta.yaml"
    path.write_text(yaml.safe_dump(doc))
    decision = inspect(path, AirlockPolicy.from_mapping(policy))
    if message is None:
        assert decision.accepted, decision
    else:
        assert re.search(message, _refused(decision, "sumstats-meta"))


@pytest.mark.parametrize("value", ["1_000", "nan", "inf", " 0.5", "0x10"])
def test_inspect__numbers_must_be_plain_decimals(tmp_path, value):
    path = _write_ssf(tmp_path / "s.tsv", [_ssf_row(1, beta=value)])
    assert "column 'beta'" in _refused(inspect(path, AirlockPolicy()), "sumstats")


def test_inspect__overlong_line_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("\t".join(SSF_HEADER) + "\n" + "1\t" + "9" * 200_000 + "\n")
    assert "line 2 is longer than 65536 characters" in _refused(
        inspect(path, AirlockPolicy()), "sumstats"
    )


# -- provenance ------------------------------------------------------------------------------------


def test_inspect__provenance_checked_against_schema(tmp_path, monkeypatch):
    import json

    from snakemake_fedgen.egress.airlock.kinds import provenance

    record = tmp_path / "A.prov.json"
    record.write_text(json.dumps({"version": 1, "tool": "plink2"}))
    # By default a task's own record never leaves: its command strings are free text.
    assert "do not leave this site" in _refused(inspect(record, AirlockPolicy()), "provenance")
    # The shipped schema is another part's deliverable; point the airlock at a known one.
    monkeypatch.setattr(provenance, "PROVENANCE_SCHEMA", tmp_path / "absent.schema.json")
    assert "no usable provenance schema" in _refused(
        inspect(record, AirlockPolicy(task_provenance=True)), "provenance"
    )

    schema = tmp_path / "provenance.schema.json"
    schema.write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"version": {"const": 1}, "tool": {"type": "string"}},
                "required": ["version", "tool"],
                "additionalProperties": False,
            }
        )
    )
    monkeypatch.setattr(provenance, "PROVENANCE_SCHEMA", schema)
    d = inspect(record, AirlockPolicy(task_provenance=True))
    assert d.accepted and d.kind == "provenance", d
    record.write_text(json.dumps({"version": 1, "tool": "plink2", "samples": ["p1", "p2"]}))
    reason = _refused(inspect(record, AirlockPolicy(task_provenance=True)), "provenance")
    assert "does not follow provenance.schema.json" in reason and "samples" in reason


def test_inspect__raw_plink2_glm_report_refused_with_the_fix(tmp_path):
    d = tmp_path
    run = dict(cwd=d, capture_output=True)
    subprocess.run(
        ["plink2", "--dummy", "60", "5", "acgt", "scalar-pheno", "--seed", "3", "--out", "q"],
        **run,
        check=True,
    )
    subprocess.run(
        ["plink2", "--pfile", "q", "--glm", "allow-no-covars", "cols=+a1freq", "--out", "q"],
        **run,
        check=True,
    )
    reason = _refused(inspect(d / "q.PHENO1.glm.linear", AirlockPolicy()), "plink2-glm")
    assert "fedgen sumstats export" in reason


def test_sumstats_check_cli__reads_policy_from_node_config(tmp_path):
    import json

    counts = _write_counts(tmp_path / "qc_counts.tsv", ["qc\tremoved\t7"])
    node = tmp_path / "node.yaml"
    node.write_text("egress_root: /x\nairlock:\n  min_cell: 10\n")

    def check(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snakemake_fedgen", "sumstats", "check", str(counts), *extra],
            capture_output=True,
            text=True,
            check=False,
        )

    assert check().returncode == 0
    refused = check("--policy", str(node), "--json")
    assert refused.returncode == 1
    decision = json.loads(refused.stdout)
    assert decision["accepted"] is False and decision["kind"] == "counts"
    assert "count=7 is below min_cell=10" in decision["reason"]
    assert decision["sha256"] == hashlib.sha256(counts.read_bytes()).hexdigest()
    assert check("--policy", str(node), "--min-cell", "7").returncode == 0
    node.write_text("airlock:\n  min_cel: 10\n")
    bad = check("--policy", str(node))
    assert bad.returncode == 1 and "unknown key(s) min_cel" in bad.stderr
