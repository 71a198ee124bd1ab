"""The audit is a hash chain: every attempt is recorded first, and tampering is found."""

from __future__ import annotations

import sqlite3

import pytest

from jupyter_gov.audit import AuditStore, SQLiteAuditStore
from jupyter_gov.errors import AuditError
from jupyter_gov.result import QueryDenied


@pytest.fixture
def store(store_url):
    """Five events in a fresh store, once per kind (SQLite file, team PostgreSQL)."""
    store = AuditStore(store_url)
    for i in range(5):
        store.append("attempt", subject=f"user{i}", statement="SELECT ?", rules=["r"])
    return store


def tamper(store: AuditStore, sql: str) -> None:
    """Run ``sql`` on the store's tables behind its back, as someone with database access."""
    if isinstance(store, SQLiteAuditStore):
        db = sqlite3.connect(store.path)
        db.execute(sql)
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(store.url.split("?")[0], autocommit=True) as db:
        db.execute(f'SET search_path TO "{store.schema}"')
        db.execute(sql)


def test_untouched_chain_verifies(store):
    report = store.verify()
    assert report.ok and report.rows == 5


def test_edited_row_breaks_the_chain_at_that_row(store):
    tamper(store, "UPDATE events SET subject = 'mallory' WHERE id = 3")
    report = store.verify()
    assert not report.ok and report.broken_at == 3 and "changed" in report.reason


def test_deleted_row_breaks_the_chain_at_the_next_row(store):
    tamper(store, "DELETE FROM events WHERE id = 2")
    report = store.verify()
    assert not report.ok and report.broken_at == 3


def test_reordered_rows_break_the_chain(store):
    tamper(store, "UPDATE events SET id = 100 WHERE id = 2")
    tamper(store, "UPDATE events SET id = 2 WHERE id = 4")
    tamper(store, "UPDATE events SET id = 4 WHERE id = 100")
    assert not store.verify().ok


def test_truncated_tail_is_found_against_a_checkpoint(store):
    checkpoint = store.checkpoint()
    tamper(store, "DELETE FROM events WHERE id = 5")
    assert store.verify().ok  # a chain alone cannot see a cut tail ...
    report = store.verify(checkpoint)  # ... a checkpoint kept elsewhere can
    assert not report.ok and "truncated" in report.reason


def test_every_query_records_attempt_decision_and_result(session_for):
    session = session_for("bob")
    result = session.sql("SELECT email FROM customers LIMIT 2", purpose="testing")
    events = session.audit.events(query_id=result.query_id, newest_first=False)
    assert [e["kind"] for e in events] == ["attempt", "decision", "result"]
    decision, outcome = events[1], events[2]
    assert decision["subject"] == "bob" and decision["auth_method"] == "local"
    assert decision["verified"] is False
    assert decision["policy_hash"] == session.policy.hash
    assert decision["fingerprint"] and decision["decision"] == "allow"
    assert decision["masked_columns"] == {"email": "email"}
    assert decision["purpose"] == "testing"
    assert outcome["rows"] == 2 and outcome["duration_ms"] >= 0


def test_events_appended_together_are_chained_in_order_or_not_at_all(store):
    """``append_many`` (the engine's attempt + decision) is one transaction: when a later
    event cannot be written, the earlier one is not in the chain either."""
    before = store.count()
    first, second = store.append_many([("attempt", {"subject": "a"}), ("decision", {})])
    assert second == first + 1
    with pytest.raises(AuditError):
        store.append_many([("attempt", {"subject": "b"}), ("decision", {"rows": object()})])
    assert store.count() == before + 2
    assert store.verify().ok


def test_denied_query_is_recorded_with_its_reasons(session_for):
    session = session_for("bob")
    with pytest.raises(QueryDenied):
        session.sql("DROP TABLE customers")
    (decision,) = session.audit.events(kinds=["decision"])
    assert decision["decision"] == "deny" and decision["rules"] == ["deny-drop"]
    assert decision["reasons"][0].startswith("DROP statements")


