"""JWT bearer tokens and GA4GH Passport visas, verified at the site node.

A site that trusts an AAI broker (Life Science Login, an institutional IdP, a test issuer)
configures the node with::

    jwt:
      jwks: /etc/fedgen/issuer-jwks.json     # or https://aai.example.org/jwks
      issuer: https://aai.example.org/
      audience: fedgen-node-A
      algorithms: [RS256, ES256]
      visa_jwks: null                         # visas' issuer JWKS (default: the same JWKS)
      visa_issuers: null                      # accepted visa issuers (default: any key in it)
    datasets_requiring_visa:
      file:///srv/siteA/data/: https://ega.example.org/datasets/EGAD0001

A bearer token that is a JWT is verified (signature, ``iss``, ``aud``, ``exp``, ``nbf``); the
caller name is its ``sub``. Its ``ga4gh_passport_v1`` claim is a list of visa JWTs, each signed
and checked the same way (no audience; the visa ``sub`` must be the passport's); only
``ControlledAccessGrants`` visas whose ``value`` names a dataset grant access. A task whose inputs
read a file under a configured prefix needs a visa for that dataset (HTTP 403 otherwise); the
check is made on resolved paths (:mod:`snakemake_fedgen.governance.datasets`).

The node's authenticator that uses :class:`PassportVerifier` is
:class:`snakemake_fedgen.node.auth.JwtAuthenticator` (governance never imports the node).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_fedgen.errors import AccessDenied, AuthError, ConfigError

PASSPORT_CLAIM = "ga4gh_passport_v1"
VISA_CLAIM = "ga4gh_visa_v1"
GRANT_TYPE = "ControlledAccessGrants"
DEFAULT_ALGORITHMS = ("RS256", "ES256")
_ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"})


@dataclass(frozen=True)
class JwtSettings:
    """The node's ``jwt:`` config mapping."""

    jwks: str
    issuer: tuple[str, ...]
    audience: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: int = 30
    jwks_cache_seconds: int = 300
    visa_jwks: str | None = None
    visa_issuers: tuple[str, ...] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "node config") -> JwtSettings:
        """Check the ``jwt`` mapping; ConfigError names the key and the fix."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: jwt must be a mapping with jwks, issuer and audience.")
        known = {
            "jwks",
            "issuer",
            "audience",
            "algorithms",
            "leeway_seconds",
            "jwks_cache_seconds",
            "visa_jwks",
            "visa_issuers",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown jwt key(s) {unknown}; known: {sorted(known)}.")
        for key in ("jwks", "issuer", "audience"):
            if not data.get(key):
                raise ConfigError(f"{source}: jwt.{key} is required.")
        algorithms = tuple(data.get("algorithms") or DEFAULT_ALGORITHMS)
        bad = sorted(set(algorithms) - _ALLOWED_ALGORITHMS)
        if bad:
            # HS* would let anyone holding the (public) JWKS forge tokens; "none" is never ok.
            raise ConfigError(
                f"{source}: jwt.algorithms {bad} not accepted; use asymmetric ones such as "
                "RS256 or ES256."
            )
        issuer = data["issuer"]
        visa_issuers = data.get("visa_issuers")
        return cls(
            jwks=str(data["jwks"]),
            issuer=(issuer,) if isinstance(issuer, str) else tuple(issuer),
            audience=str(data["audience"]),
            algorithms=algorithms,
            leeway_seconds=int(data.get("leeway_seconds", 30)),
            jwks_cache_seconds=int(data.get("jwks_cache_seconds", 300)),
            visa_jwks=str(data["visa_jwks"]) if data.get("visa_jwks") else None,
            visa_issuers=(
                None
                if not visa_issuers
                else ((visa_issuers,) if isinstance(visa_issuers, str) else tuple(visa_issuers))
            ),
        )


class Jwks:
    """A JSON Web Key Set from a file or an http(s) URL, cached for ``ttl`` seconds.

    An unknown ``kid`` triggers one refresh (key rotation) at most every 30 seconds.
    """

    def __init__(self, location: str, *, ttl: float = 300.0) -> None:
        self.location = location
        self.ttl = ttl
        self._keys: dict[str, Any] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> dict[str, Any]:
        import httpx
        import jwt

        try:
            if self.location.startswith(("http://", "https://")):
                resp = httpx.get(self.location, timeout=10.0)
                resp.raise_for_status()
                data = resp.json()
            else:
                path = self.location.removeprefix("file://")
                data = json.loads(Path(path).read_text())
            keyset = jwt.PyJWKSet.from_dict(data)
        except (httpx.HTTPError, OSError, ValueError, KeyError, jwt.PyJWTError) as exc:
            # Network, JSON and key-format errors all mean "no keys": every token is refused.
            raise AuthError(f"cannot load the JWKS from {self.location}: {exc}") from exc
        keys: dict[str, Any] = {}
        for index, jwk in enumerate(keyset.keys):
            keys[jwk.key_id or f"#{index}"] = jwk
        return keys

    def key(self, kid: str | None) -> Any:
        """The signing key for ``kid`` (or the only key when the token names none)."""
        with self._lock:
            now = time.monotonic()
            stale = now - self._loaded_at > self.ttl
            missing = kid is not None and kid not in self._keys
            if stale or (missing and now - self._loaded_at > 30):
                self._keys = self._fetch()
                self._loaded_at = now
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise AuthError("token has no 'kid' header and the JWKS holds several keys.")
            if kid not in self._keys:
                raise AuthError(f"token signed with unknown key id {kid!r}.")
            return self._keys[kid]


@dataclass(frozen=True)
class Visa:
    """A verified ``ControlledAccessGrants`` (or other) visa."""

    type: str
    value: str
    source: str
    by: str | None
    asserted: int | None
    issuer: str
    expires: int


class PassportVerifier:
    """Verifies JWT access tokens and the visas of their GA4GH Passport."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._jwks = Jwks(settings.jwks, ttl=settings.jwks_cache_seconds)
        self._visa_jwks = (
            Jwks(settings.visa_jwks, ttl=settings.jwks_cache_seconds)
            if settings.visa_jwks
            else self._jwks
        )

    def _decode(self, token: str, keys: Jwks, *, audience: str | None, what: str) -> dict:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"{what} is not a valid JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise AuthError(
                f"{what} uses algorithm {alg!r}; this node accepts {list(self.settings.algorithms)}."
            )
        jwk = keys.key(header.get("kid"))
        options = {"require": ["exp", "iss", "sub"], "verify_aud": audience is not None}
        try:
            return jwt.decode(
                token,
                key=jwk.key,
                algorithms=[alg],
                audience=audience,
                options=options,
                leeway=self.settings.leeway_seconds,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(f"{what} has expired; obtain a fresh token.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError(f"{what} is not valid yet (nbf/iat in the future).") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(
                f"{what} is not meant for this node (audience must be {self.settings.audience!r})."
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(f"{what} signature does not verify against the JWKS.") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"{what} rejected: {exc}") from exc

    def verify(self, token: str) -> dict[str, Any]:
        """Verify an access token; return its claims plus ``fedgen_visas`` (verified visas).

        Raises
        ------
        AuthError
            expired, wrong audience or issuer, bad signature, unknown key. Messages never
            contain the token.
        """
        claims = self._decode(token, self._jwks, audience=self.settings.audience, what="token")
        if claims["iss"] not in self.settings.issuer:
            raise AuthError(
                f"token issuer {claims['iss']!r} is not trusted by this node "
                f"(trusted: {list(self.settings.issuer)})."
            )
        visas = []
        for index, raw in enumerate(claims.get(PASSPORT_CLAIM) or ()):
            visa = self._visa(raw, subject=claims["sub"], index=index)
            if visa is not None:
                visas.append(visa)
        claims = dict(claims)
        claims.pop(PASSPORT_CLAIM, None)
        claims["fedgen_visas"] = [v.__dict__ for v in visas]
        return claims

    def _visa(self, raw: Any, *, subject: str, index: int) -> Visa | None:
        # A visa that does not verify is dropped, not fatal: passports routinely carry visas
        # from brokers this site does not trust. It then simply grants nothing.
        if not isinstance(raw, str):
            return None
        try:
            claims = self._decode(raw, self._visa_jwks, audience=None, what=f"visa #{index}")
        except AuthError:
            return None
        if claims.get("sub") != subject:
            return None
        if (
            self.settings.visa_issuers is not None
            and claims["iss"] not in self.settings.visa_issuers
        ):
            return None
        body = claims.get(VISA_CLAIM)
        if not isinstance(body, Mapping) or not body.get("type") or not body.get("value"):
            return None
        return Visa(
            type=str(body["type"]),
            value=str(body["value"]),
            source=str(body.get("source", "")),
            by=body.get("by"),
            asserted=body.get("asserted"),
            issuer=str(claims["iss"]),
            expires=int(claims["exp"]),
        )


def granted_datasets(claims: Mapping[str, Any]) -> set[str]:
    """Dataset ids a caller holds a ``ControlledAccessGrants`` visa for."""
    now = time.time()
    return {
        v["value"]
        for v in claims.get("fedgen_visas") or ()
        if v.get("type") == GRANT_TYPE and v.get("expires", 0) > now
    }


def datasets_for_urls(urls: Iterable[str], rules: Mapping[str, str]) -> dict[str, str]:
    """Map each URL that reads a governed dataset to its dataset id.

    Decided on the resolved path (any spelling of a file, or a symlink to it, is the same
    file); see :mod:`snakemake_fedgen.governance.datasets`.
    """
    from snakemake_fedgen.governance.datasets import datasets_for_inputs

    found = datasets_for_inputs(((u, "FILE") for u in urls), rules)
    return {url: sorted(ids)[0] for url, ids in found.items()}


def require_visas(
    claims: Mapping[str, Any],
    urls: Iterable[str],
    rules: Mapping[str, str] | None,
    *,
    inputs: Iterable[tuple[str, str]] | None = None,
) -> None:
    """Raise AccessDenied (HTTP 403) unless the caller has a visa for every dataset read.

    Parameters
    ----------
    claims
        ``Caller.claims`` from :meth:`PassportVerifier.verify` (static-token callers have none).
    urls
        The task's input URLs (read as FILE inputs).
    rules
        ``datasets_requiring_visa``: URL prefix -> dataset id.
    inputs
        (url, ``FILE``/``DIRECTORY``) pairs, checked in addition to ``urls``: a DIRECTORY
        needs the visas of every governed dataset inside it.
    """
    from snakemake_fedgen.governance.datasets import datasets_for_inputs

    if not rules:
        return
    pairs = [(u, "FILE") for u in urls] + list(inputs or ())
    needed = datasets_for_inputs(pairs, rules)
    if not needed:
        return
    granted = granted_datasets(claims)
    missing = sorted({ds for ids in needed.values() for ds in ids if ds not in granted})
    if missing:
        raise AccessDenied(
            f"no valid GA4GH ControlledAccessGrants visa for dataset(s) {', '.join(missing)}; "
            "ask the data access committee for access and present a passport that carries it."
        )
