"""The same policy, the same caller, the same statement: the gateway decides and answers
exactly as the engine does inside a kernel (masking, row filters, guardrails, approvals).

The in-kernel side validates the very same token in this process (the gateway's own
:class:`~jupyter_gov.gateway.auth.Authenticator`) and shares the gateway's masking key, so
keyed masks must agree byte for byte; the analyst's results also go through the adversarial
oracle's leak detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import ApprovalRequired, GovError, QueryDenied
from jupyter_gov.gateway.auth import Authenticator
from jupyter_gov.policy import Policy
from tests.adversarial.oracle import LeakDetector, output_text
from tests.gateway.conftest import Gateway

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]

PII = "SELECT customer_id, full_name, email, phone, ssn, birth_date FROM customers"
CASES = {
    "analyst-masks": ("gw-alice", f"{PII} ORDER BY customer_id LIMIT 25", None),
    "admin-sees-raw": ("gw-bob", f"{PII} ORDER BY customer_id LIMIT 25", None),
    "masked-join-keys": (
        "gw-alice",
        "SELECT c.full_name, count(*) AS n FROM customers c JOIN orders o "
        "ON o.customer_id = c.customer_id GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        None,
    ),
    "row-filter": (
        "gw-alice",
        "SELECT region, count(*) AS n FROM orders GROUP BY region ORDER BY region",
        None,
    ),
    "bound-parameter": (
        "gw-alice",
        "SELECT count(*) AS n FROM customers WHERE customer_id < :n",
        {"n": 100},
    ),
    "guardrail-drop": ("gw-alice", "DROP TABLE customers", None),
    "guardrail-file-read": ("gw-alice", "SELECT * FROM read_csv('/etc/passwd')", None),
    "approval-write": ("gw-bob", "UPDATE orders SET amount = amount WHERE order_id = 1", None),
}


@pytest.fixture(scope="module")
def kernel(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """In-kernel sessions on the gateway's policy, for the identity each token proves."""
    policy = Policy.load(gateway.policy_path)
    authenticator = Authenticator(policy)
    store = f"sqlite:///{Path(tmp_path_factory.mktemp('kernel')) / 'audit.sqlite'}"
    sessions: dict[str, GovernedSession] = {}

    def session(sub: str) -> GovernedSession:
        if sub not in sessions:
            identity = authenticator.identify(f"Bearer {gateway.token(sub)}")
            sessions[sub] = GovernedSession(policy, identity, audit=store)
        return sessions[sub]

    yield session
    for opened in sessions.values():
        opened.close()


