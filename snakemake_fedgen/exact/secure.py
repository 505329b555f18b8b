"""Secure aggregation of exact-mode aggregates: pairwise masks that cancel in the sum.

Each site holds an X25519 key pair (public half in the registry key ``public_key_x25519``). For
a round with participants ``P`` (in registry order), every pair ``i < j`` derives the same seed
``s_ij = HKDF-SHA256(X25519(sk_i, pk_j), info = round id, pair, context)`` and expands it with
AES-256-CTR into one 128-bit word per value. Site ``i`` uploads::

    x_i + sum_{j > i} m_ij - sum_{j < i} m_ji   (mod 2^128)

where ``x_i`` is its aggregates vector in fixed point (``round(v * 2^F)``, two's complement).
Each upload is uniformly distributed to anyone without the seeds; the sum over all participants
is ``sum_i x_i`` exactly, because every mask is added once and subtracted once.

Ring and range: values live in Z_2^128 (two uint64 limbs). With ``F`` fractional bits (default
40, resolution 2^-40 ~ 9e-13 per site) a sum is exact while ``|sum| < 2^(127 - F)``; each site
checks ``|v| * participants < 2^(126 - F)`` for every value before masking, so no sum can
overflow. A 64-bit ring was not enough: at 1e-9 relative precision it leaves ~2^33 of range,
which sums of squared covariates (``age^2`` over 10^6 samples ~ 10^10) exceed.

Dropout: a missing upload leaves masks that do not cancel, so the round is rerun under a new
round id by the remaining sites (:class:`~snakemake_executor_plugin_fedgen.errors.SecureAggregationError` says
so and names the sites). A site never reuses a round id for different data (a ledger at the site
enforces it): two uploads under the same masks would reveal their difference.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    SecureAggregationError,
    SiteDataError,
)
from snakemake_executor_plugin_fedgen.fileio import open_text

from snakemake_fedgen.egress.airlock.kinds.aggregates import (
    MASKED_FORMAT_LINE,
    MIN_PARTICIPANTS,
    ROUND_RE,
    VARIANT_COLUMNS,
    parse_header,
    variant_value_names,
)
from snakemake_fedgen.exact.aggregates import (
    SiteAggregates,
    _from_triu,
    _triu,
    atomic_write_text,
    variant_keys,
)

__all__ = [
    "DEFAULT_FRAC_BITS",
    "MASKED_FORMAT_LINE",
    "MIN_PARTICIPANTS",
    "MaskedUpload",
    "decode",
    "encode",
    "generate_key",
    "load_private_key",
    "mask_aggregates",
    "mask_vector",
    "pair_seed",
    "public_key_text",
    "read_masked",
    "ring_add",
    "ring_neg",
    "unmask_sum",
    "write_masked",
]

DEFAULT_FRAC_BITS = 40
_HKDF_SALT = b"fedgen-exact-secure-aggregation-v1"
_TWO64 = 2.0**64


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def generate_key(path: Path) -> str:
    """Write a new X25519 private key to ``path`` (mode 0600) and return the public key text.

    The public key text (base64 of the 32 raw bytes) goes into the registry as
    ``public_key_x25519``. The private key file never leaves the site.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    path = Path(path)
    if path.exists():
        raise ConfigError(f"{path} already exists; refusing to overwrite a private key")
    key = X25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp gives mode 0600; os.link publishes the complete file and fails if one exists.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# fedgen X25519 private key for secure aggregation: keep at the site\n")
            f.write(base64.b64encode(raw).decode() + "\n")
        os.link(tmp, path)
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; refusing to overwrite a private key") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return public_key_text(key)


