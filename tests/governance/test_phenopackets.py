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
from snakemake_executor_plugin_fedgen.errors import ConfigError

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


def test_simulated_packets__round_trip_through_to_table(tmp_path):
    # fedgen simulate --phenopackets-sites writes packets from the site's table values; the
    # converter must give back the same row (ages to one decimal, qt to four decimals).
    from snakemake_fedgen.simulate import phenopackets as sim

    people = [
        ("C00001", 1, 58.3, 3.1416, 2),
        ("C00002", 2, 18.0, float("nan"), 1),
        ("C00003", 2, 89.9, -0.5001, 1),
        ("C00004", 1, 45.05, 12.25, 2),  # 45.05 is stored as 45.0499...: rounds to 45.0
    ]
    d = tmp_path / "packets"
    d.mkdir()
    for iid, sex, age, qt, bt in people:
        p = sim.packet(iid, sex=sex, age=age, qt=qt, bt=bt)
        (d / f"{iid}.json").write_text(json_format.MessageToJson(p))
    rows = pheno.read_folder(d, qt_assay=sim.QT_ASSAY[0], bt_terms=[sim.BT_TERM[0]])
    got = [(r.iid, r.sex, r.age, r.qt, r.bt) for r in rows]
    assert got == [
        ("C00001", 1, 58.3, 3.1416, 2),
        ("C00002", 2, 18.0, None, 1),
        ("C00003", 2, 89.9, -0.5001, 1),
        ("C00004", 1, round(45.05, 1), 12.25, 2),
    ]
    assert sim.age_duration(58.3) == "P58Y110D" and sim.age_duration(18.0) == "P18Y"
    # Controls carry the feature as excluded (explicitly negated, not merely unmentioned).
    missing = pheno.read_folder(d, bt_terms=[sim.BT_TERM[0]], unmentioned="missing")
    assert [r.bt for r in missing] == [2, 1, 1, 2]


def test_simulate_cli__phenopackets_site_registry_points_at_the_folder(tmp_path):
    import yaml
    from snakemake_executor_plugin_fedgen.sites import load_registry

    out = tmp_path / "sim"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(out), "--seed", "3",
         "--phenopackets-sites", "C"],
        capture_output=True, text=True, check=False
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "site C" in proc.stdout and "phenopackets" in proc.stdout
    registry = load_registry(out / "sites.yaml")
    c = registry.site("C").datasets["phenotypes"]
    assert c.format == "phenopackets" and c.url == (out / "sites/C/phenopackets").as_uri() + "/"
    assert registry.site("A").datasets["phenotypes"].format is None
    assert not (out / "sites/A/phenopackets").exists()
    table = pd.read_csv(out / "sites/C/phenotypes.tsv", sep="\t", dtype=str, keep_default_na=False)
    converted = tmp_path / "C.tsv"
    subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "phenopackets", "to-table",
         str(out / "sites/C/phenopackets"), "--out", str(converted), "--qt", "LOINC:22748-8",
         "--bt", "HP:0000822"],
        check=True, capture_output=True,
    )  # fmt: skip
    made = pd.read_csv(converted, sep="\t", dtype=str, keep_default_na=False)
    merged = table.merge(made, on="IID", suffixes=("", "_pp"))
    assert len(merged) == len(table) == len(made)
    for col in ("sex", "age", "bt"):
        assert (merged[col] == merged[f"{col}_pp"]).all(), col
    qt = merged[merged["qt"] != "NA"]
    assert (merged["qt"] == "NA").equals(merged["qt_pp"] == "NA")
    assert (qt["qt"].astype(float) - qt["qt_pp"].astype(float)).abs().max() < 1e-9
    assert yaml.safe_load((out / "truth.json").read_text())["phenopackets_sites"] == ["C"]
    bad = subprocess.run(
        [sys.executable, "-m", "snakemake_fedgen", "simulate", "--out", str(tmp_path / "x"),
         "--seed", "3", "--phenopackets-sites", "D"],
        capture_output=True, text=True, check=False
    )  # fmt: skip
    assert bad.returncode != 0 and "--phenopackets-sites D: no such site" in bad.stderr


def _event_packet(
    iid, *, age, onset=None, excluded=False, smoker=None, sbp=None, unit="UCUM:mm[Hg]"
):
    p = Phenopacket(
        id=f"packet-{iid}",
        subject=Individual(
            id=iid, sex=Sex.Value("MALE"),
            time_at_last_encounter=TimeElement(age=Age(iso8601duration=age)),
        ),
        meta_data=MetaData(created_by="test", phenopacket_schema_version="2.0"),
    )  # fmt: skip
    if excluded is not None:
        d = Disease(term=OntologyClass(id="MONDO:0004995", label="cvd"), excluded=excluded)
        if onset:
            d.onset.CopyFrom(TimeElement(age=Age(iso8601duration=onset)))
        p.diseases.append(d)
    if smoker is not None:
        p.phenotypic_features.append(
            PhenotypicFeature(type=OntologyClass(id="NCIT:C67147"), excluded=not smoker)
        )
    if sbp is not None:
        unit_class = OntologyClass(id=unit)
        p.measurements.append(
            Measurement(
                assay=OntologyClass(id="LOINC:8480-6"),
                value=Value(quantity=Quantity(unit=unit_class, value=sbp)),
            )
        )
    return p


