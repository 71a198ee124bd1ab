"""Verified identities end to end: sign in against the real OIDC provider, query, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from jupyter_gov.identity.msal_provider import MsalProvider
from jupyter_gov.policy import Policy
from jupyter_gov.signin import DeviceLoginWidget, login_in_notebook

from .test_identity_msal import sign_in, user_provider

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]


@pytest.fixture
def msal_policy(oidc_server: Any) -> Policy:
    data = json.loads(json.dumps(Policy.load().data))
    data["identity"] = {
        "provider": "msal",
        "oidc_authority": oidc_server.authority("tenant1"),
        "client_id": "jupyter-gov-notebook",
    }
    data["roles"]["pipeline"] = {"groups": ["pipeline.run"], "access": "read_only"}
    return Policy(data)


def session_with(policy: Policy, provider: Any, demo_connector: Any) -> GovernedSession:
    session = GovernedSession(policy, provider)
    session.use_connector("demo", demo_connector)
    return session


def test_oidc_analyst_group_sees_masked_data(oidc_server, msal_policy, demo_connector, tmp_path):
    provider = user_provider(oidc_server, tmp_path / "c.bin")
    sign_in(oidc_server, provider, "alice")  # the provider gives alice groups: [analysts]
    result = session_with(msal_policy, provider, demo_connector).sql(
        "SELECT email FROM customers LIMIT 3"
    )
    assert result.masked_columns == {"email": "email"}


def test_oidc_admin_group_sees_raw_data(oidc_server, msal_policy, demo_connector, tmp_path):
    provider = user_provider(oidc_server, tmp_path / "c.bin")
    sign_in(oidc_server, provider, "bob")  # groups: [admins]
    result = session_with(msal_policy, provider, demo_connector).sql(
        "SELECT email FROM customers LIMIT 3"
    )
    assert result.masked_columns == {}
    assert all("@" in v and not v.startswith("***") for (v,) in result.fetchall())


def test_audit_records_a_verified_identity_and_no_token(
    oidc_server, msal_policy, demo_connector, tmp_path
):
    provider = user_provider(oidc_server, tmp_path / "c.bin")
    identity = sign_in(oidc_server, provider, "alice")
    session = session_with(msal_policy, provider, demo_connector)
    session.sql("SELECT count(*) FROM orders")
    (decision,) = session.audit.events(kinds=["decision"])
    assert decision["verified"] is True
    assert decision["auth_method"] == "msal-auth-code"
    assert decision["issuer"] == identity.issuer and decision["subject"] == "alice"
    assert decision["token_expires_at"] == pytest.approx(identity.expires_at)
    raw_bytes = Path(session.audit.path).read_bytes()
    assert b"eyJ" not in raw_bytes  # no JWT (header, ID or access token) anywhere in the file


def test_expired_identity_that_cannot_refresh_runs_nothing_and_is_audited(
    oidc_server, msal_policy, demo_connector, tmp_path, clock
):
    provider = user_provider(oidc_server, tmp_path / "c.bin", clock)
    first = sign_in(oidc_server, provider, "bob")
    oidc_server.revoke("tenant1", "bob")
    clock.offset = first.expires_at - clock() + 30
    session = session_with(msal_policy, provider, demo_connector)
    with pytest.raises(IdentityError, match="sign in again"):
        session.sql("SELECT 1")
    (event,) = session.audit.events(kinds=["decision"])
    assert event["decision"] == "deny" and event["rules"] == ["identity"]
    assert session.audit.events(kinds=["result"]) == []


def test_pipeline_service_identity_queries_and_is_attributed(
    oidc_server, msal_policy, demo_connector
):
    provider = MsalProvider(
        "pipeline",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="pipeline-secret",
        mode="service",
        scope="api://jupyter-gov/query",
    )
    session = session_with(msal_policy, provider, demo_connector)
    session.sql("SELECT count(*) FROM orders")
    (decision,) = session.audit.events(kinds=["decision"])
    assert decision["auth_method"] == "msal-client-credentials"
    assert decision["identity_kind"] == "service" and decision["roles"] == ["pipeline"]


def test_device_login_widget_shows_code_then_the_signed_in_name(oidc_server, msal_policy, tmp_path):
    provider = user_provider(
        oidc_server, tmp_path / "c.bin", client_credential=None, client_id="jupyter-gov-device"
    )
    session = GovernedSession(msal_policy, provider)
    widget = login_in_notebook(provider, session.audit)
    assert isinstance(widget, DeviceLoginWidget)
    assert widget.challenge.user_code and widget.challenge.user_code in widget.prompt.value
    widget.close()  # stop the background poll; drive it by hand below
    widget._stop.clear()
    widget.identity = widget.error = None
    oidc_server.approve_device("tenant1", widget.challenge.user_code, "alice")
    finished = False
    for _ in range(3):  # the issuer may answer "pending" once more before it sees approval
        widget.challenge._flow["_next_poll_at"] = 0  # skip the polling interval, no sleeping
        if finished := widget.poll_once():
            break
    assert finished
    assert widget.identity is not None and widget.identity.subject == "alice"
    assert "Signed in as" in widget.status.value
    assert session.audit.events(kinds=["sign_in"])[0]["subject"] == "alice"


def test_jupyterhub_identity_is_verified_in_the_audit(
    jupyterhub_server, demo_connector, monkeypatch
):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", jupyterhub_server.issue_token("alice"))
    monkeypatch.setenv("JUPYTERHUB_API_URL", jupyterhub_server.api_url)
    data = json.loads(json.dumps(Policy.load().data))
    data["identity"] = {"provider": "jupyterhub"}
    session = session_with(Policy(data), JupyterHubProvider(), demo_connector)
    result = session.sql("SELECT email FROM customers LIMIT 1")
    assert result.masked_columns == {"email": "email"}
    (decision,) = session.audit.events(kinds=["decision"])
    assert decision["auth_method"] == "jupyterhub" and decision["verified"] is True