def public_key_text(key) -> str:
    """Base64 text of the raw public key of an X25519 private key."""
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def load_private_key(path: Path):
    """Load an X25519 private key written by :func:`generate_key`."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the X25519 private key ({exc.strerror}); at a site the node's "
            "task user must be able to read it (e.g. group-readable by its group)"
        ) from exc
    try:
        lines = [x for x in text.splitlines() if x and not x.startswith("#")]
        raw = base64.b64decode(lines[0], validate=True)
        if len(raw) != 32:
            raise ValueError
    except (OSError, IndexError, ValueError) as exc:
        # Never echo the file's content: it is a secret.
        raise ConfigError(
            f"{path}: not an X25519 private key file; create one with `fedgen exact keygen`"
        ) from exc
    return X25519PrivateKey.from_private_bytes(raw)


def _load_public_key(text: str, site: str):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        raw = base64.b64decode(str(text).strip(), validate=True)
        if len(raw) != 32:
            raise ValueError
    except ValueError as exc:
        raise ConfigError(
            f"site {site}: public_key_x25519 is not base64 of a 32-byte X25519 key; set it to "
            "the text printed by `fedgen exact keygen` at that site"
        ) from exc
    return X25519PublicKey.from_public_bytes(raw)


def pair_seed(private_key, peer_public: str, *, round_id: str, site: str, peer: str, context: str):
    """The 32-byte seed shared by ``site`` and ``peer`` for one round (same at both ends)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    shared = private_key.exchange(_load_public_key(peer_public, peer))
    a, b = sorted((site, peer))
    info = f"round={round_id}\0pair={a}\0{b}\0context={context}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(shared)


def _mask_words(seed: bytes, count: int) -> np.ndarray:
    """AES-256-CTR keystream as ``count`` ring elements, shape (count, 2) uint64 (lo, hi)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    # A fresh key per (round, pair, context), so a fixed all-zero counter block is safe.
    enc = Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor()
    stream = enc.update(bytes(16 * count)) + enc.finalize()
    return np.frombuffer(stream, dtype="<u8").reshape(count, 2).copy()


# --------------------------------------------------------------------------------------------
# Ring Z_2^128 on (N, 2) uint64 arrays [lo, hi]
# --------------------------------------------------------------------------------------------


def ring_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b mod 2^128`` elementwise."""
    lo = a[:, 0] + b[:, 0]
    carry = (lo < a[:, 0]).astype(np.uint64)
    hi = a[:, 1] + b[:, 1] + carry
    return np.stack([lo, hi], axis=1)


def ring_neg(a: np.ndarray) -> np.ndarray:
    """``-a mod 2^128`` elementwise (two's complement)."""
    lo = ~a[:, 0] + np.uint64(1)
    hi = ~a[:, 1] + (a[:, 0] == 0).astype(np.uint64)
    return np.stack([lo, hi], axis=1)


