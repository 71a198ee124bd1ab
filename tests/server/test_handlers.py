"""The audit REST API against a real jupyter_server (pytest-jupyter), on a seeded store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_gov.audit import AuditStore

from .conftest import T0

API = ("jupyter-gov", "api")


async def get(jp_fetch: Any, *path: str, **params: Any) -> dict[str, Any]:
    response = await jp_fetch(*API, *path, params=params, method="GET")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def error(jp_fetch: Any, *path: str, headers: Any = None, **params: Any) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*API, *path, params=params, method="GET", headers=headers)
    response = caught.value.response
    assert response is not None
    body = json.loads(response.body) if response.body else {}
    return caught.value.code, body


# -- paging ---------------------------------------------------------------------------------


async def test_audit_pages_newest_first(jp_fetch, seeded):
    first = await get(jp_fetch, "audit", limit=10)
    assert (first["limit"], first["offset"], first["total"]) == (10, 0, 30)
    assert [e["id"] for e in first["events"]] == list(range(30, 20, -1))

    last = await get(jp_fetch, "audit", limit=10, offset=25)
    assert [e["id"] for e in last["events"]] == [5, 4, 3, 2, 1]
    assert last["total"] == 30

    beyond = await get(jp_fetch, "audit", offset=100)
    assert beyond["events"] == [] and beyond["total"] == 30

    default = await get(jp_fetch, "audit")
    assert default["limit"] == 50 and len(default["events"]) == 30


async def test_audit_event_fields(jp_fetch, seeded):
    body = await get(jp_fetch, "audit", limit=500, offset=0)
    by_id = {e["id"]: e for e in body["events"]}
    masked = by_id[2]
    for field in (
        "ts",
        "kind",
        "subject",
        "display_name",
        "auth_method",
        "verified",
        "decision",
        "rules",
        "reasons",
        "masked_columns",
        "fingerprint",
        "statement",
        "rows",
        "duration_ms",
        "connection",
        "query_id",
        "policy_hash",
        "hash",
        "prev_hash",
        "category",
    ):
        assert field in masked, field
    assert masked["ts"] == T0 + 60
    assert masked["subject"] == "alice" and masked["display_name"] == "Alice"
    assert masked["verified"] is False
    assert masked["masked_columns"] == {"customers.email": "hash"}
    assert masked["rules"] == ["mask:pii"]
    # One badge per decision; allow with masked columns is "masked".
    assert [by_id[i]["category"] for i in range(1, 7)] == [
        "allowed",
        "masked",
        "denied",
        "approval",
        "error",
        None,
    ]
    assert by_id[5]["rows"] == 3 and by_id[5]["duration_ms"] == 1.5


async def test_audit_empty_store(jp_fetch, store):
    body = await get(jp_fetch, "audit")
    assert body == {"events": [], "limit": 50, "offset": 0, "total": 0}


# -- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "bob"}, {3, 4}),
        ({"connection": "warehouse"}, {4, 5}),
        ({"decision": "deny"}, {3}),
        ({"decision": "approval_required"}, {4}),
        ({"kind": "attempt"}, {6}),
        ({"kind": "attempt,result"}, {5, 6}),
        ({"text": "customers"}, {1, 2, 3}),
        ({"text": "needs approval"}, {4}),  # reasons are searched too
        ({"user": "alice", "text": "email"}, {2}),
        ({"user": "nobody"}, set()),
    ],
)
async def test_audit_filters(jp_fetch, seeded, params, expected):
    body = await get(jp_fetch, "audit", limit=500, **params)
    positions = {(e["id"] - 1) % 6 + 1 for e in body["events"]}
    assert positions == expected
    # Five rounds of six events: every match appears five times, and total counts them all.
    assert body["total"] == 5 * len(expected) == len(body["events"])
    small = await get(jp_fetch, "audit", limit=1, **params)
    assert small["total"] == body["total"]


async def test_audit_filter_by_time_window(jp_fetch, seeded):
    body = await get(jp_fetch, "audit", since=T0 + 60 * 10, until=T0 + 60 * 14)
    assert [e["id"] for e in body["events"]] == [15, 14, 13, 12, 11]
    assert body["total"] == 5
    since_only = await get(jp_fetch, "audit", since=T0 + 60 * 28, limit=1)
    assert since_only["total"] == 2 and since_only["events"][0]["id"] == 30


async def test_audit_repeated_kind_and_query_id(jp_fetch, seeded):
    pairs = [("kind", "attempt"), ("kind", "result"), ("limit", "500")]
    response = await jp_fetch(*API, "audit", params=pairs, method="GET")
    body = json.loads(response.body)
    assert {e["kind"] for e in body["events"]} == {"attempt", "result"}
    assert body["total"] == 10
    one = await get(jp_fetch, "audit", query_id="q07")
    assert [e["id"] for e in one["events"]] == [8]


# -- verify ---------------------------------------------------------------------------------


async def test_verify_ok(jp_fetch, seeded, store: AuditStore):
    body = await get(jp_fetch, "audit", "verify")
    assert body["ok"] is True
    assert body["rows"] == 30
    assert body["broken_at"] is None
    assert body["head"] == store.head()[1]


async def test_verify_reports_an_edited_row(jp_fetch, seeded, audit_path: Path):
    with sqlite3.connect(audit_path) as db:
        db.execute("UPDATE events SET statement = 'SELECT 42' WHERE id = 7")
    body = await get(jp_fetch, "audit", "verify")
    assert body["ok"] is False
    assert body["broken_at"] == 7
    assert "changed" in body["reason"]


async def test_verify_reports_a_deleted_row(jp_fetch, seeded, audit_path: Path):
    with sqlite3.connect(audit_path) as db:
        db.execute("DELETE FROM events WHERE id = 12")
    body = await get(jp_fetch, "audit", "verify")
    assert body["ok"] is False and body["broken_at"] == 13


# -- stats ----------------------------------------------------------------------------------


async def test_stats_counts_decisions_per_bucket(jp_fetch, seeded):
    # 30 events one minute apart from T0: 10-minute buckets, decisions only by default.
    body = await get(jp_fetch, "audit", "stats", bucket=600, since=T0, until=T0 + 60 * 29)
    assert body["bucket"] == 600 and body["kinds"] == ["decision"]
    assert body["categories"] == ["allowed", "masked", "denied", "approval", "error"]
    assert [b["start"] for b in body["buckets"]] == [T0, T0 + 600, T0 + 1200]
    totals = {name: sum(b["counts"][name] for b in body["buckets"]) for name in body["categories"]}
    assert totals == {"allowed": 5, "masked": 5, "denied": 5, "approval": 5, "error": 0}
    assert sum(b["total"] for b in body["buckets"]) == 20

    results = await get(
        jp_fetch, "audit", "stats", bucket=3600, since=T0, until=T0 + 3599, kind="result"
    )
    assert len(results["buckets"]) == 1
    assert results["buckets"][0]["counts"]["error"] == 5


async def test_stats_defaults_to_the_last_24_buckets(jp_fetch, seeded):
    body = await get(jp_fetch, "audit", "stats")
    assert body["bucket"] == 3600
    assert len(body["buckets"]) in (24, 25)  # the window may straddle a bucket boundary
    assert sum(b["total"] for b in body["buckets"]) == 0  # the seeded events are from 2025


async def test_stats_filters(jp_fetch, seeded):
    body = await get(jp_fetch, "audit", "stats", bucket=3600, since=T0, until=T0 + 3599, user="bob")
    counts = body["buckets"][0]["counts"]
    assert counts["denied"] == 5 and counts["approval"] == 5 and counts["allowed"] == 0


# -- policy ---------------------------------------------------------------------------------


async def test_policy_unconfigured_is_the_demo_policy_the_kernels_use(jp_fetch):
    body = await get(jp_fetch, "policy")
    assert body["name"] == "demo" and "approver" in body["roles"]


@pytest.mark.parametrize("gov_policy", ["demo"])
async def test_policy_summary(jp_fetch, gov_policy):
    body = await get(jp_fetch, "policy")
    assert body["name"]
    assert isinstance(body["roles"], list) and body["roles"] == sorted(body["roles"])
    assert set(body["role_details"]) == set(body["roles"])
    assert "url" not in json.dumps(body.get("connections", {}))


@pytest.mark.parametrize("gov_policy", ["/nonexistent/policy.yaml"])
async def test_policy_unreadable_says_why(jp_fetch, gov_policy):
    body = await get(jp_fetch, "policy")
    assert "does not exist" in body["error"]


# -- bad input and authentication -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        (("audit",), {"limit": "0"}, "'limit' must be between 1 and 500"),
        (("audit",), {"limit": "501"}, "'limit' must be between 1 and 500"),
        (("audit",), {"limit": "ten"}, "'limit' must be an integer"),
        (("audit",), {"offset": "-1"}, "'offset' must be between 0 and"),
        (("audit",), {"since": "yesterday"}, "'since' must be a time"),
        (("audit",), {"until": "nan"}, "'until' must be a time"),
        (("audit",), {"since": "20", "until": "10"}, "'since' is after 'until'"),
        (("audit",), {"kind": "select"}, "Unknown kind 'select'"),
        (("audit",), {"users": "bob"}, "Unknown parameter 'users'"),
        (("audit",), {"text": "x" * 201}, "longer than 200"),
        (("audit", "verify"), {"limit": "1"}, "Unknown parameter 'limit'"),
        (("audit", "stats"), {"bucket": "1"}, "'bucket' must be between 60"),
        (
            ("audit", "stats"),
            {"bucket": "60", "since": "0", "until": "1000000000"},
            "more than 1000",
        ),
        (("audit", "stats"), {"limit": "5"}, "Unknown parameter 'limit'"),
        (("policy",), {"x": "1"}, "Unknown parameter 'x'"),
    ],
)
async def test_bad_parameters_are_400_json(jp_fetch, seeded, path, params, fragment):
    code, body = await error(jp_fetch, *path, **params)
    assert code == 400
    assert fragment in body["message"]


async def test_jupyterlab_cache_buster_is_ignored(jp_fetch, seeded):
    # ServerConnection.makeRequest appends "?<milliseconds>" to GETs.
    response = await jp_fetch(*API, "audit", params=[("limit", "2"), ("1718000000000", "")])
    assert len(json.loads(response.body)["events"]) == 2
    code, body = await error(jp_fetch, "audit", **{"1718000000000": "x"})
    assert code == 400 and "Unknown parameter" in body["message"]


async def test_repeated_scalar_parameter_is_400(jp_fetch, seeded):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*API, "audit", params=[("user", "a"), ("user", "b")], method="GET")
    assert caught.value.code == 400
    assert "more than once" in json.loads(caught.value.response.body)["message"]


@pytest.mark.parametrize("path", [("audit",), ("audit", "verify"), ("audit", "stats"), ("policy",)])
async def test_unauthenticated_is_403(jp_fetch, seeded, path):
    code, _ = await error(jp_fetch, *path, headers={"Authorization": ""})
    assert code == 403


async def test_wrong_token_is_403(jp_fetch, seeded):
    code, _ = await error(jp_fetch, "audit", headers={"Authorization": "token not-the-token"})
    assert code == 403


@pytest.fixture
def unsupported_store(jp_server_config):
    jp_server_config.GovServer.audit_store = "mysql://db/audit"
    return jp_server_config


async def test_unusable_store_is_503_json(unsupported_store, jp_fetch):
    code, body = await error(jp_fetch, "audit")
    assert code == 503
    assert "not supported" in body["message"]


@pytest.fixture
def unreachable_team_store(jp_server_config):
    jp_server_config.GovServer.audit_store = "postgresql://gov:${STORE_PW}@127.0.0.1:1/audit"
    return jp_server_config


async def test_unreachable_team_store_is_503_json_without_its_secret(
    unreachable_team_store, jp_fetch, monkeypatch
):
    monkeypatch.setenv("STORE_PW", "hunter2-secret")
    code, body = await error(jp_fetch, "audit")
    assert code == 503
    assert "cannot be reached" in body["message"]
    assert "hunter2-secret" not in json.dumps(body)
