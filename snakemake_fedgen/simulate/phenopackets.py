"""A site's simulated phenotypes as a folder of GA4GH Phenopacket v2 JSON files.

One packet per sample (``<IID>.json``), holding the same values as the site's
``phenotypes.tsv``: ``subject.sex``, the age as ``subject.timeAtLastEncounter.age`` (ISO-8601
years and days), ``qt`` as a measurement of :data:`QT_ASSAY` (absent when missing) and ``bt`` as
the phenotypic feature :data:`BT_TERM`, excluded for controls. The workflow config's
``phenopackets`` mapping names the same two terms.

The clinical data (:mod:`~snakemake_fedgen.simulate.clinical`), when given:

* ``ldl`` and ``sbp`` as measurements of :data:`LDL_ASSAY` (LOINC 39469-2, LDL cholesterol in
  moles/volume by calculation: the simulated unit is mmol/L, whereas 13457-7 and 18262-6 are
  mass/volume, mg/dL) and :data:`SBP_ASSAY` (LOINC 8480-6), units as UCUM classes, each
  observed at the baseline age (``timeObserved``);
* ``smoking`` as the phenotypic feature :data:`SMOKING_TERM` (NCIT Current Smoker), excluded
  for non-smokers;
* ``diabetes`` as the disease :data:`DIABETES_TERM` (MONDO diabetes mellitus), excluded when
  absent;
* ``cvd`` as the disease :data:`CVD_TERM` (MONDO cardiovascular disorder, the composite
  incident event), excluded without an event; an event's ``onset`` is the age at the event
  (baseline age + ``cvd_followup_years``), so the follow-up of an event is onset minus age, and
  that of everybody else the administrative censoring time (10 years), which the converter
  takes from its mapping (``censor_years``).

The workflow config's ``phenopackets.columns`` maps these terms back to the table's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.simulate.clinical import SiteClinical
from snakemake_fedgen.simulate.cohort import Cohort
from snakemake_fedgen.simulate.phenotypes import SitePhenotypes

#: The simulated qt is on the scale of LDL cholesterol in mmol/L (mean 3, SD about 1).
QT_ASSAY = ("LOINC:22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma")
QT_UNIT = ("UCUM:mmol/L", "millimole per liter")
#: The simulated bt: hypertension (case = feature observed, control = feature excluded).
BT_TERM = ("HP:0000822", "Hypertension")
#: The clinical data (see the module doc).
LDL_ASSAY = ("LOINC:39469-2", "Cholesterol in LDL [Moles/volume] in Serum or Plasma by calculation")
SBP_ASSAY = ("LOINC:8480-6", "Systolic blood pressure")
SBP_UNIT = ("UCUM:mm[Hg]", "millimeter of mercury")
SMOKING_TERM = ("NCIT:C67147", "Current Smoker")
DIABETES_TERM = ("MONDO:0005015", "diabetes mellitus")
CVD_TERM = ("MONDO:0004995", "cardiovascular disorder")
_CLINICAL_RESOURCES = (
    ("mondo", "Mondo Disease Ontology", "MONDO", "http://purl.obolibrary.org/obo/mondo.owl",
     "http://purl.obolibrary.org/obo/MONDO_"),
    ("ncit", "NCI Thesaurus", "NCIT", "http://purl.obolibrary.org/obo/ncit.owl",
     "http://purl.obolibrary.org/obo/NCIT_"),
    ("ucum", "Unified Code for Units of Measure", "UCUM", "https://ucum.org",
     "https://ucum.org/"),
)  # fmt: skip
#: A fixed creation time keeps the simulation byte-identical for the same seed.
CREATED = "2026-01-01T00:00:00Z"


def age_duration(years: float) -> str:
    """ISO-8601 duration of an age in years with one decimal, e.g. 58.3 -> ``P58Y110D``.

    Days (of 365.25 per year) are exact to 0.002 years, so reading it back and rounding to one
    decimal gives the same age.
    """
    whole = int(years)
    days = round((years - whole) * 365.25)
    return f"P{whole}Y{days}D" if days else f"P{whole}Y"


@dataclass(frozen=True)
class ClinicalRecord:
    """One person's clinical values (:class:`~snakemake_fedgen.simulate.clinical.SiteClinical`)."""

    ldl: float
    sbp: float
    smoking: int
    diabetes: int
    cvd: int  # 1 = no event, 2 = event
    followup: float  # years

    @classmethod
    def of(cls, c: SiteClinical, i: int) -> ClinicalRecord:
        """Person ``i`` of a site's clinical arrays."""
        return cls(
            ldl=float(c.ldl[i]),
            sbp=float(c.sbp[i]),
            smoking=int(c.smoking[i]),
            diabetes=int(c.diabetes[i]),
            cvd=int(c.cvd[i]),
            followup=float(c.followup[i]),
        )