def encode(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """Fixed-point encode floats: ``round(v * 2^frac_bits)`` as ring elements (N, 2)."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0**frac_bits)
    mag = np.abs(scaled)
    # The split is exact: mag has at most 53 significant bits, hi*2^64 removes the top ones.
    hi = np.floor(mag / _TWO64)
    lo = mag - hi * _TWO64
    words = np.stack([lo.astype(np.uint64), hi.astype(np.uint64)], axis=1)
    neg = scaled < 0
    if neg.any():
        words[neg] = ring_neg(words[neg])
    return words


def decode(words: np.ndarray, frac_bits: int) -> np.ndarray:
    """Inverse of :func:`encode` (to float64, rounding only in the final conversion)."""
    neg = words[:, 1] >= np.uint64(1 << 63)
    mag = words.copy()
    if neg.any():
        mag[neg] = ring_neg(words[neg])
    value = (mag[:, 1].astype(np.float64) * _TWO64 + mag[:, 0].astype(np.float64)) / (
        2.0**frac_bits
    )
    return np.where(neg, -value, value)


def words_to_hex(words: np.ndarray) -> list[str]:
    # Big-endian (hi, lo) bytes in one buffer: 32 hex digits per element, vectorised.
    text = np.stack([words[:, 1], words[:, 0]], axis=1).astype(">u8").tobytes().hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def words_from_hex(tokens: Sequence[str], where: str) -> np.ndarray:
    joined = "".join(tokens)
    if len(joined) != 32 * len(tokens) or not all(len(t) == 32 for t in tokens):
        bad = next(i for i, t in enumerate(tokens) if len(t) != 32)
        raise SiteDataError(f"{where}: value {bad + 1} is not 32 lower-case hex digits")
    try:
        raw = bytes.fromhex(joined)
    except ValueError as exc:
        raise SiteDataError(f"{where}: a value is not 32 lower-case hex digits") from exc
    pairs = np.frombuffer(raw, dtype=">u8").reshape(len(tokens), 2).astype(np.uint64)
    return np.stack([pairs[:, 1], pairs[:, 0]], axis=1)


# --------------------------------------------------------------------------------------------
# Layout: aggregates <-> flat vector over a public variant universe
# --------------------------------------------------------------------------------------------


def _once_names(columns: Sequence[str]) -> list[str]:
    k = len(columns)
    rows, cols = np.triu_indices(k)
    return [
        "n",
        "yty",
        *(f"Cty.{c}" for c in columns),
        *(f"CtC.{columns[r]}.{columns[c]}" for r, c in zip(rows, cols, strict=True)),
    ]


def _universe_digest(universe: Mapping[str, np.ndarray]) -> str:
    return hashlib.sha256("\n".join(variant_keys(universe)).encode()).hexdigest()


def _flatten(
    agg: SiteAggregates, universe: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (once values, per-variant values (m, 3 + k), variants of agg not in universe)."""
    once = np.concatenate([[agg.n, agg.yty], agg.cty, _triu(agg.ctc)])
    keys = variant_keys(universe)
    pos = {key: i for i, key in enumerate(keys)}
    table = np.zeros((len(keys), 3 + agg.k))
    outside = 0
    for j, key in enumerate(agg.variant_keys()):
        i = pos.get(key)
        if i is None:
            outside += 1
            continue
        table[i, 0] = 1.0
        table[i, 1] = agg.gtg[j]
        table[i, 2] = agg.gty[j]
        table[i, 3:] = agg.ctg[j]
    return once, table, outside


def _context(agg: SiteAggregates, participants: Sequence[str], universe_digest: str, f: int):
    parts = (agg.trait, ",".join(agg.sites), ",".join(agg.columns), ",".join(participants))
    text = "\0".join((*parts, universe_digest, str(f)))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Masking at a site
# --------------------------------------------------------------------------------------------


@dataclass
class MaskedUpload:
    """One site's masked upload for one round.

    ``once`` has shape (L0, 2) and ``table`` shape (m, 3 + k, 2): ring elements.
    """

    site: str
    round_id: str
    participants: tuple[str, ...]
    sites: tuple[str, ...]
    trait: str
    columns: tuple[str, ...]
    frac_bits: int
    context: str
    universe: dict[str, np.ndarray]
    once: np.ndarray
    table: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)


def _check_participants(participants: Sequence[str], sites: Sequence[str], *, force: bool):
    if len(set(participants)) != len(participants):
        raise ConfigError(f"participants {','.join(participants)} repeat a site")
    unknown = [p for p in participants if p not in sites]
    if unknown:
        raise ConfigError(
            f"participant(s) {', '.join(unknown)} are not in the registry site order "
            f"{','.join(sites)}"
        )
    if len(participants) < MIN_PARTICIPANTS and not force:
        raise ConfigError(
            f"secure aggregation with {len(participants)} participant(s) "
            f"({','.join(participants)}) protects nothing: with two sites the sum reveals each "
            "site's aggregates to the other. Use plain aggregates, add sites, or pass --force "
            "if every participant agreed to it in writing"
        )


def _ledger_check(ledger: Path | None, round_id: str, digest: str) -> None:
    """Refuse to mask different data under a round id this site has already used."""
    if ledger is None:
        return
    ledger = Path(ledger)
    entries = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                entries[parts[0]] = parts[1]
    previous = entries.get(round_id)
    if previous is not None and previous != digest:
        raise SecureAggregationError(
            f"round {round_id!r} was already used by this site for different aggregates "
            f"(ledger {ledger}); masks must never be reused: ask the coordinator for a new "
            "round id"
        )
    if previous is None:
        ledger.parent.mkdir(parents=True, exist_ok=True)
        with ledger.open("a") as f:
            f.write(f"{round_id}\t{digest}\n")


