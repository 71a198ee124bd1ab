"""Service identities for pipelines and agents acting on behalf of users (policy level)."""

from __future__ import annotations

import json

import pytest

from jupyter_gov.approvals import ApprovalForbidden, ApprovalRefused
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.factory import provider_from_config
from jupyter_gov.identity.service import agent_identity
from jupyter_gov.policy import Policy
from jupyter_gov.result import QueryDenied

from .conftest import AGENT_TOKEN, SERVICE_TOKEN


def service_env(**extra: str) -> dict[str, str]:
    return {"JUPYTER_GOV_AUTH_MODE": "service", "JUPYTER_GOV_SERVICE": "nightly-churn", **extra}


def test_service_mode_signs_in_with_the_token_whose_hash_the_policy_lists(agents_policy):
    env = service_env(JUPYTER_GOV_SERVICE_TOKEN=SERVICE_TOKEN)
    provider = provider_from_config(
        agents_policy.identity_config, env=env, services=agents_policy.services
    )
    identity = provider.current()
    assert (identity.subject, identity.kind, identity.auth_method) == (
        "nightly-churn",
        "service",
        "service-token",
    )
    assert agents_policy.roles_for(identity) == ("pipeline",)


def test_service_token_can_come_from_a_file(agents_policy, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(SERVICE_TOKEN + "\n")
    env = service_env(JUPYTER_GOV_SERVICE_TOKEN_FILE=str(token_file))
    provider = provider_from_config(
        agents_policy.identity_config, env=env, services=agents_policy.services
    )
    assert provider.current().subject == "nightly-churn"


@pytest.mark.parametrize("token", ["", "nightly-churn", SERVICE_TOKEN + "x"])
def test_service_without_the_right_token_is_refused(agents_policy, token):
    env = service_env(JUPYTER_GOV_SERVICE_TOKEN=token)
    provider = provider_from_config(
        agents_policy.identity_config, env=env, services=agents_policy.services
    )
    with pytest.raises(IdentityError, match="could not sign in"):
        provider.current()


def test_service_name_alone_is_not_a_credential(agents_policy):
    provider = provider_from_config(
        agents_policy.identity_config,
        env={"JUPYTER_GOV_AUTH_MODE": "service"},
        services=agents_policy.services,
    )
    with pytest.raises(IdentityError, match="JUPYTER_GOV_SERVICE"):
        provider.current()


def test_a_local_user_named_like_a_service_gets_no_service_roles(agents_policy, local_user):
    assert agents_policy.roles_for(local_user("nightly-churn")) == ("analyst",)


def test_service_queries_are_audited_as_the_service(agents_policy, demo_connector, monkeypatch):
    for key, value in service_env(JUPYTER_GOV_SERVICE_TOKEN=SERVICE_TOKEN).items():
        monkeypatch.setenv(key, value)
    session = GovernedSession(agents_policy)
    session.use_connector("demo", demo_connector)
    result = session.sql("SELECT count(*) AS n FROM orders")
    event = session.audit.events(limit=1)[0]
    assert result.rows == 1
    assert (event["subject"], event["identity_kind"], event["auth_method"]) == (
        "nightly-churn",
        "service",
        "service-token",
    )


def test_agent_with_a_token_in_the_policy_needs_it(agents_policy, local_user):
    with pytest.raises(IdentityError, match="JUPYTER_GOV_AGENT_TOKEN"):
        agent_identity(agents_policy.agents, "keyed-bot", local_user("bob"), env={})
    identity = agent_identity(
        agents_policy.agents,
        "keyed-bot",
        local_user("bob"),
        env={"JUPYTER_GOV_AGENT_TOKEN": AGENT_TOKEN},
    )
    assert identity.on_behalf_of.subject == "bob"


def test_unknown_agent_is_refused(agents_policy):
    with pytest.raises(IdentityError, match="no agent named"):
        agent_identity(agents_policy.agents, "skynet", None, env={})


def test_agent_for_an_admin_still_gets_masks_most_restrictive_wins(agent_session):
    result = agent_session("alice").sql("SELECT email FROM customers LIMIT 1")
    assert result.masked_columns["email"] == "email"
    assert result.fetchall()[0][0].startswith("***@")


def test_agent_mask_stricter_than_the_users_wins(agent_session):
    result = agent_session("bob").sql("SELECT phone FROM customers LIMIT 1")
    assert result.masked_columns["phone"] == "redact"


def test_agent_row_filters_and_the_users_both_apply(agent_session, raw):
    rows = agent_session("carol").sql("SELECT DISTINCT region, status FROM orders").fetchall()
    assert rows and {r[0] for r in rows} == {"EMEA"}
    assert "cancelled" not in {r[1] for r in rows}


def test_agent_for_a_user_without_roles_gets_nothing(agent_session):
    with pytest.raises(QueryDenied, match="no role"):
        agent_session("eve").sql("SELECT 1")


def test_agent_cannot_write_even_for_a_user_who_can(agent_session):
    with pytest.raises(QueryDenied) as denied:
        agent_session("alice").sql("UPDATE orders SET status = 'x' WHERE order_id = 1")
    assert "agent:read-only" in denied.value.plan.rules


def test_agent_deny_list_of_statement_kinds(agent_session):
    with pytest.raises(QueryDenied) as denied:
        agent_session("alice").sql("DELETE FROM orders WHERE order_id = 1")
    assert "agent:statement-kind" in denied.value.plan.rules


def test_smuggled_second_statement_is_refused(agent_session):
    with pytest.raises(QueryDenied) as denied:
        agent_session("bob").sql("SELECT 1; SELECT email FROM customers")
    assert "agent:one-statement" in denied.value.plan.rules


def test_agent_cannot_unmask(agent_session):
    with pytest.raises(QueryDenied):
        agent_session("bob").sql("SELECT email FROM customers LIMIT 1", unmask=["email"])


def test_on_behalf_of_audit_records_both_identities(agent_session):
    session = agent_session("bob")
    session.sql("SELECT count(*) FROM orders")
    events = session.audit.events(limit=10)
    assert {e["kind"] for e in events} >= {"attempt", "decision", "result"}
    for event in events:
        assert event["subject"] == "jupyternaut"
        assert event["identity_kind"] == "agent"
        detail = (
            event["detail"] if isinstance(event["detail"], dict) else json.loads(event["detail"])
        )
        assert detail["on_behalf_of"]["subject"] == "bob"
        assert detail["on_behalf_of"]["auth_method"] == "local"


def _pending_request(session: GovernedSession) -> str:
    request = session.request_approval(
        "SELECT email FROM customers LIMIT 5",
        unmask=["email"],
        justification="churn features need the emails",
    )
    return request.id


def test_agent_can_never_approve(agent_session, session_for, agents_policy):
    bob = session_for("bob", agents_policy)
    request_id = _pending_request(bob)
    agent = agent_session("dave")  # dave holds the approver role himself
    agent.audit = bob.audit
    agent.approvals = None
    with pytest.raises(ApprovalForbidden, match="agent can never approve"):
        agent.approve(request_id)
    with pytest.raises(ApprovalForbidden, match="agent can never approve"):
        agent.approvals.approve(request_id, agent.identity, "")


def test_user_cannot_approve_what_their_agent_requested(agent_session, session_for, agents_policy):
    agent = agent_session("alice")
    request = agent.request_approval(
        "SELECT birth_date FROM customers", justification="age feature for the churn model"
    )
    assert request.binding.requester == "jupyter-gov|jupyternaut|for:local|alice"
    alice = session_for("alice", agents_policy)
    alice.audit = agent.audit
    with pytest.raises(ApprovalForbidden, match="their own request"):
        alice.approve(request.id)


def test_agent_cannot_break_glass_even_where_the_users_roles_may(
    demo_connector, local_user
) -> None:
    from .conftest import agents_policy_data

    data = agents_policy_data()
    data["approvals"]["break_glass"] = {"roles": ["admin"]}
    policy = Policy(data, "<agents policy with break-glass>")
    agent = GovernedSession(
        policy, agent_identity(policy.agents, "jupyternaut", local_user("alice"))
    )
    agent.use_connector("demo", demo_connector)
    with pytest.raises(ApprovalRefused, match="Agents cannot break glass"):
        agent.sql("SELECT birth_date FROM customers", break_glass="INC-7: model outage")
    (refusal,) = [e for e in agent.audit.events(limit=20) if e["decision"] == "deny"]
    assert refusal["rules"] == ["break-glass-not-allowed"]
