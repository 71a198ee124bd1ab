"""Audit sinks: every committed event leaves for the SIEM, in chain order, off the query path.

Each sink is tested against a real receiver on loopback started here: a JSON lines file, a
UDP syslog listener, an OTLP/HTTP server decoding the protobuf body, and a webhook server.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from jupyter_gov.audit import FIELDS, GENESIS, row_hash
from jupyter_gov.audit import sinks as audit_sinks
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import PolicyError
from jupyter_gov.policy import Policy
from tests.evidence.conftest import (
    WAIT,
    HttpReceiver,
    SyslogListener,
    free_port,
    policy_with,
)

SECRET_LITERAL = "zz-literal-Hana-4471@example.org"
SECRET_PARAM = "zz-bound-Okoro-9913"
QUERIES = [
    ("SELECT count(*) AS n FROM customers", None),
    (f"SELECT customer_id FROM customers WHERE email = '{SECRET_LITERAL}'", None),
    ("SELECT customer_id FROM customers WHERE full_name = :name", {"name": SECRET_PARAM}),
]


def finish(session: GovernedSession) -> None:
    """Stop the session's sinks and store, leaving the shared demo database open."""
    if session.sinks is not None:
        session.sinks.close()
    session.audit.close()


def run_queries(session: GovernedSession) -> None:
    for text, params in QUERIES:
        session.sql(text, params)


def stored_ids(session: GovernedSession) -> list[int]:
    return [e["id"] for e in session.audit.events(newest_first=False, limit=10_000)]


def assert_chain_continues(events: list[dict[str, Any]], expected_ids: list[int]) -> None:
    """The exported events are the stored ones, in order, each linking to the one before."""
    assert [e["id"] for e in events] == expected_ids
    prev = GENESIS
    for event in events:
        assert event["prev_hash"] == prev, f"event {event['id']} does not link to the previous"
        assert row_hash(prev, {name: event[name] for name in FIELDS}) == event["hash"]
        prev = event["hash"]


def syslog_body(frame: bytes) -> dict[str, Any]:
    """The JSON body of an RFC 5424 frame (after the UTF-8 BOM that starts MSG)."""
    header, _, body = frame.partition(b"\xef\xbb\xbf")
    assert header.startswith(b"<") and b">1 " in header[:8], header[:20]
    event = json.loads(body)
    assert f'id="{event["id"]}"'.encode() in header and f'hash="{event["hash"]}"'.encode() in header
    return event


def otlp_bodies(request_body: bytes) -> list[dict[str, Any]]:
    """The events carried by one OTLP/HTTP logs request, decoded from protobuf."""
    export = ExportLogsServiceRequest.FromString(request_body)
    events = []
    for resource_logs in export.resource_logs:
        service = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
        assert service["service.name"] == "jupyter-gov"
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                event = json.loads(record.body.string_value)
                attributes = {a.key: a.value for a in record.attributes}
                assert attributes["jupyter_gov.hash"].string_value == event["hash"]
                assert attributes["jupyter_gov.id"].int_value == event["id"]
                events.append(event)
    return events


class Sinks:
    """A session whose policy sends the audit to one kind of sink, and how to read it back."""

    def __init__(
        self,
        kind: str,
        demo_policy: Policy,
        session_for: Callable[..., GovernedSession],
        http_receiver: Callable[..., HttpReceiver],
        syslog: SyslogListener,
        tmp_path: Path,
        **audit: Any,
    ) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.receiver: HttpReceiver | None = None
        self.syslog = syslog
        if kind in ("otlp", "webhook"):
            self.receiver = http_receiver()
        config = {
            "jsonl": {"kind": "jsonl", "path": str(tmp_path / "audit.jsonl")},
            "syslog": {"kind": "syslog", "host": "127.0.0.1", "port": syslog.port},
            "otlp": {"kind": "otlp", "endpoint": f"{self.receiver.url}/v1/logs"}
            if self.receiver
            else {},
            "webhook": {"kind": "webhook", "url": f"{self.receiver.url}/audit"}
            if self.receiver
            else {},
        }[kind]
        policy = policy_with(demo_policy, audit={"sinks": [config], **audit})
        self.session = session_for("bob", policy)
        assert self.session.sinks is not None

    def raw(self) -> list[bytes]:
        """Everything the receiver got so far, as sent."""
        assert self.session.sinks is not None and self.session.sinks.flush(WAIT)
        if self.kind == "jsonl":
            return (self.tmp_path / "audit.jsonl").read_bytes().splitlines()
        if self.kind == "syslog":
            return self.syslog.drain()
        assert self.receiver is not None
        return [r.body for r in self.receiver.drain()]

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for payload in self.raw():
            if self.kind == "syslog":
                out.append(syslog_body(payload))
            elif self.kind == "otlp":
                out += otlp_bodies(payload)
            else:
                out.append(json.loads(payload))
        return out


