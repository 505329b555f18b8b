"""Individuals queries: Beacon filtering terms over the site's phenotype table or Phenopackets.

What a filter may be (docs/discovery.md):

* an ontology filter ``{"id": CURIE}``: ``NCIT:C16576`` (female) and ``NCIT:C20197`` (male)
  from the sex column / ``subject.sex``; any other CURIE matches individuals in whom it is an
  observed (not excluded) phenotypic feature or disease (Phenopackets), or whose table column
  mapped to it by the dataset's ``columns`` (the workflow's ``phenopackets.columns`` shape)
  says observed;
* an alphanumeric filter ``{"id", "operator", "value"}`` with operator ``= < > ! >= <=``:
  ``id`` ``age`` (value an ISO-8601 duration ``P50Y`` or a number of years; the age at last
  encounter / the table's age column) or a measurement assay such as ``LOINC:39469-2`` (value
  a number; the last measurement with that assay). A missing value never matches.

Filters are combined with AND. Descendant terms are not expanded (no ontology at the site):
``includeDescendantTerms`` is accepted and answered as exact matching, and the response says so.
"""

from __future__ import annotations

import csv
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from snakemake_fedgen.beacon.config import BeaconDataset
from snakemake_fedgen.beacon.variants import QueryError
from snakemake_fedgen.governance.phenopackets import ColumnSpec, iso8601_years, read_phenopacket

FEMALE, MALE = "NCIT:C16576", "NCIT:C20197"
SEX_LABELS = {FEMALE: "female", MALE: "male"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "!": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_FILTER_TEXT = re.compile(r"^(?P<id>[^<>=!]+?)(?P<op>>=|<=|=|<|>|!)(?P<value>.+)$")


@dataclass(frozen=True)
class Person:
    """What the filters read of one individual (never leaves the node)."""

    sex: str | None
    age: float | None
    terms: frozenset[str] = frozenset()
    measurements: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Cohort:
    """The individuals of a dataset and the terms they can be filtered by."""

    people: tuple[Person, ...]
    terms: Mapping[str, str]  # CURIE -> label
    assays: Mapping[str, str]  # assay CURIE -> label


def parse_filter(text: str) -> dict[str, str]:
    """``NCIT:C16576`` -> ontology filter; ``LOINC:39469-2>4.1`` -> alphanumeric filter."""
    m = _FILTER_TEXT.match(text.strip())
    if m is None:
        return {"id": text.strip()}
    return {"id": m.group("id").strip(), "operator": m.group("op"), "value": m.group("value")}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _table(path: Path, columns: Sequence[ColumnSpec]) -> Cohort:
    people = []
    terms: dict[str, str] = {}
    assays: dict[str, str] = {}
    for spec in columns:
        if spec.kind == "measurement":
            assays[spec.terms[0]] = spec.name
        elif spec.kind == "binary":
            terms.update(dict.fromkeys(spec.terms, spec.name))
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        for row in rows:
            row = {k.lstrip("#"): v for k, v in row.items() if k is not None}
            observed: set[str] = set()
            values: dict[str, float] = {}
            for spec in columns:
                value = _number(row.get(spec.name, "NA") or "NA")
                if value is None:
                    continue
                if spec.kind == "measurement":
                    values[spec.terms[0]] = value
                elif spec.kind == "binary" and value == (2 if spec.coding == "1/2" else 1):
                    observed.update(spec.terms)
            sex = {"1": "male", "2": "female"}.get(row.get("sex", ""))
            people.append(
                Person(sex, _number(row.get("age", "NA") or "NA"), frozenset(observed), values)
            )
    return Cohort(tuple(people), terms, assays)


def _packets(folder: Path) -> Cohort:
    people = []
    terms: dict[str, str] = {}
    assays: dict[str, str] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file()):
        packet = read_phenopacket(path)
        observed: set[str] = set()
        for term, excluded in [(f.type, f.excluded) for f in packet.phenotypic_features] + [
            (d.term, d.excluded) for d in packet.diseases
        ]:
            terms.setdefault(term.id, term.label)
            if not excluded:
                observed.add(term.id)
        values: dict[str, float] = {}
        for m in packet.measurements:
            if m.value.HasField("quantity"):
                values[m.assay.id] = float(m.value.quantity.value)
                assays.setdefault(m.assay.id, m.assay.label)
        subject = packet.subject
        # The enum value's name (MALE, FEMALE, ...) from the message's own descriptor.
        field = subject.DESCRIPTOR.fields_by_name["sex"]
        sex = {"MALE": "male", "FEMALE": "female"}.get(
            field.enum_type.values_by_number[subject.sex].name
        )
        tle = subject.time_at_last_encounter
        age = iso8601_years(tle.age.iso8601duration) if tle.HasField("age") else None
        people.append(Person(sex, age, frozenset(observed), values))
    return Cohort(tuple(people), terms, assays)


