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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class PhenotypeRow:
    """One individual's row of the plink2 table (``None`` = missing)."""

    iid: str
    sex: int | None
    age: float | None
    qt: float | None
    bt: int | None
    source: str


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
    return PhenotypeRow(iid=iid, sex=sex, age=age, qt=qt, bt=bt, source=source)


def read_folder(
    directory: str | Path,
    *,
    qt_assay: str | None = None,
    bt_terms: Iterable[str] = (),
    unmentioned: str = "control",
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


def table_text(rows: Sequence[PhenotypeRow], *, qt_name: str = "qt", bt_name: str = "bt") -> str:
    """The plink2 pheno/covariate table (tab-separated, ``#FID IID sex age <qt> <bt>``)."""
    lines = [f"#FID\tIID\tsex\tage\t{qt_name}\t{bt_name}"]
    for r in rows:
        lines.append(
            f"{r.iid}\t{r.iid}\t{_fmt(r.sex)}\t{_fmt(r.age, '.1f')}\t{_fmt(r.qt, '.6g')}"
            f"\t{_fmt(r.bt)}"
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
) -> list[PhenotypeRow]:
    """Read ``directory`` and write the table to ``out`` atomically; return the rows."""
    rows = read_folder(directory, qt_assay=qt_assay, bt_terms=bt_terms, unmentioned=unmentioned)
    write_text_atomic(out, table_text(rows, qt_name=qt_name, bt_name=bt_name))
    return rows
