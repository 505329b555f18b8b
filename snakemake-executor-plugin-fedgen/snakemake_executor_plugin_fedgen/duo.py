"""Data Use Ontology (DUO) checks: does a dataset's consent permit the analysis' declared purpose?

The ontology shipped in ``data/duo-basic.owl`` (GA4GH DUO, RDF/XML) is parsed at run time: term
ids, shorthands, labels and the ``rdfs:subClassOf`` hierarchy all come from it. Permissions are
the descendants of *data use permission* (DUO:0000001), modifiers the descendants of *data use
modifier* (DUO:0000017), research types (*investigation*, OBI:0000066) describe a purpose.

Matching rule for permissions (the GA4GH DUO matching convention):

* the purpose declares the permission category it falls under (``research_type``: e.g. DS for
  disease-specific research); a dataset permission P permits it when the purpose category is P
  or a subclass of P (DS is a subclass of HMB, which is a subclass of GRU);
* NRES (*no restriction*) permits any use and GRU permits any *research* purpose, including
  population-origins research, as its ontology comment states;
* DS needs a disease: the dataset's DS term carries ``disease`` (MONDO ids) and the purpose its
  ``disease``. MONDO cannot be loaded offline, so the purpose disease must equal the dataset's
  disease or the purpose must list the dataset's disease in ``disease_ancestors``.

Modifiers either refuse the purpose (NCU with a commercial purpose), or list an action the
analyst must take (PUB, COL, IRB, RTN, MOR). A term this module cannot evaluate is refused,
never ignored.

A dataset term is a string (``"DUO:0000042"`` or a shorthand ``"GRU"``) or a mapping
``{id: DUO:0000007, disease: MONDO:0005148}``; parameters of other modifiers go in ``value``
(``{id: DUO:0000028, value: "Example University"}``; TS takes an ISO date ``until``).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError, GovernanceError

_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RDFS = "{http://www.w3.org/2000/01/rdf-schema#}"
_OWL = "{http://www.w3.org/2002/07/owl#}"
_OBOINOWL = "{http://www.geneontology.org/formats/oboInOwl#}"
_OBO = "http://purl.obolibrary.org/obo/"

PERMISSION_ROOT = "DUO:0000001"
MODIFIER_ROOT = "DUO:0000017"
INVESTIGATION_ROOT = "OBI:0000066"

PURPOSE_KEYS = frozenset(
    {
        "research_type",
        "disease",
        "disease_ancestors",
        "investigation",
        "commercial",
        "not_for_profit",
        "institution",
        "region",
        "project",
        "user",
        "ethics_approval",
        "methods_development",
        "genetic_study",
        "clinical_care",
        "date",
        "description",
    }
)


@dataclass(frozen=True)
class Term:
    """One ontology class: id (``DUO:0000042``), shorthand (``GRU``), label and parents."""

    id: str
    label: str
    shorthand: str | None
    parents: tuple[str, ...]


class Ontology:
    """DUO terms with their subclass hierarchy, read from an OWL (RDF/XML) file."""

    def __init__(self, terms: Mapping[str, Term]) -> None:
        self.terms = dict(terms)
        self._by_name = {t.id.upper(): t.id for t in self.terms.values()}
        for t in self.terms.values():
            if t.shorthand:
                self._by_name[t.shorthand.upper()] = t.id

    @classmethod
    def from_owl(cls, path: Path) -> Ontology:
        """Parse ``path`` (RDF/XML as written by the OWL API) into an :class:`Ontology`."""
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise ConfigError(f"cannot read the DUO ontology {path}: {exc}") from exc
        about_to_id: dict[str, str] = {}
        raw: list[tuple[str, str, str | None, list[str]]] = []
        for cls_el in root.iter(f"{_OWL}Class"):
            about = cls_el.get(f"{_RDF}about")
            if not about:
                continue
            # oboInOwl:id is authoritative: the IRI of NPOA has a typo (DUO_00000044).
            id_el = cls_el.find(f"{_OBOINOWL}id")
            term_id = id_el.text.strip() if id_el is not None and id_el.text else _iri_to_id(about)
            about_to_id[about] = term_id
            label_el = cls_el.find(f"{_RDFS}label")
            short_el = cls_el.find(f"{_OBOINOWL}shorthand")
            parents = [
                resource
                for p in cls_el.findall(f"{_RDFS}subClassOf")
                if (resource := p.get(f"{_RDF}resource"))
            ]
            raw.append(
                (
                    term_id,
                    (label_el.text or "").strip() if label_el is not None else term_id,
                    short_el.text.strip() if short_el is not None and short_el.text else None,
                    parents,
                )
            )
        terms = {
            tid: Term(tid, label, short, tuple(about_to_id.get(p, _iri_to_id(p)) for p in parents))
            for tid, label, short, parents in raw
        }
        if PERMISSION_ROOT not in terms or MODIFIER_ROOT not in terms:
            raise ConfigError(
                f"{path} does not look like DUO: no {PERMISSION_ROOT}/{MODIFIER_ROOT}"
            )
        return cls(terms)

    def resolve(self, name: str) -> str | None:
        """Return the term id for an id (``DUO:0000042``, ``DUO_0000042``) or shorthand."""
        key = str(name).strip().upper().replace("_", ":", 1)
        return self._by_name.get(key)

    def ancestors(self, term_id: str) -> set[str]:
        """All superclasses of ``term_id``, including itself."""
        seen: set[str] = set()
        stack = [term_id]
        while stack:
            tid = stack.pop()
            if tid in seen:
                continue
            seen.add(tid)
            term = self.terms.get(tid)
            if term:
                stack.extend(term.parents)
        return seen

    def is_a(self, term_id: str, ancestor: str) -> bool:
        """True when ``term_id`` is ``ancestor`` or one of its subclasses."""
        return ancestor in self.ancestors(term_id)

    def by_shorthand(self, shorthand: str) -> str:
        """Id of the term with this shorthand; a missing one means the ontology changed."""
        tid = self.resolve(shorthand)
        if tid is None:
            raise ConfigError(f"the DUO ontology has no term with shorthand {shorthand}")
        return tid

    def name(self, term_id: str) -> str:
        """``DUO:0000007 (DS, disease specific research)`` for messages."""
        t = self.terms.get(term_id)
        if t is None:
            return term_id
        return f"{t.id} ({t.shorthand + ', ' if t.shorthand else ''}{t.label})"


def _iri_to_id(iri: str) -> str:
    local = iri.rsplit("/", 1)[-1]
    return local.replace("_", ":", 1) if iri.startswith(_OBO) else iri


@cache
def ontology() -> Ontology:
    """The DUO ontology shipped with the package (parsed once per process)."""
    path = resources.files("snakemake_executor_plugin_fedgen") / "data" / "duo-basic.owl"
    return Ontology.from_owl(Path(str(path)))


@dataclass(frozen=True)
class Conflict:
    """A dataset term that does not permit the purpose, and why."""

    term: str
    name: str
    reason: str


@dataclass(frozen=True)
class DuoDecision:
    """Outcome of :func:`check_purpose` for one dataset."""

    allowed: bool
    conflicts: tuple[Conflict, ...] = ()
    actions: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line: ``allowed`` / ``refused: <term>: <reason>`` plus required actions."""
        head = (
            "allowed"
            if self.allowed
            else "refused: " + "; ".join(f"{c.name}: {c.reason}" for c in self.conflicts)
        )
        if self.actions:
            head += " | actions required: " + "; ".join(self.actions)
        return head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by the RO-Crate and ``fedgen sites check --json``)."""
        return {
            "allowed": self.allowed,
            "terms": list(self.terms),
            "conflicts": [c.__dict__ for c in self.conflicts],
            "actions": list(self.actions),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _DatasetTerm:
    id: str
    disease: tuple[str, ...] = ()
    value: Any = None
    until: str | None = None


def _parse_terms(terms: Iterable[Any], onto: Ontology) -> tuple[list[_DatasetTerm], list[Conflict]]:
    parsed: list[_DatasetTerm] = []
    bad: list[Conflict] = []
    for item in terms:
        if isinstance(item, Mapping):
            raw_id = item.get("id") or item.get("term")
            disease = item.get("disease") or ()
            if isinstance(disease, str):
                disease = (disease,)
            extra: dict[str, Any] = dict(
                disease=tuple(str(d) for d in disease),
                value=item.get("value"),
                until=str(item["until"]) if item.get("until") is not None else None,
            )
        else:
            raw_id, extra = item, {}
        tid = onto.resolve(str(raw_id)) if raw_id is not None else None
        if tid is None:
            bad.append(
                Conflict(
                    str(raw_id), str(raw_id), "not a DUO term; use an id or shorthand from DUO"
                )
            )
            continue
        parsed.append(_DatasetTerm(tid, **extra))
    return parsed, bad


def _norm(text: Any) -> str:
    return " ".join(str(text).split()).casefold()


def _purpose_category(purpose: Mapping[str, Any], onto: Ontology) -> str:
    raw = purpose.get("research_type")
    if raw is None:
        raise ConfigError(
            "purpose.research_type is missing: declare the DUO permission your analysis falls "
            "under, e.g. research_type: DUO:0000007 (DS) with disease: MONDO:..."
        )
    tid = onto.resolve(str(raw))
    if tid is None or not onto.is_a(tid, PERMISSION_ROOT) or tid == PERMISSION_ROOT:
        raise ConfigError(
            f"purpose.research_type {raw!r} is not a DUO data use permission; use one of "
            + ", ".join(
                sorted(
                    f"{t.id} ({t.shorthand})"
                    for t in onto.terms.values()
                    if t.shorthand and onto.is_a(t.id, PERMISSION_ROOT)
                )
            )
        )
    return tid


def validate_purpose(purpose: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check the ``purpose`` config mapping and return it as a plain dict.

    Raises
    ------
    ConfigError
        naming the unknown key or the missing ``research_type``.
    """
    if not isinstance(purpose, Mapping):
        raise ConfigError(
            "the workflow config has no 'purpose' mapping; declare e.g. purpose: "
            "{research_type: DUO:0000007, disease: MONDO:0005148, commercial: false}"
        )
    unknown = sorted(set(purpose) - PURPOSE_KEYS)
    if unknown:
        raise ConfigError(f"unknown purpose key(s) {unknown}; known keys: {sorted(PURPOSE_KEYS)}")
    _purpose_category(purpose, ontology())
    return dict(purpose)


