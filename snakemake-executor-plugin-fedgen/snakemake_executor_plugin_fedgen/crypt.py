"""Crypt4GH (GA4GH) encryption of egress files for the coordinator's public key.

A site node encrypts a file *after* the airlock accepted its plaintext, so the published copy in
the outbox (and anything that copies it on the way) holds ciphertext only; the coordinator's
executor decrypts it after download with its private key. Each file is encrypted with a fresh
ephemeral sender key, so the site needs no key pair of its own.

Key files are the Crypt4GH formats (``-----BEGIN CRYPT4GH PUBLIC KEY-----``). Their material is
a raw X25519 key, so the same pair serves secure aggregation (``load_*`` return 32 raw bytes that
``cryptography``'s ``X25519PrivateKey.from_private_bytes`` accepts).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from snakemake_executor_plugin_fedgen.errors import ConfigError, StorageError
from snakemake_executor_plugin_fedgen.fileio import atomic_write, write_bytes_atomic

#: Every Crypt4GH file starts with these 8 bytes (then version 1, little-endian).
MAGIC = b"crypt4gh"
_PUB_BEGIN = b"-----BEGIN CRYPT4GH PUBLIC KEY-----"
_SEC_BEGIN = b"-----BEGIN CRYPT4GH PRIVATE KEY-----"


def generate_keypair(
    prefix: str | Path,
    *,
    passphrase: str | None = None,
    comment: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write a Crypt4GH key pair ``PREFIX.sec`` (mode 0600) and ``PREFIX.pub``.

    Parameters
    ----------
    prefix
        Path prefix of the two files.
    passphrase
        Encrypts the private key (scrypt + ChaCha20-Poly1305) when given.
    overwrite
        Replace existing files; otherwise an existing file is an error.

    Returns
    -------
    (secret_key_path, public_key_path)
    """
    from crypt4gh import sodium
    from crypt4gh.keys import c4gh

    prefix = Path(prefix)
    sec, pub = prefix.with_name(prefix.name + ".sec"), prefix.with_name(prefix.name + ".pub")
    if not prefix.parent.is_dir():
        raise ConfigError(f"cannot write keys to {prefix}: directory {prefix.parent} missing.")
    for path in (sec, pub):
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} exists; choose another --out prefix or pass --force.")
    sk = os.urandom(32)
    comment_bytes = comment.encode() if comment else None
    if passphrase:
        encoded = c4gh.encode_private_key(sk, passphrase.encode(), comment_bytes)
    else:
        # Same bytes as crypt4gh's unencrypted format, without its stderr warning.
        encoded = (
            c4gh.MAGIC_WORD
            + c4gh.encode_string(None)
            + c4gh.encode_string(None)
            + c4gh.encode_string(sk)
            + (c4gh.encode_string(comment_bytes) if comment_bytes else b"")
        )
    write_bytes_atomic(sec, _pem(_SEC_BEGIN, encoded), perms=0o600)
    write_bytes_atomic(pub, _pem(_PUB_BEGIN, bytes(sodium.derive_pk(sk))), perms=0o644)
    return sec, pub


def _pem(begin: bytes, body: bytes) -> bytes:
    end = begin.replace(b"BEGIN", b"END")
    return begin + b"\n" + base64.b64encode(body) + b"\n" + end + b"\n"


def load_public_key(path: str | Path) -> bytes:
    """The 32-byte X25519 public key of a Crypt4GH (or OpenSSH ed25519) public key file."""
    from crypt4gh.keys import get_public_key

    try:
        key = get_public_key(str(path))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ConfigError(
            f"{path} is not a Crypt4GH public key ({exc}); create one with "
            "'fedgen keys generate --out PREFIX'."
        ) from exc
    if len(key) != 32:
        raise ConfigError(f"{path}: expected a 32-byte X25519 public key, got {len(key)} bytes.")
    return bytes(key)


def load_private_key(path: str | Path, *, passphrase: str | None = None) -> bytes:
    """The 32-byte X25519 private key of a Crypt4GH private key file.

    ``passphrase`` defaults to the env var ``C4GH_PASSPHRASE`` when the key is encrypted.
    """
    from crypt4gh.keys import get_private_key

    def ask() -> str:
        value = passphrase if passphrase is not None else os.environ.get("C4GH_PASSPHRASE")
        if value is None:
            raise ConfigError(
                f"{path} is passphrase-protected; set C4GH_PASSPHRASE or pass the passphrase."
            )
        return value

    try:
        key = get_private_key(str(path), ask)
    except ConfigError:
        raise
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{path} is not a readable Crypt4GH private key ({exc}).") from exc
    except SystemExit as exc:  # crypt4gh exits on a wrong passphrase
        raise ConfigError(f"{path}: wrong passphrase for the private key.") from exc
    return bytes(key)


