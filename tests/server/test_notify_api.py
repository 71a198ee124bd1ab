"""Decisions made in the sidebar are exported and notified by the server process itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from tests.evidence.conftest import HttpReceiver, Received

UPDATE = "UPDATE orders SET status = 'cancelled-for-Hana' WHERE order_id = 5"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    started = HttpReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def gov_policy(tmp_path: Path, receiver: HttpReceiver) -> str:
    data = Policy.load().data
    data["approvals"]["notify"] = [{"kind": "webhook", "url": f"{receiver.url}/notify"}]
    data["audit"] = {"sinks": [{"kind": "webhook", "url": f"{receiver.url}/siem"}]}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def arrivals(receiver: HttpReceiver, *wanted: tuple[str, str, str]) -> list[Received]:
    """Wait until a request matching each ``(path, key, value)`` has arrived; return them."""
    seen: list[Received] = []

    def match(want: tuple[str, str, str]) -> Received | None:
        path, key, value = want
        return next((r for r in seen if r.path == path and r.json().get(key) == value), None)

    while any(match(w) is None for w in wanted):
        seen += receiver.take(1)
    return [match(w) for w in wanted]  # type: ignore[misc]


@pytest.mark.parametrize("gov_user", ["dave"])
async def test_a_sidebar_approval_is_exported_and_notified(
    jp_fetch: Any, gov_policy: str, audit_path: Path, receiver: HttpReceiver, gov_user: str
) -> None:
    alice = GovernedSession(gov_policy, "alice", audit=f"sqlite:///{audit_path}")
    request = alice.request_approval(UPDATE, justification="customer called")
    response = await jp_fetch(
        "jupyter-gov",
        "api",
        "approvals",
        request.id,
        "approve",
        method="POST",
        body=json.dumps({"comment": "ok"}),
    )
    assert response.code == 200
    notified, exported = arrivals(
        receiver, ("/notify", "event", "approved"), ("/siem", "kind", "approval_approved")
    )
    notice = notified.json()
    assert notice["approval_id"] == request.id and notice["decided_by"] == "Dave"
    assert exported.json()["subject"] == "dave"
    assert b"cancelled-for-Hana" not in exported.body
    assert alice.sinks is not None
    alice.sinks.close()