@pytest.fixture
def sinks_for(demo_policy, session_for, http_receiver, syslog_listener, tmp_path):
    made: list[Sinks] = []

    def make(kind: str, **audit: Any) -> Sinks:
        sinks = Sinks(
            kind, demo_policy, session_for, http_receiver, syslog_listener, tmp_path, **audit
        )
        made.append(sinks)
        return sinks

    yield make
    for sinks in made:
        finish(sinks.session)


@pytest.mark.parametrize("kind", ["jsonl", "syslog", "otlp", "webhook"])
def test_each_sink_receives_every_event_in_chain_order_and_it_verifies(sinks_for, kind):
    sinks = sinks_for(kind)
    run_queries(sinks.session)
    events = sinks.events()
    assert_chain_continues(events, stored_ids(sinks.session))
    kinds = {e["kind"] for e in events}
    assert {"attempt", "decision", "result"} <= kinds
    decision = next(e for e in events if e["kind"] == "decision")
    for name in ("subject", "decision", "rules", "fingerprint", "masked_columns", "id", "hash"):
        assert name in decision
    result = next(e for e in events if e["kind"] == "result")
    assert result["rows"] is not None and result["duration_ms"] is not None


@pytest.mark.parametrize("kind", ["jsonl", "syslog", "otlp", "webhook"])
def test_no_literal_or_bound_value_of_a_statement_reaches_a_sink(sinks_for, kind):
    sinks = sinks_for(kind)
    run_queries(sinks.session)
    payload = b"\n".join(sinks.raw())
    assert b"customers" in payload  # the statements are there, with placeholders
    assert SECRET_LITERAL.encode() not in payload
    assert SECRET_PARAM.encode() not in payload


