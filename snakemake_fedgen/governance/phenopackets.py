"""GA4GH Phenopackets v2 -> the plink2 phenotype/covariate table, at the site.

A site may keep its phenotypes as a folder of Phenopacket v2 JSON files (one per individual).
This module turns them into the table the workflow's association step reads (``#FID IID sex age
qt bt``; plink2 coding sex 1=male 2=female, bt 1=control 2=case, ``NA`` missing). It runs inside a
site task; its output is individual-level data and stays at the site.

* ``sex`` from ``subject.sex`` (MALE/FEMALE; anything else is ``NA``);
* ``age`` in years (one decimal) from ``subject.timeAtLastEncounter.age.iso8601duration``;
* ``qt`` from the measurement whose ``assay.id`` is the requested term (``value.quantity.value``;
  with several such measurements the last one listed wins);
* ``bt`` is 2 (case) when a requested term is a non-excluded phenotypic feature or disease, 1
  (control) when it is excluded, and for individuals that do not mention it either 1 or ``NA``
  (``unmentioned="control"|"missing"``).

Further columns (the clinical data of a risk model) follow ``bt`` in the order of a mapping
(the workflow config's ``phenopackets.columns``, read by :func:`column_specs`), each one of:

* ``{assay: TERM[, unit: TERM]}``: the value of the last measurement with that assay (``%.6g``;
  with ``unit``, a measurement in another unit is an error naming the file);
* ``{terms: [TERM, ...], coding: "1/2"|"0/1"}``: observed / excluded phenotypic feature or
  disease, coded 2/1 (plink2 case/control, the default) or 1/0 (an indicator covariate);
  unmentioned as ``bt``;
* ``{onset_of: [TERM, ...], censor_years: Y}``: follow-up in years (2 decimals) of an incident
  event: onset age minus ``age`` when a term is observed with an onset age (``NA`` without
  one or with an onset before ``age``), ``Y`` when excluded (or unmentioned, with
  ``unmentioned="control"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

_DURATION = re.compile(
    r"^P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T.*)?$"
)


def iso8601_years(duration: str) -> float:
    """Years in an ISO-8601 duration such as ``P45Y6M`` or ``P30Y3M15D`` (months = 1/12 year).

    Raises
    ------
    ValueError
        not a date-based ISO-8601 duration.
    """
    m = _DURATION.match(duration.strip())
    if not m or duration.strip() in ("P", "PT") or not any(m.group(k) for k in "ymwd"):
        raise ValueError(f"{duration!r} is not an ISO-8601 duration like P45Y6M")
    years = float(m.group("y") or 0)
    years += float(m.group("m") or 0) / 12.0
    years += (float(m.group("w") or 0) * 7 + float(m.group("d") or 0)) / 365.25
    return years


_TERM = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*:\S+$")
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED = {"FID", "IID", "sex", "age"}


@dataclass(frozen=True)
class ColumnSpec:
    """How one extra table column is read from a packet (see the module doc).

    ``kind`` is ``measurement`` (``terms`` = the assay, ``unit`` optional), ``binary``
    (``coding`` ``1/2`` or ``0/1``) or ``followup`` (``censor_years``).
    """

    name: str
    kind: str
    terms: tuple[str, ...]
    unit: str | None = None
    coding: str = "1/2"
    censor_years: float | None = None


def column_specs(mapping: Mapping[str, Any], *, source: str = "phenopackets.columns"):
    """Parse a ``{column: spec}`` mapping into :class:`ColumnSpec` objects, in its order.

    Raises
    ------
    ConfigError
        an entry that is none of the three forms, names a bad column or a bad term id.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: expected a mapping of column name -> spec, got {mapping!r}")
    specs: list[ColumnSpec] = []
    for name, spec in mapping.items():
        where = f"{source}.{name}"
        if not isinstance(name, str) or not _COLUMN.match(name) or name in _RESERVED:
            raise ConfigError(
                f"{where}: column names are letters, digits and _ (not FID, IID, sex or age)"
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping such as {{assay: LOINC:8480-6}}")
        keys = set(spec)
        forms = {
            "measurement": ({"assay"}, {"assay", "unit"}),
            "binary": ({"terms"}, {"terms", "coding"}),
            "followup": ({"onset_of", "censor_years"}, {"onset_of", "censor_years"}),
        }
        kind = next((k for k, (need, allowed) in forms.items() if need <= keys <= allowed), None)
        if kind is None:
            raise ConfigError(
                f"{where}: {dict(spec)!r} is not one of {{assay[, unit]}}, {{terms[, coding]}} "
                "or {onset_of, censor_years} (docs/governance.md, Phenopackets)"
            )
        raw = spec.get("assay") or spec.get("terms") or spec.get("onset_of")
        terms = (raw,) if isinstance(raw, str) else tuple(raw or ())
        unit = spec.get("unit")
        bad = [t for t in (*terms, *([unit] if unit else [])) if not _TERM.match(str(t))]
        if not terms or bad:
            raise ConfigError(f"{where}: term ids look like PREFIX:ID (e.g. MONDO:0005015): {bad}")
        coding = str(spec.get("coding", "1/2"))
        if coding not in ("1/2", "0/1"):
            raise ConfigError(f"{where}: coding must be '1/2' (case/control) or '0/1'")
        censor = spec.get("censor_years")
        if kind == "followup" and (
            isinstance(censor, bool) or not isinstance(censor, int | float) or censor <= 0
        ):
            raise ConfigError(f"{where}: censor_years must be a positive number of years")
        specs.append(
            ColumnSpec(
                name=name,
                kind=kind,
                terms=terms,
                unit=unit,
                coding=coding,
                censor_years=None if censor is None else float(censor),
            )
        )
    return specs


def load_column_specs(path: str | Path) -> list[ColumnSpec]:
    """Column specs from a YAML file: a workflow config (its ``phenopackets.columns``) or the
    ``{column: spec}`` mapping itself."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read column mapping {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if isinstance(data, Mapping) and "phenopackets" in data:
        block = data["phenopackets"] or {}
        if "columns" not in block:
            raise ConfigError(f"{path}: phenopackets has no `columns:` mapping")
        return column_specs(block["columns"], source=f"{path}: phenopackets.columns")
    return column_specs(data or {}, source=str(path))


@dataclass(frozen=True)
class PhenotypeRow:
    """One individual's row of the plink2 table (``None`` = missing)."""

    iid: str
    sex: int | None
    age: float | None
    qt: float | None
    bt: int | None
    source: str
    columns: tuple[float | int | None, ...] = ()  # one per ColumnSpec, in order


def _term_calls(packet) -> list[tuple[str, bool, Any]]:
    """(term id, excluded, onset TimeElement or None) of every feature and disease."""
    calls = [
        (f.type.id, f.excluded, f.onset if f.HasField("onset") else None)
        for f in packet.phenotypic_features
    ]
    calls += [
        (d.term.id, d.excluded, d.onset if d.HasField("onset") else None) for d in packet.diseases
    ]
    return calls


def _binary(hits: list[bool], unmentioned: str) -> bool | None:
    """Observed (True), excluded or unmentioned-as-control (False), or missing (None)."""
    if any(not excluded for excluded in hits):
        return True
    if hits or unmentioned == "control":
        return False
    return None


def _column_value(packet, spec: ColumnSpec, *, age, unmentioned: str, source: str):
    if spec.kind == "measurement":
        value = None
        for m in packet.measurements:
            if m.assay.id == spec.terms[0] and m.value.HasField("quantity"):
                unit = m.value.quantity.unit.id
                if spec.unit and unit != spec.unit:
                    raise ConfigError(
                        f"{source}: measurement {spec.terms[0]} is in {unit or 'no unit'}, "
                        f"column {spec.name} expects {spec.unit}; convert it or map the unit"
                    )
                value = float(m.value.quantity.value)
        return value
    wanted = set(spec.terms)
    calls = [c for c in _term_calls(packet) if c[0] in wanted]
    observed = _binary([excluded for _, excluded, _ in calls], unmentioned)
    if spec.kind == "binary":
        if observed is None:
            return None
        return (2 if observed else 1) if spec.coding == "1/2" else int(observed)
    if observed is None:
        return None
    if not observed:
        return spec.censor_years
    onsets = [
        o.age.iso8601duration
        for _, excluded, o in calls
        if not excluded and o is not None and o.HasField("age")
    ]
    if age is None or not onsets:
        return None
    try:
        years = min(iso8601_years(d) for d in onsets) - age
    except ValueError as exc:
        raise ConfigError(f"{source}: onset of {spec.terms[0]}: {exc}.") from exc
    return round(years, 2) if years >= 0 else None


def read_phenopacket(path: Path):
    """Parse one Phenopacket v2 JSON file; ConfigError names the file and the problem."""
    from google.protobuf import json_format
    from phenopackets import Phenopacket

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read phenopacket {path}: {exc.strerror}") from exc
    try:
        return json_format.Parse(text, Phenopacket(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ConfigError(
            f"{path} is not a valid Phenopacket v2 JSON file: {exc}. Export it with a "
            "phenopackets v2 tool (schema: phenopacket-schema v2)."
        ) from exc


def phenotype_row(
    packet,
    *,
    source: str,
    qt_assay: str | None,
    bt_terms: Sequence[str],
    unmentioned: str = "control",
    columns: Sequence[ColumnSpec] = (),
) -> PhenotypeRow:
    """Turn one parsed Phenopacket into a :class:`PhenotypeRow`."""
    from phenopackets import Sex

    subject = packet.subject
    iid = subject.id or packet.id
    if not iid:
        raise ConfigError(f"{source}: neither subject.id nor id is set; every packet needs one.")
    if any(c.isspace() for c in iid):
        raise ConfigError(f"{source}: subject id {iid!r} contains whitespace, which plink2 splits.")
    sex = {Sex.Value("MALE"): 1, Sex.Value("FEMALE"): 2}.get(subject.sex)

    age = None
    tle = subject.time_at_last_encounter
    if tle.HasField("age") and tle.age.iso8601duration:
        try:
            age = round(iso8601_years(tle.age.iso8601duration), 1)
        except ValueError as exc:
            raise ConfigError(f"{source}: subject.timeAtLastEncounter.age: {exc}.") from exc

    qt = None
    if qt_assay:
        for m in packet.measurements:
            if m.assay.id == qt_assay and m.value.HasField("quantity"):
                qt = float(m.value.quantity.value)

    bt = None
    if bt_terms:
        wanted = set(bt_terms)
        calls = [(f.type.id, f.excluded) for f in packet.phenotypic_features]
        calls += [(d.term.id, d.excluded) for d in packet.diseases]
        hits = [excluded for term, excluded in calls if term in wanted]
        if any(not excluded for excluded in hits):
            bt = 2
        elif hits or unmentioned == "control":
            bt = 1
    extra = tuple(
        _column_value(packet, c, age=age, unmentioned=unmentioned, source=source) for c in columns
    )
    return PhenotypeRow(iid=iid, sex=sex, age=age, qt=qt, bt=bt, source=source, columns=extra)


def read_folder(
    directory: str | Path,
    *,
    qt_assay: str | None = None,
    bt_terms: Iterable[str] = (),
    unmentioned: str = "control",
    columns: Sequence[ColumnSpec] = (),
) -> list[PhenotypeRow]:
    """Rows for every ``*.json`` Phenopacket in ``directory`` (sorted by file name)."""
    directory = Path(directory)
    if unmentioned not in ("control", "missing"):
        raise ConfigError(f"unmentioned must be 'control' or 'missing', not {unmentioned!r}.")
    if not directory.is_dir():
        raise ConfigError(f"phenopacket folder {directory} does not exist or is not a directory.")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise ConfigError(f"{directory} holds no *.json phenopackets.")
    terms = tuple(bt_terms)
    rows: list[PhenotypeRow] = []
    seen: dict[str, str] = {}
    for path in files:
        row = phenotype_row(
            read_phenopacket(path),
            source=str(path),
            qt_assay=qt_assay,
            bt_terms=terms,
            unmentioned=unmentioned,
            columns=columns,
        )
        if row.iid in seen:
            raise ConfigError(
                f"subject {row.iid!r} appears in both {seen[row.iid]} and {path}; keep one packet "
                "per individual."
            )
        seen[row.iid] = str(path)
        rows.append(row)
    return rows


def _fmt(value: float | int | None, spec: str = "") -> str:
    return "NA" if value is None else format(value, spec)


_SPEC_FORMAT = {"measurement": ".6g", "binary": "", "followup": ".2f"}


def table_text(
    rows: Sequence[PhenotypeRow],
    *,
    qt_name: str = "qt",
    bt_name: str = "bt",
    columns: Sequence[ColumnSpec] = (),
) -> str:
    """The plink2 pheno/covariate table (tab-separated, ``#FID IID sex age <qt> <bt>``, then
    the ``columns``)."""
    names = [qt_name, bt_name, *(c.name for c in columns)]
    if len(set(names)) < len(names):
        raise ConfigError(f"column names must differ: {', '.join(names)}")
    lines = ["\t".join(["#FID", "IID", "sex", "age", *names])]
    for r in rows:
        extra = "".join(
            f"\t{_fmt(v, _SPEC_FORMAT[c.kind])}" for c, v in zip(columns, r.columns, strict=True)
        )
        lines.append(
            f"{r.iid}\t{r.iid}\t{_fmt(r.sex)}\t{_fmt(r.age, '.1f')}\t{_fmt(r.qt, '.6g')}"
            f"\t{_fmt(r.bt)}{extra}"
        )
    return "\n".join(lines) + "\n"


def write_table(
    directory: str | Path,
    out: str | Path,
    *,
    qt_assay: str | None = None,
    bt_terms: Iterable[str] = (),
    unmentioned: str = "control",
    qt_name: str = "qt",
    bt_name: str = "bt",
    columns: Sequence[ColumnSpec] = (),
) -> list[PhenotypeRow]:
    """Read ``directory`` and write the table to ``out`` atomically; return the rows."""
    rows = read_folder(
        directory, qt_assay=qt_assay, bt_terms=bt_terms, unmentioned=unmentioned, columns=columns
    )
    text = table_text(rows, qt_name=qt_name, bt_name=bt_name, columns=columns)
    write_text_atomic(out, text)
    return rows
