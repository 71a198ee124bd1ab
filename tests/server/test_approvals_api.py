"""The approvals REST API: list with can_decide, approve/deny as the server's identity."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gov.engine import GovernedSession

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
