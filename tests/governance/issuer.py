"""A local OIDC/Passport issuer for tests: real RSA/EC keys, a JWKS file and signed JWTs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://aai.test.invalid/"
AUDIENCE = "fedgen-node-A"


class Issuer:
    """Signs access tokens (RS256) and visas (ES256) and publishes their public keys."""

    def __init__(self, iss: str = ISSUER) -> None:
        self.iss = iss
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key, alg in (("rsa1", self.rsa, "RS256"), ("ec1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig", alg=alg)
            keys.append(jwk)
        return {"keys": keys}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def visa(
        self,
        sub: str,
        dataset: str,
        *,
        exp_in: int = 3600,
        vtype: str = "ControlledAccessGrants",
        key=None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.iss,
            "sub": sub,
            "iat": now,
            "exp": now + exp_in,
            "jti": str(uuid.uuid4()),
            "ga4gh_visa_v1": {
                "type": vtype,
                "asserted": now - 86400,
                "value": dataset,
                "source": "https://dac.test.invalid/",
                "by": "dac",
            },
        }
        return jwt.encode(claims, key or self.ec, algorithm="ES256", headers={"kid": "ec1"})

    def token(
        self,
        sub: str = "alice",
        *,
        aud: str = AUDIENCE,
        exp_in: int = 600,
        nbf_in: int | None = None,
        visas: list[str] | None = None,
        key=None,
        alg: str = "RS256",
        kid: str = "rsa1",
        iss: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": iss or self.iss,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "exp": now + exp_in,
        }
        if nbf_in is not None:
            claims["nbf"] = now + nbf_in
        if visas is not None:
            claims["ga4gh_passport_v1"] = visas
        return jwt.encode(
            claims,
            key or (self.rsa if alg.startswith("RS") else self.ec),
            algorithm=alg,
            headers={"kid": kid},
        )