def is_encrypted(path: str | Path) -> bool:
    """True when the file starts with the Crypt4GH magic bytes."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def encrypt_file(src: str | Path, dst: str | Path, *, recipient_key: bytes | str | Path) -> None:
    """Encrypt ``src`` into ``dst`` (atomically) for the holder of ``recipient_key``.

    ``recipient_key`` is the 32 raw bytes or a public key file. ``src`` may equal ``dst``
    (encrypt in place).
    """
    from crypt4gh import lib

    pub = recipient_key if isinstance(recipient_key, bytes) else load_public_key(recipient_key)
    ephemeral = os.urandom(32)  # a fresh sender key per file: the site keeps no secret
    dst = Path(dst)
    try:
        with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
            lib.encrypt([(0, ephemeral, pub)], fin, fout)
    except OSError as exc:
        raise StorageError(f"cannot encrypt {src} to {dst}: {exc.strerror or exc}") from exc


def decrypt_file(
    src: str | Path,
    dst: str | Path,
    *,
    private_key: bytes | str | Path,
    passphrase: str | None = None,
) -> None:
    """Decrypt the Crypt4GH file ``src`` into ``dst`` (atomically; ``src`` may equal ``dst``).

    Raises
    ------
    ConfigError
        the file was not encrypted for this key (or is not a Crypt4GH file).
    """
    from crypt4gh import lib

    sec = (
        private_key
        if isinstance(private_key, bytes)
        else load_private_key(private_key, passphrase=passphrase)
    )
    dst = Path(dst)
    if not is_encrypted(src):
        raise ConfigError(f"{src} is not a Crypt4GH file (no 'crypt4gh' magic bytes).")
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        try:
            lib.decrypt([(0, sec, None)], fin, fout)
        except ValueError as exc:
            raise ConfigError(
                f"cannot decrypt {src}: it was not encrypted for this private key "
                "(check --fedgen-crypt4gh-key and the site's crypt4gh_recipient_key)."
            ) from exc


# -- coordinator side (the executor) -----------------------------------------------------------

#: Task tag through which the coordinator asks a node for Crypt4GH egress: the base64 of its
#: 32-byte X25519 (Crypt4GH) public key. A node's own ``egress_recipient_key`` takes precedence.
RECIPIENT_TAG = "fedgen_crypt4gh_recipient"
#: Env var naming the coordinator's private key (default: the registry's public key path with
#: ``.pub`` replaced by ``.sec``, as written by ``fedgen keys generate``).
PRIVATE_KEY_ENV = "FEDGEN_CRYPT4GH_KEY"


def recipient_tags(site: object) -> dict[str, str]:
    """Task tags asking the site's node to encrypt egress for the registry's recipient key."""
    path = getattr(site, "crypt4gh_recipient_key", None)
    if not path:
        return {}
    return {RECIPIENT_TAG: base64.b64encode(load_public_key(path)).decode("ascii")}


def coordinator_private_key(site: object) -> Path:
    """Where the coordinator's private key is: ``$FEDGEN_CRYPT4GH_KEY`` or PUBKEY with .sec."""
    env = os.environ.get(PRIVATE_KEY_ENV)
    if env:
        return Path(env)
    pub = getattr(site, "crypt4gh_recipient_key", None)
    if pub and str(pub).endswith(".pub"):
        return Path(str(pub)[: -len(".pub")] + ".sec")
    name = getattr(site, "name", "?")
    raise ConfigError(
        f"site {name} published a Crypt4GH-encrypted output but no private key is known: set "
        f"{PRIVATE_KEY_ENV}=PATH (the coordinator's .sec key)."
    )


def unseal_download(
    path: Path, *, size: int, sha256: str, header_sha256: str | None, site: object
) -> tuple[int, str, str | None]:
    """Decrypt a downloaded egress file in place if it is Crypt4GH; return its plaintext
    (size, sha256, header_sha256).

    The ciphertext is first checked against the node's ``X-Fedgen-Sha256`` header; after
    decryption the header no longer applies (None is returned for it) and the caller compares
    the plaintext with the task's own checksum. Plain files are returned unchanged.
    """
    import hashlib

    if not is_encrypted(path):
        return size, sha256, header_sha256
    if header_sha256 and header_sha256.lower() != sha256:
        raise StorageError(
            f"site {getattr(site, 'name', '?')}: encrypted download of {path.name} has sha256 "
            f"{sha256} but the node announced {header_sha256}; the file was not kept."
        )
    decrypt_file(path, path, private_key=coordinator_private_key(site))
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return path.stat().st_size, h.hexdigest(), None
