"""The ``sumstats-meta`` kind: a GWAS-SSF ``-meta.yaml`` metadata sidecar.

Only GWAS-SSF v1.0 metadata keys (and fedgen's own block); values are scalars, short strings,
short lists or small tallies, so no sample list or free-text dump can leave. A case/control
study must declare its case and control counts, each at least ``min_cases``. The reference panel
a site aligned to (``fedgen.aligned_panel``) leaves only as ``sha256:`` and 64 hex digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import yaml

from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.kinds.counts import COUNTS_TOKEN_RE
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff
from snakemake_fedgen.sumstats.sidecar import PANEL_DIGEST_RE

if TYPE_CHECKING:
    from snakemake_fedgen.egress.facts import ReleaseFacts

__all__ = ["KIND", "META_FEDGEN_KEYS", "META_KEYS", "META_SAMPLE_KEYS"]

#: GWAS-SSF v1.0 metadata keys (GWAS Catalog sumstats metadata model).
META_KEYS: frozenset[str] = frozenset(
    {
        "file_type",
        "data_file_name",
        "file_md5sum",
        "data_file_md5sum",
        "genome_assembly",
        "coordinate_system",
        "is_harmonised",
        "is_sorted",
        "genotyping_technology",
        "trait_description",
        "samples",
        "analysis_software",
        "date_last_modified",
        "date_metadata_last_modified",
        "gwas_id",
        "gwas_catalog_api",
        "minor_allele_freq_lower_limit",
        "imputation_panel",
        "imputation_software",
        "adjusted_covariates",
        "ontology_mapping",
        "author_notes",
        "sex",
        "effect_statistic",
        "pvalue_is_neg_log10",
        "hm_code_definition",
        "harmonisation_reference",
        "analysis_name",
        "fedgen",
    }
)
#: Keys of one ``samples`` entry.
META_SAMPLE_KEYS: frozenset[str] = frozenset(
    {
        "sample_size",
        "sample_ancestry",
        "sample_ancestry_category",
        "ancestry_method",
        "case_control_study",
        "case_count",
        "control_count",
        "case_type",
    }
)
#: Keys of the ``fedgen`` block.
META_FEDGEN_KEYS: frozenset[str] = frozenset(
    {
        "site",
        "trait_type",
        "n_cases",
        "n_controls",
        "refget_seqcol_digest",
        "aligned_panel",
        "min_n",
        "min_mac",
        "variants_suppressed",
        "variants_exported",
        "variants_dropped",
        "effect_scale",
        "source_format",
        "effect_column",
        "source_file",
        "fedgen_version",
    }
)
#: At a site with registered datasets every text value has a fixed format (below) and all of
#: them together at most this many characters: a sidecar describes a study, it carries no text.
_META_TEXT_BUDGET = 512
#: ... and no list of more than this many items.
_META_STRICT_LIST = 4
_TEXT = re.compile(r"[A-Za-z0-9 ()=,.;:+/_-]{0,120}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9._:+-]{0,64}\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_FORMATS: dict[str, re.Pattern[str] | frozenset[str]] = {
    "file_type": re.compile(r"GWAS-SSF v[0-9]+\.[0-9]+\Z"),
    "data_file_name": re.compile(r"[A-Za-z0-9._-]{1,200}\Z"),
    "file_md5sum": re.compile(r"[0-9a-f]{32}\Z"),
    "data_file_md5sum": re.compile(r"[0-9a-f]{32}\Z"),
    "genome_assembly": frozenset({"GRCh37", "GRCh38", "NCBI36", "NCBI35", "NCBI34"}),
    "coordinate_system": frozenset({"1-based", "0-based"}),
    "genotyping_technology": _TEXT,
    "trait_description": _TEXT,
    "analysis_software": _TEXT,
    "date_last_modified": _DATE,
    "date_metadata_last_modified": _DATE,
    "gwas_id": _TOKEN,
    "gwas_catalog_api": _TOKEN,
    "imputation_panel": _TEXT,
    "imputation_software": _TEXT,
    "adjusted_covariates": _TOKEN,
    "ontology_mapping": _TOKEN,
    "sex": frozenset({"M", "F", "combined"}),
    "effect_statistic": frozenset({"beta", "odds_ratio", "hazard_ratio"}),
    "hm_code_definition": _TOKEN,
    "harmonisation_reference": _TOKEN,
    "analysis_name": _TOKEN,
    "sample_ancestry": _TEXT,
    "sample_ancestry_category": _TEXT,
    "ancestry_method": _TEXT,
    "case_type": _TOKEN,
    "site": _TOKEN,
    "trait_type": frozenset({"quantitative", "binary"}),
    "refget_seqcol_digest": re.compile(r"[A-Za-z0-9_-]{32}\Z"),
    "aligned_panel": PANEL_DIGEST_RE,
    "effect_scale": _TOKEN,
    "source_format": _TEXT,
    "effect_column": _TOKEN,
    "source_file": re.compile(r"[A-Za-z0-9._/-]{0,200}\Z"),
    "fedgen_version": _TOKEN,
}
#: fedgen keys whose format is checked at every site, not only at one with registered datasets:
#: they were introduced with a fixed format, so no older sidecar carries anything else in them.
_FIXED_EVERYWHERE: dict[str, re.Pattern[str]] = {"aligned_panel": PANEL_DIGEST_RE}
#: Integer values that count persons (bounded by the largest registered cohort) and variants
#: (bounded by the registered variant universe).
_PERSON_COUNTS = frozenset(
    {"sample_size", "case_count", "control_count", "n_cases", "n_controls", "min_n"}
)
_VARIANT_COUNTS = frozenset({"variants_suppressed", "variants_exported", "variants_dropped"})
_META_MAX_BYTES = 64 * 1024
_META_MAX_LIST = 20
_META_MAX_STRING = 1000


def detect(s: Sniff) -> bool:
    name = s.name.lower()
    return not s.compression and (name.endswith("-meta.yaml") or name.endswith("-meta.yml"))


def _meta_scalar_problem(path: str, value: object) -> str | None:
    if isinstance(value, str):
        if len(value) > _META_MAX_STRING:
            return f"key {path}: text longer than {_META_MAX_STRING} characters"
        return None
    if value is None or isinstance(value, bool | int | float):
        return None
    if isinstance(value, list):
        if len(value) > _META_MAX_LIST:
            return (
                f"key {path}: a list of {len(value)} items (at most {_META_MAX_LIST}); "
                "sample lists never leave the site"
            )
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                return f"key {path}[{i}]: nested structure not allowed here"
            problem = _meta_scalar_problem(f"{path}[{i}]", item)
            if problem:
                return problem
        return None
    return f"key {path}: unsupported value type {type(value).__name__}"


def _meta_tally_problem(path: str, value: dict) -> str | None:
    if len(value) > _META_MAX_LIST:
        return f"key {path}: more than {_META_MAX_LIST} entries"
    for k, v in value.items():
        if not isinstance(k, str) or not COUNTS_TOKEN_RE.match(k):
            return f"key {path}: label {str(k)[:40]!r} is not a short token"
        if isinstance(v, bool) or not isinstance(v, int):
            return f"key {path}.{k}: {v!r} is not an integer count"
    return None


def _fixed_format_problem(path: str, key: str, value: object) -> str | None:
    fmt = _FIXED_EVERYWHERE[key]
    if value is None or (isinstance(value, str) and fmt.match(value)):
        return None
    return f"key {path}: {str(value)[:40]!r} does not have the key's format (/{fmt.pattern}/)"


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    data = stream.read(_META_MAX_BYTES + 1)
    if len(data) > _META_MAX_BYTES:
        return False, f"metadata sidecar larger than {_META_MAX_BYTES} bytes"
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        return False, f"not valid UTF-8 YAML: {str(exc).splitlines()[0]}"
    if not isinstance(doc, dict):
        return False, "the metadata sidecar must be a YAML mapping"
    unknown = sorted(str(k) for k in doc if k not in META_KEYS)
    if unknown:
        return False, f"unknown top-level key(s) {', '.join(unknown)}"
    for key, value in doc.items():
        if key == "samples":
            if not isinstance(value, list) or len(value) > _META_MAX_LIST:
                return False, f"key samples: must be a list of at most {_META_MAX_LIST} groups"
            for i, group in enumerate(value):
                if not isinstance(group, dict):
                    return False, f"key samples[{i}]: must be a mapping"
                bad = sorted(str(k) for k in group if k not in META_SAMPLE_KEYS)
                if bad:
                    return False, f"key samples[{i}]: unknown key(s) {', '.join(bad)}"
                for k, v in group.items():
                    problem = _meta_scalar_problem(f"samples[{i}].{k}", v)
                    if problem:
                        return False, problem
        elif key == "fedgen":
            if not isinstance(value, dict):
                return False, "key fedgen: must be a mapping"
            bad = sorted(str(k) for k in value if k not in META_FEDGEN_KEYS)
            if bad:
                return False, f"key fedgen: unknown key(s) {', '.join(bad)}"
            for k, v in value.items():
                if k in _FIXED_EVERYWHERE:
                    problem = _fixed_format_problem(f"fedgen.{k}", k, v)
                elif isinstance(v, dict):
                    # Tallies such as variants_dropped: {errcode: 3}; labels are short tokens.
                    problem = _meta_tally_problem(f"fedgen.{k}", v)
                else:
                    problem = _meta_scalar_problem(f"fedgen.{k}", v)
                if problem:
                    return False, problem
        else:
            if isinstance(value, dict):
                return False, f"key {key}: nested mapping not allowed"
            problem = _meta_scalar_problem(str(key), value)
            if problem:
                return False, problem
    problem = _case_control_problem(doc, policy)
    if problem:
        return False, problem
    if policy.facts is not None:
        problem = _site_facts_problem(doc, policy.facts)
        if problem:
            return False, problem
    return True, "GWAS-SSF metadata sidecar passes"


def _leaves(doc: dict) -> Iterator[tuple[str, str, object]]:
    """(path, key, value) of every scalar of a sidecar (list items under their key)."""
    for key, value in doc.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    for label, count in v.items():
                        yield f"{key}.{k}.{label}", str(k), count
                else:
                    yield from _items(f"{key}.{k}", str(k), v)
        elif key == "samples" and isinstance(value, list):
            for i, group in enumerate(value):
                for k, v in group.items():
                    yield from _items(f"samples[{i}].{k}", str(k), v)
        else:
            yield from _items(str(key), str(key), value)


def _items(path: str, key: str, value: object) -> Iterator[tuple[str, str, object]]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{path}[{i}]", key, item
    else:
        yield path, key, value


def _site_facts_problem(doc: dict, facts: ReleaseFacts) -> str | None:
    """Fixed formats for every value, person and variant counts within the registered facts."""
    text = 0
    for path, key, value in _leaves(doc):
        index = path.rsplit("[", 1)[-1].rstrip("]") if path.endswith("]") else ""
        if index.isdigit() and int(index) >= _META_STRICT_LIST:
            return (
                f"key {path.rsplit('[', 1)[0]}: more than {_META_STRICT_LIST} items at a site "
                "with registered datasets"
            )
        if isinstance(value, str):
            text += len(value)
            fmt = _FORMATS.get(key)
            if fmt is None:
                return (
                    f"key {path}: no text may leave in this key at a site with registered datasets"
                )
            ok = value in fmt if isinstance(fmt, frozenset) else bool(fmt.match(value))
            if not ok:
                allowed = (
                    ", ".join(sorted(fmt)) if isinstance(fmt, frozenset) else f"/{fmt.pattern}/"
                )
                return f"key {path}: {value[:40]!r} does not have the key's format ({allowed})"
        elif isinstance(value, int) and not isinstance(value, bool):
            if key in _PERSON_COUNTS and value > facts.max_samples:
                return (
                    f"key {path}: {value} is above the {facts.max_samples} samples of the "
                    "largest dataset registered at this site"
                )
            if key in _VARIANT_COUNTS and value > facts.universe_size:
                return (
                    f"key {path}: {value} is above the {facts.universe_size} variants registered "
                    "at this site"
                )
    if text > _META_TEXT_BUDGET:
        return (
            f"the sidecar's text values add up to {text} characters, above "
            f"{_META_TEXT_BUDGET} at a site with registered datasets"
        )
    return None


def _case_control_problem(doc: dict, policy: AirlockPolicy) -> str | None:
    """A case/control study needs declared case and control counts, each >= min_cases."""
    fedgen = doc.get("fedgen") if isinstance(doc.get("fedgen"), dict) else {}
    counts: list[tuple[str, object]] = [
        (f"fedgen.{k}", fedgen[k]) for k in ("n_cases", "n_controls") if k in fedgen
    ]
    for i, group in enumerate(doc.get("samples") or []):
        counts += [
            (f"samples[{i}].{k}", group[k]) for k in ("case_count", "control_count") if k in group
        ]
    binary = fedgen.get("trait_type") == "binary" or any(
        g.get("case_control_study") is True for g in doc.get("samples") or []
    )
    if binary and not counts:
        return (
            "a case/control study without fedgen.n_cases/n_controls: the airlock needs them to "
            f"check min_cases={policy.min_cases} (fedgen sumstats export --n-cases/--n-controls)"
        )
    for where, value in counts:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return f"key {where}: {value!r} is not an integer count"
        if value < policy.min_cases:
            return (
                f"key {where}: {value} is below min_cases={policy.min_cases}; results of a "
                "case/control study this small could disclose individuals"
            )
    return None


KIND = Kind("sumstats-meta", detect, validate)
