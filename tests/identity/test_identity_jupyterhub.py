"""JupyterHubProvider against a local server speaking the documented Hub REST API."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.jupyterhub import JupyterHubProvider


def hub_env(hub: Any, user: str = "alice", token: str = "good-token") -> dict[str, str]:
    return {
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": token,
    }


def test_user_groups_and_roles(hub_server: Any) -> None:
    identity = JupyterHubProvider(env=hub_env(hub_server)).current()
    assert identity.subject == "alice" and identity.display_name == "alice"
    assert identity.groups == ("analysts", "user")
    assert identity.auth_method == "jupyterhub" and identity.verified
    assert identity.issuer == hub_server.api_url
    assert identity.attributes == {"hub_admin": False}
    assert hub_server.requests == ["/hub/api/users/alice"]

    root = JupyterHubProvider(env=hub_env(hub_server, "root")).current()
    assert root.groups == ("admins", "admin", "user") and root.attributes["hub_admin"]


def test_answers_are_cached_for_the_ttl(hub_server: Any) -> None:
    now = {"t": 1000.0}
    provider = JupyterHubProvider(env=hub_env(hub_server), cache_ttl=60, clock=lambda: now["t"])
    first = provider.current()
    now["t"] += 59
    assert provider.current() is first
    assert len(hub_server.requests) == 1
    now["t"] += 2
    assert provider.current() == first
    assert len(hub_server.requests) == 2


@pytest.mark.parametrize("token", ["weak-token", "wrong-token"])
def test_forbidden_is_an_identity_error(hub_server: Any, token: str) -> None:
    provider = JupyterHubProvider(env=hub_env(hub_server, token=token))
    with pytest.raises(IdentityError, match="HTTP 403") as error:
        provider.current()
    assert token not in str(error.value)


def test_unknown_user(hub_server: Any) -> None:
    with pytest.raises(IdentityError, match="does not know the user 'mallory'"):
        JupyterHubProvider(env=hub_env(hub_server, "mallory")).current()


def test_outside_a_hub() -> None:
    with pytest.raises(IdentityError, match=r"^JUPYTERHUB_USER is not set"):
        JupyterHubProvider(env={}).current()


def test_unreachable_hub() -> None:
    env = {
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_API_TOKEN": "good-token",
    }
    with pytest.raises(IdentityError, match="Could not reach the JupyterHub API"):
        JupyterHubProvider(env=env, timeout=2).current()
