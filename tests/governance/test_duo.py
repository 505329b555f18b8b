"""DUO consent checks against the real ontology file shipped with the package."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from snakemake_executor_plugin_fedgen import duo
from snakemake_executor_plugin_fedgen.errors import ConfigError, GovernanceError

DS_T2D = {"research_type": "DUO:0000007", "disease": "MONDO:0005148", "commercial": False}
# The DUO release the package ships, kept as test data in the repository (SOURCE.txt).
SHARED = Path(__file__).parent / "spec"


def test_ontology__matches_the_published_csv():
    # Independent source: duo.csv from the same DUO release lists id, shorthand and label.
    onto = duo.ontology()
    rows = list(csv.DictReader((SHARED / "duo.csv").open()))
    assert len(rows) == 25
    for row in rows:
        term = onto.terms[row["id"]]
        assert term.label == row["label"]
        assert (term.shorthand or "") == row["shorthand"]


def test_ontology__hierarchy_from_owl():
    onto = duo.ontology()
    assert onto.is_a("DUO:0000007", "DUO:0000006")  # DS ⊑ HMB
    assert onto.is_a("DUO:0000007", "DUO:0000042")  # DS ⊑ HMB ⊑ GRU
    assert not onto.is_a("DUO:0000006", "DUO:0000007")
    assert not onto.is_a("DUO:0000011", "DUO:0000006")  # POA is not health research
    assert onto.is_a("DUO:0000044", duo.MODIFIER_ROOT)  # NPOA despite its IRI typo
    assert onto.resolve("npoa") == "DUO:0000044"
    assert onto.is_a("DUO:0000038", "DUO:0000037")  # genetic research ⊑ biomedical research


def test_ontology__copy_in_package_is_the_spec_file():
    pkg = Path(duo.__file__).parent / "data"
    assert (pkg / "duo-basic.owl").read_bytes() == (SHARED / "duo-basic.owl").read_bytes()
    assert "81f5c3d9cc5a3e13614fdeaed53ace2496d7c095" in (pkg / "SOURCE.txt").read_text()


@pytest.mark.parametrize(
    ("terms", "allowed"),
    [
        (["DUO:0000042"], True),  # GRU permits disease-specific research
        (["HMB"], True),
        ([{"id": "DS", "disease": "MONDO:0005148"}], True),
        ([{"id": "DS", "disease": "MONDO:0005015"}], False),  # other disease
        (["DUO:0000011"], False),  # POA only
        (["NRES"], True),
    ],
)
def test_check_purpose__permission_hierarchy(terms, allowed):
    assert duo.check_purpose(terms, DS_T2D).allowed is allowed


def test_check_purpose__broader_purpose_refused_by_narrower_consent():
    decision = duo.check_purpose(["HMB"], {"research_type": "GRU", "commercial": False})
    assert not decision.allowed
    assert decision.conflicts[0].term == "DUO:0000006"
    assert "health or medical or biomedical research" in decision.summary()


def test_check_purpose__ancestry_research_under_gru_but_not_hmb():
    poa = {"research_type": "POA"}
    assert duo.check_purpose(["GRU"], poa).allowed
    assert not duo.check_purpose(["HMB"], poa).allowed
    refused = duo.check_purpose(["GRU", "NPOA"], poa)
    assert [c.term for c in refused.conflicts] == ["DUO:0000044"]


def test_check_purpose__disease_ancestors_allow_subtype():
    purpose = dict(DS_T2D, disease="MONDO:0014488", disease_ancestors=["MONDO:0005148"])
    decision = duo.check_purpose([{"id": "DS", "disease": ["MONDO:0005148"]}], purpose)
    assert decision.allowed
    assert any("MONDO" in n for n in decision.notes)
    no_lineage = duo.check_purpose(
        [{"id": "DS", "disease": "MONDO:0005148"}], dict(DS_T2D, disease="MONDO:0014488")
    )
    assert not no_lineage.allowed
    assert "disease_ancestors" in no_lineage.conflicts[0].reason


def test_check_purpose__ds_without_disease_refused():
    decision = duo.check_purpose(["DS"], DS_T2D)
    assert not decision.allowed
    assert "names no disease" in decision.conflicts[0].reason


def test_check_purpose__commercial_purpose_refused_by_ncu():
    decision = duo.check_purpose(["GRU", "NCU"], dict(DS_T2D, commercial=True))
    assert not decision.allowed
    assert decision.conflicts[0].term == "DUO:0000046"
    undeclared = {"research_type": "DS", "disease": "MONDO:0005148"}
    assert not duo.check_purpose(["GRU", "NCU"], undeclared).allowed
    assert duo.check_purpose(["GRU", "NCU"], DS_T2D).allowed


def test_check_purpose__npuncu_needs_both_declarations():
    assert not duo.check_purpose(["GRU", "NPUNCU"], DS_T2D).allowed
    assert duo.check_purpose(["GRU", "NPUNCU"], dict(DS_T2D, not_for_profit=True)).allowed


def test_check_purpose__action_modifiers_listed_not_refused():
    decision = duo.check_purpose(["HMB", "PUB", "COL", "IRB", "RTN"], DS_T2D)
    assert decision.allowed
    text = " ".join(decision.actions)
    for word in ("scientific community", "collaborate", "IRB/ERB", "return derived"):
        assert word in text
    assert not duo.check_purpose(["HMB", "IRB"], dict(DS_T2D, ethics_approval=False)).allowed


def test_check_purpose__institution_geography_and_time_limits():
    terms = [
        "GRU",
        {"id": "IS", "value": "Example University"},
        {"id": "GS", "value": ["Europe"]},
        {"id": "TS", "until": "2030-01-31"},
    ]
    good = dict(DS_T2D, institution="example  university", region="Europe")
    assert duo.check_purpose(terms, good, today=dt.date(2029, 1, 1)).allowed
    late = duo.check_purpose(terms, good, today=dt.date(2030, 2, 1))
    assert [c.term for c in late.conflicts] == ["DUO:0000025"]
    other = duo.check_purpose(terms, dict(good, institution="Acme Corp"), today=dt.date(2029, 1, 1))
    assert [c.term for c in other.conflicts] == ["DUO:0000028"]
    assert "Acme Corp" in other.conflicts[0].reason


def test_check_purpose__genetic_studies_only_uses_investigation_hierarchy():
    assert not duo.check_purpose(["GRU", "GSO"], DS_T2D).allowed
    # DUO:0000038 genetic research, or any subclass of it, satisfies GSO.
    assert duo.check_purpose(["GRU", "GSO"], dict(DS_T2D, investigation="DUO:0000038")).allowed
    nmds = duo.check_purpose(["GRU", "NMDS"], dict(DS_T2D, investigation="DUO:0000031"))
    assert [c.term for c in nmds.conflicts] == ["DUO:0000015"]


def test_check_purpose__unknown_term_refused_not_ignored():
    decision = duo.check_purpose(["GRU", "DUO:9999999"], DS_T2D)
    assert not decision.allowed
    assert decision.conflicts[0].term == "DUO:9999999"
    assert not duo.check_purpose(["NCU"], DS_T2D).allowed  # modifier without permission


def test_validate_purpose__names_bad_key_and_research_type():
    with pytest.raises(ConfigError, match="comercial"):
        duo.validate_purpose(dict(DS_T2D, comercial=False))
    with pytest.raises(ConfigError, match="not a DUO data use permission"):
        duo.validate_purpose({"research_type": "NCU"})
    with pytest.raises(ConfigError, match="research_type is missing"):
        duo.validate_purpose({"disease": "MONDO:0005148"})


REGISTRY = {
    "version": 1,
    "sites": {
        "A": {"datasets": {"genotypes": {"url": "file:///a", "duo": ["DUO:0000042"]}}},
        "B": {
            "datasets": {
                "genotypes": {"url": "file:///b", "duo": ["HMB", "NCU", "PUB"]},
                "reference_panel": {"url": "file:///ref"},
            }
        },
        "C": {"datasets": {"genotypes": {"url": "file:///c", "duo": ["POA"]}}},
    },
}


def test_check_registry__names_site_dataset_and_term():
    with pytest.raises(GovernanceError) as err:
        duo.check_registry(REGISTRY, DS_T2D)
    msg = str(err.value)
    assert "site C" in msg and "dataset genotypes" in msg and "DUO:0000011" in msg
    assert "site A" not in msg and "site B" not in msg


def test_decide_registry__per_site_decisions_and_actions():
    decisions = duo.decide_registry(REGISTRY, DS_T2D)
    assert {s: d.allowed for s, d in decisions.items()} == {"A": True, "B": True, "C": False}
    assert "reference_panel" not in decisions["B"].datasets
    assert any("scientific community" in a for a in decisions["B"].actions)
    ok = duo.check_registry(REGISTRY, DS_T2D, sites=["A", "B"])
    assert set(ok) == {"A", "B"}
