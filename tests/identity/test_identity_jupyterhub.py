"""JupyterHubProvider against a real JupyterHub (``tests/hub_server.py``).

The identity is the owner of the server's API token (``GET /hub/api/user``), with the groups
and roles the Hub grants; neither ``JUPYTERHUB_USER`` nor proxy or CA settings in the
kernel's environment can change it. A token the Hub does not vouch for (made up, revoked,
a service's) is refused with one sentence, and a Hub that cannot be reached is a refusal.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.factory import provider_from_config
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from tests.hub_server import RealHub, hub_stand_in

pytestmark = pytest.mark.server


def hub_env(hub: RealHub, token: str, **extra: str) -> dict[str, str]:
    return {"JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": token, **extra}


@pytest.fixture
def alice_token(jupyterhub_server: RealHub) -> str:
    """A fresh API token of alice, as the Hub gives her single-user server."""
    return jupyterhub_server.issue_token("alice")


def test_a_user_token_is_its_owner_with_the_hubs_groups_and_roles(
    jupyterhub_server: RealHub,
    alice_token: str,
) -> None:
    identity = JupyterHubProvider(env=hub_env(jupyterhub_server, alice_token)).current()
    assert identity.subject == "alice" and identity.display_name == "alice"
    assert identity.groups == ("analysts", "user")
    assert identity.auth_method == "jupyterhub" and identity.verified
    assert identity.issuer == jupyterhub_server.api_url
    assert identity.attributes == {"hub_admin": False}


def test_a_hub_admin_token_carries_the_admin_role_and_flag(
    jupyterhub_server: RealHub,
) -> None:
    token = jupyterhub_server.issue_token("root")
    root = JupyterHubProvider(env=hub_env(jupyterhub_server, token)).current()
    assert root.subject == "root"
    assert set(root.groups) == {"admins", "admin", "user"} and root.attributes["hub_admin"]


def test_hub_groups_map_to_the_demo_policys_roles(
    jupyterhub_server: RealHub,
    alice_token: str,
) -> None:
    """The Hub group ``analysts`` is the demo policy's ``analyst`` role; the Hub's own role
    ``user`` grants nothing there."""
    from importlib.resources import files

    from jupyter_gov.policy.model import Policy

    policy = Policy.from_text(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    identity = JupyterHubProvider(env=hub_env(jupyterhub_server, alice_token)).current()
    assert policy.roles_for(identity) == ("analyst",)


def test_jupyterhub_user_env_cannot_choose_the_identity(
    jupyterhub_server: RealHub,
    alice_token: str,
) -> None:
    """alice's token with JUPYTERHUB_USER=root is still alice, with alice's groups."""
    env = hub_env(jupyterhub_server, alice_token, JUPYTERHUB_USER="root")
    identity = JupyterHubProvider(env=env).current()
    assert identity.subject == "alice" and "admins" not in identity.groups
    assert identity.attributes == {"hub_admin": False}


def test_token_owner_is_the_identity_even_with_jupyterhub_user_alice(
    jupyterhub_server: RealHub,
) -> None:
    token = jupyterhub_server.issue_token("root")
    env = hub_env(jupyterhub_server, token, JUPYTERHUB_USER="alice")
    assert JupyterHubProvider(env=env).current().subject == "root"


def test_a_made_up_token_is_refused_in_one_sentence_without_the_token(
    jupyterhub_server: RealHub,
) -> None:
    token = "made-up-" + "0" * 24
    provider = JupyterHubProvider(env=hub_env(jupyterhub_server, token))
    with pytest.raises(IdentityError, match=r"refused to say who owns .*\(HTTP 403\)") as error:
        provider.current()
    assert token not in str(error.value) and str(error.value).count(". ") == 0


def test_a_revoked_token_is_refused(jupyterhub_server: RealHub) -> None:
    token = jupyterhub_server.issue_token("alice")
    assert JupyterHubProvider(env=hub_env(jupyterhub_server, token)).current().subject == "alice"
    jupyterhub_server.revoke_token(token)
    with pytest.raises(IdentityError, match="refused to say who owns this server's token"):
        JupyterHubProvider(env=hub_env(jupyterhub_server, token)).current()


def test_a_revoked_token_is_honoured_only_until_the_cache_ttl_ends(
    jupyterhub_server: RealHub,
) -> None:
    """The answer is kept for ``cache_ttl``; the first ask after it hears of the revocation."""
    token = jupyterhub_server.issue_token("alice")
    now = {"t": 1000.0}
    provider = JupyterHubProvider(
        env=hub_env(jupyterhub_server, token), cache_ttl=60, clock=lambda: now["t"]
    )
    first = provider.current()
    jupyterhub_server.revoke_token(token)
    now["t"] += 59
    assert provider.current() is first
    now["t"] += 2
    with pytest.raises(IdentityError, match="refused to say who owns"):
        provider.current()


def test_service_token_is_not_a_user(jupyterhub_server: RealHub) -> None:
    env = hub_env(jupyterhub_server, jupyterhub_server.service_token)
    with pytest.raises(IdentityError, match="belongs to a Hub service, not a user"):
        JupyterHubProvider(env=env).current()


def test_outside_a_hub() -> None:
    with pytest.raises(IdentityError, match=r"^JUPYTERHUB_API_URL is not set"):
        JupyterHubProvider(env={}).current()


def test_unreachable_hub_fails_closed() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"JUPYTERHUB_API_URL": f"http://127.0.0.1:{port}/hub/api", "JUPYTERHUB_API_TOKEN": "t"}
    with pytest.raises(IdentityError, match=r"^Could not reach the JupyterHub API at .*\.$"):
        JupyterHubProvider(env=env, timeout=2).current()


def test_policy_can_pin_the_hub_api_url(
    jupyterhub_server: RealHub,
    alice_token: str,
) -> None:
    """A JUPYTERHUB_API_URL pointing at a fake Hub is ignored when the policy pins it."""
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/fake", "JUPYTERHUB_API_TOKEN": alice_token}
    config = {"provider": "jupyterhub", "api_url": jupyterhub_server.api_url}
    assert provider_from_config(config, env=env).current().subject == "alice"


@pytest.fixture
def lying_proxy() -> Iterator[dict[str, Any]]:
    """An HTTP proxy that answers every request as if it were the Hub, for root."""
    seen: list[str] = []

    def reply(path: str) -> tuple[int, bytes]:
        seen.append(path)
        return 200, b'{"kind": "user", "name": "root", "admin": true, "groups": ["admins"]}'

    with hub_stand_in(reply) as url:
        yield {"url": url, "seen": seen}


def test_proxy_env_vars_cannot_answer_for_the_hub(
    jupyterhub_server: RealHub,
    alice_token: str,
    lying_proxy: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, lying_proxy["url"])
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    import requests

    # the control: an ordinary requests call in this environment does go to the proxy
    assert requests.get(f"{jupyterhub_server.api_url}/user", timeout=5).json()["name"] == "root"
    assert lying_proxy["seen"]
    lying_proxy["seen"].clear()
    identity = JupyterHubProvider(env=hub_env(jupyterhub_server, alice_token)).current()
    assert identity.subject == "alice" and lying_proxy["seen"] == []
