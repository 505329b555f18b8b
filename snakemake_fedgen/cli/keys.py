"""``fedgen keys``: Crypt4GH/X25519 key pairs, and file encryption for manual checks."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "Generate Crypt4GH (X25519) key pairs; encrypt or decrypt files with them."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``generate``, ``encrypt`` and ``decrypt`` sub-subcommands."""
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser(
        "generate",
        help="write PREFIX.sec (0600) and PREFIX.pub",
        description="Write a Crypt4GH key pair PREFIX.sec (mode 0600) and PREFIX.pub. The "
        "key material is X25519, so the pair also serves secure aggregation.",
    )
    gen.add_argument("--out", required=True, metavar="PREFIX", help="path prefix of the keys")
    gen.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="encrypt the private key with the passphrase held in this env var",
    )
    gen.add_argument("--comment", help="comment stored in the private key")
    gen.add_argument("--force", action="store_true", help="overwrite existing key files")

    enc = sub.add_parser("encrypt", help="encrypt a file for a public key")
    enc.add_argument("input")
    enc.add_argument("--recipient", required=True, metavar="PUBKEY")
    enc.add_argument("--out", required=True)

    dec = sub.add_parser("decrypt", help="decrypt a Crypt4GH file with a private key")
    dec.add_argument("input")
    dec.add_argument("--key", required=True, metavar="SECKEY")
    dec.add_argument("--passphrase-env", metavar="VAR", help="env var holding the key's passphrase")
    dec.add_argument("--out", required=True)


def _passphrase(var: str | None) -> str | None:
    from snakemake_executor_plugin_fedgen.errors import ConfigError

    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"environment variable {var} (passphrase) is not set or empty.")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; errors are FedgenError subclasses."""
    from snakemake_executor_plugin_fedgen import crypt

    if args.keys_command == "generate":
        sec, pub = crypt.generate_keypair(
            args.out,
            passphrase=_passphrase(args.passphrase_env),
            comment=args.comment,
            overwrite=args.force,
        )
        print(f"private key: {sec}\npublic key:  {pub}", file=sys.stdout)
    elif args.keys_command == "encrypt":
        crypt.encrypt_file(args.input, args.out, recipient_key=args.recipient)
    else:
        crypt.decrypt_file(
            args.input,
            args.out,
            private_key=args.key,
            passphrase=_passphrase(args.passphrase_env),
        )
    return 0
