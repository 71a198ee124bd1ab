"""MsalProvider against a real OIDC provider over TLS: every flow, refresh, expiry, sign-out."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.factory import login, logout, provider_from_config, whoami
from jupyter_gov.identity.msal_provider import EXPIRED, NOT_SIGNED_IN, MsalProvider

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]

CLIENT = "jupyter-gov-notebook"
SECRET = "any-secret"  # the mock accepts any secret for unregistered clients


def user_provider(server: Any, cache: Path, clock: Any = None, **kwargs: Any) -> MsalProvider:
    options: dict[str, Any] = {
        "oidc_authority": server.authority("tenant1"),
        "ca_bundle": server.ca_file,
        "client_credential": SECRET,
        "token_cache": cache,
        "attributes": {"region": "region"},
    }
    options.update(kwargs)
    if clock is not None:
        options["clock"] = clock
    return MsalProvider(options.pop("client_id", CLIENT), **options)


def sign_in(server: Any, provider: MsalProvider, sub: str) -> Any:
    flow = provider.start_auth_code_flow("http://localhost:8765/callback")
    return provider.complete_auth_code_flow(flow, server.authorize(flow["auth_uri"], sub))


def test_auth_code_sign_in_maps_claims(oidc_server: Any, tmp_path: Path) -> None:
    provider = user_provider(oidc_server, tmp_path / "cache.bin")
    identity = sign_in(oidc_server, provider, "alice")
    assert identity.subject == "alice"
    assert identity.issuer == oidc_server.issuer
    assert identity.auth_method == "msal-auth-code"
    assert identity.verified is True and identity.kind == "user"
    assert identity.groups == ("analysts",)
    assert identity.attributes == {"region": "emea"}
    assert identity.display_name == "Alice Analyst"
    assert provider.current() == identity


def test_admin_groups_and_stable_ids(oidc_server: Any, tmp_path: Path) -> None:
    bob = sign_in(oidc_server, user_provider(oidc_server, tmp_path / "b.bin"), "bob")
    assert "admins" in bob.groups and "analysts" not in bob.groups
    # carol's preferred_username is "alice": authorization keys on oid/tid, never on it
    carol = sign_in(oidc_server, user_provider(oidc_server, tmp_path / "c.bin"), "carol")
    assert (carol.subject, carol.issuer) == ("oid-carol", "tenant-guid-1")
    assert carol.groups == ("auditor",)


def test_silent_sign_in_from_cache_in_fresh_instance(oidc_server: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "tokens.bin"
    first = sign_in(oidc_server, user_provider(oidc_server, cache), "alice")
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.parent).st_mode) == 0o700
    token_calls = oidc_server.count("tenant1", "/oauth2/token")

    fresh = user_provider(oidc_server, cache)
    identity = fresh.current()
    assert identity == first
    assert identity.auth_method == "msal-auth-code"  # the method of the original sign-in
    assert oidc_server.count("tenant1", "/oauth2/token") == token_calls  # no network sign-in


def test_expired_token_is_refreshed_silently(oidc_server: Any, tmp_path: Path, clock: Any) -> None:
    cache = tmp_path / "tokens.bin"
    first = sign_in(oidc_server, user_provider(oidc_server, cache, clock), "alice")
    assert first.expires_at is not None
    token_calls = oidc_server.count("tenant1", "/oauth2/token")

    clock.offset = first.expires_at - clock() + 30  # 30 s past expiry, within the leeway
    fresh = user_provider(oidc_server, cache, clock)
    identity = fresh.current()
    assert oidc_server.count("tenant1", "/oauth2/token") == token_calls + 1  # refresh grant
    assert identity.subject == "alice" and identity.groups == ("analysts",)
    assert identity.expires_at is not None and identity.expires_at > clock()
    assert identity.auth_method == "msal-auth-code"
    assert fresh.current() is identity  # fresh again: no further refresh
    assert oidc_server.count("tenant1", "/oauth2/token") == token_calls + 1


def test_refresh_failure_says_sign_in_again(oidc_server: Any, tmp_path: Path, clock: Any) -> None:
    provider = user_provider(oidc_server, tmp_path / "t.bin", clock)
    first = sign_in(oidc_server, provider, "bob")
    oidc_server.revoke("tenant1", "bob")
    clock.offset = first.expires_at - clock() + 30
    with pytest.raises(IdentityError) as error:
        provider.current()
    assert str(error.value) == EXPIRED


def test_sign_out_clears_the_cache(oidc_server: Any, tmp_path: Path) -> None:
    cache = tmp_path / "tokens.bin"
    provider = user_provider(oidc_server, cache)
    sign_in(oidc_server, provider, "alice")
    if provider.cache_encrypted:  # libsecret available: the file holds no readable JSON
        pytest.skip("the token cache is encrypted on this machine")
    assert logout(provider) is True
    for instance in (provider, user_provider(oidc_server, cache)):
        with pytest.raises(IdentityError) as error:
            instance.current()
        assert str(error.value) == NOT_SIGNED_IN
    assert "alice" not in cache.read_text()
    assert logout(provider) is False


def test_new_sign_in_replaces_the_previous_account(oidc_server: Any, tmp_path: Path) -> None:
    provider = user_provider(oidc_server, tmp_path / "tokens.bin")
    sign_in(oidc_server, provider, "alice")
    sign_in(oidc_server, provider, "bob")
    assert user_provider(oidc_server, tmp_path / "tokens.bin").current().subject == "bob"


def test_tampered_redirect_is_refused(oidc_server: Any, tmp_path: Path) -> None:
    provider = user_provider(oidc_server, tmp_path / "t.bin")
    flow = provider.start_auth_code_flow("http://localhost:8765/callback")
    redirect = oidc_server.authorize(flow["auth_uri"], "alice")
    with pytest.raises(IdentityError, match="does not belong to this sign-in"):
        provider.complete_auth_code_flow(flow, redirect.replace("state=", "state=x"))


def test_browser_flow_through_loopback(oidc_server: Any, tmp_path: Path) -> None:
    provider = user_provider(oidc_server, tmp_path / "t.bin")

    def browser(url: str) -> None:  # what a browser does: sign in, then follow the redirect
        landing = oidc_server.authorize(url, "alice")
        assert landing.startswith("http://localhost:")
        assert requests.get(landing, timeout=10).status_code == 200

    identity = login(provider, flow="browser", open_browser=browser, timeout=30)
    assert identity.subject == "alice" and identity.auth_method == "msal-auth-code"


def test_device_flow_polls_without_blocking(oidc_server: Any, tmp_path: Path, clock: Any) -> None:
    cache = tmp_path / "tokens.bin"
    provider = user_provider(oidc_server, cache, clock, client_credential=None)  # public
    challenge = login(provider, flow="device")
    assert challenge.user_code and challenge.user_code in challenge.message
    assert challenge.url.endswith("/tenant1/device")
    assert "device_code" not in repr(challenge)

    calls = oidc_server.count("tenant1", "/oauth2/token")
    assert challenge.poll() is None  # pending
    assert challenge.poll() is None  # too soon: no request at all
    assert oidc_server.count("tenant1", "/oauth2/token") == calls + 1

    oidc_server.approve_device("tenant1", challenge.user_code, "bob")
    clock.offset += 5  # the issuer's polling interval
    identity = challenge.poll()
    assert identity is not None
    assert identity.subject == "bob" and identity.auth_method == "msal-device-code"
    assert "admins" in identity.groups

    # a fresh instance keeps the method of the original sign-in, also across a refresh
    assert user_provider(oidc_server, cache, clock, client_credential=None).current() == identity
    clock.offset = identity.expires_at - time.time() + 30
    refreshed = user_provider(oidc_server, cache, clock, client_credential=None).current()
    assert refreshed.subject == "bob" and refreshed.auth_method == "msal-device-code"


def test_device_flow_needs_a_public_client(oidc_server: Any, tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="public client"):
        login(user_provider(oidc_server, tmp_path / "t.bin"), flow="device")


def test_client_secret_gives_a_service_identity(oidc_server: Any) -> None:
    provider = MsalProvider(
        "pipeline",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="pipeline-secret",
        mode="service",
        scope="api://jupyter-gov/query",
    )
    identity = login(provider)
    assert identity.kind == "service"
    assert identity.auth_method == "msal-client-credentials"
    assert identity.subject == "sp-pipeline" and identity.display_name == "pipeline"
    assert identity.groups == ("pipeline.run",)
    assert whoami(provider)["identity_kind"] == "service"


def test_client_certificate_from_environment(oidc_server: Any, tmp_path: Path) -> None:
    pem = tmp_path / "pipeline.pem"
    pem.write_text(oidc_server.client_cert_pem)
    env = {
        "JUPYTER_GOV_CLIENT_ID": "pipeline-cert",
        "JUPYTER_GOV_CLIENT_CERT": str(pem),
        "JUPYTER_GOV_AUTH_MODE": "service",
    }
    config = {
        "provider": "msal",
        "oidc_authority": oidc_server.authority("tenant1"),
        "ca_bundle": oidc_server.ca_file,
        "scope": "api://jupyter-gov/.default",
    }
    identity = provider_from_config(config, env=env).current()
    assert (identity.kind, identity.subject) == ("service", "sp-pipeline-cert")


def test_wrong_service_secret_is_refused(oidc_server: Any) -> None:
    provider = MsalProvider(
        "pipeline",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="wrong",
        mode="service",
        scope="api://jupyter-gov/.default",
    )
    with pytest.raises(IdentityError, match="Sign-in failed: invalid client"):
        provider.current()


def test_service_token_for_another_api_is_rejected(oidc_server: Any) -> None:
    provider = MsalProvider(
        "pipeline",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="pipeline-secret",
        mode="service",
        scope="api://other-api/.default",
        audience="api://jupyter-gov",
    )
    with pytest.raises(IdentityError, match="meant for another application"):
        provider.current()


def test_no_token_in_repr_or_errors(oidc_server: Any, tmp_path: Path) -> None:
    cache = tmp_path / "t.bin"
    provider = user_provider(oidc_server, cache)
    identity = sign_in(oidc_server, provider, "alice")
    if provider.cache_encrypted:
        pytest.skip("the token cache is encrypted on this machine")
    secrets_in_cache = [
        v["secret"]
        for kind in ("AccessToken", "RefreshToken", "IdToken")
        for v in __import__("json").loads(cache.read_text())[kind].values()
    ]
    shown = repr(provider) + str(provider) + repr(identity) + str(whoami(provider))
    assert secrets_in_cache and not any(secret in shown for secret in secrets_in_cache)


def test_bad_authority_is_one_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="https URL with a path"):
        MsalProvider(CLIENT, oidc_authority="https://issuer.example", token_cache=tmp_path / "c")
    with pytest.raises(IdentityError, match="exactly one of"):
        MsalProvider(CLIENT, token_cache=tmp_path / "c")


def test_unreachable_issuer_is_one_sentence(tmp_path: Path) -> None:
    provider = MsalProvider(
        CLIENT, oidc_authority="https://127.0.0.1:9/t", token_cache=tmp_path / "c"
    )
    with pytest.raises(IdentityError, match=r"^Could not reach the identity provider at "):
        provider.current()


def test_service_sign_in_ignores_proxy_env_vars(
    oidc_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msal's own requests (discovery, token) go through the isolated session too."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    provider = MsalProvider(
        "pipeline",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="pipeline-secret",
        mode="service",
        scope="api://jupyter-gov/query",
    )
    assert provider.current().subject == "sp-pipeline"


def test_token_cache_and_its_directories_are_private_under_umask_000(tmp_path: Path) -> None:
    import subprocess
    import sys

    cache = tmp_path / "a" / "b" / "tokens.bin"
    code = (
        "import os, sys; os.umask(0); "
        "from jupyter_gov.identity.msal_provider import open_token_cache; "
        'c = open_token_cache(sys.argv[1]); sys.exit(3 if getattr(c, "is_encrypted", False) else 0)'
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", code, str(cache)], env=env, check=False)
    if done.returncode == 3:
        pytest.skip("the token cache is encrypted on this machine")
    assert done.returncode == 0
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