def check_purpose(
    terms: Iterable[Any], purpose: Mapping[str, Any], *, today: dt.date | None = None
) -> DuoDecision:
    """Decide whether a dataset with DUO ``terms`` may be used for ``purpose``.

    Parameters
    ----------
    terms
        The dataset's DUO terms (ids, shorthands or mappings with ``disease``/``value``).
    purpose
        The workflow's ``purpose`` config (see :data:`PURPOSE_KEYS`).
    today
        Date used for time-limited consent (TS); defaults to today (UTC).

    Returns
    -------
    DuoDecision
        ``allowed`` is False when any term conflicts; ``conflicts`` name the terms.
    """
    onto = ontology()
    purpose = validate_purpose(purpose)
    category = _purpose_category(purpose, onto)
    today = today or dt.datetime.now(dt.UTC).date()
    parsed, conflicts = _parse_terms(terms, onto)
    actions: list[str] = []
    notes: list[str] = []

    permissions = [t for t in parsed if onto.is_a(t.id, PERMISSION_ROOT)]
    modifiers = [t for t in parsed if onto.is_a(t.id, MODIFIER_ROOT)]
    for t in parsed:
        if t not in permissions and t not in modifiers:
            conflicts.append(
                Conflict(t.id, onto.name(t.id), "is neither a data use permission nor a modifier")
            )

    if not permissions and not conflicts:
        conflicts.append(
            Conflict(
                PERMISSION_ROOT,
                onto.name(PERMISSION_ROOT),
                "the dataset declares no data use permission (GRU, HMB, DS, POA or NRES); "
                "the site must add one to its registry entry",
            )
        )
    permission_conflicts: list[Conflict] = []
    permitted = False
    for perm in permissions:
        verdict = _permits(perm, category, purpose, onto, notes)
        if verdict is None:
            permitted = True
        else:
            permission_conflicts.append(verdict)
    if not permitted:
        conflicts.extend(permission_conflicts)

    for mod in modifiers:
        _apply_modifier(mod, purpose, category, onto, today, conflicts, actions)
    cc = onto.by_shorthand("CC")
    if purpose.get("clinical_care") is True and all(m.id != cc for m in modifiers):
        conflicts.append(
            Conflict(
                cc,
                onto.name(cc),
                "the purpose is clinical care but the dataset's consent "
                "does not include this modifier",
            )
        )

    return DuoDecision(
        allowed=not conflicts,
        conflicts=tuple(conflicts),
        actions=tuple(dict.fromkeys(actions)),
        terms=tuple(t.id for t in parsed),
        notes=tuple(dict.fromkeys(notes)),
    )


