"""The approvals REST API: list with can_decide, approve/deny as the server's identity."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gov.engine import GovernedSession

from .approval_contract import bound_values, has_contract

API = ("jupyter-gov", "api")
UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 5"


@pytest.fixture
def request_id(audit_path) -> str:
    alice = GovernedSession(None, "alice", audit=f"sqlite:///{audit_path}")
    return alice.request_approval(UPDATE, justification="customer called").id


async def call(jp_fetch: Any, *path: str, method: str = "GET", body: Any = None, **params):
    kwargs: dict[str, Any] = {"method": method, "params": params}
    if method == "POST":
        kwargs["body"] = json.dumps(body if body is not None else {})
    try:
        response = await jp_fetch(*API, *path, **kwargs)
    except HTTPClientError as error:
        assert error.response is not None
        return error.code, json.loads(error.response.body or b"{}")
    return response.code, json.loads(response.body)


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_approver_sees_the_pending_request_and_can_decide(jp_fetch, request_id, gov_user):
    code, body = await call(jp_fetch, "approvals")
    assert code == 200 and body["identity"]["subject"] == "dave"
    (item,) = body["approvals"]
    assert item["id"] == request_id and item["can_decide"] is True
    assert item["requester_name"] == "Alice" and item["justification"] == "customer called"
    assert "UPDATE orders" in item["statement"] and item["expires_at"] > item["requested_at"]


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_approve_records_the_server_identity(jp_fetch, request_id, gov_user, store):
    code, body = await call(
        jp_fetch,
        "approvals",
        request_id,
        "approve",
        method="POST",
        body={"comment": "ok from the panel"},
    )
    assert code == 200 and body["state"] == "approved"
    assert body["decided_by_name"] == "Dave" and body["comment"] == "ok from the panel"
    (event,) = store.events(kinds=["approval_approved"])
    assert event["subject"] == "dave" and store.verify().ok


@pytest.mark.parametrize("gov_user", ["alice"])
async def test_requester_cannot_approve_their_own_request_over_http(jp_fetch, request_id, gov_user):
    code, body = await call(jp_fetch, "approvals", request_id, "approve", method="POST")
    assert code == 403 and "their own request" in body["message"]
    _, listing = await call(jp_fetch, "approvals")
    assert listing["approvals"][0]["can_decide"] is False


@pytest.mark.parametrize("gov_user", ["bob"])
async def test_non_approver_gets_403(jp_fetch, request_id, gov_user):
    code, body = await call(jp_fetch, "approvals", request_id, "approve", method="POST")
    assert code == 403 and "Only approver" in body["message"]


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_deny_needs_a_comment_and_then_conflicts(jp_fetch, request_id, gov_user):
    code, body = await call(jp_fetch, "approvals", request_id, "deny", method="POST")
    assert code == 400 and "Say why" in body["message"]
    code, _ = await call(
        jp_fetch,
        "approvals",
        request_id,
        "deny",
        method="POST",
        body={"comment": "month-end freeze"},
    )
    assert code == 200
    code, body = await call(jp_fetch, "approvals", request_id, "approve", method="POST")
    assert code == 409 and "already denied" in body["message"]


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_bad_approval_input_is_4xx_json(jp_fetch, request_id, gov_user):
    assert (await call(jp_fetch, "approvals", state="everything"))[0] == 400
    assert (await call(jp_fetch, "approvals", "abcdef123456", "approve", method="POST"))[0] == 404
    code, _ = await call(
        jp_fetch, "approvals", request_id, "approve", method="POST", body={"comment": 42}
    )
    assert code == 400


@pytest.mark.parametrize("gov_user", ["bob"])
async def test_policy_says_what_applies_to_the_servers_user(jp_fetch, gov_user):
    code, body = await call(jp_fetch, "policy")
    you = body["you"]
    assert code == 200 and you["subject"] == "bob" and you["roles"] == ["analyst"]
    assert you["masks"]["email"] == "email" and you["approve"] == []


VALUED = "UPDATE orders SET status = ? WHERE order_id = ?"
VALUES = ["cancelled", 5]


@pytest.fixture
def valued_request(audit_path) -> str:
    """A request with bound values and a row limit, as ``%%gsql --limit 5`` would make it."""
    alice = GovernedSession(None, "alice", audit=f"sqlite:///{audit_path}")
    request = alice.request_approval(VALUED, VALUES, justification="customer called", limit=5)
    if not has_contract():  # record what the approvals store records, for this branch alone
        import sqlite3

        with sqlite3.connect(audit_path) as db:
            (body,) = db.execute(
                "SELECT body FROM approvals WHERE id = ?", (request.id,)
            ).fetchone()
            data = bound_values(
                json.loads(body), statement_text=VALUED, params=VALUES, dry_run_rows=1, row_limit=5
            )
            db.execute("UPDATE approvals SET body = ? WHERE id = ?", (json.dumps(data), request.id))
    return request.id


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_approver_sees_exact_statement_values_dry_run_rows_and_limit(
    jp_fetch, valued_request, gov_user
):
    _, body = await call(jp_fetch, "approvals")
    (item,) = body["approvals"]
    assert item["statement_text"] == VALUED and item["params"] == VALUES
    assert item["dry_run_rows"] == 1 and item["row_limit"] == 5
    assert item["justification"] == "customer called"


@pytest.mark.parametrize("gov_user", ["bob", "alice"])
async def test_who_may_not_decide_never_gets_the_values(jp_fetch, valued_request, gov_user):
    _, body = await call(jp_fetch, "approvals")
    (item,) = body["approvals"]
    assert item["can_decide"] is False
    assert "statement_text" not in item and "params" not in item
    assert "cancelled" not in json.dumps(item)
    assert item["dry_run_rows"] == 1 and item["row_limit"] == 5


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_more_requests_than_a_page_are_counted_and_paged(jp_fetch, audit_path, gov_user):
    alice = GovernedSession(None, "alice", audit=f"sqlite:///{audit_path}")
    ids = [
        alice.request_approval(
            f"UPDATE orders SET status = 'x' WHERE order_id = {i}", justification=f"#{i}"
        ).id
        for i in range(55)
    ]
    _, first = await call(jp_fetch, "approvals")
    assert (first["total"], first["actionable"], len(first["approvals"])) == (55, 55, 50)
    _, rest = await call(jp_fetch, "approvals", offset="50")
    seen = [a["id"] for a in first["approvals"] + rest["approvals"]]
    assert sorted(seen) == sorted(ids) and len(rest["approvals"]) == 5


async def test_break_glass_events_are_flagged(jp_fetch, store):
    store.append("decision", subject="olga", decision="allow", rules=["break-glass:abc123"])
    store.append("break_glass", subject="olga", decision="approved", detail={"break_glass": True})
    store.append("decision", subject="bob", decision="allow", rules=["mask:email"])
    _, body = await call(jp_fetch, "audit")
    flags = [(e["subject"], e["kind"], e["break_glass"]) for e in body["events"]]
    assert flags == [
        ("bob", "decision", False),
        ("olga", "break_glass", True),
        ("olga", "decision", True),
    ]
