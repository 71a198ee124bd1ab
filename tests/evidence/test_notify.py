"""Approval notifications reach approvers and requesters; receivers never hold up a request.

Real receivers on loopback: one HTTP server standing for the generic webhook, Slack and
Teams (told apart by path), and an SMTP server (aiosmtpd).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from email import message_from_bytes
from typing import Any

import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import PolicyError
from jupyter_gov.policy import Policy
from tests.evidence.conftest import WAIT, HttpReceiver, free_port, policy_with

LITERAL = "refund-for-Hana-Nguyen-77"
AMOUNT = 4242.4242
UPDATE = f"UPDATE orders SET status = '{LITERAL}' WHERE order_id = 7"
BOUND_UPDATE = "UPDATE orders SET amount = :amount WHERE order_id = :id"


def channels(receiver: HttpReceiver, smtp_port: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"kind": "webhook", "url": f"{receiver.url}/webhook"},
        {"kind": "slack", "url": f"{receiver.url}/slack"},
        {"kind": "teams", "url": f"{receiver.url}/teams"},
    ]
    if smtp_port is not None:
        out.append(
            {
                "kind": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "sender": "jupyter-gov@example.org",
                "to": ["approvers@example.org"],
            }
        )
    return out


@pytest.fixture
def team_with(demo_policy: Policy, session_for: Callable[..., GovernedSession]):
    """``team_with(approvals_section)``: alice (requester) and dave (approver), one store."""

    def make(**approvals: Any) -> tuple[GovernedSession, GovernedSession]:
        policy = policy_with(demo_policy, approvals=approvals)
        alice = session_for("alice", policy)
        dave = GovernedSession(policy, "dave", audit=alice.audit)
        dave.use_connector("demo", alice.connector("demo"))
        return alice, dave

    return make


def flush(*sessions: GovernedSession) -> None:
    for session in sessions:
        notifier = session.approvals.notifier
        assert notifier is not None and notifier.flush(WAIT)


def by_path(received: list[Any]) -> dict[str, Any]:
    return {r.path: r.json() for r in received}


def test_a_request_notifies_every_approver_channel_with_how_to_approve(
    team_with, http_receiver, smtp_server
):
    mailbox, port = smtp_server
    receiver = http_receiver()
    alice, _ = team_with(
        notify=channels(receiver, port), link="https://lab.example.org/lab?approval={id}"
    )
    request = alice.request_approval(UPDATE, justification="customer asked for a refund")
    flush(alice)
    got = by_path(receiver.take(3))
    hook = got["/webhook"]
    assert hook["event"] == "requested" and hook["approval_id"] == request.id
    assert hook["requester"] == "Alice" and hook["requester_id"] == "local|alice"
    assert hook["connection"] == "demo"
    assert hook["rules"] == ["approval:admin-write-production"]
    assert hook["justification"] == "customer asked for a refund"
    assert hook["statement"] == request.statement and "?" in hook["statement"]
    assert hook["approve_command"] == f"jupyter-gov approvals approve {request.id}"
    assert hook["link"] == f"https://lab.example.org/lab?approval={request.id}"
    slack = json.dumps(got["/slack"])
    assert request.id in slack and "jupyter-gov approvals approve" in slack
    assert got["/slack"]["blocks"][0]["type"] == "header"
    card = got["/teams"]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["actions"][0]["url"] == hook["link"]
    (envelope,) = mailbox.take(1)
    mail = message_from_bytes(envelope.original_content)
    assert envelope.rcpt_tos == ["approvers@example.org"]
    assert request.id in mail["Subject"] and "Approval requested" in mail["Subject"]
    assert f"jupyter-gov approvals approve {request.id}" in mail.get_payload()


def test_approval_and_denial_notify_the_requester(team_with, http_receiver):
    receiver = http_receiver()
    alice, dave = team_with(notify=[{"kind": "webhook", "url": f"{receiver.url}/hook"}])
    approved = alice.request_approval(UPDATE, justification="refund")
    denied = alice.request_approval(BOUND_UPDATE, {"amount": 1, "id": 7}, justification="fix")
    dave.approve(approved.id, "fine")
    dave.deny(denied.id, "use the refund form")
    flush(alice, dave)
    notices = [r.json() for r in receiver.take(4)]
    decided = {n["approval_id"]: n for n in notices if n["event"] != "requested"}
    assert decided[approved.id]["event"] == "approved"
    assert decided[approved.id]["decided_by"] == "Dave"
    assert decided[approved.id]["requester_id"] == "local|alice"
    assert decided[denied.id]["event"] == "denied"
    assert decided[denied.id]["comment"] == "use the refund form"


def test_expiry_notifies_the_requester(team_with, http_receiver):
    receiver = http_receiver()
    alice, _ = team_with(
        notify=[{"kind": "webhook", "url": f"{receiver.url}/hook", "events": ["expired"]}]
    )
    request = alice.request_approval(UPDATE, justification="refund")
    approvals = alice.approvals
    approvals.clock = lambda: request.expires_at + 1  # an hour later
    assert approvals.get(request.id).state == "expired"
    flush(alice)
    (notice,) = [r.json() for r in receiver.take(1)]
    assert notice["event"] == "expired" and notice["approval_id"] == request.id
    assert receiver.drain() == []  # the channel asked for expiries only


def test_no_literal_or_bound_value_appears_in_any_notification(
    team_with, http_receiver, smtp_server
):
    mailbox, port = smtp_server
    receiver = http_receiver()
    alice, dave = team_with(notify=channels(receiver, port))
    first = alice.request_approval(UPDATE, justification="refund")
    second = alice.request_approval(BOUND_UPDATE, {"amount": AMOUNT, "id": 7}, justification="x")
    dave.approve(first.id, "ok")
    dave.deny(second.id, "no")
    flush(alice, dave)
    bodies = [r.body for r in receiver.take(12)]  # 4 events x 3 web channels
    bodies += [e.original_content for e in mailbox.take(4)]
    assert all(b"orders" in b for b in bodies)  # each names the statement...
    for body in bodies:  # ...with its values replaced
        assert LITERAL.encode() not in body
        assert str(AMOUNT).encode() not in body


def test_dead_receivers_do_not_fail_the_request_and_each_failure_is_audited(team_with):
    port = free_port()  # nobody listens on it: HTTP and SMTP connections are refused
    dead = [
        {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"},
        {"kind": "smtp", "host": "127.0.0.1", "port": port, "sender": "a@x.org", "to": ["b@x.org"]},
    ]
    alice, _ = team_with(notify=dead)
    request = alice.request_approval(UPDATE, justification="refund")
    assert alice.approvals.get(request.id).state == "pending"
    flush(alice)
    failures = alice.audit.events(kinds=["notify_failure"], newest_first=False)
    assert {(f["detail"]["channel"], f["error"]) for f in failures} == {
        ("webhook", "ConnectionError"),
        ("smtp", "ConnectionRefusedError"),
    }
    assert all(f["detail"]["approval_id"] == request.id for f in failures)
    assert str(port) not in json.dumps(failures)  # no URL or host: they may hold secrets
    assert alice.audit.verify().ok


def test_a_hung_receiver_does_not_hold_up_the_request(team_with, http_receiver):
    held = threading.Event()
    receiver = http_receiver(hold=held)
    alice, dave = team_with(notify=[{"kind": "webhook", "url": f"{receiver.url}/hook"}])
    request = alice.request_approval(UPDATE, justification="refund")
    assert receiver.arrived.wait(WAIT)  # the notice is at the receiver, which does not answer
    dave.approve(request.id, "ok")  # deciding does not wait for it either
    assert not held.is_set()
    held.set()
    flush(alice, dave)
    assert {r.json()["event"] for r in receiver.take(2)} == {"requested", "approved"}


def test_a_slack_justification_cannot_ping_the_channel_or_fake_a_link(team_with, http_receiver):
    receiver = http_receiver()
    alice, _ = team_with(notify=[{"kind": "slack", "url": f"{receiver.url}/slack"}])
    alice.request_approval(UPDATE, justification="<!channel> see <https://evil.example|docs>")
    flush(alice)
    text = json.dumps(receiver.take(1)[0].json())
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text


def test_a_channel_url_can_come_from_the_environment(team_with, http_receiver, monkeypatch):
    receiver = http_receiver()
    monkeypatch.setenv("EVIDENCE_SLACK_URL", f"{receiver.url}/from-env")
    alice, _ = team_with(notify=[{"kind": "slack", "url_env": "EVIDENCE_SLACK_URL"}])
    alice.request_approval(UPDATE, justification="refund")
    flush(alice)
    assert receiver.take(1)[0].path == "/from-env"


def test_an_incomplete_channel_is_a_policy_error(demo_policy):
    with pytest.raises(PolicyError):
        policy_with(demo_policy, approvals={"notify": [{"kind": "smtp", "host": "h"}]})
    with pytest.raises(PolicyError):
        policy_with(demo_policy, approvals={"notify": [{"kind": "pager", "url": "http://x"}]})


def test_a_decision_from_the_cli_is_sent_before_the_command_exits(
    demo_policy, demo_connector, http_receiver, tmp_path
):
    """A short-lived process drains its notice and its audit export before it ends."""
    import os
    import subprocess
    import sys

    import yaml

    receiver = http_receiver()
    policy = policy_with(
        demo_policy,
        approvals={"notify": [{"kind": "webhook", "url": f"{receiver.url}/notify"}]},
        audit={"sinks": [{"kind": "webhook", "url": f"{receiver.url}/siem"}]},
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.data))
    store = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    alice = GovernedSession(Policy.load(path), "alice", audit=store)
    alice.use_connector("demo", demo_connector)
    request = alice.request_approval(UPDATE, justification="refund")
    flush(alice)
    assert alice.sinks is not None and alice.sinks.flush(WAIT)
    receiver.drain()
    cli = [sys.executable, "-m", "jupyter_gov.cli", "approvals", "approve", request.id]
    cli += ["--user", "dave", "--policy", str(path), "--store", store, "--comment", "ok"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    got = receiver.drain()  # the command has exited: whatever it sent has arrived
    notices = [r.json() for r in got if r.path == "/notify"]
    exported = [r.json() for r in got if r.path == "/siem"]
    assert [(n["event"], n["approval_id"]) for n in notices] == [("approved", request.id)]
    assert [e["kind"] for e in exported] == ["approval_approved"]
    assert exported[0]["id"] == alice.audit.head()[0]
    alice.sinks.close()


def test_an_unset_url_variable_is_an_audited_failed_delivery_not_a_failed_request(
    team_with, monkeypatch
):
    monkeypatch.delenv("EVIDENCE_UNSET_URL", raising=False)
    alice, _ = team_with(notify=[{"kind": "teams", "url_env": "EVIDENCE_UNSET_URL"}])
    request = alice.request_approval(UPDATE, justification="refund")
    flush(alice)
    (failure,) = alice.audit.events(kinds=["notify_failure"])
    assert failure["error"] == "ChannelNotConfigured"
    assert failure["detail"] == {
        "approval_id": request.id,
        "event": "requested",
        "channel": "teams",
    }


def test_a_webhook_notice_is_signed_when_the_channel_has_a_secret(
    team_with, http_receiver, monkeypatch
):
    from jupyter_gov.audit.sinks import signature

    monkeypatch.setenv("EVIDENCE_NOTIFY_SECRET", "another-test-key")
    receiver = http_receiver()
    hook = {"kind": "webhook", "url": f"{receiver.url}/h", "secret_env": "EVIDENCE_NOTIFY_SECRET"}
    alice, _ = team_with(notify=[hook])
    alice.request_approval(UPDATE, justification="refund")
    flush(alice)
    (received,) = receiver.take(1)
    sent = received.headers["x-jupyter-gov-signature"]
    assert sent == signature("another-test-key", received.body)


def test_a_break_glass_run_tells_the_approvers_after_the_fact(demo_policy, http_receiver):
    receiver = http_receiver()
    policy = policy_with(
        demo_policy,
        approvals={
            "break_glass": {"roles": ["admin"]},
            "notify": [{"kind": "webhook", "url": f"{receiver.url}/h", "events": ["break_glass"]}],
        },
    )
    alice = GovernedSession(policy, "alice")  # its own demo database: this one writes
    try:
        alice.sql(UPDATE, break_glass="INC-42: refund fraud stop")
        flush(alice)
        (notice,) = [r.json() for r in receiver.take(1)]
        assert notice["event"] == "break_glass" and notice["state"] == "approved"
        assert notice["justification"] == "INC-42: refund fraud stop"
        assert LITERAL not in json.dumps(notice)
    finally:
        alice.close()
