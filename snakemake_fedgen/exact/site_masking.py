"""Secure-aggregation masking done by the site node, not by the task.

With masking inside the task, the task held the site's private key (a hostile workflow could
carry it out) and took its peers' public keys from the coordinator's registry (a coordinator
could put its own there and unmask the upload); and the airlock had to accept any hex text as a
"masked" upload. Here the steward gives the node the site's X25519 key and pins the peers'
public keys in the node config (checked out of band, as with any key exchange); the task only
writes its *plain* aggregates and asks for a round through three TES ``backend_parameters``::

    fedgen_mask_round          the round id (fresh per analysis)
    fedgen_mask_participants   comma-separated sites of the round
    fedgen_mask_variants       the public variant list in the task (path under /fedgen/work);
                               aggregates tables only, not the risk model's named sums

The node checks the plain aggregates like any release (min_n, min_mac), masks them
(:func:`snakemake_fedgen.exact.secure.mask_aggregates`) and publishes only the masked form. A
node that masks refuses masked uploads a task made itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import ConfigError

from snakemake_fedgen.exact.secure import (
    DEFAULT_FRAC_BITS,
    _load_public_key,
    load_private_key,
    mask_aggregates,
    public_key_text,
    write_masked,
)

__all__ = ["MASK_PARAMETERS", "MaskRequest", "SiteMasker", "mask_request"]

#: The TES backend_parameters a task asks for node-side masking with.
MASK_PARAMETERS = ("fedgen_mask_round", "fedgen_mask_participants", "fedgen_mask_variants")


@dataclass(frozen=True)
class MaskRequest:
    """What a task asks the node to mask its plain aggregates for."""

    round_id: str
    participants: tuple[str, ...]
    variants: str | None  # path in the task, relative to /fedgen/work (aggregates only)


def mask_request(doc: Mapping[str, Any]) -> MaskRequest | None:
    """The task's mask request from its ``resources.backend_parameters``, or None.

    Raises
    ------
    ConfigError
        Some but not all of :data:`MASK_PARAMETERS` are given, or a value is malformed.
    """
    params = ((doc.get("resources") or {}).get("backend_parameters")) or {}
    given = {k: str(params[k]) for k in MASK_PARAMETERS if k in params}
    if not given:
        return None
    # The variant list lays out aggregates tables; named sums (risk rounds) need none.
    missing = [k for k in MASK_PARAMETERS[:2] if k not in given]
    if missing:
        raise ConfigError(
            f"backend_parameters: a mask request needs {', '.join(MASK_PARAMETERS[:2])} (and "
            f"{MASK_PARAMETERS[2]} for aggregates tables); {', '.join(missing)} missing"
        )
    participants = tuple(p for p in given["fedgen_mask_participants"].split(",") if p)
    variants = None
    if "fedgen_mask_variants" in given:
        variants = given["fedgen_mask_variants"].removeprefix("/fedgen/work/")
        if variants.startswith("/") or ".." in variants.split("/"):
            raise ConfigError(
                "backend_parameters: fedgen_mask_variants must be a path under /fedgen/work"
            )
    return MaskRequest(given["fedgen_mask_round"], participants, variants)


class SiteMasker:
    """The site's key and the pinned public keys of its peers (node config)."""

    def __init__(self, key_file: Path, peers: Mapping[str, str], *, ledger: Path) -> None:
        self.key_file = Path(key_file)
        self._key = load_private_key(self.key_file)
        own = public_key_text(self._key)
        self.peers = {str(site): str(pk).strip() for site, pk in peers.items()}
        for site, pk in self.peers.items():
            _load_public_key(pk, site)  # refuses malformed keys, naming the site
        mine = [site for site, pk in self.peers.items() if pk == own]
        if len(mine) != 1:
            raise ConfigError(
                f"secure_aggregation_peers must list this site's own public key ({own}, from "
                f"{self.key_file}) under the site's registry name exactly once"
            )
        self.site = mine[0]
        self.ledger = ledger

    @property
    def private_key(self):
        """The site's X25519 key (for the masking functions of other formats)."""
        return self._key

    def check_participants(self, request: MaskRequest) -> None:
        """Refuse a round with a participant whose public key the steward has not pinned."""
        unpinned = [p for p in request.participants if p not in self.peers]
        if unpinned:
            raise ConfigError(
                f"no pinned public key for participant(s) {', '.join(unpinned)} "
                "(secure_aggregation_peers in the node config); the steward adds a peer's key "
                "after checking it with that site"
            )

    def mask(self, plain: Path, variants: Path | None, request: MaskRequest, out: Path) -> int:
        """Mask the plain aggregates at ``plain`` for ``request``; write the upload to ``out``.

        Returns the number of variants masked.

        Raises
        ------
        ConfigError, SiteDataError, SecureAggregationError
            The aggregates are another site's, a participant has no pinned key, the round was
            used before with other data, or the files are malformed.
        """
        from snakemake_fedgen.exact.aggregates import read_aggregates, read_variant_table

        if variants is None:
            raise ConfigError(
                "an aggregates table is masked on a variant list: set fedgen_mask_variants"
            )
        agg = read_aggregates(plain)
        if agg.site != self.site:
            raise ConfigError(
                f"the aggregates are of site {agg.site!r}; this node masks for site {self.site!r}"
            )
        self.check_participants(request)
        upload = mask_aggregates(
            agg,
            private_key=self._key,
            public_keys=self.peers,
            participants=request.participants,
            round_id=request.round_id,
            universe=read_variant_table(variants),
            frac_bits=DEFAULT_FRAC_BITS,
            ledger=self.ledger,
        )
        write_masked(upload, out)
        return len(upload.table)