def _quantity(value: float, unit: tuple[str, str]):
    from phenopackets import OntologyClass, Quantity, Value

    out = Value(quantity=Quantity(unit=OntologyClass(id=unit[0], label=unit[1])))
    out.quantity.value = value
    return out


def _add_clinical(out, clinical: ClinicalRecord, *, age: float) -> None:
    """Append the clinical measurements, feature and diseases to packet ``out``."""
    from phenopackets import (
        Age,
        Disease,
        Measurement,
        OntologyClass,
        PhenotypicFeature,
        Resource,
        TimeElement,
    )

    def term(t: tuple[str, str]) -> OntologyClass:
        return OntologyClass(id=t[0], label=t[1])

    baseline = TimeElement(age=Age(iso8601duration=age_duration(age)))
    for assay, value, unit in (
        (LDL_ASSAY, clinical.ldl, QT_UNIT),
        (SBP_ASSAY, clinical.sbp, SBP_UNIT),
    ):
        m = Measurement(assay=term(assay), value=_quantity(value, unit))
        m.time_observed.CopyFrom(baseline)
        out.measurements.append(m)
    out.phenotypic_features.append(
        PhenotypicFeature(type=term(SMOKING_TERM), excluded=clinical.smoking != 1)
    )
    out.diseases.append(Disease(term=term(DIABETES_TERM), excluded=clinical.diabetes != 1))
    cvd = Disease(term=term(CVD_TERM), excluded=clinical.cvd != 2)
    if clinical.cvd == 2:
        # Age at the event to 2 decimals of a year; the days of age_duration resolve it.
        onset_years = round(round(age, 1) + clinical.followup, 2)
        cvd.onset.CopyFrom(TimeElement(age=Age(iso8601duration=age_duration(onset_years))))
    out.diseases.append(cvd)
    for rid, name, prefix, url, iri in _CLINICAL_RESOURCES:
        out.meta_data.resources.append(
            Resource(id=rid, name=name, namespace_prefix=prefix, url=url, iri_prefix=iri)
        )


def packet(
    iid: str,
    *,
    sex: int,
    age: float,
    qt: float,
    bt: int,
    clinical: ClinicalRecord | None = None,
):
    """The Phenopacket of one simulated sample (``qt`` NaN = not measured)."""
    from phenopackets import (
        Age,
        Individual,
        Measurement,
        MetaData,
        OntologyClass,
        Phenopacket,
        PhenotypicFeature,
        Quantity,
        Resource,
        Sex,
        TimeElement,
        Value,
    )

    subject = Individual(
        id=iid,
        sex=Sex.Value("MALE" if sex == 1 else "FEMALE"),
        time_at_last_encounter=TimeElement(age=Age(iso8601duration=age_duration(age))),
    )
    meta = MetaData(
        created_by="fedgen simulate",
        phenopacket_schema_version="2.0",
        resources=[
            Resource(
                id="hp",
                name="human phenotype ontology",
                namespace_prefix="HP",
                url="http://purl.obolibrary.org/obo/hp.owl",
                iri_prefix="http://purl.obolibrary.org/obo/HP_",
            ),
            Resource(
                id="loinc",
                name="Logical Observation Identifiers Names and Codes",
                namespace_prefix="LOINC",
                url="https://loinc.org",
                iri_prefix="https://loinc.org/",
            ),
        ],
    )
    meta.created.FromJsonString(CREATED)
    out = Phenopacket(id=f"{iid}-phenopacket", subject=subject, meta_data=meta)
    if not np.isnan(qt):
        # The same 4 decimals as phenotypes.tsv.
        value = Value(quantity=Quantity(unit=OntologyClass(id=QT_UNIT[0], label=QT_UNIT[1])))
        value.quantity.value = float(f"{qt:.4f}")
        out.measurements.append(
            Measurement(assay=OntologyClass(id=QT_ASSAY[0], label=QT_ASSAY[1]), value=value)
        )
    out.phenotypic_features.append(
        PhenotypicFeature(type=OntologyClass(id=BT_TERM[0], label=BT_TERM[1]), excluded=bt != 2)
    )
    if clinical is not None:
        _add_clinical(out, clinical, age=age)
    return out


def write_phenopackets(
    directory: Path, cohort: Cohort, pheno: SitePhenotypes, clinical: SiteClinical | None = None
) -> int:
    """Write one ``<IID>.json`` packet per sample into ``directory``; return the count."""
    from google.protobuf import json_format

    directory.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(cohort.samples):
        p = packet(
            s.iid,
            sex=int(pheno.sex[i]),
            age=float(pheno.age[i]),
            qt=pheno.qt[i],
            bt=pheno.bt[i],
            clinical=None if clinical is None else ClinicalRecord.of(clinical, i),
        )
        write_text_atomic(
            directory / f"{s.iid}.json", json_format.MessageToJson(p, indent=2) + "\n"
        )
    return cohort.n
