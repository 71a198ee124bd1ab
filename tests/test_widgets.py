"""The approval widgets, driven headlessly: click, refresh, and read what they show."""

from __future__ import annotations

import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.result import ApprovalRequired
from jupyter_gov.widgets import ApprovalInbox, ApprovalRequestWidget

UPDATE = "UPDATE orders SET status = 'returned' WHERE order_id = 11"


@pytest.fixture
def team():
    alice = GovernedSession(None, "alice")
    dave = GovernedSession(alice.policy, "dave", audit=alice.audit)
    bob = GovernedSession(alice.policy, "bob", audit=alice.audit)
    dave._connectors = bob._connectors = alice._connectors
    return alice, bob, dave


def request_widget(session, sql, **kwargs) -> ApprovalRequestWidget:
    with pytest.raises(ApprovalRequired) as pending:
        session.sql(sql, unmask=kwargs.get("unmask", ()))
    widget = ApprovalRequestWidget(session, pending.value, sql, **kwargs)
    widget.start_polling = lambda *a, **k: None  # tests call refresh() themselves
    return widget


def test_widget_shows_statement_rules_and_a_required_justification(team):
    alice, _, _ = team
    widget = request_widget(alice, UPDATE, purpose="ticket 7")
    assert "admin-write-production" in widget.banner.value
    assert "orders" in widget.statement.value
    assert widget.justification.value == "ticket 7"
    widget.justification.value = ""
    widget.request_button.click()
    assert "justification is required" in widget.status.value and widget.request is None


def test_pending_then_approved_runs_exactly_the_approved_statement(team):
    alice, _, dave = team
    namespace: dict = {}
    widget = request_widget(
        alice, UPDATE, purpose="customer returned it", out="changed", user_ns=namespace
    )
    widget.request_button.click()
    assert widget.refresh() == "pending"
    assert "PENDING" in widget.status.value and "approver" in widget.status.value

    inbox = ApprovalInbox(dave)
    approve_button, _ = inbox.buttons[widget.request.id]
    inbox.comment.value = "fine"
    approve_button.click()
    assert "approved request" in inbox.message.value

    assert widget.refresh() == "used"
    assert "approved by Dave" in widget.status.value and "“fine”" in widget.status.value
    assert widget.result is not None and widget.result.decision == "allow"
    assert namespace["changed"] is widget.result
    status = (
        alice.connector().con.execute("SELECT status FROM orders WHERE order_id = 11").fetchone()[0]
    )
    assert status == "returned"


def test_denied_request_shows_the_reason(team):
    alice, _, dave = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    inbox = ApprovalInbox(dave)
    _, deny_button = inbox.buttons[widget.request.id]
    deny_button.click()
    assert "Say why" in inbox.message.value  # a denial needs a comment
    inbox.comment.value = "use the returns workflow"
    deny_button.click()
    assert widget.refresh() == "denied"
    assert "use the returns workflow" in widget.status.value and widget.result is None


def test_inbox_lists_only_requests_the_user_may_approve(team):
    alice, bob, dave = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    assert list(ApprovalInbox(dave).buttons) == [widget.request.id]
    assert ApprovalInbox(bob).buttons == {}  # analysts approve nothing
    assert ApprovalInbox(alice).buttons == {}  # nor does anyone their own request


def test_unmask_widget_shows_raw_values_only_in_its_own_result(team):
    _, bob, dave = team
    sql = "SELECT email FROM customers ORDER BY customer_id LIMIT 2"
    widget = request_widget(bob, sql, unmask=["email"], purpose="deliverability check")
    widget.request_button.click()
    ApprovalInbox(dave).buttons[widget.request.id][0].click()
    widget.refresh()
    assert all(not v.startswith("***") for (v,) in widget.result.fetchall())
    assert all(v.startswith("***@") for (v,) in bob.sql(sql).fetchall())


def test_expired_request_says_so(team):
    alice, _, _ = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    store = alice.approvals
    store.clock = lambda: widget.request.expires_at + 1
    assert widget.refresh() == "expired"
    assert "request a new approval" in widget.status.value


def test_gsql_cell_needing_approval_shows_the_request_widget():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    try:
        widget = shell.run_cell_magic("gsql", "--user alice --purpose 'ticket 9'", UPDATE)
        assert isinstance(widget, ApprovalRequestWidget)
        assert widget.justification.value == "ticket 9"
        inbox = shell.run_line_magic("gsql_approvals", "--user dave")
        assert isinstance(inbox, ApprovalInbox)
    finally:
        InteractiveShell.clear_instance()
