"""Approvals bind one exact statement; someone else approves it; every step is audited."""

from __future__ import annotations

import json

import pytest

from jupyter_gov.approvals import ApprovalError, ApprovalStore
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from jupyter_gov.result import ApprovalRequired, QueryDenied
from tests.conftest import raw_sql

UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 7"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def team(store_url):
    """alice (admin), bob (analyst) and dave (approver): three sessions, one store, one DB.

    Once per kind of store: a SQLite file and the team store on PostgreSQL.
    """
    alice = GovernedSession(None, "alice", audit=store_url)
    dave = GovernedSession(alice.policy, "dave", audit=alice.audit)
    bob = GovernedSession(alice.policy, "bob", audit=alice.audit)
    for other in (dave, bob):  # one private demo database
        other.use_connector("demo", alice.connector("demo"))
    return alice, bob, dave


def approve(session: GovernedSession, request_id: str, comment: str = "ok"):
    return session.approve(request_id, comment)


def status_of_order_7(session: GovernedSession) -> str:
    return (
        session.connector()
        .con.execute("SELECT status FROM orders WHERE order_id = 7")
        .fetchone()[0]
    )


def test_admin_write_runs_once_approved_by_an_approver(team):
    alice, _, dave = team
    with pytest.raises(ApprovalRequired):
        alice.sql(UPDATE)
    request = alice.request_approval(UPDATE, justification="customer asked to cancel")
    assert request.state == "pending" and request.approvers == ["approver"]
    approve(dave, request.id, "checked with support")
    result = alice.sql(UPDATE, approval_id=request.id)
    assert result.decision == "allow" and f"approved:{request.id}" in result.plan.rules
    assert status_of_order_7(alice) == "cancelled"


def test_nobody_approves_their_own_request(team):
    alice, _, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    with pytest.raises(ApprovalError, match="their own request"):
        approve(alice, request.id)


def test_only_named_approver_roles_may_decide(team):
    alice, bob, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    with pytest.raises(ApprovalError, match="Only approver may decide"):
        approve(bob, request.id)


