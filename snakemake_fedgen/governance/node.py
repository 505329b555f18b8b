"""Governance hooks of the site node: config checks, JWT auth, visas, Crypt4GH, provenance.

The node (``snakemake_fedgen.node``) calls these few functions at fixed points so that its own
modules stay about TES and the governance logic stays here:

* ``check_node_config`` when the config is loaded (bad ``jwt``/key settings fail at startup);
* ``jwt`` settings are turned into the node's authenticator by
  :func:`snakemake_fedgen.node.auth.make_authenticator` (with
  :class:`~snakemake_fedgen.governance.passport.PassportVerifier`);
* ``check_task_visas`` in CreateTask (403 without a visa for a governed dataset);
* ``seal_egress`` after the airlock accepted a task's egress files and before publication;
* ``task_provenance`` when a task ends (the node's own, trusted, provenance record).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.crypt import RECIPIENT_TAG
from snakemake_executor_plugin_fedgen.errors import ConfigError, StorageError
from snakemake_executor_plugin_fedgen.tes.ingress import is_ingress_url


def check_node_config(cfg: Any, source: str) -> None:
    """Validate the governance keys of a NodeConfig; ConfigError names key and fix."""
    from snakemake_executor_plugin_fedgen.crypt import load_public_key

    from snakemake_fedgen.governance.passport import JwtSettings

    if cfg.jwt:
        JwtSettings.from_mapping(cfg.jwt, source=f"node config {source}")
    for prefix, dataset in (cfg.datasets_requiring_visa or {}).items():
        if not isinstance(prefix, str) or not isinstance(dataset, str) or not prefix:
            raise ConfigError(
                f"node config {source}: datasets_requiring_visa maps URL prefixes to dataset ids "
                f"(strings); got {prefix!r}: {dataset!r}."
            )
        from snakemake_fedgen.governance.datasets import DatasetRules

        try:
            DatasetRules({prefix: dataset})
        except StorageError as exc:
            raise ConfigError(f"node config {source}: datasets_requiring_visa: {exc}") from None
    if cfg.datasets_requiring_visa and not cfg.jwt:
        raise ConfigError(
            f"node config {source}: datasets_requiring_visa needs jwt (visas come in a GA4GH "
            "Passport); add a jwt: {jwks, issuer, audience} mapping."
        )
    if cfg.egress_recipient_key is not None:
        load_public_key(cfg.egress_recipient_key)


def check_task_visas(caller: Any, doc: Mapping[str, Any], cfg: Any) -> None:
    """Raise AccessDenied unless ``caller`` holds a visa for every governed input dataset.

    Inputs are matched on their resolved paths, so no spelling of a governed file, symlink to
    it or DIRECTORY holding it gets past (see :mod:`snakemake_fedgen.governance.datasets`).
    """
    from snakemake_fedgen.governance.passport import require_visas

    # Ingress inputs are the caller's own uploads (node/ingress.py), not site data: no visa.
    inputs = [
        (i["url"], i.get("type") or "FILE")
        for i in doc.get("inputs") or ()
        if i.get("url") and not i.get("content") and not is_ingress_url(i["url"])
    ]
    require_visas(caller.claims, (), cfg.datasets_requiring_visa, inputs=inputs)


def egress_recipient(cfg: Any, doc: Mapping[str, Any]) -> bytes | None:
    """The Crypt4GH public key egress files of this task are encrypted for, if any."""
    from snakemake_executor_plugin_fedgen.crypt import load_public_key

    if cfg.egress_recipient_key is not None:
        return load_public_key(cfg.egress_recipient_key)
    tag = (doc.get("tags") or {}).get(RECIPIENT_TAG)
    if not tag:
        return None
    try:
        key = base64.b64decode(tag, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise StorageError(
            f"task tag {RECIPIENT_TAG} must be the base64 of a 32-byte Crypt4GH public key."
        )
    return key


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seal_egress(
    files: Iterable[Any],
    decisions: Mapping[Path, Any],
    *,
    cfg: Any,
    doc: Mapping[str, Any],
    record: Callable[..., None],
) -> dict[Path, Any]:
    """Encrypt accepted egress files in place (before publication) when a recipient is set.

    Parameters
    ----------
    files
        The node's egress output files (``.source`` in the task root, ``.dest`` published path).
    decisions
        Airlock decisions by ``dest`` (of the plaintext).
    record
        ``audit.record`` bound to caller and task; gets one ``Encrypt`` entry per file with
        the plaintext and ciphertext SHA-256.

    Returns
    -------
    dict
        The decisions with ``sha256``/``size`` of what is published (the ciphertext).
    """
    from snakemake_executor_plugin_fedgen.crypt import encrypt_file

    out = dict(decisions)
    recipient = egress_recipient(cfg, doc)
    if recipient is None:
        return out
    for f in files:
        plain = out[f.dest]
        encrypt_file(f.source, f.source, recipient_key=recipient)
        sealed_sha = _sha256(f.source)
        size = f.source.stat().st_size
        record(
            action="Encrypt",
            outcome="crypt4gh",
            file=f.container_path,
            plaintext_sha256=plain.sha256,
            sha256=sealed_sha,
            size=size,
        )
        out[f.dest] = dataclasses.replace(plain, sha256=sealed_sha, size=size)
    return out