@lru_cache(maxsize=32)
def _cohort(source: Path, packets: bool, columns: tuple[ColumnSpec, ...], stamp: float) -> Cohort:
    return _packets(source) if packets else _table(source, columns)


def cohort(dataset: BeaconDataset) -> Cohort | None:
    """The dataset's individuals (cached until the file or folder changes), None without any."""
    source = dataset.phenopackets or dataset.phenotypes
    if source is None:
        return None
    packets = dataset.phenopackets is not None
    return _cohort(source, packets, tuple(dataset.columns), source.stat().st_mtime)


def filtering_terms(dataset: BeaconDataset) -> list[dict[str, Any]]:
    """Beacon ``FilteringTerm`` objects this dataset can answer."""
    found = cohort(dataset)
    if found is None:
        return []
    out: list[dict[str, Any]] = []
    if any(p.sex for p in found.people):
        out += [
            {"type": "ontologyTerm", "id": t, "label": lab, "scopes": ["individual"]}
            for t, lab in SEX_LABELS.items()
        ]
    if any(p.age is not None for p in found.people):
        out.append(
            {
                "type": "alphanumeric",
                "id": "age",
                "label": "age at last encounter (ISO-8601 duration or years)",
                "scopes": ["individual"],
            }
        )
    out += [
        {"type": "ontologyTerm", "id": t, "label": lab or t, "scopes": ["individual"]}
        for t, lab in sorted(found.terms.items())
    ]
    out += [
        {"type": "alphanumeric", "id": t, "label": lab or t, "scopes": ["individual"]}
        for t, lab in sorted(found.assays.items())
    ]
    return out


def _known(f: Mapping[str, Any], found: Cohort) -> bool:
    fid = str(f.get("id", ""))
    if "operator" in f:
        return fid == "age" or fid in found.assays
    return fid in SEX_LABELS or fid in found.terms


def _predicate(f: Mapping[str, Any]) -> Callable[[Person], bool]:
    fid = str(f.get("id", ""))
    if "operator" not in f:
        if fid in SEX_LABELS:
            return lambda p: p.sex == SEX_LABELS[fid]
        return lambda p: fid in p.terms
    op = _OPS.get(str(f["operator"]))
    if op is None:
        raise QueryError(
            f"filter {fid}: operator {f['operator']!r} is not one of {', '.join(_OPS)}."
        )
    text = str(f.get("value", "")).strip()
    try:
        bound = iso8601_years(text) if fid == "age" and text.startswith("P") else float(text)
    except ValueError:
        raise QueryError(
            f"filter {fid}: value {text!r} is not a number (or P50Y for age)."
        ) from None
    if fid == "age":
        return lambda p: p.age is not None and op(p.age, bound)
    return lambda p: fid in p.measurements and op(p.measurements[fid], bound)


def count_individuals(
    dataset: BeaconDataset, filters: Sequence[Mapping[str, Any]]
) -> tuple[int | None, list[str]]:
    """(individuals matching every filter, the filter ids this dataset cannot answer).

    The count is None when the dataset has no phenotype data or cannot answer a filter.
    """
    found = cohort(dataset)
    if found is None:
        return None, [str(f.get("id")) for f in filters]
    unknown = [str(f.get("id")) for f in filters if not _known(f, found)]
    if unknown:
        return None, unknown
    tests = [_predicate(f) for f in filters]
    return sum(all(t(p) for t in tests) for p in found.people), []
