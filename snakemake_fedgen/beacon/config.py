"""The ``beacon`` block of node.yaml, checked at node start (docs/discovery.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.beacon.counts import CountSettings
from snakemake_fedgen.governance.phenopackets import ColumnSpec, column_specs

Granularity = Literal["none", "boolean", "count"]
#: Order of granularities, coarsest first (``record`` is never given).
LEVELS: tuple[str, ...] = ("none", "boolean", "count")
ASSEMBLIES = ("GRCh38", "GRCh37")
BEACON_KEYS = (
    "id", "name", "organization", "min_cell", "datasets", "budget", "counts", "anonymous"
)  # fmt: skip
DATASET_KEYS = (
    "name",
    "description",
    "genotypes",
    "assembly",
    "phenotypes",
    "phenopackets",
    "columns",
    "visa",
    "granularity",
)
DEFAULT_GRANULARITY = {"anonymous": "boolean", "authenticated": "count", "visa": "count"}
ALLOWED_GRANULARITY = {
    "anonymous": ("none", "boolean"),
    "authenticated": ("none", "boolean", "count"),
    "visa": ("none", "boolean", "count"),
}


@dataclass(frozen=True)
class BeaconDataset:
    """One dataset the Beacon answers for (files resolved, inside the node's read roots)."""

    id: str
    name: str
    description: str = ""
    genotypes: Path | None = None
    assembly: str = "GRCh38"
    phenotypes: Path | None = None
    phenopackets: Path | None = None
    columns: tuple[ColumnSpec, ...] = ()
    visa: str | None = None
    granularity: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GRANULARITY))


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 client seen through a dual-stack socket (``::ffff:192.0.2.7``) as IPv4."""
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


@dataclass(frozen=True)
class AnonymousSettings:
    """Who an anonymous caller is for the budgets (``beacon.anonymous``).

    ``requester: address`` (default): its address, an IPv6 address by its /64 (a host is given
    a whole /64: keyed by address, it would have 2^64 budgets); behind ``trusted_proxies`` the
    client the proxies name in ``X-Forwarded-For``. ``requester: shared``: every anonymous
    caller spends one budget per dataset (``anonymous:*``), closing the many-addresses attack
    at the price of one caller being able to spend it for all.
    """

    requester: Literal["address", "shared"] = "address"
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> AnonymousSettings:
        """Check the ``beacon.anonymous`` block; ConfigError naming the key otherwise."""
        block = block or {}
        if not isinstance(block, Mapping):
            raise ConfigError(f"node.yaml: beacon.anonymous must be a mapping, got {block!r}")
        unknown = sorted(str(k) for k in block if k not in ("requester", "trusted_proxies"))
        if unknown:
            raise ConfigError(
                f"node.yaml: unknown key(s) beacon.anonymous.{', beacon.anonymous.'.join(unknown)};"
                " allowed: requester, trusted_proxies"
            )
        requester = block.get("requester", "address")
        if requester not in ("address", "shared"):
            raise ConfigError(
                f"node.yaml: beacon.anonymous.requester must be address or shared, got "
                f"{requester!r}"
            )
        raw = block.get("trusted_proxies") or []
        if not isinstance(raw, list):
            raise ConfigError(
                "node.yaml: beacon.anonymous.trusted_proxies must be a list of addresses or "
                f"networks (10.0.0.5, 10.1.0.0/16), got {raw!r}"
            )
        proxies = []
        for item in raw:
            try:
                proxies.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ConfigError(
                    f"node.yaml: beacon.anonymous.trusted_proxies: {item!r} is not an address "
                    "or network (10.0.0.5, 10.1.0.0/16, 2001:db8::/48)"
                ) from None
        return cls(requester=requester, trusted_proxies=tuple(proxies))

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in net for net in self.trusted_proxies)

    def requester_of(self, peer: str | None, forwarded_for: str | None) -> str:
        """The budget key of an anonymous request from ``peer`` with that ``X-Forwarded-For``.

        The header is believed only from a trusted proxy, and read from the right: each
        trusted proxy appends the address it saw, so the client is the last address that is
        not one of ours (what the client wrote itself stands further left and is not read).
        """
        if self.requester == "shared":
            return "anonymous:*"
        try:
            address = _unmapped(ipaddress.ip_address(peer or ""))
        except ValueError:
            return f"anonymous:{peer or 'unknown'}"
        if self._trusted(address) and forwarded_for:
            for entry in reversed([e.strip() for e in forwarded_for.split(",")]):
                try:
                    hop = _unmapped(ipaddress.ip_address(entry))
                except ValueError:
                    break  # not an address a proxy of ours wrote: keep the last one believed
                address = hop
                if not self._trusted(hop):
                    break
        if address.version == 6:
            return f"anonymous:{ipaddress.ip_network(f'{address}/64', strict=False)}"
        return f"anonymous:{address}"


@dataclass(frozen=True)
class BeaconSettings:
    """The checked ``beacon`` block: identity, the small-count floor, the datasets, the
    variant query budget's settings, the count noise's (``counts``) and who an anonymous
    caller is (``anonymous``)."""

    id: str
    name: str
    organization_id: str
    organization_name: str
    min_cell: int
    datasets: Mapping[str, BeaconDataset]
    budget: Mapping[str, Any] = field(default_factory=dict)
    #: Noise and epsilon budget of counts of individuals (``beacon.counts``).
    counts: CountSettings = field(default_factory=CountSettings)
    anonymous: AnonymousSettings = field(default_factory=AnonymousSettings)


def _text(block: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = block.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key} must be a non-empty string, got {value!r}.")
    return value


def _file(value: Any, where: str, read_roots: Sequence[Path]) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{where} must be a path, got {value!r}.")
    path = Path(value).expanduser().absolute().resolve()
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist; name the site's file.")
    if not any(path.is_relative_to(r) for r in read_roots):
        raise ConfigError(
            f"{where}: {path} is outside the node's read_roots; the Beacon answers only from "
            "files the node may read: add its directory to read_roots or move it."
        )
    return path


def _dataset(did: str, block: Any, where: str, read_roots: Sequence[Path]) -> BeaconDataset:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where} must be a mapping (name, genotypes, ...), got {block!r}.")
    unknown = sorted(str(k) for k in block if k not in DATASET_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(DATASET_KEYS)}."
        )
    genotypes = None
    if block.get("genotypes") is not None:
        genotypes = _file(block["genotypes"], f"{where}.genotypes", read_roots)
        if not genotypes.name.endswith((".vcf.gz", ".bcf")):
            raise ConfigError(f"{where}.genotypes: {genotypes} is not a .vcf.gz or .bcf file.")
        index = [Path(f"{genotypes}.tbi"), Path(f"{genotypes}.csi")]
        if not any(p.is_file() for p in index):
            raise ConfigError(
                f"{where}.genotypes: {genotypes} has no .tbi/.csi index; the Beacon answers by "
                f"region queries only: run `bcftools index -t {genotypes}`."
            )
    assembly = block.get("assembly", "GRCh38")
    if assembly not in ASSEMBLIES:
        raise ConfigError(
            f"{where}.assembly must be one of {', '.join(ASSEMBLIES)}, got {assembly!r}."
        )
    phenotypes = phenopackets = None
    if block.get("phenotypes") is not None and block.get("phenopackets") is not None:
        raise ConfigError(
            f"{where}: give phenotypes (a table) or phenopackets (a folder), not both."
        )
    if block.get("phenotypes") is not None:
        phenotypes = _file(block["phenotypes"], f"{where}.phenotypes", read_roots)
    if block.get("phenopackets") is not None:
        phenopackets = _file(block["phenopackets"], f"{where}.phenopackets", read_roots)
        if not phenopackets.is_dir():
            raise ConfigError(f"{where}.phenopackets: {phenopackets} is not a folder.")
    if genotypes is None and phenotypes is None and phenopackets is None:
        raise ConfigError(f"{where}: name genotypes, phenotypes or phenopackets (or remove it).")
    columns = tuple(column_specs(block.get("columns") or {}, source=f"{where}.columns"))
    visa = block.get("visa")
    if visa is not None and (not isinstance(visa, str) or not visa):
        raise ConfigError(f"{where}.visa must be a dataset id (a string), got {visa!r}.")
    raw = block.get("granularity") or {}
    if not isinstance(raw, Mapping) or set(raw) - set(DEFAULT_GRANULARITY):
        raise ConfigError(
            f"{where}.granularity must map anonymous/authenticated/visa to a granularity, "
            f"got {raw!r}."
        )
    granularity = dict(DEFAULT_GRANULARITY)
    for who, level in raw.items():
        level = "none" if level is None else level
        if level not in ALLOWED_GRANULARITY[who]:
            raise ConfigError(
                f"{where}.granularity.{who} must be one of "
                f"{', '.join(ALLOWED_GRANULARITY[who])} (records are never served), got {level!r}."
            )
        granularity[who] = level
    return BeaconDataset(
        id=did,
        name=_text(block, "name", where, default=did),
        description=str(block.get("description") or ""),
        genotypes=genotypes,
        assembly=assembly,
        phenotypes=phenotypes,
        phenopackets=phenopackets,
        columns=columns,
        visa=visa,
        granularity=granularity,
    )


def beacon_settings(
    block: Mapping[str, Any],
    *,
    read_roots: Sequence[Path],
    airlock_min_cell: int | None = None,
    source: str = "node.yaml",
) -> BeaconSettings | None:
    """The ``beacon`` block as :class:`BeaconSettings` (None when empty: no Beacon).

    Raises
    ------
    ConfigError
        An unknown key, a missing file, a file outside the read roots, a genotype file
        without index, a granularity finer than count (each named with the key).
    """
    if not block:
        return None
    where = f"node config {source}: beacon"
    unknown = sorted(str(k) for k in block if k not in BEACON_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(BEACON_KEYS)}."
        )
    org = block.get("organization") or {}
    if not isinstance(org, Mapping):
        raise ConfigError(f"{where}.organization must be a mapping {{id, name}}, got {org!r}.")
    min_cell = block.get("min_cell", airlock_min_cell if airlock_min_cell else 5)
    if isinstance(min_cell, bool) or not isinstance(min_cell, int) or min_cell < 1:
        raise ConfigError(f"{where}.min_cell must be an integer >= 1, got {min_cell!r}.")
    datasets = block.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise ConfigError(f"{where}.datasets must map at least one dataset id to its files.")
    budget = block.get("budget") or {}
    if not isinstance(budget, Mapping):
        raise ConfigError(f"{where}.budget must be a mapping, got {budget!r}.")
    counts = CountSettings.from_mapping(block.get("counts"))
    bid = _text(block, "id", where, default="org.fedgen.beacon")
    return BeaconSettings(
        id=bid,
        name=_text(block, "name", where, default=f"fedgen Beacon {bid}"),
        organization_id=_text(org, "id", f"{where}.organization", default="org.fedgen"),
        organization_name=_text(org, "name", f"{where}.organization", default="snakemake-fedgen"),
        min_cell=min_cell,
        datasets={
            str(d): _dataset(str(d), b, f"{where}.datasets.{d}", read_roots)
            for d, b in datasets.items()
        },
        budget=dict(budget),
        counts=counts,
        anonymous=AnonymousSettings.from_mapping(block.get("anonymous")),
    )
