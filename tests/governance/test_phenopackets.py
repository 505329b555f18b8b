"""Phenopacket v2 folders -> plink2 table, with packets built by the phenopackets package."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from google.protobuf import json_format
from phenopackets import (
    Age,
    Disease,
    Individual,
    Measurement,
    MetaData,
    OntologyClass,
    Phenopacket,
    PhenotypicFeature,
    Quantity,
    Sex,
    TimeElement,
    Value,
)

from snakemake_fedgen.errors import ConfigError
from snakemake_fedgen.governance import phenopackets as pheno

LDL = OntologyClass(id="LOINC:2089-1", label="LDL cholesterol")
HTN = OntologyClass(id="HP:0000822", label="Hypertension")
T2D = OntologyClass(id="MONDO:0005148", label="type 2 diabetes mellitus")
MGDL = OntologyClass(id="UCUM:mg/dL", label="mg/dL")

# (id, sex, age, ldl, hypertension: True/False(excluded)/None, t2d disease)
PEOPLE = [
    ("S1", "MALE", "P45Y6M", 130.5, True, False),
    ("S2", "FEMALE", "P62Y", 101.0, False, False),
    ("S3", "UNKNOWN_SEX", "P30Y3M15D", None, None, True),
    ("S4", "FEMALE", None, 155.25, None, False),
]


def _packet(iid, sex, age, ldl, htn, t2d) -> Phenopacket:
    subject = Individual(id=iid, sex=Sex.Value(sex))
    if age:
        subject.time_at_last_encounter.CopyFrom(TimeElement(age=Age(iso8601duration=age)))
    packet = Phenopacket(
        id=f"packet-{iid}",
        subject=subject,
        meta_data=MetaData(created_by="test", phenopacket_schema_version="2.0"),
    )
    if ldl is not None:
        packet.measurements.append(
            Measurement(assay=LDL, value=Value(quantity=Quantity(unit=MGDL, value=ldl - 7)))
        )
        # The last measurement listed wins.
        packet.measurements.append(
            Measurement(assay=LDL, value=Value(quantity=Quantity(unit=MGDL, value=ldl)))
        )
    if htn is not None:
        packet.phenotypic_features.append(PhenotypicFeature(type=HTN, excluded=not htn))
    if t2d:
        packet.diseases.append(Disease(term=T2D))
    return packet


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "packets"
    d.mkdir()
    for person in PEOPLE:
        (d / f"{person[0]}.json").write_text(json_format.MessageToJson(_packet(*person)))
    return d


def test_iso8601_years__durations():
    assert pheno.iso8601_years("P45Y6M") == pytest.approx(45.5)
    assert pheno.iso8601_years("P30Y3M15D") == pytest.approx(30.25 + 15 / 365.25)
    assert pheno.iso8601_years("P52W") == pytest.approx(364 / 365.25)
    with pytest.raises(ValueError):
        pheno.iso8601_years("45 years")


def test_to_table__cli_writes_plink2_table(folder, tmp_path):
    out = tmp_path / "phenotypes.tsv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "phenopackets",
            "to-table",
            str(folder),
            "--out",
            str(out),
            "--qt",
            LDL.id,
            "--bt",
            HTN.id,
        ],
        check=True,
    )
    table = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["#FID", "IID", "sex", "age", "qt", "bt"]
    assert table.to_dict("records") == [
        {"#FID": "S1", "IID": "S1", "sex": "1", "age": "45.5", "qt": "130.5", "bt": "2"},
        {"#FID": "S2", "IID": "S2", "sex": "2", "age": "62.0", "qt": "101", "bt": "1"},
        {"#FID": "S3", "IID": "S3", "sex": "NA", "age": "30.3", "qt": "NA", "bt": "1"},
        {"#FID": "S4", "IID": "S4", "sex": "2", "age": "NA", "qt": "155.25", "bt": "1"},
    ]


def test_to_table__disease_term_and_unmentioned_missing(folder):
    rows = pheno.read_folder(folder, bt_terms=[T2D.id], unmentioned="missing")
    assert [r.bt for r in rows] == [None, None, 2, None]
    rows = pheno.read_folder(folder, bt_terms=[HTN.id], unmentioned="missing")
    assert [r.bt for r in rows] == [2, 1, None, None]  # S2's feature is excluded -> control


def test_to_table__plink2_reads_the_table(folder, tmp_path):
    # Independent reader: plink2 loads the table as phenotypes for a VCF with the same samples.
    out = tmp_path / "phenotypes.tsv"
    pheno.write_table(folder, out, qt_assay=LDL.id, bt_terms=[HTN.id])
    ids = [p[0] for p in PEOPLE]
    vcf = tmp_path / "g.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=20,length=64444167>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(ids) + "\n"
        "20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/1\t0/0\t1/1\t0/1\n"
    )
    subprocess.run(
        [
            "plink2",
            "--vcf",
            str(vcf),
            "--pheno",
            str(out),
            "--double-id",
            "--make-pgen",
            "--out",
            str(tmp_path / "o"),
            "--threads",
            "1",
            "--memory",
            "640",
        ],
        check=True,
        capture_output=True,
    )
    psam = pd.read_csv(tmp_path / "o.psam", sep="\t", dtype=str, keep_default_na=False)
    assert list(psam["qt"]) == ["130.5", "101", "NA", "155.25"]
    assert list(psam["bt"]) == ["2", "1", "1", "1"]


def test_read_folder__bad_json_names_the_file(folder):
    (folder / "S9.json").write_text('{"id": "x", "subject": {"id": "S9", "sex": "BOGUS"}}')
    with pytest.raises(ConfigError, match=r"S9\.json is not a valid Phenopacket"):
        pheno.read_folder(folder)


def test_read_folder__duplicate_subject_refused(folder):
    (folder / "dup.json").write_text(json_format.MessageToJson(_packet(*PEOPLE[0])))
    with pytest.raises(ConfigError, match="appears in both"):
        pheno.read_folder(folder)


def test_write_table__no_partial_output_on_error(folder, tmp_path):
    (folder / "broken.json").write_text("{")
    out = tmp_path / "t.tsv"
    with pytest.raises(ConfigError):
        pheno.write_table(folder, out)
    assert not out.exists()
