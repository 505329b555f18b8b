"""The ingress URL of a fedgen node: a coordinator file uploaded to a site before its task.

A coordinator file too large (or binary) for inline TES ``content`` is uploaded to the site's
node with ``PUT <node>/fedgen/v1/ingress/<sha256>`` (raw bytes) and named in the task as the
input URL ``fedgen-ingress:sha256:<sha256>``. The node resolves that URL only within the
caller's own uploads and checks the digest again when it copies the file into the task. A node
advertises the endpoint in its service-info (``fedgen.ingress_path``, ``fedgen.max_ingress_bytes``);
other TES servers (Funnel, TESK) have none.
"""

from __future__ import annotations

import re

from snakemake_executor_plugin_fedgen.errors import InvalidTask

__all__ = [
    "INGRESS_PREFIX",
    "INGRESS_SCHEME",
    "ingress_digest",
    "ingress_url",
    "is_digest",
    "is_ingress_url",
]

#: URL scheme of an ingress input: ``fedgen-ingress:sha256:<64 lower-case hex digits>``.
INGRESS_SCHEME = "fedgen-ingress"
#: Path of a node's ingress endpoint (``PUT``, ``GET``/``HEAD`` ``INGRESS_PREFIX/<sha256>``).
INGRESS_PREFIX = "/fedgen/v1/ingress"

_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """Is ``text`` a sha256 in the one spelling accepted (64 lower-case hex digits)?"""
    return _DIGEST.fullmatch(text) is not None


def is_ingress_url(url: str) -> bool:
    """Does ``url`` use the ingress scheme (in any case)?"""
    return url[: len(INGRESS_SCHEME) + 1].lower() == INGRESS_SCHEME + ":"


def ingress_url(sha256: str) -> str:
    """The input URL of the ingress file with digest ``sha256``."""
    return f"{INGRESS_SCHEME}:sha256:{sha256}"


def ingress_digest(url: str, *, what: str = "input") -> str:
    """The sha256 an ingress URL names; anything but the exact form is refused.

    Raises
    ------
    InvalidTask
        Not ``fedgen-ingress:sha256:<64 lower-case hex digits>`` (no paths, no other case).
    """
    prefix = f"{INGRESS_SCHEME}:sha256:"
    digest = url[len(prefix) :] if url.startswith(prefix) else ""
    if not is_digest(digest):
        raise InvalidTask(
            f"{what} {url[:120]!r} is not an ingress URL; the form is {prefix}<sha256> with 64 "
            "lower-case hex digits, the digest the file was uploaded under."
        )
    return digest