def mask_vector(
    words: np.ndarray,
    *,
    private_key,
    public_keys: Mapping[str, str],
    site: str,
    participants: Sequence[str],
    round_id: str,
    context: str,
) -> np.ndarray:
    """Add this site's pairwise masks to encoded values ``words`` (N, 2).

    ``participants`` must be in the same order at every site (the registry order). Site ``i``
    adds ``m_ij`` for every later participant ``j`` and subtracts ``m_ji`` for every earlier
    one, so the masks cancel in the sum over all participants.
    """
    me = list(participants).index(site)
    for j, peer in enumerate(participants):
        if peer == site:
            continue
        seed = pair_seed(
            private_key, public_keys[peer], round_id=round_id, site=site, peer=peer,
            context=context,
        )  # fmt: skip
        mask = _mask_words(seed, len(words))
        words = ring_add(words, mask if j > me else ring_neg(mask))
    return words


def mask_aggregates(
    agg: SiteAggregates,
    *,
    private_key,
    public_keys: Mapping[str, str],
    participants: Sequence[str],
    round_id: str,
    universe: Mapping[str, np.ndarray],
    frac_bits: int = DEFAULT_FRAC_BITS,
    force: bool = False,
    ledger: Path | None = None,
) -> MaskedUpload:
    """Mask a site's (guarded) aggregates for one secure-aggregation round.

    Parameters
    ----------
    agg : SiteAggregates
        The site's aggregates after its n/MAC guards (:func:`~.aggregates.compute_aggregates`).
    private_key : X25519PrivateKey
        This site's key.
    public_keys : mapping
        ``site -> public_key_x25519`` text for every other participant.
    participants : sequence of str
        Sites taking part in this round (any order; the registry order in ``agg.sites`` is used).
    round_id : str
        Fresh id from the coordinator (letters, digits, ``_ . : -``).
    universe : mapping
        Public variant list shared by all participants (``chrom, pos, vid, ref, alt`` arrays).
        Variants missing from ``agg`` (failed this site's guard) are sent as zeros with
        ``present = 0``; the centre keeps only variants present at every participant.
    frac_bits : int
        Fixed-point fractional bits ``F``.
    force : bool
        Allow fewer than three participants.
    ledger : Path, optional
        Site-local record of round ids used (refuses reuse with different data).

    Raises
    ------
    ConfigError
        Bad participants, missing public keys, a value too large for the ring.
    SecureAggregationError
        The round id was used before with different data.
    """
    if not ROUND_RE.match(round_id):
        raise ConfigError(f"round id {round_id!r} must be 1-100 of letters, digits, _ . : -")
    if not 8 <= frac_bits <= 80:
        raise ConfigError(f"frac_bits must be between 8 and 80; got {frac_bits}")
    if agg.site not in participants:
        raise ConfigError(f"site {agg.site} is not among the participants {','.join(participants)}")
    _check_participants(participants, agg.sites, force=force)
    ordered = tuple(s for s in agg.sites if s in participants)
    missing = [s for s in ordered if s != agg.site and not public_keys.get(s)]
    if missing:
        raise ConfigError(
            f"no public_key_x25519 in the registry for site(s) {', '.join(missing)}; each site "
            "runs `fedgen exact keygen` and the registry lists the printed public key"
        )
    once, table, outside = _flatten(agg, universe)
    limit = 2.0 ** (126 - frac_bits) / len(ordered)
    names = _once_names(agg.columns) + variant_value_names(agg.columns)
    for values, offset in ((once[:, None].T, 0), (table, len(once))):
        bad = np.abs(values) >= limit
        if bad.any():
            col = int(np.argwhere(bad)[0][1])
            raise ConfigError(
                f"site {agg.site}: value {names[offset + col]} is too large for the fixed-point "
                f"ring (|v| must stay below 2^(126-F)/participants = {limit:.3g}); lower "
                "--frac-bits"
            )
    digest_u = _universe_digest(universe)
    context = _context(agg, ordered, digest_u, frac_bits)
    flat = np.concatenate([once, table.ravel()])
    data_digest = hashlib.sha256(flat.tobytes()).hexdigest()
    _ledger_check(ledger, round_id, f"{context}:{data_digest}")
    words = mask_vector(
        encode(flat, frac_bits),
        private_key=private_key,
        public_keys=public_keys,
        site=agg.site,
        participants=ordered,
        round_id=round_id,
        context=context,
    )
    k = agg.k
    return MaskedUpload(
        site=agg.site,
        round_id=round_id,
        participants=ordered,
        sites=agg.sites,
        trait=agg.trait,
        columns=agg.columns,
        frac_bits=frac_bits,
        context=context,
        universe={key: np.asarray(v) for key, v in universe.items()},
        once=words[: len(once)],
        table=words[len(once) :].reshape(len(table), 3 + k, 2),
        meta={
            "guard": f"min_n:{agg.meta.get('min_n', '?')},min_mac:{agg.meta.get('min_mac', '?')}",
            "missing_dosage": agg.meta.get("missing_dosage", "mean-imputed"),
            "variants_sha256": digest_u,
            "variants_absent_here": str(int(len(table) - table[:, 0].sum())),
            "variants_outside_universe": str(outside),
        },
    )