def _permits(
    perm: _DatasetTerm,
    category: str,
    purpose: Mapping[str, Any],
    onto: Ontology,
    notes: list[str],
) -> Conflict | None:
    """None when permission ``perm`` permits the purpose category, else the conflict."""
    if perm.id == onto.by_shorthand("NRES"):
        return None
    # GRU: "use is allowed for general research use for any research purpose" (its definition);
    # the ontology comment names population origins/ancestry research as included.
    if perm.id == onto.by_shorthand("GRU") and category != onto.by_shorthand("NRES"):
        return None
    if not onto.is_a(category, perm.id):
        return Conflict(
            perm.id,
            onto.name(perm.id),
            f"permits only {onto.terms[perm.id].label} (and narrower uses); the purpose is "
            f"{onto.name(category)}",
        )
    if perm.id == onto.by_shorthand("DS"):
        if not perm.disease:
            return Conflict(
                perm.id,
                onto.name(perm.id),
                "the dataset's DS term names no disease; the site must add disease: MONDO:... "
                "to the term",
            )
        wanted = purpose.get("disease")
        if not wanted:
            return Conflict(
                perm.id,
                onto.name(perm.id),
                f"disease-specific consent ({', '.join(perm.disease)}) but the purpose names no "
                "disease; add purpose.disease",
            )
        lineage = {_norm(wanted)} | {_norm(a) for a in purpose.get("disease_ancestors") or ()}
        if not any(_norm(d) in lineage for d in perm.disease):
            return Conflict(
                perm.id,
                onto.name(perm.id),
                f"consent covers {', '.join(perm.disease)} but the purpose studies {wanted}; "
                "if the purpose disease is a subtype, list the consented disease in "
                "purpose.disease_ancestors (MONDO is not loaded offline)",
            )
        notes.append(
            "disease matched by exact id or the purpose's disease_ancestors "
            "(the MONDO hierarchy is not consulted offline)"
        )
    return None


