"""Who is calling: bearer tokens from a token file, behind a small pluggable interface.

An :class:`Authenticator` turns the ``Authorization`` header into a :class:`Caller`. The token
file authenticator is the default; a JWT/GA4GH Passport verifier can implement the same
protocol and be passed to :func:`snakemake_fedgen.node.app.create_app`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from snakemake_executor_plugin_fedgen.errors import AuthError, ConfigError

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a name, any claims (JWT, visas) and the kind of credential.

    ``kind`` is ``static`` (token file), ``jwt`` (identity ``(claims["iss"], name)``) or
    ``anonymous``; tasks and files belong to the whole identity (``node.areas.area_of``).
    """

    name: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "static"


class Authenticator(Protocol):
    """Turns an ``Authorization`` header value (or ``None``) into a caller or raises AuthError."""

    def authenticate(self, authorization_header: str | None) -> Caller: ...


def bearer_token(authorization_header: str | None) -> str:
    """The token of a ``Bearer`` header; AuthError if the header is missing or malformed."""
    if not authorization_header:
        raise AuthError("missing Authorization header; send 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header is not of the form 'Bearer <token>'.")
    return token.strip()


class TokenFileAuthenticator:
    """Static tokens from a YAML mapping ``caller-name: token``."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]

    @classmethod
    def from_file(cls, path: Path) -> TokenFileAuthenticator:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            # The parser message may quote file content (tokens): do not include it.
            raise ConfigError(
                f"token file {path}: cannot be read as YAML; expected lines 'caller: token'."
            ) from exc
        if not isinstance(data, dict) or not data:
            raise ConfigError(f"token file {path}: expected a non-empty mapping 'caller: token'.")
        tokens: dict[str, str] = {}
        for name, token in data.items():
            if not isinstance(name, str) or not isinstance(token, str) or len(token) < 8:
                raise ConfigError(
                    f"token file {path}: entry {name!r} must map a caller name to a token "
                    "string of at least 8 characters."
                )
            tokens[name] = token
        if len(set(tokens.values())) != len(tokens):
            raise ConfigError(f"token file {path}: two callers share a token; give each its own.")
        return cls(tokens)

    def authenticate(self, authorization_header: str | None) -> Caller:
        given = bearer_token(authorization_header).encode()
        match = None
        # Compare against every token in constant time so timing says nothing about which.
        for name, token in self._tokens:
            if hmac.compare_digest(given, token):
                match = name
        if match is None:
            raise AuthError("invalid bearer token.")
        return Caller(match)


class LoopbackAuthenticator:
    """No token file: every caller is ``anonymous`` (the node then binds loopback only)."""

    def authenticate(self, authorization_header: str | None) -> Caller:
        return Caller(ANONYMOUS, kind="anonymous")
