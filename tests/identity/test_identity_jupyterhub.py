"""JupyterHubProvider against a local server speaking the documented Hub REST API.

The identity is the owner of the server's API token (``GET /hub/api/user``); neither
``JUPYTERHUB_USER`` nor proxy or CA settings in the kernel's environment can change it.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.factory import provider_from_config
from jupyter_gov.identity.jupyterhub import JupyterHubProvider


def hub_env(hub: Any, token: str = "good-token", **extra: str) -> dict[str, str]:
    return {"JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": token, **extra}


def test_user_groups_and_roles(hub_server: Any) -> None:
    identity = JupyterHubProvider(env=hub_env(hub_server)).current()
    assert identity.subject == "alice" and identity.display_name == "alice"
    assert identity.groups == ("analysts", "user")
    assert identity.auth_method == "jupyterhub" and identity.verified
    assert identity.issuer == hub_server.api_url
    assert identity.attributes == {"hub_admin": False}
    assert hub_server.requests == ["/hub/api/user"]

    root = JupyterHubProvider(env=hub_env(hub_server, "root-token")).current()
    assert root.groups == ("admins", "admin", "user") and root.attributes["hub_admin"]


def test_jupyterhub_user_env_cannot_choose_the_identity(hub_server: Any) -> None:
    """alice's token with JUPYTERHUB_USER=root is still alice, with alice's groups."""
    identity = JupyterHubProvider(env=hub_env(hub_server, JUPYTERHUB_USER="root")).current()
    assert identity.subject == "alice" and "admins" not in identity.groups
    assert identity.attributes == {"hub_admin": False}
    assert not any("/users/" in path for path in hub_server.requests)


def test_token_owner_is_the_identity_even_with_jupyterhub_user_alice(hub_server: Any) -> None:
    env = hub_env(hub_server, "root-token", JUPYTERHUB_USER="alice")
    assert JupyterHubProvider(env=env).current().subject == "root"


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


def test_service_token_is_not_a_user(hub_server: Any) -> None:
    with pytest.raises(IdentityError, match="belongs to a Hub service, not a user"):
        JupyterHubProvider(env=hub_env(hub_server, "service-token")).current()


def test_outside_a_hub() -> None:
    with pytest.raises(IdentityError, match=r"^JUPYTERHUB_API_URL is not set"):
        JupyterHubProvider(env={}).current()


def test_unreachable_hub() -> None:
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_API_TOKEN": "t"}
    with pytest.raises(IdentityError, match="Could not reach the JupyterHub API"):
        JupyterHubProvider(env=env, timeout=2).current()


def test_policy_can_pin_the_hub_api_url(hub_server: Any) -> None:
    """A JUPYTERHUB_API_URL pointing at a fake Hub is ignored when the policy pins it."""
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/fake", "JUPYTERHUB_API_TOKEN": "good-token"}
    config = {"provider": "jupyterhub", "api_url": hub_server.api_url}
    assert provider_from_config(config, env=env).current().subject == "alice"


@pytest.fixture
def lying_proxy() -> Iterator[dict[str, Any]]:
    """An HTTP proxy that answers every request as if it were the Hub, for root."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"kind": "user", "name": "root", "admin": true, "groups": ["admins"]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_proxy_env_vars_cannot_answer_for_the_hub(
    hub_server: Any, lying_proxy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, lying_proxy["url"])
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    import requests

    # the control: an ordinary requests call in this environment does go to the proxy
    assert requests.get(f"{hub_server.api_url}/user", timeout=5).json()["name"] == "root"
    assert lying_proxy["seen"]
    lying_proxy["seen"].clear()
    identity = JupyterHubProvider(env=hub_env(hub_server)).current()
    assert identity.subject == "alice" and lying_proxy["seen"] == []