def test_statement_is_stored_without_its_literals(session_for):
    session = session_for("bob")
    session.sql("SELECT count(*) FROM customers WHERE email = 'jane.doe@example.com'")
    (attempt,) = session.audit.events(kinds=["attempt"])
    assert "jane.doe" not in attempt["statement"] and "?" in attempt["statement"]
    (decision,) = session.audit.events(kinds=["decision"])
    assert "jane.doe" not in decision["rewritten_sql"]
    assert len(decision["rewritten_hash"]) == 64


def test_query_does_not_run_when_the_audit_cannot_be_written(session_for, raw, tmp_path):
    session = session_for("alice")
    before = raw("SELECT count(*) FROM orders")
    tamper(
        session.audit,
        "CREATE TRIGGER no_more BEFORE INSERT ON events "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    with pytest.raises(AuditError, match="was not run"):
        session.sql("SELECT count(*) FROM orders")
    assert raw("SELECT count(*) FROM orders") == before


def test_unwritable_audit_location_fails_with_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(AuditError, match="cannot be opened"):
        AuditStore(blocker / "audit.sqlite")


def test_two_writers_keep_one_chain(tmp_path):
    first = AuditStore(tmp_path / "a.sqlite")
    second = AuditStore(tmp_path / "a.sqlite")
    for i in range(20):
        (first if i % 2 else second).append("attempt", subject=str(i))
    report = first.verify()
    assert report.ok and report.rows == 20


class FailsOnAppend(SQLiteAuditStore):
    """A SQLite audit store whose n-th append fails, as a full disk would."""

    def __init__(self, path, fail_at: int) -> None:
        super().__init__(path)
        self.fail_at = fail_at
        self.appends = 0

    def append(self, kind, **event):
        self.appends += 1
        if self.appends == self.fail_at:
            raise AuditError(f"The audit store at {self.path} cannot be written (disk full).")
        return super().append(kind, **event)

    def append_many(self, events):
        """Events written together count one by one; the batch fails if any would."""
        start, self.appends = self.appends, self.appends + len(events)
        if start < self.fail_at <= self.appends:
            raise AuditError(f"The audit store at {self.path} cannot be written (disk full).")
        return super().append_many(events)


def session_with_store(session_for, tmp_path, user: str, fail_at: int):
    session = session_for(user)
    session.audit = FailsOnAppend(tmp_path / "failing.sqlite", fail_at)
    return session


def test_unrecorded_result_says_it_ran_and_is_withheld(session_for, tmp_path):
    """Attempt and decision are written; the third append (the result) fails."""
    session = session_with_store(session_for, tmp_path, "bob", fail_at=3)
    with pytest.raises(AuditError) as error:
        session.sql("SELECT email FROM customers LIMIT 2")
    message = str(error.value)
    assert message.startswith("The statement ran")
    assert "result is withheld" in message and "not run" not in message
    assert message.count(". ") == 0 and message.endswith(".")
    kinds = [e["kind"] for e in session.audit.events(newest_first=False)]
    assert kinds == ["attempt", "decision"]


def test_unrecorded_failure_says_the_statement_failed(session_for, tmp_path):
    session = session_with_store(session_for, tmp_path, "bob", fail_at=3)
    with pytest.raises(AuditError, match=r"^The statement failed, and its failure could not"):
        session.sql("SELECT CAST(city AS INTEGER) FROM customers")


def test_audit_file_is_private_under_umask_000(tmp_path):
    """In a child process with umask 0: home 0700, store and its WAL files 0600."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "home"
    code = (
        "import os, sys; os.umask(0); from jupyter_gov.audit import AuditStore; "
        "s = AuditStore(); s.append('attempt', subject='x'); "
        "assert s.verify().ok"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "JUPYTER_GOV_HOME": str(home), "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert home.stat().st_mode & 0o777 == 0o700
    files = sorted(p.name for p in home.iterdir())
    assert "audit.sqlite" in files
    for path in home.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
