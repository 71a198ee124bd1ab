"""TokenValidator against real tokens from the TLS OIDC provider, and the claims mapping."""

from __future__ import annotations

import time
from typing import Any

import jwt
import msal
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.oidc import (
    TokenRejected,
    TokenValidator,
    audience_for_scope,
    identity_from_claims,
)

CLIENT = "jupyter-gov-notebook"
server_marks = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]


def id_token(server: Any, sub: str, *, tenant: str = "tenant1", client: str = CLIENT) -> str:
    app = msal.ConfidentialClientApplication(
        client,
        client_credential="secret",
        oidc_authority=server.authority(tenant),
        token_cache=msal.TokenCache(),
    )
    flow = app.initiate_auth_code_flow([], redirect_uri="http://localhost:8765/cb")
    redirect = server.authorize(flow["auth_uri"], sub)
    from urllib.parse import parse_qs, urlparse

    params = {k: v[0] for k, v in parse_qs(urlparse(redirect).query).items()}
    result = app.acquire_token_by_auth_code_flow(flow, params)
    return str(result["id_token"])


@pytest.fixture
def validator(oidc_server: Any) -> TokenValidator:
    return TokenValidator(oidc_server.authority("tenant1"), ca_bundle=oidc_server.ca_file)


@pytest.mark.usefixtures("oidc_server")
class TestAgainstProvider:
    pytestmark = server_marks

    def test_valid_token_and_cached_keys(self, oidc_server: Any, validator: Any) -> None:
        token = id_token(oidc_server, "alice")
        before = oidc_server.count("tenant1", "/jwks")
        claims = validator.validate(token, audience=CLIENT)
        assert claims["sub"] == "alice" and claims["groups"] == ["analysts"]
        validator.validate(token, audience=CLIENT)
        assert oidc_server.count("tenant1", "/jwks") == before + 1  # fetched once, cached

    def test_token_of_another_issuer_key_is_rejected(
        self, oidc_server: Any, validator: Any
    ) -> None:
        foreign = id_token(oidc_server, "alice", tenant="tenant2")  # same iss, other key
        with pytest.raises(TokenRejected, match="signature does not verify"):
            validator.validate(foreign, audience=CLIENT)

    def test_forged_token_with_a_published_kid_is_rejected(
        self, oidc_server: Any, validator: Any
    ) -> None:
        genuine = jwt.decode(id_token(oidc_server, "bob"), options={"verify_signature": False})
        kid = validator._key_set().keys[0].key_id
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {**genuine, "groups": ["admins"]}, other_key, algorithm="RS256", headers={"kid": kid}
        )
        with pytest.raises(TokenRejected, match="signature does not verify"):
            validator.validate(forged, audience=CLIENT)

    def test_unknown_kid_refetches_keys_at_most_once(
        self, oidc_server: Any, validator: Any
    ) -> None:
        genuine = jwt.decode(id_token(oidc_server, "bob"), options={"verify_signature": False})
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(genuine, other_key, algorithm="RS256", headers={"kid": "rolled"})
        validator.min_refetch_interval = 0.0
        before = oidc_server.count("tenant1", "/jwks")
        with pytest.raises(TokenRejected, match="does not publish"):
            validator.validate(forged, audience=CLIENT)
        assert oidc_server.count("tenant1", "/jwks") == before + 2  # first fetch + one retry

    def test_token_for_another_audience_is_rejected(self, oidc_server: Any, validator: Any) -> None:
        token = id_token(oidc_server, "alice", client="some-other-app")
        with pytest.raises(TokenRejected, match="meant for another application"):
            validator.validate(token, audience=CLIENT)

    def test_expiry_uses_the_clock_with_leeway(self, oidc_server: Any) -> None:
        token = id_token(oidc_server, "alice")
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        offset = {"value": exp - time.time() + 59}
        validator = TokenValidator(
            oidc_server.authority("tenant1"),
            leeway=60,
            clock=lambda: time.time() + offset["value"],
            ca_bundle=oidc_server.ca_file,
        )
        validator.validate(token, audience=CLIENT)  # expired 59 s ago: within the leeway
        offset["value"] += 2
        with pytest.raises(TokenRejected, match="has expired"):
            validator.validate(token, audience=CLIENT)
        assert validator.validate(token, audience=CLIENT, verify_expiry=False)["sub"] == "alice"

    def test_wrong_issuer_is_rejected(self, oidc_server: Any) -> None:
        validator = TokenValidator(
            oidc_server.authority("tenant1"),
            issuer="https://issuer.example/tenant1",
            ca_bundle=oidc_server.ca_file,
        )
        with pytest.raises(TokenRejected, match="issued by"):
            validator.validate(id_token(oidc_server, "alice"), audience=CLIENT)

    def test_unsigned_and_symmetric_tokens_are_rejected(
        self, oidc_server: Any, validator: Any
    ) -> None:
        claims = jwt.decode(id_token(oidc_server, "alice"), options={"verify_signature": False})
        unsigned = jwt.encode(claims, None, algorithm="none")
        hmac = jwt.encode(claims, "client-secret-known-to-many-1234", algorithm="HS256")
        for token in (unsigned, hmac):
            with pytest.raises(TokenRejected, match="algorithm"):
                validator.validate(token, audience=CLIENT)
        with pytest.raises(TokenRejected, match="not a JWT"):
            validator.validate("not-a-token", audience=CLIENT)