def _investigation_is(purpose: Mapping[str, Any], onto: Ontology, label: str) -> bool:
    raw = purpose.get("investigation")
    if not raw:
        return False
    tid = onto.resolve(str(raw))
    target = next((t.id for t in onto.terms.values() if t.label == label), None)
    return bool(tid and target and onto.is_a(tid, target))


def _apply_modifier(
    mod: _DatasetTerm,
    purpose: Mapping[str, Any],
    category: str,
    onto: Ontology,
    today: dt.date,
    conflicts: list[Conflict],
    actions: list[str],
) -> None:
    """Append the conflicts and actions that modifier ``mod`` implies for ``purpose``."""
    short = onto.terms[mod.id].shorthand
    name = onto.name(mod.id)

    def refuse(reason: str) -> None:
        conflicts.append(Conflict(mod.id, name, reason))

    def need_equal(key: str, what: str) -> None:
        if mod.value is None:
            actions.append(f"{name}: confirm with the site that your {what} is approved")
            return
        allowed = mod.value if isinstance(mod.value, list | tuple) else [mod.value]
        got = purpose.get(key)
        if got is None:
            refuse(f"restricted to {what} {allowed}; declare purpose.{key}")
        elif _norm(got) not in {_norm(a) for a in allowed}:
            refuse(f"restricted to {what} {allowed}; the purpose declares {got!r}")

    # NPUNCU is the parent of NPU and NCU in DUO and means both.
    if short in ("NCU", "NPUNCU") and purpose.get("commercial") is not False:
        refuse(
            "non-commercial use only; the purpose must declare commercial: false"
            if purpose.get("commercial") is None
            else "non-commercial use only; the purpose is commercial"
        )
    if short in ("NPU", "NPUNCU") and purpose.get("not_for_profit") is not True:
        refuse(
            "use by not-for-profit organisations only; the purpose must declare "
            "not_for_profit: true"
        )
    if short in ("NCU", "NPU", "NPUNCU"):
        return
    if short == "IRB":
        if purpose.get("ethics_approval") is False:
            refuse("requires local ethics (IRB/ERB) approval; the purpose declares none")
        else:
            actions.append(f"{name}: provide documentation of local IRB/ERB approval")
    elif short == "PUB":
        actions.append(f"{name}: make the results available to the scientific community")
    elif short == "COL":
        detail = f" ({mod.value})" if mod.value else ""
        actions.append(f"{name}: collaborate with the primary study investigator(s){detail}")
    elif short == "RTN":
        actions.append(f"{name}: return derived/enriched data to the resource")
    elif short == "MOR":
        when = f" until {mod.until or mod.value}" if (mod.value or mod.until) else ""
        actions.append(f"{name}: do not publish results{when}")
    elif short == "GS":
        need_equal("region", "geographic region")
    elif short == "IS":
        need_equal("institution", "institution")
    elif short == "PS":
        need_equal("project", "project")
    elif short == "US":
        need_equal("user", "user")
    elif short == "TS":
        _apply_time_limit(mod, purpose, today, refuse, actions, name)
    elif short == "GSO":
        if not (
            purpose.get("genetic_study") is True
            or _investigation_is(purpose, onto, "genetic research")
        ):
            refuse(
                "genetic studies only; declare genetic_study: true (or investigation: "
                "DUO:0000038 genetic research)"
            )
    elif short == "NMDS":
        if purpose.get("methods_development") is True or _investigation_is(
            purpose, onto, "method development"
        ):
            refuse("methods development research is not allowed")
    elif short == "NPOA":
        if onto.is_a(category, onto.by_shorthand("POA")) or _investigation_is(
            purpose, onto, "ancestry research"
        ):
            refuse("population origins or ancestry research is prohibited")
    elif short == "RS":
        _apply_research_specific(mod, purpose, category, onto, refuse, actions, name)
    elif short == "CC":
        pass  # CC widens use to clinical care (checked in check_purpose); it never restricts.
    else:
        refuse("fedgen cannot evaluate this modifier; ask the site's data access committee")


