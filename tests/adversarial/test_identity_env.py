"""The kernel's environment does not decide who the user is.

End to end through the engine: code in a notebook (or whoever starts the kernel) sets
``JUPYTERHUB_USER``, proxy variables and ``REQUESTS_CA_BUNDLE``; the identity, its roles and
so its masks stay those of the Hub token's owner and of the issuer the policy names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from identity.conftest import oidc_server  # noqa: F401  (the fixture)

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.oidc import TokenValidator
from jupyter_gov.policy import Policy
from tests.hub_server import RealHub, hub_stand_in

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_policy() -> Policy:
    data = json.loads(json.dumps(Policy.load().data))
    data["identity"] = {"provider": "jupyterhub", "cache_ttl": 0}
    data["roles"]["admin"]["groups"] = ["admins"]
    return Policy(data)


@pytest.fixture
def lying_hub() -> Iterator[str]:
    """A proxy (or fake Hub) that says every token belongs to root, a Hub admin."""

    answer = {"kind": "user", "name": "root", "admin": True, "groups": ["admins"]}
    with hub_stand_in(lambda _: (200, json.dumps(answer).encode())) as url:
        yield url


def hub_session(hub: RealHub, demo_connector: Any, monkeypatch: pytest.MonkeyPatch, **env: str):
    monkeypatch.setenv("JUPYTERHUB_API_URL", hub.api_url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.issue_token("alice"))  # her server's token
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = GovernedSession(hub_policy())
    session.use_connector("demo", demo_connector)
    return session


def test_jupyterhub_user_root_in_the_kernel_env_stays_alice_and_masked(
    jupyterhub_server: RealHub,
    demo_connector: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = hub_session(jupyterhub_server, demo_connector, monkeypatch, JUPYTERHUB_USER="root")
    result = session.sql("SELECT email FROM customers LIMIT 1")
    assert result.identity.subject == "alice" and result.masked_columns == {"email": "email"}
    (decision,) = session.audit.events(kinds=["decision"])
    assert decision["subject"] == "alice" and "admin" not in decision["roles"]


def test_proxy_in_the_kernel_env_cannot_answer_for_the_hub(
    jupyterhub_server: RealHub,
    lying_hub: str,
    demo_connector: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    session = hub_session(
        jupyterhub_server, demo_connector, monkeypatch, **dict.fromkeys(PROXY_VARS, lying_hub)
    )
    result = session.sql("SELECT email FROM customers LIMIT 1")
    assert result.identity.subject == "alice" and result.masked_columns == {"email": "email"}


def test_requests_ca_bundle_in_the_kernel_env_is_not_trusted_for_the_issuer(
    oidc_server: Any,  # noqa: F811
) -> None:
    """The session fixture leaves the test CA in REQUESTS_CA_BUNDLE, as an attacker adding
    their CA would: without the policy's ca_bundle, the issuer's certificate is refused."""
    validator = TokenValidator(oidc_server.authority("tenant1"))
    with pytest.raises(IdentityError, match="SSLError"):
        validator.metadata()
    pinned = TokenValidator(oidc_server.authority("tenant1"), ca_bundle=oidc_server.ca_file)
    assert pinned.metadata()["issuer"] == oidc_server.issuer


def test_user_env_var_does_not_name_the_local_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """USER=alice (an admin in the demo policy) does not make the OS user alice."""
    import os
    import pwd

    from jupyter_gov.identity.local import LocalProvider

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "alice")
    real = pwd.getpwuid(os.geteuid()).pw_name
    assert LocalProvider().current().subject == real != "alice"
