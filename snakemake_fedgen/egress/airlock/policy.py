"""The site's disclosure policy for its egress root, and the airlock's verdict on one file."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.sumstats import columns

if TYPE_CHECKING:
    from snakemake_fedgen.egress.facts import ReleaseFacts

__all__ = ["AirlockDecision", "AirlockPolicy"]


@dataclass(frozen=True)
class AirlockPolicy:
    """A site's disclosure policy for files leaving through its egress root.

    Attributes
    ----------
    min_n : int
        Every summary-statistics row needs a sample size ``n >= min_n``.
    min_mac : float
        Every row needs a minor allele count ``2 * n * min(eaf, 1 - eaf) >= min_mac``.
    min_cell : int
        Counts tables: every count is 0, ``>= min_cell`` or a suppressed literal ``<k`` with
        ``k >= min_cell`` (normally ``<min_cell``).
    max_bytes : int
        Largest file the airlock publishes.
    allowed_columns : frozenset of str
        Column names a summary-statistics table may carry (GWAS-SSF names).
    max_count_rows : int
        Largest number of data rows in a counts table.
    min_cases : int
        Case/control studies (a GWAS-SSF sidecar of a binary trait): the study needs at least
        this many cases and this many controls, and must say how many it has.
    secure_aggregation : bool
        Admit masked exact-mode aggregates (noise to the airlock; the site checked n and MAC
        before masking). See docs/exact-and-secure-aggregation.md.
    digits : int
        Significant digits of every number in a released summary-statistics table: the node
        rounds them before the airlock looks (:mod:`snakemake_fedgen.egress.release`), so
        nothing hidden in trailing digits leaves.
    task_provenance : bool
        Publish ``.prov.json`` records written inside tasks. Off by default: their command
        strings are free text a task chooses, and the node's own provenance record comes with
        every task anyway.
    facts : ReleaseFacts or None
        What the node read from its registered datasets (:mod:`snakemake_fedgen.egress.facts`);
        not a config key. With facts, released rows must name registered variants, ``n`` may
        not exceed the largest cohort and counts not the larger of cohort and universe.
    """

    min_n: int = 50
    min_mac: float = 10.0
    min_cell: int = 5
    max_bytes: int = 2 * 1024**3
    allowed_columns: frozenset[str] = columns.ALLOWED
    max_count_rows: int = 1000
    min_cases: int = 10
    secure_aggregation: bool = False
    digits: int = 4
    task_provenance: bool = False
    facts: ReleaseFacts | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_policy_values(self)

    @classmethod
    def from_mapping(cls, data: Mapping | None) -> AirlockPolicy:
        """Build a policy from a config mapping (e.g. the node config's ``airlock`` key).

        Parameters
        ----------
        data : mapping or None
            Keys among the attribute names; missing keys take their defaults, ``None`` gives the
            default policy.

        Raises
        ------
        ConfigError
            An unknown key, or a value of the wrong type or range; the message names the key,
            the value received and what is expected.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"airlock policy must be a mapping of {_policy_keys()}; got "
                f"{type(data).__name__} {data!r}"
            )
        known = {f.name for f in fields(cls)} - {"facts"}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(
                f"airlock policy: unknown key(s) {', '.join(unknown)}; valid keys are "
                f"{_policy_keys()}"
            )
        kwargs: dict[str, object] = {}
        for key in ("min_n", "min_cell", "max_bytes", "max_count_rows", "min_cases", "digits"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"airlock policy: {key} must be an integer; got {value!r}")
                kwargs[key] = value
        if "min_mac" in data:
            value = data["min_mac"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"airlock policy: min_mac must be a number; got {value!r}")
            kwargs["min_mac"] = float(value)
        for key in ("secure_aggregation", "task_provenance"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ConfigError(
                        f"airlock policy: {key} must be true or false; got {data[key]!r}"
                    )
                kwargs[key] = data[key]
        if "allowed_columns" in data:
            value = data["allowed_columns"]
            if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
                raise ConfigError(
                    "airlock policy: allowed_columns must be a list of GWAS-SSF column names; "
                    f"got {value!r}"
                )
            bad = sorted(str(c) for c in value if not isinstance(c, str))
            if bad:
                raise ConfigError(
                    f"airlock policy: allowed_columns must hold strings; got {', '.join(bad)}"
                )
            kwargs["allowed_columns"] = frozenset(value)
        return cls(**kwargs)  # type: ignore[arg-type]


def _policy_keys() -> str:
    return ", ".join(f.name for f in fields(AirlockPolicy) if f.name != "facts")


def _check_policy_values(policy: AirlockPolicy) -> None:
    if policy.min_n < 1:
        raise ConfigError(f"airlock policy: min_n must be >= 1; got min_n={policy.min_n}")
    if not math.isfinite(policy.min_mac) or policy.min_mac < 0:
        raise ConfigError(
            f"airlock policy: min_mac must be a finite number >= 0; got min_mac={policy.min_mac}"
        )
    if policy.min_cases < 1:
        raise ConfigError(
            f"airlock policy: min_cases must be >= 1; got min_cases={policy.min_cases}"
        )
    if policy.min_cell < 1:
        raise ConfigError(f"airlock policy: min_cell must be >= 1; got min_cell={policy.min_cell}")
    if policy.max_bytes < 1:
        raise ConfigError(
            f"airlock policy: max_bytes must be >= 1; got max_bytes={policy.max_bytes}"
        )
    if not 2 <= policy.digits <= 8:
        raise ConfigError(
            f"airlock policy: digits must be between 2 and 8 significant digits; got "
            f"{policy.digits}"
        )
    if policy.max_count_rows < 1:
        raise ConfigError(
            f"airlock policy: max_count_rows must be >= 1; got {policy.max_count_rows}"
        )
    # A site may narrow the allowed set, never widen it beyond GWAS-SSF names: a column the
    # format does not define is a free-text channel the airlock cannot reason about.
    extra = sorted(policy.allowed_columns - columns.ALLOWED)
    if extra:
        raise ConfigError(
            f"airlock policy: allowed_columns holds non-GWAS-SSF name(s) {', '.join(extra)}; "
            f"use names from {', '.join(sorted(columns.ALLOWED))}"
        )


@dataclass(frozen=True)
class AirlockDecision:
    """The airlock's verdict on one file.

    Attributes
    ----------
    accepted : bool
        True if the file may be published.
    kind : str
        The registered kind the file matched (``sumstats``, ``counts``, ...) or, when refused,
        what it looked like (``vcf``, ``bcf``, ``plink-bed``, ``pgen``, ``sample-table``,
        ``unknown``, ...).
    reason : str
        One line naming the file and, for refusals, the first violation (line, column) and how
        many rows violate the policy.
    size : int
        File size in bytes (0 if it could not be read).
    sha256 : str
        Hex SHA-256 of the bytes inspected ("" if the file could not be read).
    """

    accepted: bool
    kind: str
    reason: str
    size: int
    sha256: str
