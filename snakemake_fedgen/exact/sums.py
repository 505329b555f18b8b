"""Named sums a site sends to the centre, plain or masked, and their addition at the centre.

Every site step of the risk model (standardisation moments, Newton terms, evaluation counts)
and of exact mode's logistic rounds (per-variant Newton terms, :mod:`.logistic`) returns a
vector of sums over its people. :class:`SiteSums` carries that vector with the
names of its entries; :func:`mask_sums` hides it under the project's pairwise masks
(:mod:`snakemake_fedgen.exact.secure`, a fresh ``round_id`` per use) so that only the sum over
all participants can be read; :func:`add_sums` adds the uploads of one round and refuses
uploads of different rounds, names or participants, and a round with a site missing.

The file is JSON (``fedgen-sums/1``): ``site``, ``round``, ``kind``, ``names``, and either
``values`` (plain floats) or ``masked`` (ring elements as 32 hex digits) with
``participants``, ``frac_bits`` and ``context``; optionally ``rows``, the public labels (variant
keys) of per-row entries named ``v<row>.<term>``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    SecureAggregationError,
    SiteDataError,
)
from snakemake_executor_plugin_fedgen.fileio import atomic_write

from snakemake_fedgen.exact import secure
from snakemake_fedgen.exact.site_masking import MaskRequest, SiteMasker

FORMAT = "fedgen-sums/1"
#: Fractional bits of masked sums: a score averaged over variants (~1e-3) squared and summed
#: keeps 1e-12 relative precision; the integer part still holds +-2^61 over a few sites.
FRAC_BITS = 64

__all__ = [
    "FORMAT",
    "SiteSums",
    "add_sums",
    "mask_sums",
    "mask_sums_at_node",
    "mask_with_ledger",
    "read_sums",
    "write_sums",
]


@dataclass
class SiteSums:
    """One site's (or, after :func:`add_sums`, all participants') named sums for one round.

    ``values`` holds floats when plain; ``words`` holds ring elements (shape (n, 2)) when
    masked. ``meta`` carries non-sensitive labels (e.g. the model state's digest).
    """

    site: str
    round_id: str
    kind: str
    names: tuple[str, ...]
    values: np.ndarray | None = None
    words: np.ndarray | None = None
    participants: tuple[str, ...] = ()
    frac_bits: int = FRAC_BITS
    context: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    rows: tuple[str, ...] = ()

    @property
    def masked(self) -> bool:
        """True when the values are hidden under pairwise masks."""
        return self.words is not None

    def as_dict(self) -> dict[str, float]:
        """Plain values by name (not for masked sums)."""
        if self.values is None:
            raise SecureAggregationError(
                f"site {self.site} round {self.round_id}: masked sums cannot be read alone; "
                "add every participant's upload with add_sums"
            )
        return dict(zip(self.names, (float(v) for v in self.values), strict=True))


def _context(kind: str, names: Sequence[str], round_id: str, rows: Sequence[str] = ()) -> str:
    digest = hashlib.sha256("\0".join([*names, *rows]).encode()).hexdigest()[:16]
    return f"{kind}\0{round_id}\0{len(names)}\0{digest}"


def mask_sums(
    sums: SiteSums,
    *,
    private_key: Any,
    public_keys: Mapping[str, str],
    participants: Sequence[str],
    frac_bits: int = FRAC_BITS,
) -> SiteSums:
    """Mask a site's plain sums for the round ``sums.round_id`` among ``participants``.

    ``participants`` must be in the same (registry) order at every site and hold at least
    :data:`~snakemake_fedgen.exact.secure.MIN_PARTICIPANTS` sites.
    """
    if sums.values is None:
        raise SecureAggregationError(f"site {sums.site}: sums are already masked")
    if sums.site not in participants:
        raise SecureAggregationError(
            f"site {sums.site} is not among the participants {','.join(participants)}"
        )
    if len(participants) < secure.MIN_PARTICIPANTS:
        raise SecureAggregationError(
            f"secure sums need at least {secure.MIN_PARTICIPANTS} sites; got "
            f"{','.join(participants)} (with two, the sum reveals each site's values to the other)"
        )
    limit = 2.0 ** (126 - frac_bits) / len(participants)
    big = np.abs(np.asarray(sums.values, dtype=np.float64))
    if len(big) and not (np.isfinite(big).all() and big.max() < limit):
        name = sums.names[int(np.argmax(np.where(np.isfinite(big), big, np.inf)))]
        raise SecureAggregationError(
            f"site {sums.site}: {name} = {big.max():.3g} does not fit the masking ring "
            f"(|value| < 2^(126-{frac_bits})/participants = {limit:.3g}); rescale the feature"
        )
    context = _context(sums.kind, sums.names, sums.round_id, sums.rows)
    words = secure.mask_vector(
        secure.encode(np.asarray(sums.values, dtype=np.float64), frac_bits),
        private_key=private_key,
        public_keys=public_keys,
        site=sums.site,
        participants=participants,
        round_id=sums.round_id,
        context=context,
    )
    return SiteSums(
        site=sums.site,
        round_id=sums.round_id,
        kind=sums.kind,
        names=sums.names,
        words=words,
        participants=tuple(participants),
        frac_bits=frac_bits,
        context=context,
        meta=dict(sums.meta),
        rows=sums.rows,
    )


def mask_with_ledger(
    sums: SiteSums,
    *,
    private_key: Any,
    public_keys: Mapping[str, str],
    participants: Sequence[str],
    ledger: Path | None,
) -> SiteSums:
    """:func:`mask_sums` after recording the round in the site's ledger (``round<TAB>digest``
    lines, as ``fedgen exact mask`` keeps them): masking other values under a round id used
    before is refused, since the two uploads' difference would have no mask left in it."""
    assert sums.values is not None
    h = hashlib.sha256()
    h.update("\0".join([sums.kind, *sums.names, *sums.rows, *participants]).encode())
    h.update(np.asarray(sums.values, dtype="<f8").tobytes())
    secure._ledger_check(ledger, sums.round_id, f"{sums.kind}:{h.hexdigest()}")
    return mask_sums(
        sums, private_key=private_key, public_keys=public_keys, participants=participants
    )


