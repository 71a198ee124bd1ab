"""provider_from_config and the login/whoami/logout API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity import LocalProvider
from jupyter_gov.identity.factory import login, logout, provider_from_config, whoami
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from jupyter_gov.identity.msal_provider import MsalProvider, credential_from_env

REFUSED = "Impersonation with --user is only allowed with the local identity provider."
MSAL = {"provider": "msal", "oidc_authority": "https://issuer.example/tenant1", "client_id": "app"}


def test_local_provider_allows_impersonation() -> None:
    config = {
        "provider": "local",
        "users": {"bob": {"groups": ["admins"]}},
        "default_groups": ["analysts"],
    }
    provider = provider_from_config(config, user="bob")
    assert isinstance(provider, LocalProvider)
    identity = provider.current()
    assert (identity.subject, identity.groups, identity.verified) == ("bob", ("admins",), False)
    assert login(provider) == identity
    assert whoami(provider)["subject"] == "bob"
    assert logout(provider) is False


@pytest.mark.parametrize("config", [{"provider": "jupyterhub"}, MSAL])
def test_impersonation_is_refused_elsewhere(config: dict[str, Any]) -> None:
    with pytest.raises(IdentityError) as error:
        provider_from_config(config, user="bob")
    assert str(error.value) == REFUSED


def test_jupyterhub_from_config() -> None:
    provider = provider_from_config({"provider": "jupyterhub", "cache_ttl": 5}, env={})
    assert isinstance(provider, JupyterHubProvider) and provider.cache_ttl == 5


def test_msal_from_config(tmp_path: Path) -> None:
    config = {
        **MSAL,
        "client_id": None,
        "groups_claim": "grp",
        "attributes": {"r": "region"},
        "scope": "api://jupyter-gov/query",
        "token_cache": str(tmp_path / "c.bin"),
    }
    provider = provider_from_config(config, env={"JUPYTER_GOV_CLIENT_ID": "from-env"})
    assert isinstance(provider, MsalProvider)
    assert provider.client_id == "from-env" and provider.group_claims == ("grp", "roles")
    assert provider.audience == "api://jupyter-gov" and provider.mode == "user"
    assert "from-env" in repr(provider)


def test_msal_service_mode_needs_a_credential(tmp_path: Path) -> None:
    config = {**MSAL, "mode": "service", "token_cache": str(tmp_path / "c.bin")}
    with pytest.raises(IdentityError, match="JUPYTER_GOV_CLIENT_SECRET"):
        provider_from_config(config, env={})
    provider = provider_from_config(config, env={"JUPYTER_GOV_CLIENT_SECRET": "s"})
    assert isinstance(provider, MsalProvider) and provider.mode == "service"
    assert "'s'" not in repr(provider)


def test_msal_needs_a_client_id(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="needs a client_id"):
        provider_from_config({**MSAL, "client_id": None}, env={})


def test_unknown_provider() -> None:
    with pytest.raises(IdentityError, match="Unknown identity provider 'ldap'"):
        provider_from_config({"provider": "ldap"})


def test_credential_from_env(tmp_path: Path) -> None:
    assert credential_from_env({}) is None
    assert credential_from_env({"JUPYTER_GOV_CLIENT_SECRET": "s"}) == "s"
    assert credential_from_env({"JUPYTER_GOV_CLIENT_CERT": "/x/app.pfx"}) == {
        "private_key_pfx_path": "/x/app.pfx",
        "passphrase": None,
    }
    bad = tmp_path / "only-key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
    with pytest.raises(IdentityError, match="must hold a private key and a certificate"):
        credential_from_env({"JUPYTER_GOV_CLIENT_CERT": str(bad)})
