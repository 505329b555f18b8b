"""Bearer tokens as a client sees them: is it a JWT, and how long may it be reused.

The signature is never checked here; the node does that (``snakemake_fedgen.governance.passport``).
"""

from __future__ import annotations

import time


def looks_like_jwt(token: str) -> bool:
    """True when ``token`` has the three base64url segments of a JWS compact serialisation."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts) and token.startswith("eyJ")


def token_cache_seconds(token: str, *, default: float, margin: float = 30.0) -> float:
    """How long a client may reuse ``token``: until ``exp - margin`` for a JWT, else ``default``.

    The signature is not checked (the node does that); only ``exp`` is read.
    """
    if not looks_like_jwt(token):
        return default
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return default
    if not isinstance(exp, int | float):
        return default
    return max(0.0, float(exp) - time.time() - margin)