def add_sums(uploads: Sequence[SiteSums]) -> SiteSums:
    """Add the uploads of one round (plain or masked, not mixed); the result is plain.

    Raises
    ------
    SecureAggregationError
        Uploads of different rounds, kinds, names or contexts; a site twice; a masked round
        with a participant's upload missing (its masks would not cancel).
    """
    if not uploads:
        raise SecureAggregationError("no uploads to add")
    first = uploads[0]
    for up in uploads:
        for attr in ("round_id", "kind", "names", "rows", "participants", "context", "frac_bits"):
            if getattr(up, attr) != getattr(first, attr):
                raise SecureAggregationError(
                    f"site {up.site} uploaded {attr}={getattr(up, attr)!r} but site "
                    f"{first.site} uploaded {getattr(first, attr)!r}: uploads of different "
                    "rounds or inputs cannot be added"
                )
        if up.masked != first.masked:
            raise SecureAggregationError(
                f"round {first.round_id}: sites {first.site} and {up.site} mix masked and plain"
            )
    got = [up.site for up in uploads]
    if len(set(got)) != len(got):
        raise SecureAggregationError(f"round {first.round_id}: a site uploaded twice ({got})")
    if first.masked:
        missing = [s for s in first.participants if s not in got]
        if missing:
            raise SecureAggregationError(
                f"round {first.round_id}: no upload from site(s) {', '.join(missing)}; their "
                "masks do not cancel. Rerun the round under a new round id with the sites "
                "that remain as participants"
            )
        words = first.words
        for up in uploads[1:]:
            words = secure.ring_add(words, up.words)
        values = secure.decode(words, first.frac_bits)
    else:
        values = np.sum([np.asarray(up.values, dtype=np.float64) for up in uploads], axis=0)
    return SiteSums(
        site="+".join(got),
        round_id=first.round_id,
        kind=first.kind,
        names=first.names,
        values=np.asarray(values, dtype=np.float64),
        meta={**first.meta, "sites_summed": ",".join(got)},
        rows=first.rows,
    )


def write_sums(sums: SiteSums, path: Path) -> None:
    """Write sums as ``fedgen-sums/1`` JSON, atomically."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "site": sums.site,
        "round": sums.round_id,
        "kind": sums.kind,
        "names": list(sums.names),
        "meta": sums.meta,
    }
    if sums.rows:
        doc["rows"] = list(sums.rows)
    if sums.masked:
        assert sums.words is not None
        doc |= {
            "participants": list(sums.participants),
            "frac_bits": sums.frac_bits,
            "context": sums.context,
            "masked": secure.words_to_hex(sums.words),
        }
    else:
        assert sums.values is not None
        doc["values"] = [float(v) for v in sums.values]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def read_sums(path: Path) -> SiteSums:
    """Read a file written by :func:`write_sums`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SiteDataError(f"{path}: not a readable {FORMAT} file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SiteDataError(f"{path}: not a {FORMAT} file (format key missing or different)")
    try:
        names = tuple(str(n) for n in doc["names"])
        common = {
            "site": str(doc["site"]),
            "round_id": str(doc["round"]),
            "kind": str(doc["kind"]),
            "names": names,
            "meta": {str(k): str(v) for k, v in doc.get("meta", {}).items()},
            "rows": tuple(str(r) for r in doc.get("rows", ())),
        }
        if "masked" in doc:
            words = secure.words_from_hex(doc["masked"], f"{path}: masked")
            sums = SiteSums(
                words=words,
                participants=tuple(doc["participants"]),
                frac_bits=int(doc["frac_bits"]),
                context=str(doc["context"]),
                **common,
            )
            count = len(words)
        else:
            values = np.asarray([float(v) for v in doc["values"]], dtype=np.float64)
            sums = SiteSums(values=values, **common)
            count = len(values)
    except (KeyError, TypeError, ValueError) as exc:
        raise SiteDataError(f"{path}: missing or bad key {exc}") from None
    if count != len(names):
        raise SiteDataError(f"{path}: {count} values for {len(names)} names")
    return sums


def mask_sums_at_node(masker: SiteMasker, plain: Path, request: MaskRequest, out: Path) -> int:
    """The node's masking of a task's plain sums (a risk-model round) for ``request``.

    Writes the masked file to ``out``; returns the number of entries. The round id goes into
    the site's ledger with a digest of the plain sums: the same round with other values is
    refused (the masks would cancel in the difference of the two uploads).
    """
    sums = read_sums(plain)
    if sums.site != masker.site:
        raise ConfigError(
            f"the sums are of site {sums.site!r}; this node masks for site {masker.site!r}"
        )
    if sums.round_id != request.round_id:
        raise ConfigError(
            f"the sums are for round {sums.round_id!r} but the task asked the node to mask "
            f"round {request.round_id!r}"
        )
    masker.check_participants(request)
    masked = mask_with_ledger(
        sums,
        private_key=masker.private_key,
        public_keys=masker.peers,
        participants=request.participants,
        ledger=masker.ledger,
    )
    write_sums(masked, out)
    return len(sums.names)
