"""A site's simulated phenotypes as a folder of GA4GH Phenopacket v2 JSON files.

One packet per sample (``<IID>.json``), holding the same values as the site's
``phenotypes.tsv``: ``subject.sex``, the age as ``subject.timeAtLastEncounter.age`` (ISO-8601
years and days), ``qt`` as a measurement of :data:`QT_ASSAY` (absent when missing) and ``bt`` as
the phenotypic feature :data:`BT_TERM`, excluded for controls. The workflow config's
``phenopackets`` mapping names the same two terms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.simulate.cohort import Cohort
from snakemake_fedgen.simulate.phenotypes import SitePhenotypes

#: The simulated qt is on the scale of LDL cholesterol in mmol/L (mean 3, SD about 1).
QT_ASSAY = ("LOINC:22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma")
QT_UNIT = ("UCUM:mmol/L", "millimole per liter")
#: The simulated bt: hypertension (case = feature observed, control = feature excluded).
BT_TERM = ("HP:0000822", "Hypertension")
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


def packet(iid: str, *, sex: int, age: float, qt: float, bt: int):
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
    return out


def write_phenopackets(directory: Path, cohort: Cohort, pheno: SitePhenotypes) -> int:
    """Write one ``<IID>.json`` packet per sample into ``directory``; return the count."""
    from google.protobuf import json_format

    directory.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(cohort.samples):
        p = packet(
            s.iid, sex=int(pheno.sex[i]), age=float(pheno.age[i]), qt=pheno.qt[i], bt=pheno.bt[i]
        )
        write_text_atomic(
            directory / f"{s.iid}.json", json_format.MessageToJson(p, indent=2) + "\n"
        )
    return cohort.n