def _apply_time_limit(
    mod: _DatasetTerm,
    purpose: Mapping[str, Any],
    today: dt.date,
    refuse: Callable[[str], None],
    actions: list[str],
    name: str,
) -> None:
    until = mod.until or (mod.value if isinstance(mod.value, str | dt.date) else None)
    if until is None:
        actions.append(f"{name}: check with the site how long the approval lasts")
        return
    try:
        end = dt.date.fromisoformat(str(until))
    except ValueError:
        refuse(f"time limit {until!r} is not an ISO date (YYYY-MM-DD); the site must fix it")
        return
    on = purpose.get("date")
    ref = dt.date.fromisoformat(str(on)) if on else today
    if ref > end:
        refuse(f"approved use ended on {end.isoformat()}")


def _apply_research_specific(
    mod: _DatasetTerm,
    purpose: Mapping[str, Any],
    category: str,
    onto: Ontology,
    refuse: Callable[[str], None],
    actions: list[str],
    name: str,
) -> None:
    if mod.value is None:
        actions.append(f"{name}: confirm with the site that the research type is approved")
        return
    allowed = onto.resolve(str(mod.value))
    inv = onto.resolve(str(purpose.get("investigation") or ""))
    if allowed is None:
        refuse(f"names research type {mod.value!r}, which is not a DUO term")
    elif not (onto.is_a(category, allowed) or (inv and onto.is_a(inv, allowed))):
        refuse(f"limited to {onto.name(allowed)} studies")


@dataclass(frozen=True)
class SiteDecision:
    """DUO decisions for every consent-governed dataset of one site."""

    site: str
    datasets: Mapping[str, DuoDecision]

    @property
    def allowed(self) -> bool:
        """True when every dataset of the site permits the purpose."""
        return all(d.allowed for d in self.datasets.values())

    @property
    def actions(self) -> tuple[str, ...]:
        """Required actions over all datasets, without duplicates."""
        return tuple(dict.fromkeys(a for d in self.datasets.values() for a in d.actions))

    def summary(self) -> str:
        """``allowed`` or ``refused: dataset genotypes: DUO:...: reason`` (one line)."""
        if not self.datasets:
            return "allowed (no dataset declares DUO terms)"
        refused = [
            f"dataset {name}: {c.name}: {c.reason}"
            for name, d in self.datasets.items()
            for c in d.conflicts
        ]
        head = "allowed" if not refused else "refused: " + "; ".join(refused)
        if self.actions:
            head += " | actions required: " + "; ".join(self.actions)
        return head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "site": self.site,
            "allowed": self.allowed,
            "datasets": {k: v.to_dict() for k, v in self.datasets.items()},
        }


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def decide_registry(
    registry: Any,
    purpose: Mapping[str, Any],
    *,
    sites: Iterable[str] | None = None,
    today: dt.date | None = None,
) -> dict[str, SiteDecision]:
    """DUO decision per site for a registry (the sites.yaml mapping or a loaded registry object).

    Datasets without a ``duo`` key (e.g. a public reference panel) are not consent-governed and
    are left out.
    """
    all_sites = _get(registry, "sites")
    if all_sites is None and isinstance(registry, Mapping):
        all_sites = registry
    if not isinstance(all_sites, Mapping):
        raise ConfigError("the site registry has no 'sites' mapping")
    wanted = list(sites) if sites is not None else list(all_sites)
    out: dict[str, SiteDecision] = {}
    for site in wanted:
        entry = all_sites.get(site)
        datasets = _get(entry, "datasets") or {}
        decisions: dict[str, DuoDecision] = {}
        for ds_name, ds in datasets.items():
            terms = _get(ds, "duo")
            if terms:
                decisions[ds_name] = check_purpose(terms, purpose, today=today)
        out[site] = SiteDecision(site, decisions)
    return out