def outcome(run: Any) -> dict[str, Any]:
    """Decision, rules, masks, filters and rows (or the refusal) of one run."""
    try:
        result = run()
    except (QueryDenied, ApprovalRequired) as stopped:
        plan = stopped.plan
        return {"decision": plan.decision, "rules": plan.rules, "reasons": plan.reasons}
    except GovError as error:
        return {"error": type(error).__name__, "message": str(error)}
    return {
        "decision": result.decision,
        "rules": result.plan.rules,
        "masked": result.masked_columns,
        "filters": list(result.plan.row_filters),
        "table": result.arrow(),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_the_gateway_decides_and_answers_as_the_kernel(
    case: str, gateway: Gateway, kernel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_GOV_MASK_KEY", gateway.mask_key)  # the gateway's key
    sub, sql, params = CASES[case]
    remote = gateway.session(sub)
    through_gateway = outcome(lambda: remote.sql(sql, params))
    in_kernel = outcome(lambda: kernel(sub).sql(sql, params))
    table = through_gateway.pop("table", None)
    expected = in_kernel.pop("table", None)
    assert through_gateway == in_kernel
    if expected is not None:
        assert isinstance(table, pa.Table) and table.equals(expected), case
        if sub == "gw-alice":
            assert LeakDetector.for_demo().scan(output_text(table)) == []


def test_an_approval_asked_approved_and_used_through_the_gateway(gateway: Gateway) -> None:
    sql = "UPDATE orders SET amount = amount WHERE order_id = 2"
    bob, dave = gateway.session("gw-bob"), gateway.session("gw-dave")
    with pytest.raises(ApprovalRequired) as pending:
        bob.sql(sql)
    assert pending.value.plan.rules == ["approval:admin-write-production"]
    request = bob.request_approval(sql, justification="fix a rounding error")
    assert request.state == "pending" and request.dry_run_rows == 1
    assert [r.id for r in dave.approvals.actionable_by()] == [request.id]
    assert dave.approve(request.id, "ok").state == "approved"
    assert bob.approvals.get(request.id).state == "approved"
    result = bob.sql(sql, approval_id=request.id)
    assert result.decision == "allow" and f"approved:{request.id}" in result.plan.rules
    with pytest.raises(GovError, match="used"):
        bob.sql(sql, approval_id=request.id)


def test_the_approval_widget_and_inbox_work_against_the_gateways_store(gateway: Gateway) -> None:
    from jupyter_gov.widgets import ApprovalInbox, ApprovalRequestWidget

    sql = "UPDATE orders SET amount = amount WHERE order_id = 3"
    bob, dave = gateway.session("gw-bob"), gateway.session("gw-dave")
    with pytest.raises(ApprovalRequired) as pending:
        bob.sql(sql)
    widget = ApprovalRequestWidget(bob, pending.value, sql, purpose="ticket 9")
    widget.start_polling = lambda *a, **k: None  # the test refreshes itself
    widget.request_button.click()
    assert widget.refresh() == "pending"
    inbox = ApprovalInbox(dave)
    approve, _ = inbox.buttons[widget.request.id]
    approve.click()
    assert "approved request" in inbox.message.value
    assert widget.refresh() == "used"
    assert widget.result is not None and widget.result.decision == "allow"


def test_explain_and_tables_through_the_gateway_match_the_kernel(
    gateway: Gateway, kernel: Any, notebook: Any
) -> None:
    sql = "SELECT full_name, email FROM customers WHERE customer_id = :id"
    remote, local = gateway.session("gw-alice"), kernel("gw-alice")
    assert remote.explain(sql, {"id": 1}).to_dict() == local.explain(sql, {"id": 1}).to_dict()
    assert remote.visible_columns() == local.visible_columns()
    shell = notebook("gw-alice")
    explained = repr(shell.run_cell_magic("gsql", "--explain", "SELECT email FROM customers"))
    assert explained.startswith("✔ allowed · Alice (analyst; msal) · on demo")
    assert "masked: email → email" in explained
    listing = repr(shell.run_line_magic("gsql", "--tables"))
    assert listing.startswith("What you see as analyst:") and "[email → email]" in listing


def test_the_sidebars_approvals_tab_lists_and_decides_in_the_gateways_store(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_gov.server.app import GovCore
    from jupyter_gov.server.handlers import decide_approval, list_approvals

    sql = "UPDATE orders SET amount = amount WHERE order_id = 4"
    request = gateway.session("gw-bob").request_approval(sql, justification="ticket 12")
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_CA", gateway.ca_file)

    def tab(sub: str) -> GovCore:
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", gateway.token(sub))
        return GovCore(gateway=gateway.address)

    alice_view = list_approvals(tab("gw-alice"), "pending")
    mine = [a for a in alice_view["approvals"] if a["id"] == request.id]
    assert mine and not mine[0]["can_decide"] and "statement_text" not in mine[0]
    dave = tab("gw-dave")
    listed = list_approvals(dave, "pending")
    assert listed["identity"]["roles"] == ["approver"]
    entry = next(a for a in listed["approvals"] if a["id"] == request.id)
    assert entry["can_decide"] and entry["statement_text"] == sql
    assert decide_approval(dave, request.id, "approve", "ok")["state"] == "approved"
