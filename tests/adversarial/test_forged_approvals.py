"""Forged approvals: an approval counts only if the verified chain says an approver gave it.

Before the fix, editing a row to ``approved``, inserting an approved row, or approving with
a hand-made approver Identity all ran statements while ``audit verify`` said ok.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_gov.approvals import ApprovalError, ApprovalForbidden, ApprovalRefused
from jupyter_gov.engine import GovernedSession
from jupyter_gov.identity import Identity
from tests.conftest import raw_sql

UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 9"


@pytest.fixture
def team(store_url):
    """alice (admin) and dave (approver) on one private demo database and one store.

    Once per kind of store: a SQLite file and the team store on PostgreSQL.
    """
    alice = GovernedSession(None, "alice", audit=store_url)
    dave = GovernedSession(alice.policy, "dave", audit=alice.audit)
    dave.use_connector("demo", alice.connector("demo"))
    return alice, dave


class RawDb:
    """Someone who can write the audit store (file or database), outside jupyter-gov."""

    def __init__(self, session: GovernedSession) -> None:
        self.store = session.audit

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> RawDb:
        self.rows = raw_sql(self.store, sql, tuple(args))
        return self

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


def raw_db(session: GovernedSession) -> RawDb:
    return RawDb(session)


def status_of_order_9(session: GovernedSession) -> str:
    sql = "SELECT status FROM orders WHERE order_id = 9"
    return session.connector().con.execute(sql).fetchone()[0]


def refused_run(session: GovernedSession, request_id: str) -> ApprovalRefused:
    before = status_of_order_9(session)
    with pytest.raises(ApprovalRefused) as refused:
        session.sql(UPDATE, approval_id=request_id)
    assert status_of_order_9(session) == before
    return refused.value


def test_row_edited_to_approved_does_not_run_and_verify_reports_it(team):
    alice, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    raw_db(alice).execute("UPDATE approvals SET state = 'approved' WHERE id = ?", (request.id,))
    assert refused_run(alice, request.id).rule == "approval-unverified"
    report = alice.audit.verify()
    assert not report.ok and any(request.id in p and "edited" in p for p in report.problems)


def test_inserted_approved_row_does_not_run_and_verify_reports_it(team):
    alice, dave = team
    model = alice.request_approval(UPDATE, justification="x")
    dave.approve(model.id)
    db = raw_db(alice)
    db.execute(
        "INSERT INTO approvals SELECT 'abcdef123456', state, body, created_at, expires_at, "
        "requester, uses, max_uses, request, request_event FROM approvals WHERE id = ?",
        (model.id,),
    )
    assert refused_run(alice, "abcdef123456").rule == "approval-unverified"
    report = alice.audit.verify()
    assert not report.ok and any("abcdef123456" in p for p in report.problems)


def test_hand_made_identity_claiming_approver_groups_cannot_approve(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    mallory = Identity("mallory", "Mallory", "local", groups=("approvers",))
    with pytest.raises(ApprovalForbidden, match="your roles are analyst"):
        dave.approvals.approve(request.id, mallory, "trust me")
    verified_stranger = Identity(
        "mallory", "Mallory", "msal", issuer="https://evil.example", verified=True,
        groups=("approvers",),
    )  # fmt: skip
    with pytest.raises(ApprovalForbidden, match="your roles are none"):
        dave.approvals.approve(request.id, verified_stranger, "trust me")
    assert alice.approvals.get(request.id).state == "pending"


def test_approve_takes_no_roles_from_its_caller(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    with pytest.raises(TypeError):
        dave.approvals.approve(request.id, alice.identity, ["approver"], "ok")  # type: ignore[call-arg]
    assert alice.approvals.get(request.id).state == "pending"


def test_request_edited_after_approval_does_not_run(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id)
    db = raw_db(alice)
    (text,) = db.execute("SELECT request FROM approvals WHERE id = ?", (request.id,)).fetchone()
    edited = json.loads(text)
    edited["max_uses"] = 1000
    db.execute(
        "UPDATE approvals SET request = ?, max_uses = 1000 WHERE id = ?",
        (json.dumps(edited), request.id),
    )
    assert refused_run(alice, request.id).rule == "approval-unverified"
    assert not alice.audit.verify().ok


def test_used_approval_rolled_back_to_approved_does_not_run_again(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id)
    alice.sql(UPDATE, approval_id=request.id)
    raw_db(alice).execute(
        "UPDATE approvals SET state = 'approved', uses = 0 WHERE id = ?", (request.id,)
    )
    assert "edited after its event" in str(refused_run(alice, request.id))
    report = alice.audit.verify()
    assert not report.ok and "events say used" in report.reason


def test_revoked_approval_edited_back_to_approved_does_not_run(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id)
    alice.approvals.revoke(request.id, alice.identity, "no longer needed")
    raw_db(alice).execute("UPDATE approvals SET state = 'approved' WHERE id = ?", (request.id,))
    assert refused_run(alice, request.id).rule == "approval-unverified"


def test_edited_decision_event_breaks_the_chain_and_does_not_run(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id)
    assert alice.audit.verify().ok  # the store remembers a verified prefix
    raw_db(alice).execute("UPDATE events SET subject = 'mallory' WHERE kind = 'approval_approved'")
    assert "chain is broken" in str(refused_run(alice, request.id))


def test_chain_valid_decision_by_a_non_approver_role_does_not_count(team):
    """Even an event appended through the store's own API must name an approver role."""
    alice, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    (requested,) = alice.audit.events(kinds=["approval_requested"])
    bob = GovernedSession(alice.policy, "bob", audit=alice.audit)
    alice.audit.append(
        "approval_approved",
        **{k: v for k, v in bob.identity.audit_fields().items() if k != "groups"},
        roles=["analyst"],
        policy_hash=alice.policy.hash,
        decision="approved",
        detail={**requested["detail"], "comment": "sure"},
    )
    raw_db(alice).execute("UPDATE approvals SET state = 'approved' WHERE id = ?", (request.id,))
    assert "not decided by a role the policy makes an approver" in str(
        refused_run(alice, request.id)
    )


def test_verify_reports_an_approval_used_without_a_decision(team):
    alice, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    (requested,) = alice.audit.events(kinds=["approval_requested"])
    alice.audit.append("approval_used", subject="alice", issuer="local", detail=requested["detail"])
    report = alice.audit.verify()
    assert not report.ok
    assert f"approval {request.id}" in report.reason
    assert "used without a matching approval decision" in report.reason


def test_genuine_approval_verifies_and_runs(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id, "checked")
    alice.sql(UPDATE, approval_id=request.id)
    assert status_of_order_9(alice) == "cancelled"
    report = alice.audit.verify()
    assert report.ok and report.problems == ()


def test_refusals_are_approval_errors(team):
    alice, _ = team
    with pytest.raises(ApprovalError):
        alice.sql(UPDATE, approval_id="0123456789ab")


def test_approver_name_edited_in_the_row_is_not_what_the_run_records(team):
    alice, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    dave.approve(request.id, "checked")
    db = raw_db(alice)
    (body,) = db.execute("SELECT body FROM approvals WHERE id = ?", (request.id,)).fetchone()
    db.execute(
        "UPDATE approvals SET body = ? WHERE id = ?",
        (json.dumps({**json.loads(body), "decided_by_name": "The CEO"}), request.id),
    )
    result = alice.sql(UPDATE, approval_id=request.id)
    assert result.plan.findings[-1].reason == "Approved by Dave: checked"