def check_registry(
    registry: Any,
    purpose: Mapping[str, Any],
    *,
    sites: Iterable[str] | None = None,
    today: dt.date | None = None,
) -> dict[str, SiteDecision]:
    """Like :func:`decide_registry` but raise when any site refuses.

    Raises
    ------
    GovernanceError
        one message naming every refused site, dataset and conflicting DUO term.
    """
    decisions = decide_registry(registry, purpose, sites=sites, today=today)
    refused = [d for d in decisions.values() if not d.allowed]
    if refused:
        lines = [f"site {d.site} {d.summary()}" for d in refused]
        raise GovernanceError(
            "the declared purpose is not permitted by the data-use terms of "
            + ", ".join(d.site for d in refused)
            + " (no task was sent):\n  "
            + "\n  ".join(lines)
            + "\nChange the workflow's purpose, drop the site, or ask its data access committee."
        )
    return decisions


def load_purpose(path: str | Path) -> dict[str, Any]:
    """Read a purpose from YAML: a workflow config with a ``purpose:`` key, or the mapping itself."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the purpose file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"purpose file {path} is not valid YAML: {exc}") from exc
    if isinstance(data, Mapping) and isinstance(data.get("purpose"), Mapping):
        data = data["purpose"]
    try:
        return validate_purpose(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def decide_site(site: Any, purpose: Mapping[str, Any], **kwargs: Any) -> SiteDecision:
    """DUO decision for one registry site (a ``snakemake_executor_plugin_fedgen.sites.Site`` or a mapping)."""
    name = _get(site, "name") or "?"
    return decide_registry({"sites": {name: site}}, purpose, **kwargs)[name]


def executor_gate(
    registry: Any,
    *,
    purpose_file: str | Path | None = None,
    workflow_config: Mapping[str, Any] | None = None,
    log: Any = None,
) -> dict[str, SiteDecision] | None:
    """The executor's start-up check: raise GovernanceError before any task is sent.

    The purpose comes from ``purpose_file`` or the workflow config's ``purpose`` key. Without
    one, nothing is checked and ``log`` is told so (returns None).
    """
    if purpose_file:
        purpose = load_purpose(purpose_file)
    elif workflow_config and workflow_config.get("purpose") is not None:
        purpose = validate_purpose(workflow_config.get("purpose"))
    else:
        if log:
            log(
                "fedgen: no 'purpose' in the workflow config: data-use (DUO) terms of the sites "
                "are NOT checked; declare purpose: {research_type: ..., ...}."
            )
        return None
    # A workflow analysing only some sites (config include_sites) is checked against those.
    included = (workflow_config or {}).get("include_sites") or None
    decisions = check_registry(registry, purpose, sites=included)
    if log:
        for d in decisions.values():
            log(f"fedgen: data use at site {d.site}: {d.summary()}")
    return decisions


def site_check(site: Any, args: Any) -> tuple[str, str, bool]:
    """``fedgen sites check`` column ``data use``: the site's DUO decision for ``--purpose``."""
    path = getattr(args, "purpose", None)
    if not path:
        return "data use", "not checked (no --purpose)", True
    cache = getattr(args, "_purpose_cache", None)
    if cache is None:
        cache = load_purpose(path)
        args._purpose_cache = cache
    decision = decide_site(site, cache)
    return "data use", decision.summary(), decision.allowed