def test_approval_does_not_run_an_edited_statement(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    edited = UPDATE.replace("order_id = 7", "order_id = 8")
    with pytest.raises(ApprovalError, match="different statement"):
        alice.sql(edited, approval_id=request.id)
    assert alice.approvals.get(request.id).state == "approved"  # still usable as approved


def test_approval_does_not_run_with_other_parameters(team):
    alice, _, dave = team
    sql = "UPDATE orders SET status = 'cancelled' WHERE order_id = :id"
    request = alice.request_approval(sql, {"id": 7}, justification="x")
    approve(dave, request.id)
    with pytest.raises(ApprovalError, match="different set of parameters"):
        alice.sql(sql, {"id": 8}, approval_id=request.id)


def test_approval_is_single_use(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    alice.sql(UPDATE, approval_id=request.id)
    with pytest.raises(ApprovalError, match="is used"):
        alice.sql(UPDATE, approval_id=request.id)


def test_expired_approval_does_not_run(team):
    alice, _, dave = team
    clock = Clock()
    alice.approvals = dave.approvals = ApprovalStore(alice.audit, alice.policy, clock=clock)
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    clock.now += alice.policy.approval_ttl + 1
    with pytest.raises(ApprovalError, match="is expired"):
        alice.sql(UPDATE, approval_id=request.id)
    assert status_of_order_7(alice) != "cancelled"


def test_denied_request_keeps_the_reason_and_does_not_run(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    with pytest.raises(ApprovalError, match="Say why"):
        dave.deny(request.id, "")
    denied = dave.deny(request.id, "not during month end")
    assert denied.state == "denied" and denied.comment == "not during month end"
    with pytest.raises(ApprovalError, match="is denied"):
        alice.sql(UPDATE, approval_id=request.id)


def test_revoked_approval_does_not_run(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    alice.approvals.revoke(request.id, alice.identity, "not needed any more")
    with pytest.raises(ApprovalError, match="is revoked"):
        alice.sql(UPDATE, approval_id=request.id)


def test_justification_is_required(team):
    alice, _, _ = team
    with pytest.raises(ApprovalError, match="justification is required"):
        alice.request_approval(UPDATE, justification="  ")


def test_statement_that_needs_no_approval_cannot_be_requested(team):
    alice, _, _ = team
    with pytest.raises(ApprovalError, match="does not need an approval"):
        alice.request_approval("SELECT 1", justification="x")


def test_just_in_time_unmask_applies_to_that_result_only(team):
    _, bob, dave = team
    sql = "SELECT email FROM customers ORDER BY customer_id LIMIT 3"
    with pytest.raises(ApprovalRequired) as pending:
        bob.sql(sql, unmask=["email"])
    assert pending.value.plan.rules == ["approval:unmask"]
    request = bob.request_approval(sql, unmask=["email"], justification="bounce analysis")
    approve(dave, request.id)
    raw = bob.sql(sql, unmask=["email"], approval_id=request.id)
    assert all(not v.startswith("***") for (v,) in raw.fetchall())
    assert raw.masked_columns == {}
    again = bob.sql(sql)
    assert all(v.startswith("***@") for (v,) in again.fetchall())


def test_unmask_outside_the_roles_allowance_is_denied(team):
    _, bob, _ = team
    with pytest.raises(QueryDenied) as denied:
        bob.sql("SELECT ssn FROM customers LIMIT 1", unmask=["ssn"])
    assert denied.value.plan.rules == ["unmask-not-allowed"]


def test_break_glass_needs_policy_role_and_justification_and_is_flagged(team):
    alice, _, _ = team
    from jupyter_gov.errors import GovError

    with pytest.raises(GovError, match="Break-glass is not enabled"):
        alice.sql(UPDATE, break_glass="prod incident")
    data = json.loads(json.dumps(alice.policy.data))
    data["approvals"]["break_glass"] = {"roles": ["admin"]}
    session = GovernedSession(Policy(data), "alice", audit=alice.audit)
    session.use_connector("demo", alice.connector("demo"))
    with pytest.raises(ApprovalError, match="justification is required"):
        session.sql(UPDATE, break_glass=" ")
    result = session.sql(UPDATE, break_glass="INC-42: refund fraud stop")
    assert any(r.startswith("break-glass:") for r in result.plan.rules)
    (flag,) = session.audit.events(kinds=["break_glass"])
    assert flag["purpose"] == "INC-42: refund fraud stop" and flag["detail"]["break_glass"]


def test_every_step_is_in_the_hash_chain(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    alice.sql(UPDATE, approval_id=request.id)
    kinds = [
        e["kind"]
        for e in alice.audit.events(
            newest_first=False, kinds=["approval_requested", "approval_approved", "approval_used"]
        )
    ]
    assert kinds == ["approval_requested", "approval_approved", "approval_used"]
    assert alice.audit.verify().ok


def test_approver_in_another_process_sees_the_request(team, tmp_path):
    alice, _, _ = team
    request = alice.request_approval(UPDATE, justification="x")
    other = ApprovalStore(type(alice.audit)(alice.audit.url))  # a second handle on the file
    assert [r.id for r in other.list("pending")] == [request.id]


def test_audit_failure_leaves_the_request_undecided(team, monkeypatch):
    from jupyter_gov.audit import AuditTransaction
    from jupyter_gov.errors import AuditError

    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")

    def disk_full(self, kind, **event):
        raise alice.audit._errors[0]("database or disk is full")  # the store's own error

    monkeypatch.setattr(AuditTransaction, "append", disk_full)
    with pytest.raises(AuditError):
        approve(dave, request.id)
    monkeypatch.undo()
    assert alice.approvals.get(request.id).state == "pending"
    assert not alice.audit.events(kinds=["approval_approved"])


def test_a_losing_compare_and_set_is_a_conflict_and_writes_nothing(team):
    from jupyter_gov.approvals import ApprovalConflict

    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    store = dave.approvals
    with store.audit.transaction() as tx:
        loaded = store._load(tx, request.id)
    approve(dave, request.id)  # someone else decides between our read and our write
    loaded.state = "denied"
    with (
        pytest.raises(ApprovalConflict, match="changed by someone else"),
        store.audit.transaction() as tx,
    ):
        store._change(tx, loaded, "approval_denied", dave.identity, "pending")
    assert alice.approvals.get(request.id).state == "approved"
    assert not alice.audit.events(kinds=["approval_denied"])


# -- approvers see what will run (issue 8, item 8) -------------------------------------------

AMOUNT_UPDATE = "UPDATE orders SET amount = :amount WHERE order_id = :id"


def all_audit_text(session: GovernedSession) -> str:
    return json.dumps(session.audit.events(limit=100_000), default=str)


def test_approver_sees_the_exact_statement_and_values_and_nobody_else_does(team):
    alice, _, _ = team
    request = alice.request_approval(
        AMOUNT_UPDATE, {"amount": 4242.42, "id": 7}, justification="refund"
    )
    shown = request.to_dict(approver=True)
    assert shown["statement_text"] == AMOUNT_UPDATE
    assert shown["params"] == {"amount": 4242.42, "id": 7}
    assert shown["justification"] == "refund" and shown["row_limit"] is None
    public = request.to_dict()
    assert "statement_text" not in public and "params" not in public
    assert "4242.42" not in all_audit_text(alice)


def test_literals_in_the_statement_stay_out_of_the_audit(team):
    alice, _, _ = team
    sql = "UPDATE orders SET status = 'refund-for-Hana' WHERE order_id = 7"
    request = alice.request_approval(sql, justification="x")
    assert request.to_dict(approver=True)["statement_text"] == sql
    assert "refund-for-Hana" not in all_audit_text(alice)


def test_request_counts_the_rows_an_update_will_touch(team):
    alice, _, _ = team
    sql = "UPDATE orders SET status = 'held' WHERE status = 'placed'"
    (expected,) = (
        alice.connector()
        .con.execute("SELECT count(*) FROM orders WHERE status = 'placed'")
        .fetchone()
    )
    assert expected > 1
    assert alice.request_approval(sql, justification="x").dry_run_rows == expected


def test_dry_run_keeps_positional_values_of_the_where_clause(team):
    alice, _, _ = team
    sql = "UPDATE orders SET amount = ? WHERE order_id = ?"
    request = alice.request_approval(sql, [1.5, 7], justification="x")
    assert request.dry_run_rows == 1
    assert request.to_dict(approver=True)["params"] == [1.5, 7]


def test_dry_run_of_a_delete_and_an_insert_select(team):
    alice, _, _ = team
    delete = alice.request_approval(
        "DELETE FROM orders WHERE order_id IN (1, 2, 3)", justification="x"
    )
    assert delete.dry_run_rows == 3
    insert = alice.request_approval(
        "INSERT INTO orders SELECT * FROM orders WHERE order_id <= 4", justification="x"
    )
    assert insert.dry_run_rows == 4


def test_dry_run_of_a_read_is_its_row_count_under_the_limit(team):
    alice, _, _ = team
    sql = "SELECT ssn, credit_card FROM customers"  # 600 rows x 2 raw columns: over 1,000 values
    request = alice.request_approval(sql, justification="audit sample", limit=600)
    assert request.dry_run_rows == 600 and request.row_limit == 600


def test_dry_run_count_applies_the_requesters_row_filters():
    data = json.loads(json.dumps(Policy.load().data))
    data["row_filters"][0]["roles"].append("admin")
    data["identity"]["users"]["alice"]["attributes"] = {"region": "EMEA"}
    alice = GovernedSession(Policy(data), "alice")
    sql = "UPDATE orders SET status = 'held' WHERE amount > 0"
    con = alice.connector().con
    (emea,) = con.execute(
        "SELECT count(*) FROM orders WHERE amount > 0 AND region = 'EMEA'"
    ).fetchone()
    (everywhere,) = con.execute("SELECT count(*) FROM orders WHERE amount > 0").fetchone()
    assert alice.request_approval(sql, justification="x").dry_run_rows == emea < everywhere


def test_unmask_request_has_no_dry_run_count(team):
    _, bob, _ = team
    sql = "SELECT email FROM customers WHERE email LIKE 'a%'"
    request = bob.request_approval(sql, unmask=["email"], justification="x")
    assert request.dry_run_rows is None  # a count over raw values would be an oracle


def test_row_limit_is_part_of_the_binding(team):
    alice, _, dave = team
    sql = "SELECT ssn, credit_card FROM customers"
    request = alice.request_approval(sql, justification="sample", limit=600)
    approve(dave, request.id)
    with pytest.raises(ApprovalError, match="different row limit"):
        alice.sql(sql, approval_id=request.id)
    assert alice.sql(sql, approval_id=request.id, limit=600).rows == 600


def test_rebuilding_a_session_result_after_approval_invalidates_it(team):
    alice, _, dave = team
    alice.sql("SELECT order_id FROM orders WHERE order_id = 7", name="refunds")
    sql = "UPDATE orders SET status = 'refunded' WHERE order_id IN (SELECT order_id FROM refunds)"
    request = alice.request_approval(sql, justification="one refund")
    assert request.dry_run_rows == 1
    approve(dave, request.id)
    alice.sql("SELECT order_id FROM orders", name="refunds")  # now 50,000 rows
    with pytest.raises(ApprovalError, match="content of the session results"):
        alice.sql(sql, approval_id=request.id)
    (refunded,) = (
        alice.connector()
        .con.execute("SELECT count(*) FROM orders WHERE status = 'refunded'")
        .fetchone()
    )
    assert refunded == 0


def test_displayed_values_that_do_not_match_the_binding_are_not_shown(team):
    alice, _, dave = team
    request = alice.request_approval(AMOUNT_UPDATE, {"amount": 5, "id": 7}, justification="x")
    ((body,),) = raw_sql(alice.audit, "SELECT body FROM approvals WHERE id = ?", (request.id,))
    forged = json.loads(body)
    forged["params"] = {"amount": 1, "id": 7}
    raw_sql(
        alice.audit, "UPDATE approvals SET body = ? WHERE id = ?", (json.dumps(forged), request.id)
    )
    shown = dave.approvals.get(request.id).to_dict(approver=True)
    assert shown["params"] is None and shown["statement_text"] == ""


# -- refused reuse and paging (issue 8, item 14) ---------------------------------------------


def denials(session: GovernedSession) -> list[tuple[list[str], str]]:
    return [
        (e["rules"], e["reasons"][0])
        for e in session.audit.events(kinds=["decision"], decision="deny", newest_first=False)
    ]


def test_refused_reuse_of_a_used_approval_is_a_deny_decision(team):
    alice, _, dave = team
    request = alice.request_approval(UPDATE, justification="x")
    approve(dave, request.id)
    alice.sql(UPDATE, approval_id=request.id)
    with pytest.raises(ApprovalError):
        alice.sql(UPDATE, approval_id=request.id)
    ((rules, reason),) = denials(alice)
    assert rules == ["approval-used"] and "is used" in reason


def test_refused_expired_revoked_and_rebound_approvals_are_deny_decisions(team):
    alice, _, dave = team
    clock = Clock()
    alice.approvals = dave.approvals = ApprovalStore(alice.audit, alice.policy, clock=clock)
    expired = alice.request_approval(UPDATE, justification="x")
    revoked = alice.request_approval(UPDATE, justification="x")
    rebound = alice.request_approval(UPDATE, justification="x")
    for request in (expired, revoked, rebound):
        approve(dave, request.id)
    alice.approvals.revoke(revoked.id, alice.identity, "not needed")
    for request, sql in ((revoked, UPDATE), (rebound, UPDATE.replace("= 7", "= 8"))):
        with pytest.raises(ApprovalError):
            alice.sql(sql, approval_id=request.id)
    clock.now += alice.policy.approval_ttl + 1
    with pytest.raises(ApprovalError):
        alice.sql(UPDATE, approval_id=expired.id)
    assert [rules for rules, _ in denials(alice)] == [
        ["approval-revoked"],
        ["approval-binding"],
        ["approval-expired"],
    ]


def test_many_newer_requests_never_hide_an_older_pending_one(team):
    alice, _, dave = team
    clock = Clock()
    alice.approvals = dave.approvals = ApprovalStore(alice.audit, alice.policy, clock=clock)
    oldest = alice.request_approval(UPDATE, justification="the old one")
    for n in range(200):
        clock.now += 1
        alice.request_approval(UPDATE, justification=f"newer {n}")
    inbox = dave.approvals.actionable_by(dave.identity)
    assert len(inbox) == 201 and inbox[-1].id == oldest.id
    assert oldest.id in {r.id for r in dave.approvals.list("pending")}
    pages = [
        dave.approvals.actionable_by(dave.identity, limit=50, offset=o) for o in range(0, 250, 50)
    ]
    assert [len(p) for p in pages] == [50, 50, 50, 50, 1]
    assert {r.id for p in pages for r in p} == {r.id for r in inbox}
    assert dave.approvals.count("pending") == 201


def test_cli_show_gives_the_values_to_an_approver_only(team, capsys):
    from jupyter_gov.cli import main

    alice, _, _ = team
    request = alice.request_approval(
        AMOUNT_UPDATE, {"amount": 4242.42, "id": 7}, justification="refund"
    )
    store = ["--store", alice.audit.url]
    assert main(["approvals", "show", request.id, "--user", "dave", *store]) == 0
    shown = capsys.readouterr().out
    assert AMOUNT_UPDATE in shown and "4242.42" in shown and "rows touched:  1" in shown
    assert main(["approvals", "show", request.id, "--user", "bob", *store]) == 0
    hidden = capsys.readouterr().out
    assert "4242.42" not in hidden and "justification: refund" in hidden
