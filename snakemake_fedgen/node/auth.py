"""Who is calling: bearer tokens from a token file or JWTs, behind a small pluggable interface.

An :class:`Authenticator` turns the ``Authorization`` header into a :class:`Caller`:
:class:`TokenFileAuthenticator` (static tokens), :class:`JwtAuthenticator` (JWT/GA4GH Passport,
verified by :class:`snakemake_fedgen.governance.passport.PassportVerifier`, static tokens as
fallback) or :class:`LoopbackAuthenticator` (no tokens, loopback only).
:func:`make_authenticator` picks them from the node config; the app
(:mod:`snakemake_fedgen.node.app`) calls the one it is given from a single FastAPI dependency.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from snakemake_executor_plugin_fedgen.errors import AuthError, ConfigError
from snakemake_executor_plugin_fedgen.tokens import looks_like_jwt

if TYPE_CHECKING:
    from snakemake_fedgen.governance.passport import PassportVerifier
    from snakemake_fedgen.node.config import NodeConfig

log = logging.getLogger("snakemake_fedgen.node")

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


@dataclass
class JwtAuthenticator:
    """JWT bearer tokens (GA4GH Passports), falling back to static tokens for other tokens.

    The caller name is the token's ``sub``; its identity (tasks, files) is ``(iss, sub)``:
    ``kind="jwt"`` keeps it apart from static tokens. Its claims (with the verified visas) go
    with the caller, for the visa check of CreateTask.
    """

    verifier: PassportVerifier
    fallback: Authenticator | None = None

    def authenticate(self, authorization_header: str | None) -> Caller:
        token = bearer_token(authorization_header)
        if looks_like_jwt(token):
            claims = self.verifier.verify(token)
            # The owner of tasks and files is (issuer, subject), never the bare subject.
            return Caller(str(claims["sub"]), claims, kind="jwt")
        if self.fallback is not None:
            return self.fallback.authenticate(authorization_header)
        raise AuthError("this node accepts JWT bearer tokens only.")


def make_authenticator(cfg: NodeConfig) -> Authenticator:
    """The authenticator ``cfg`` asks for: JWT (``jwt``), static tokens (``token_file``), both
    (JWTs first, other tokens from the file), or neither (every caller ``anonymous``)."""
    static: Authenticator | None = None
    if cfg.token_file is not None:
        static = TokenFileAuthenticator.from_file(cfg.token_file)
    if cfg.jwt:
        from snakemake_fedgen.governance.passport import JwtSettings, PassportVerifier

        verifier = PassportVerifier(JwtSettings.from_mapping(cfg.jwt))
        return JwtAuthenticator(verifier, fallback=static)
    if static is not None:
        return static
    log.warning("no token_file: every caller is 'anonymous'; serving loopback only.")
    return LoopbackAuthenticator()
