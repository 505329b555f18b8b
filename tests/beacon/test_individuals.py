"""Individual counts against pandas on the phenotype table and on the Phenopackets' JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from snakemake_fedgen.beacon.config import beacon_settings
from snakemake_fedgen.beacon.individuals import count_individuals, parse_filter
from tests.beacon.conftest import beacon_block


def dataset(fed: Path, site: str):
    block = beacon_block(fed, site)
    settings = beacon_settings(block, read_roots=[fed])
    assert settings is not None
    return settings.datasets[f"{site}-cohort"]


def packets_frame(folder: Path) -> pd.DataFrame:
    """The packets' fields as a DataFrame, read with json (not the phenopackets library)."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        p = json.loads(path.read_text())
        m = re.match(
            r"P(\d+)Y(?:(\d+)M)?(?:(\d+)D)?",
            p["subject"]["timeAtLastEncounter"]["age"]["iso8601duration"],
        )
        assert m
        age = int(m.group(1)) + int(m.group(2) or 0) / 12 + int(m.group(3) or 0) / 365.25
        row = {"sex": p["subject"].get("sex"), "age": age}
        for f in p.get("phenotypicFeatures", []):
            row[f["type"]["id"]] = not f.get("excluded", False)
        for d in p.get("diseases", []):
            row[d["term"]["id"]] = not d.get("excluded", False)
        for m in p.get("measurements", []):
            row[m["assay"]["id"]] = m["value"]["quantity"]["value"]
        rows.append(row)
    return pd.DataFrame(rows)


CASES = [
    (["NCIT:C16576"], lambda t: t.sex == 2, lambda p: p.sex == "FEMALE"),
    (["NCIT:C20197", "LOINC:39469-2>4.1"], lambda t: (t.sex == 1) & (t.ldl > 4.1), lambda p: (p.sex == "MALE") & (p["LOINC:39469-2"] > 4.1)),
    (["age>=P50Y"], lambda t: t.age >= 50, lambda p: p.age >= 50),
    (["age<45", "NCIT:C67147"], lambda t: (t.age < 45) & (t.smoking == 1), lambda p: (p.age < 45) & (p["NCIT:C67147"] == True)),  # noqa: E712
    (["MONDO:0004995", "LOINC:8480-6>=140"], lambda t: (t.cvd == 2) & (t.sbp >= 140), lambda p: (p["MONDO:0004995"] == True) & (p["LOINC:8480-6"] >= 140)),  # noqa: E712
    (["LOINC:39469-2!3.0"], lambda t: t.ldl.notna() & (t.ldl != 3.0), lambda p: p["LOINC:39469-2"].notna() & (p["LOINC:39469-2"] != 3.0)),
]  # fmt: skip


@pytest.mark.parametrize(("terms", "table_rule", "packet_rule"), CASES)
def test_counts__match_pandas(federation: Path, terms, table_rule, packet_rule) -> None:
    filters = [parse_filter(t) for t in terms]
    table = pd.read_csv(federation / "sites/A/phenotypes.tsv", sep="\t", na_values="NA")
    count, unknown = count_individuals(dataset(federation, "A"), filters)
    assert (count, unknown) == (int(table_rule(table).sum()), [])
    packets = packets_frame(federation / "sites/C/phenopackets")
    count, unknown = count_individuals(dataset(federation, "C"), filters)
    assert (count, unknown) == (int(packet_rule(packets).fillna(False).sum()), [])
    assert 0 < count < len(packets) or terms == ["LOINC:39469-2!3.0"]


def test_unknown_terms__named(federation: Path) -> None:
    count, unknown = count_individuals(
        dataset(federation, "A"), [{"id": "HP:0001250"}, {"id": "NCIT:C16576"}]
    )
    assert (count, unknown) == (None, ["HP:0001250"])


def test_parse_filter() -> None:
    assert parse_filter("LOINC:39469-2>4.1") == {
        "id": "LOINC:39469-2",
        "operator": ">",
        "value": "4.1",
    }
    assert parse_filter("age>=P50Y") == {"id": "age", "operator": ">=", "value": "P50Y"}
    assert parse_filter("HP:0000822") == {"id": "HP:0000822"}