def write_masked(upload: MaskedUpload, path: Path) -> None:
    """Write a masked upload as text (atomically); values are 32-hex-digit ring elements."""

    def lines() -> Iterator[str]:
        yield MASKED_FORMAT_LINE
        yield f"##site={upload.site}"
        yield f"##round={upload.round_id}"
        yield f"##participants={','.join(upload.participants)}"
        yield f"##sites={','.join(upload.sites)}"
        yield f"##trait={upload.trait}"
        yield f"##columns={','.join(upload.columns)}"
        yield "##ring=Z_2^128"
        yield f"##frac_bits={upload.frac_bits}"
        yield f"##context={upload.context}"
        for key, value in upload.meta.items():
            yield f"##{key}={value}"
        yield f"##once={','.join(words_to_hex(upload.once))}"
        names = variant_value_names(upload.columns)
        yield "\t".join((*VARIANT_COLUMNS, *names))
        u = upload.universe
        width = upload.table.shape[1]
        values = words_to_hex(upload.table.reshape(-1, 2))
        for i in range(len(upload.table)):
            fields = (
                str(u["chrom"][i]),
                str(u["pos"][i]),
                str(u["vid"][i]),
                u["ref"][i],
                u["alt"][i],
            )
            yield "\t".join((*fields, *values[i * width : (i + 1) * width]))

    atomic_write_text(path, lines())


def masked_round(path: Path) -> str | None:
    """The round id in a masked upload's header (the rows are not read); None if not one."""
    path = Path(path)
    with open_text(path, newline="\n") as f:
        numbered = ((i, line.rstrip("\n")) for i, line in enumerate(f, start=1))
        try:
            meta = parse_header(numbered, str(path), MASKED_FORMAT_LINE)
        except SiteDataError:
            return None
    return meta.get("round")


def read_masked(path: Path) -> MaskedUpload:
    """Read a masked upload written by :func:`write_masked`."""
    path = Path(path)
    with open_text(path, newline="\n") as f:
        numbered = ((i, line.rstrip("\n")) for i, line in enumerate(f, start=1))
        meta = parse_header(numbered, str(path), MASKED_FORMAT_LINE)
        rows = [line.split("\t") for _, line in numbered if line]
    try:
        columns = tuple(meta.pop("columns").split(","))
        upload_meta = {
            "site": meta.pop("site"),
            "round_id": meta.pop("round"),
            "participants": tuple(meta.pop("participants").split(",")),
            "sites": tuple(meta.pop("sites").split(",")),
            "trait": meta.pop("trait"),
            "frac_bits": int(meta.pop("frac_bits")),
            "context": meta.pop("context"),
        }
        once = words_from_hex(meta.pop("once").split(","), f"{path}: header key once")
    except (KeyError, ValueError) as exc:
        raise SiteDataError(f"{path}: header is missing or has a bad value for {exc}") from exc
    meta.pop("ring", None)
    header = meta.pop("__header__", "").split("\t")
    meta.pop("__header_line__", None)
    width = 3 + len(columns)
    if header != [*VARIANT_COLUMNS, *variant_value_names(columns)]:
        raise SiteDataError(f"{path}: table header does not match the columns key")
    universe = {key: [] for key in ("chrom", "pos", "vid", "ref", "alt")}
    tokens: list[str] = []
    for i, row in enumerate(rows):
        if len(row) != 5 + width:
            raise SiteDataError(f"{path}: data row {i + 1} has {len(row)} fields")
        for key, value in zip(universe, row[:5], strict=True):
            universe[key].append(value)
        tokens.extend(row[5:])
    table = words_from_hex(tokens, f"{path}: data rows").reshape(len(rows), width, 2)
    return MaskedUpload(
        columns=columns,
        universe={
            "chrom": np.array(universe["chrom"], dtype=object),
            "pos": np.array(universe["pos"], dtype=np.int64),
            "vid": np.array(universe["vid"], dtype=object),
            "ref": np.array(universe["ref"], dtype=object),
            "alt": np.array(universe["alt"], dtype=object),
        },
        once=once,
        table=table,
        meta=meta,
        **upload_meta,
    )