def test_unreachable_issuer_is_one_sentence() -> None:
    validator = TokenValidator("https://127.0.0.1:9/tenant", timeout=2)
    with pytest.raises(IdentityError, match=r"^Could not fetch .* discovery document"):
        validator.metadata()


def test_entra_tenant_placeholder_in_issuer() -> None:
    validator = TokenValidator(
        "https://login.example/common",
        issuer="https://login.example/{tenantid}/v2.0",
        tenants=["t1", "t2"],
    )
    validator._check_issuer({"iss": "https://login.example/t1/v2.0", "tid": "t1"})
    with pytest.raises(TokenRejected):
        validator._check_issuer({"iss": "https://login.example/t1/v2.0", "tid": "t2"})


def test_claims_mapping_keys_on_stable_ids() -> None:
    claims = {
        "iss": "https://issuer",
        "sub": "pairwise-sub",
        "oid": "object-id",
        "tid": "tenant-id",
        "preferred_username": "alice@example.com",
        "groups": ["g1"],
        "roles": ["r1", "g1"],
        "region": "emea",
        "exp": 2_000_000_000,
    }
    identity = identity_from_claims(
        claims, auth_method="msal-auth-code", attributes={"region": "sales_region"}
    )
    assert (identity.subject, identity.issuer) == ("object-id", "tenant-id")
    assert identity.display_name == "alice@example.com"
    assert identity.groups == ("g1", "r1")
    assert identity.attributes == {"sales_region": "emea"}
    assert identity.expires_at == 2_000_000_000 and identity.verified

    plain = identity_from_claims(
        {"iss": "https://issuer", "sub": "s", "grp": "one"}, auth_method="x", group_claims="grp"
    )
    assert (plain.subject, plain.issuer, plain.groups) == ("s", "https://issuer", ("one",))
    with pytest.raises(TokenRejected, match="names no subject"):
        identity_from_claims(
            {"iss": "https://issuer", "preferred_username": "alice"}, auth_method="x"
        )


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        ("api://jupyter-gov/query", "api://jupyter-gov"),
        ("api://jupyter-gov/.default", "api://jupyter-gov"),
        ("https://data.example.com/api/read", "https://data.example.com/api"),
        ("api://0000-1111", "api://0000-1111"),
    ],
)
def test_audience_for_scope(scope: str, audience: str) -> None:
    assert audience_for_scope(scope) == audience


def test_requests_ca_bundle_in_the_environment_is_not_trusted(oidc_server: Any) -> None:
    """The test CA is in REQUESTS_CA_BUNDLE (the fixture puts it there) but not configured:
    the validator does not trust it, so an extra CA added by notebook code opens nothing."""
    import os

    assert os.environ["REQUESTS_CA_BUNDLE"] == oidc_server.ca_file
    validator = TokenValidator(oidc_server.authority("tenant1"))
    with pytest.raises(IdentityError, match=r"Could not fetch .*SSLError"):
        validator.metadata()


def test_proxy_env_vars_are_not_used_for_the_issuer(
    oidc_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy on a dead port in every proxy variable: discovery still reaches the issuer."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    import requests

    with pytest.raises(requests.exceptions.ProxyError):  # the control: requests obeys them
        requests.get(oidc_server.authority("tenant1") + "/.well-known/openid-configuration")
    validator = TokenValidator(oidc_server.authority("tenant1"), ca_bundle=oidc_server.ca_file)
    assert validator.metadata()["issuer"] == oidc_server.issuer


def test_missing_configured_ca_bundle_is_one_sentence(tmp_path: Any) -> None:
    with pytest.raises(IdentityError, match=r"named by identity\.ca_bundle does not exist"):
        TokenValidator("https://issuer.example/t", ca_bundle=str(tmp_path / "missing.pem"))