COLUMNS = {
    "sbp": {"assay": "LOINC:8480-6", "unit": "UCUM:mm[Hg]"},
    "smoking": {"terms": ["NCIT:C67147"], "coding": "0/1"},
    "cvd": {"terms": ["MONDO:0004995"]},
    "cvd_followup_years": {"onset_of": ["MONDO:0004995"], "censor_years": 10},
}


def test_to_table__columns_measurement_binary_and_followup(tmp_path):
    d = tmp_path / "packets"
    d.mkdir()
    packets = [
        _event_packet("E1", age="P50Y", onset="P53Y183D", smoker=True, sbp=141.0),  # 3.50 y
        _event_packet("E2", age="P61Y", excluded=True, smoker=False, sbp=128.0),  # censored
        _event_packet("E3", age="P40Y", excluded=None),  # nothing recorded
        _event_packet("E4", age="P70Y", onset="P65Y"),  # onset before the baseline: prevalent
        _event_packet("E5", age="P45Y"),  # an event without an onset age
    ]
    for p in packets:
        (d / f"{p.subject.id}.json").write_text(json_format.MessageToJson(p))
    specs = pheno.column_specs(COLUMNS)
    out = tmp_path / "t.tsv"
    pheno.write_table(d, out, columns=specs)
    t = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False).set_index("IID")
    assert list(t.columns) == ["#FID", "sex", "age", "qt", "bt", *COLUMNS]
    assert t.loc["E1", ["sbp", "smoking", "cvd", "cvd_followup_years"]].tolist() == [
        "141", "1", "2", "3.50"
    ]  # fmt: skip
    assert t.loc["E2", ["sbp", "smoking", "cvd", "cvd_followup_years"]].tolist() == [
        "128", "0", "1", "10.00"
    ]  # fmt: skip
    # Unmentioned: control (and censored) by default, NA with unmentioned="missing".
    assert t.loc["E3", ["sbp", "smoking", "cvd", "cvd_followup_years"]].tolist() == [
        "NA", "0", "1", "10.00"
    ]  # fmt: skip
    assert t.loc["E4", ["cvd", "cvd_followup_years"]].tolist() == ["2", "NA"]
    assert t.loc["E5", ["cvd", "cvd_followup_years"]].tolist() == ["2", "NA"]
    rows = pheno.read_folder(d, columns=specs, unmentioned="missing")
    assert [r.columns for r in rows if r.iid == "E3"] == [(None, None, None, None)]


def test_to_table__column_unit_mismatch_names_the_file(tmp_path):
    d = tmp_path / "packets"
    d.mkdir()
    p = _event_packet("U1", age="P50Y", sbp=18.7, unit="UCUM:kPa")
    (d / "U1.json").write_text(json_format.MessageToJson(p))
    with pytest.raises(ConfigError, match=r"U1\.json: measurement LOINC:8480-6 is in UCUM:kPa"):
        pheno.read_folder(d, columns=pheno.column_specs(COLUMNS))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": {"assay": "LOINC:1", "terms": ["A:1"]}}, "is not one of"),
        ({"x": {"terms": ["A:1"], "coding": "yes/no"}}, "coding must be"),
        ({"x": {"onset_of": ["A:1"], "censor_years": 0}}, "censor_years must be a positive"),
        ({"x": {"onset_of": ["A:1"]}}, "is not one of"),
        ({"x": {"terms": ["not a term"]}}, "term ids look like"),
        ({"age": {"assay": "LOINC:1"}}, "column names"),
    ],
)
def test_column_specs__bad_mapping_says_what_is_wrong(spec, message):
    with pytest.raises(ConfigError, match=message):
        pheno.column_specs(spec)


def test_load_column_specs__workflow_config_or_plain_mapping(tmp_path):
    import yaml

    plain = tmp_path / "columns.yaml"
    plain.write_text(yaml.safe_dump(COLUMNS, sort_keys=False))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"phenopackets": {"columns": COLUMNS}}, sort_keys=False))
    assert pheno.load_column_specs(plain) == pheno.load_column_specs(config)
    assert [c.kind for c in pheno.load_column_specs(plain)] == [
        "measurement", "binary", "binary", "followup"
    ]  # fmt: skip
    config.write_text(yaml.safe_dump({"phenopackets": {"traits": {}}}))
    with pytest.raises(ConfigError, match="has no `columns:`"):
        pheno.load_column_specs(config)
