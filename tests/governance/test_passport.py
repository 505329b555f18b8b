"""JWT and GA4GH Passport verification with a local issuer's real keys."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from snakemake_executor_plugin_fedgen.errors import AccessDenied, AuthError, ConfigError

from snakemake_fedgen.governance import passport

from .issuer import AUDIENCE, ISSUER, Issuer

DATASET = "https://ega.test.invalid/datasets/EGAD0001"


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture
def verifier(issuer, tmp_path):
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    settings = passport.JwtSettings.from_mapping(
        {"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE}
    )
    return passport.PassportVerifier(settings)


def test_verify__valid_token_returns_claims(issuer, verifier):
    claims = verifier.verify(issuer.token("alice"))
    assert claims["sub"] == "alice"
    assert claims["fedgen_visas"] == []


def test_verify__es256_token_accepted(issuer, verifier):
    assert verifier.verify(issuer.token("bob", alg="ES256", kid="ec1"))["sub"] == "bob"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exp_in": -120}, "expired"),
        ({"aud": "another-node"}, "audience"),
        ({"nbf_in": 600}, "not valid yet"),
        ({"iss": "https://evil.test.invalid/"}, "not trusted"),
        ({"kid": "nope"}, "unknown key id"),
    ],
)
def test_verify__rejects_bad_claims(issuer, verifier, kwargs, message):
    with pytest.raises(AuthError, match=message):
        verifier.verify(issuer.token("alice", **kwargs))


def test_verify__rejects_wrong_signature(issuer, verifier):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issuer.token("alice", key=forger)  # same kid, different key
    with pytest.raises(AuthError, match="signature"):
        verifier.verify(token)


def test_verify__rejects_hs256_and_none(issuer, verifier):
    import jwt

    # An HS256 token "signed" with the public JWKS text is the classic algorithm-confusion attack.
    forged = jwt.encode(
        {"iss": ISSUER, "sub": "x", "aud": AUDIENCE, "exp": 9999999999},
        "secret-from-the-public-jwks-0123456789",
        algorithm="HS256",
        headers={"kid": "rsa1"},
    )
    with pytest.raises(AuthError, match="algorithm"):
        verifier.verify(forged)
    with pytest.raises(ConfigError, match="HS256"):
        passport.JwtSettings.from_mapping(
            {"jwks": "x", "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"]}
        )


def test_verify__error_messages_never_contain_the_token(issuer, verifier):
    token = issuer.token("alice", exp_in=-100)
    with pytest.raises(AuthError) as err:
        verifier.verify(token)
    assert token not in str(err.value)
    assert token.split(".")[2] not in str(err.value)


def test_verify__keeps_only_valid_visas_of_the_same_subject(issuer, verifier):
    other = Issuer()  # untrusted visa issuer: keys not in the JWKS
    visas = [
        issuer.visa("alice", DATASET),
        issuer.visa("alice", "EGAD-expired", exp_in=-100),
        issuer.visa("mallory", "EGAD-other-subject"),
        other.visa("alice", "EGAD-untrusted"),
        issuer.visa("alice", "EGAD-affiliation", vtype="AffiliationAndRole"),
    ]
    claims = verifier.verify(issuer.token("alice", visas=visas))
    assert passport.granted_datasets(claims) == {DATASET}
    assert {v["value"] for v in claims["fedgen_visas"]} == {DATASET, "EGAD-affiliation"}


def test_require_visas__403_without_visa_for_dataset_read(issuer, verifier):
    rules = {"file:///srv/siteA/data/": DATASET}
    urls = ["file:///srv/siteA/data/genotypes.vcf.gz", "file:///srv/siteA/work/x.txt"]
    with_visa = verifier.verify(issuer.token("alice", visas=[issuer.visa("alice", DATASET)]))
    passport.require_visas(with_visa, urls, rules)
    without = verifier.verify(issuer.token("alice", visas=[]))
    with pytest.raises(AccessDenied, match="EGAD0001"):
        passport.require_visas(without, urls, rules)
    # Tasks that read no governed dataset need no visa.
    passport.require_visas(without, ["file:///srv/siteA/work/x.txt"], rules)


def test_jwks__served_over_http_and_cached(issuer, tmp_path):
    body = json.dumps(issuer.jwks()).encode()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        settings = passport.JwtSettings.from_mapping(
            {"jwks": url, "issuer": ISSUER, "audience": AUDIENCE}
        )
        verifier = passport.PassportVerifier(settings)
        for _ in range(3):
            assert verifier.verify(issuer.token("alice"))["sub"] == "alice"
        assert hits == ["/jwks.json"]
    finally:
        server.shutdown()
        server.server_close()


def test_jwt_authenticator__falls_back_to_static_tokens(issuer, verifier):
    from snakemake_fedgen.node.auth import JwtAuthenticator, TokenFileAuthenticator

    auth = JwtAuthenticator(
        verifier, fallback=TokenFileAuthenticator({"coordinator": "static-token-123"})
    )
    assert auth.authenticate("Bearer static-token-123").name == "coordinator"
    caller = auth.authenticate("Bearer " + issuer.token("alice"))
    assert caller.name == "alice"
    with pytest.raises(AuthError):
        auth.authenticate("Bearer " + issuer.token("alice", aud="x"))


def test_site_token__token_command_jwt_cached_until_shortly_before_exp(issuer, tmp_path):
    from snakemake_executor_plugin_fedgen.sites import Site

    calls = tmp_path / "calls"
    token_file = tmp_path / "token.txt"
    command = ["sh", "-c", f"echo call >> {calls}; cat {token_file}"]
    site = Site(name="A", tes_url="http://127.0.0.1:9", work_url="file:///w", token_command=command)

    token_file.write_text(issuer.token("alice", exp_in=3600))
    assert site.token() == token_file.read_text()
    site.token()
    assert calls.read_text().count("call") == 1  # reused: valid for an hour

    short = Site(
        name="B", tes_url="http://127.0.0.1:9", work_url="file:///w", token_command=command
    )
    token_file.write_text(issuer.token("alice", exp_in=20))  # expires within the margin
    short.token()
    short.token()
    assert calls.read_text().count("call") == 3  # fetched again each time


def test_verify__unreadable_jwks_refuses_every_token(issuer, tmp_path):
    settings = passport.JwtSettings.from_mapping(
        {"jwks": str(tmp_path / "missing.json"), "issuer": ISSUER, "audience": AUDIENCE}
    )
    with pytest.raises(AuthError, match="cannot load the JWKS"):
        passport.PassportVerifier(settings).verify(issuer.token("alice"))
    (tmp_path / "bad.json").write_text('{"keys": [{"kty": "nope"}]}')
    settings = passport.JwtSettings.from_mapping(
        {"jwks": str(tmp_path / "bad.json"), "issuer": ISSUER, "audience": AUDIENCE}
    )
    with pytest.raises(AuthError, match="cannot load the JWKS"):
        passport.PassportVerifier(settings).verify(issuer.token("alice"))