def test_dead_sink_does_not_fail_the_query_and_its_failure_is_audited_once(
    demo_policy, session_for
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/audit"  # nobody listens: connection refused
    policy = policy_with(demo_policy, audit={"sinks": [{"kind": "webhook", "url": url}]})
    session = session_for("bob", policy)
    try:
        run_queries(session)  # every query runs
        assert session.sinks is not None and session.sinks.flush(WAIT)
        failures = session.audit.events(kinds=["sink_failure"])
        assert len(failures) == 1  # once when it starts failing, not once per event
        assert failures[0]["detail"]["sink"] == "webhook"
        assert failures[0]["error"] == "ConnectionError"
        assert str(port) not in json.dumps(failures)  # no URL (it may hold a token)
        assert session.sinks.failures["webhook"] >= len(stored_ids(session)) - 1
        assert session.audit.verify().ok
    finally:
        finish(session)


@pytest.mark.parametrize("kind", ["webhook", "otlp"])
def test_a_sink_that_recovers_is_audited_as_recovered(
    demo_policy, session_for, http_receiver, kind
):
    receiver = http_receiver(status=400)  # refused (not retried by the OTLP exporter)
    config = {"kind": kind, "url": f"{receiver.url}/a", "endpoint": f"{receiver.url}/v1/logs"}
    policy = policy_with(demo_policy, audit={"sinks": [config]})
    session = session_for("bob", policy)
    try:
        session.sql("SELECT 1 AS one")
        assert session.sinks is not None and session.sinks.flush(WAIT)
        receiver.status = 200
        session.sql("SELECT 2 AS two")
        assert session.sinks.flush(WAIT)
        events = session.audit.events(newest_first=False, limit=1000)
        kinds = [e["kind"] for e in events]
        assert kinds.count("sink_failure") == 1 and kinds.count("sink_recovered") == 1
        failure = events[kinds.index("sink_failure")]
        assert failure["detail"]["sink"] == kind and failure["error"] == "ConnectionError"
        assert kinds.index("sink_failure") < kinds.index("sink_recovered")
    finally:
        finish(session)


def test_slow_sink_never_blocks_a_query_and_dropped_events_are_counted_and_audited(
    demo_policy, session_for, http_receiver
):
    held = threading.Event()
    receiver = http_receiver(hold=held)
    policy = policy_with(
        demo_policy,
        audit={"sinks": [{"kind": "webhook", "url": f"{receiver.url}/a"}], "sink_queue": 2},
    )
    session = session_for("bob", policy)
    try:
        session.sql("SELECT 1 AS one")  # attempt, decision, result
        assert receiver.arrived.wait(WAIT)  # the worker is stuck on the first event it took
        for n in range(4):  # these run while the sink hangs
            session.sql(f"SELECT {n} AS n")
        written = stored_ids(session)
        # One event in the worker's hands and two in the queue: everything else was dropped.
        assert session.sinks is not None and session.sinks.dropped == len(written) - 3
        held.set()
        assert session.sinks.flush(WAIT)
        backlog = session.audit.events(kinds=["sink_backlog"])
        assert len(backlog) == 1 and backlog[0]["detail"]["dropped"] == len(written) - 3
        delivered = [r.json() for r in receiver.drain()]
        assert len(delivered) == 4 and delivered[-1]["id"] == backlog[0]["id"]
        assert delivered[-1]["kind"] == "sink_backlog"  # the SIEM is told why ids are missing
        assert [e["id"] for e in delivered] == sorted(e["id"] for e in delivered)
        for event in delivered:  # each one still verifies against its own link
            assert row_hash(event["prev_hash"], event) == event["hash"]
    finally:
        held.set()
        finish(session)


def test_json_lines_rotate_by_size_and_the_files_stay_private_and_continuous(
    demo_policy, session_for, tmp_path
):
    path = tmp_path / "siem" / "audit.jsonl"
    config = {"kind": "jsonl", "path": str(path), "max_bytes": 4000, "backup_count": 50}
    session = session_for("bob", policy_with(demo_policy, audit={"sinks": [config]}))
    try:
        for n in range(6):
            session.sql(f"SELECT {n} AS n")
        assert session.sinks is not None and session.sinks.flush(WAIT)
    finally:
        finish(session)
    rotated = sorted(path.parent.glob("audit.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    assert rotated, "no rotation happened"
    files = [*rotated, path]  # oldest first
    for file in files:
        assert file.stat().st_size <= 4000
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    lines = [json.loads(line) for file in files for line in file.read_text().splitlines()]
    assert_chain_continues(lines, [e["id"] for e in lines])
    assert len(lines) == 18  # six queries, three events each, none lost across rotations


def test_unknown_sink_kind_is_a_one_sentence_policy_error(demo_policy, session_for):
    policy = policy_with(demo_policy, audit={"sinks": [{"kind": "carrier-pigeon"}]})
    with pytest.raises(PolicyError, match=r"unknown sink kind 'carrier-pigeon'; known kinds"):
        session_for("bob", policy)


def test_sink_kinds_come_from_the_entry_point_group(demo_policy, session_for, tmp_path):
    """A package adds a kind by declaring it under ``jupyter_gov.audit_sinks``."""
    package = tmp_path / "plugin"
    (package / "acme_sink-1.0.dist-info").mkdir(parents=True)
    (package / "acme_sink-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-sink\nVersion: 1.0\n"
    )
    (package / "acme_sink-1.0.dist-info" / "entry_points.txt").write_text(
        "[jupyter_gov.audit_sinks]\nacme = acme_sink:ListSink\n"
    )
    (package / "acme_sink.py").write_text(
        "received = []\n"
        "class ListSink:\n"
        "    kind = 'acme'\n"
        "    def __init__(self, config, policy):\n"
        "        self.tag = config['tag']\n"
        "    def emit(self, event):\n"
        "        received.append((self.tag, event['id']))\n"
        "    def close(self):\n"
        "        pass\n"
    )
    sys.path.insert(0, str(package))
    try:
        policy = policy_with(demo_policy, audit={"sinks": [{"kind": "acme", "tag": "t1"}]})
        session = session_for("bob", policy)
        session.sql("SELECT 1 AS one")
        assert session.sinks is not None and session.sinks.flush(WAIT)
        import acme_sink

        assert isinstance(session.sinks.sinks[0], audit_sinks.AuditSink)
        assert acme_sink.received == [("t1", i) for i in stored_ids(session)]
        finish(session)
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("acme_sink", None)


def test_syslog_over_tcp_uses_octet_counted_rfc5424_frames(demo_policy, session_for):
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(WAIT)
    port = server.getsockname()[1]
    config = {"kind": "syslog", "protocol": "tcp", "port": port, "facility": "local4"}
    session = session_for("bob", policy_with(demo_policy, audit={"sinks": [config]}))
    try:
        session.sql("SELECT 1 AS one")
        conn, _ = server.accept()
        conn.settimeout(WAIT)
        data = b""
        frames: list[bytes] = []
        while len(frames) < 3:
            data += conn.recv(65535)
            while b" " in data:
                length, _, rest = data.partition(b" ")
                if len(rest) < int(length):
                    break
                frames.append(rest[: int(length)])
                data = rest[int(length) :]
        events = [syslog_body(f) for f in frames]
        assert_chain_continues(events, stored_ids(session)[:3])
        assert frames[0].startswith(b"<165>1 ")  # local4 (20) * 8 + notice (5)
        conn.close()
    finally:
        finish(session)
        server.close()


def test_no_sink_configured_means_no_worker_and_no_extra_reads(demo_policy, session_for):
    session = session_for("bob", demo_policy)
    assert session.sinks is None
    assert not getattr(session.audit, "_subscribers", ())
    finish(session)


def test_sink_event_kinds_are_known_to_the_audit_filters():
    from jupyter_gov.audit import KINDS

    assert set(audit_sinks.SINK_KINDS) <= set(KINDS)
    assert os.path.basename(audit_sinks.__file__) == "sinks.py"


def test_only_committed_events_are_exported_from_either_kind_of_store(
    demo_policy, demo_connector, store_url, tmp_path
):
    """Appends and approval transactions, on SQLite and on the team PostgreSQL store."""
    from jupyter_gov.errors import ApprovalForbidden

    path = tmp_path / "siem.jsonl"
    policy = policy_with(demo_policy, audit={"sinks": [{"kind": "jsonl", "path": str(path)}]})
    alice = GovernedSession(policy, "alice", audit=store_url)
    alice.use_connector("demo", demo_connector)
    try:
        alice.sql("SELECT 1 AS one")
        request = alice.request_approval(
            "UPDATE orders SET status = 'x' WHERE order_id = 7", justification="refund"
        )
        with pytest.raises(ApprovalForbidden):  # refused inside a transaction
            alice.approve(request.id, "self")
        with pytest.raises(RuntimeError), alice.audit.transaction() as tx:
            tx.append("sign_in", subject="rolled-back")  # appended, then rolled back
            raise RuntimeError("abort")
        assert alice.sinks is not None and alice.sinks.flush(WAIT)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert_chain_continues(lines, stored_ids(alice))
        assert lines[-1]["kind"] == "approval_requested"
        assert "rolled-back" not in path.read_text()
    finally:
        finish(alice)


def test_sessions_sharing_one_store_export_each_event_once(demo_policy, session_for, tmp_path):
    path = tmp_path / "once.jsonl"
    policy = policy_with(demo_policy, audit={"sinks": [{"kind": "jsonl", "path": str(path)}]})
    bob = session_for("bob", policy)
    carol = GovernedSession(policy, "carol", audit=bob.audit)
    carol.use_connector("demo", bob.connector("demo"))
    assert carol.sinks is bob.sinks
    bob.sql("SELECT 1 AS one")
    carol.sql("SELECT 2 AS two")
    assert carol.sinks is not None
    carol.sinks.close()  # bob still exports
    bob.sql("SELECT 3 AS three")
    assert bob.sinks is not None and bob.sinks.flush(WAIT)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert_chain_continues(lines, stored_ids(bob))
    finish(bob)


def test_a_webhook_sink_signs_each_body_when_given_a_secret(
    demo_policy, session_for, http_receiver, monkeypatch
):
    import hashlib
    import hmac

    monkeypatch.setenv("EVIDENCE_SIEM_SECRET", "s3cret-key-for-tests")
    receiver = http_receiver()
    config = {"kind": "webhook", "url": f"{receiver.url}/a", "secret_env": "EVIDENCE_SIEM_SECRET"}
    session = session_for("bob", policy_with(demo_policy, audit={"sinks": [config]}))
    try:
        session.sql("SELECT 1 AS one")
        for received in receiver.take(3):
            expected = hmac.new(b"s3cret-key-for-tests", received.body, hashlib.sha256)
            sent = received.headers["x-jupyter-gov-signature"]
            assert hmac.compare_digest(sent, "sha256=" + expected.hexdigest())
    finally:
        finish(session)


def test_sinks_export_the_store_assigned_to_the_session_and_no_longer_the_first(
    sinks_for, tmp_path
):
    from jupyter_gov.audit import AuditStore

    sinks = sinks_for("jsonl")
    first = sinks.session.audit
    first_ids = [e["id"] for e in sinks.events()]
    sinks.session.audit = AuditStore(tmp_path / "second.sqlite")
    run_queries(sinks.session)
    first.append("attempt", query_id="written-to-the-first-store-afterwards")
    exported = sinks.events()[len(first_ids) :]
    assert_chain_continues(exported, stored_ids(sinks.session))
    assert "written-to-the-first-store-afterwards" not in json.dumps(exported)
    first.close()