# --------------------------------------------------------------------------------------------
# Unmasking the sum at the centre
# --------------------------------------------------------------------------------------------


def unmask_sum(uploads: Sequence[MaskedUpload]) -> SiteAggregates:
    """Add the masked uploads of one round; return the summed aggregates.

    Only variants present at every participant are kept (``present`` sums to the number of
    participants); the others are counted in ``meta['variants_not_at_every_site']``.

    Raises
    ------
    SecureAggregationError
        Uploads from different rounds or contexts, or a participant's upload is missing
        (dropout): the message names the missing sites and how to rerun the round.
    """
    if not uploads:
        raise SecureAggregationError("no masked uploads given")
    first = uploads[0]
    for up in uploads:
        for attr in ("round_id", "participants", "context", "frac_bits"):
            if getattr(up, attr) != getattr(first, attr):
                raise SecureAggregationError(
                    f"site {up.site} uploaded {attr}={getattr(up, attr)!r} but site "
                    f"{first.site} uploaded {getattr(first, attr)!r}: uploads of different "
                    "rounds or inputs cannot be added"
                )
    got = [up.site for up in uploads]
    if len(set(got)) != len(got):
        raise SecureAggregationError(f"round {first.round_id}: a site uploaded twice ({got})")
    missing = [s for s in first.participants if s not in got]
    if missing:
        remaining = [s for s in first.participants if s not in missing]
        raise SecureAggregationError(
            f"round {first.round_id}: no upload from site(s) {', '.join(missing)} (participants "
            f"{','.join(first.participants)}); their masks do not cancel and the sum cannot be "
            f"used. Rerun the round without them under a NEW round id: at site(s) "
            f"{', '.join(remaining)} run `fedgen exact mask ... --participants "
            f"{','.join(remaining)} --round <new id>`, then solve the new uploads"
        )
    once = first.once
    table = first.table.reshape(-1, 2)
    for up in uploads[1:]:
        once = ring_add(once, up.once)
        table = ring_add(table, up.table.reshape(-1, 2))
    f = first.frac_bits
    once_v = decode(once, f)
    table_v = decode(table, f).reshape(first.table.shape[:2])
    k = len(first.columns)
    present = np.rint(table_v[:, 0]).astype(np.int64)
    keep = np.flatnonzero(present == len(first.participants))
    u = first.universe
    n = round(once_v[0])
    return SiteAggregates(
        site="+".join(first.participants),
        sites=first.sites,
        trait=first.trait,
        columns=first.columns,
        n=int(n),
        yty=float(once_v[1]),
        cty=once_v[2 : 2 + k],
        ctc=_from_triu(once_v[2 + k :], k),
        chrom=u["chrom"][keep],
        pos=u["pos"][keep],
        vid=u["vid"][keep],
        ref=u["ref"][keep],
        alt=u["alt"][keep],
        gtg=table_v[keep, 1],
        gty=table_v[keep, 2],
        ctg=table_v[keep, 3:],
        meta={
            "round": first.round_id,
            "sites_summed": ",".join(first.participants),
            "variants_not_at_every_site": str(int(len(present) - len(keep))),
            # No per-site absences: the sum shows how many sites hold a variant, not which.
            "variants_seen_at_any_site": str(int(np.count_nonzero(present > 0))),
        },
    )
