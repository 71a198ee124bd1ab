"""Saved datasets carry their provenance, and ``jupyter-gov provenance`` checks it.

Each test writes a real Parquet file from a governed result and verifies it against the
real audit chain it came from; tampering is done the way an attacker would: rewriting the
file, editing its metadata, or editing the audit store behind its back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_gov.audit import AuditStore
from jupyter_gov.cli import main
from jupyter_gov.errors import ProvenanceMismatch
from jupyter_gov.provenance import KEY, check, content_hash, verify
from tests.conftest import raw_sql

SQL = "SELECT customer_id, full_name, email, city FROM customers ORDER BY customer_id LIMIT 20"


@pytest.fixture
def approved_file(session_for, tmp_path: Path):
    """Bob's read with email unmasked, approved by Dave, saved as features.parquet."""
    bob, dave = session_for("bob"), session_for("dave")
    request = bob.request_approval(SQL, justification="churn model", unmask=["email"])
    dave.approve(request.id, "ok for the model")
    result = bob.sql(SQL, unmask=["email"], approval_id=request.id)
    path = result.save(tmp_path / "features.parquet")
    return bob, result, path, request


def _store_arg(session) -> list[str]:
    return ["--store", session.audit.url]


def test_save_writes_the_rows_and_a_provenance_record_into_the_parquet_metadata(
    session_for, tmp_path: Path
) -> None:
    bob = session_for("bob")
    result = bob.sql(SQL)
    path = result.save(tmp_path / "plain.parquet")
    table = pq.read_table(path)
    assert table.replace_schema_metadata(None).equals(result.arrow())
    record = json.loads(table.schema.metadata[KEY])
    assert record["identity"]["subject"] == "bob"
    assert record["policy"]["hash"] == bob.policy.hash
    assert record["masked_columns"] == {"full_name": "token", "email": "email"}
    assert record["content_sha256"] == content_hash(result.arrow())
    kinds = [e["kind"] for e in record["statements"][0]["events"]]
    assert kinds == ["attempt", "decision", "result"]
    assert record["chain_head"] == {"id": bob.audit.head()[0], "hash": bob.audit.head()[1]}


def test_a_fresh_file_verifies_and_names_who_ran_it_and_who_approved_it(approved_file) -> None:
    bob, _, path, request = approved_file
    report = check(path, bob.audit)
    assert report.ok
    summary = report.summary()
    assert "these 20 rows came from 1 statement" in summary
    assert f"run by Bob under policy demo {bob.policy.short_hash}" in summary
    assert f"approved by Dave (request {request.id})" in summary
    assert "contents intact; events present; chain intact" in summary
    assert report.approvals[0].requester == "bob"


def test_the_command_prints_the_answer_and_exits_0(approved_file, capsys) -> None:
    bob, _, path, _ = approved_file
    assert main(["provenance", str(path), *_store_arg(bob)]) == 0
    out = capsys.readouterr().out
    assert "approved by Dave" in out and "chain intact" in out


def test_a_changed_value_in_the_file_is_reported_as_altered_contents(approved_file, capsys) -> None:
    bob, _, path, _ = approved_file
    table = pq.read_table(path)
    cities = table.column("city").to_pylist()
    cities[3] = "Atlantis"
    forged = table.set_column(3, "city", pa.array(cities))  # metadata kept as written
    pq.write_table(forged, path)
    assert main(["provenance", str(path), *_store_arg(bob)]) == 1
    captured = capsys.readouterr()
    assert "contents ALTERED" in captured.out
    assert "the file was altered" in captured.err
    assert "Traceback" not in captured.err


def test_a_record_edited_to_name_someone_else_fails_against_the_audit(approved_file) -> None:
    bob, _, path, _ = approved_file
    table = pq.read_table(path)
    record = json.loads(table.schema.metadata[KEY])
    record["identity"]["subject"] = "alice"
    record["approvals"] = []
    metadata = {**table.schema.metadata, KEY: json.dumps(record).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    report = verify(path, bob.audit)
    assert not report.ok
    assert report.subject == "bob"  # the audit, not the file, says who ran it
    assert any("different identity" in p for p in report.problems)
    assert any("other approvals" in p for p in report.problems)


def test_an_audit_event_edited_after_the_file_was_written_breaks_the_check(
    approved_file,
) -> None:
    bob, result, path, _ = approved_file
    raw_sql(bob.audit, "UPDATE events SET subject = ? WHERE id = ?", ("mallory", result.audit_id))
    with pytest.raises(ProvenanceMismatch, match="does not match the audit"):
        check(path, bob.audit)
    report = verify(path, bob.audit)
    assert not report.chain_ok


def test_a_deleted_audit_event_is_named(approved_file) -> None:
    bob, result, path, _ = approved_file
    raw_sql(bob.audit, "DELETE FROM events WHERE id = ?", (result.audit_id,))
    report = verify(path, bob.audit)
    assert f"audit event {result.audit_id} is no longer in the audit" in report.problems


def test_a_file_without_provenance_is_a_usage_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    assert main(["provenance", str(path)]) == 2
    assert "carries no jupyter-gov provenance" in capsys.readouterr().err


def test_the_contents_hash_ignores_chunking_and_slicing() -> None:
    table = pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]})
    sliced = table.slice(2, 5)
    rechunked = pa.concat_tables([table.slice(2, 2), table.slice(4, 3)])
    assert content_hash(sliced) == content_hash(rechunked)
    assert content_hash(sliced) != content_hash(table.slice(2, 4))


def test_gsql_save_writes_a_file_that_verifies(demo_connector, tmp_path: Path) -> None:
    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    magic = shell.magics_manager.registry["GovMagic"]
    original = magic.session
    sessions = []

    def session(user=None):
        s = original(user)
        s.use_connector("demo", demo_connector)
        sessions.append(s)
        return s

    magic.session = session
    try:
        path = tmp_path / "cell.parquet"
        shell.run_cell_magic("gsql", f"--user bob -o r --save {path}", "SELECT city FROM customers")
        assert shell.user_ns["r"].row_count == pq.read_table(path).num_rows
        assert check(path, sessions[-1].audit).ok
    finally:
        shell.extension_manager.unload_extension("jupyter_gov")
        InteractiveShell.clear_instance()


def test_the_contents_hash_survives_a_parquet_round_trip_of_nulls_and_types(
    tmp_path: Path,
) -> None:
    table = pa.table(
        {
            "s": pa.array(["x", None, "z" * 50]),
            "d": pa.array([1.5, None, 3.0]),
            "t": pa.array([1, 2, None], pa.timestamp("us")),
        }
    ).slice(1)
    pq.write_table(table, tmp_path / "t.parquet")
    assert content_hash(pq.read_table(tmp_path / "t.parquet")) == content_hash(table)


def test_a_consistently_rewritten_audit_is_caught_by_the_head_the_file_recorded(
    approved_file,
) -> None:
    """Someone edits the result event and recomputes every later hash: the chain verifies
    on its own, but the head hash recorded in the file no longer matches."""
    import sqlite3

    from jupyter_gov.audit import FIELDS, GENESIS, row_hash

    bob, result, path, _ = approved_file
    with sqlite3.connect(bob.audit.path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
        prev = GENESIS
        for row in rows:
            record = {name: row[name] for name in FIELDS}
            if row["id"] == result.audit_id:
                record["subject"] = "mallory"
            digest = row_hash(prev, record)
            db.execute(
                "UPDATE events SET subject = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (record["subject"], prev, digest, row["id"]),
            )
            prev = digest
    assert AuditStore(bob.audit.url).verify().ok  # the rewrite is self-consistent
    report = verify(path, bob.audit)
    assert not report.chain_ok
    assert any("rewritten" in p for p in report.problems)


def test_a_file_saved_from_a_team_store_verifies_against_it(
    store_url: str, demo_connector, tmp_path: Path
) -> None:
    """The same record and checks on the PostgreSQL team store as on a SQLite file."""
    from jupyter_gov.engine import GovernedSession

    bob = GovernedSession(None, "bob", audit=store_url)
    bob.use_connector("demo", demo_connector)
    path = bob.sql("SELECT city, segment FROM customers LIMIT 5").save(tmp_path / "t.parquet")
    report = check(path, AuditStore(store_url))
    assert report.ok and report.subject == "bob" and report.chain_head == bob.audit.head()[0]


def test_a_file_built_from_saved_results_names_every_statement_behind_it(
    session_for, tmp_path: Path
) -> None:
    bob = session_for("bob")
    bob.sql("SELECT customer_id, city FROM customers", name="people")
    bob.sql("SELECT customer_id, amount FROM orders", name="spend")
    joined = bob.sql(
        "SELECT p.city, sum(s.amount) AS total FROM people p "
        "JOIN spend s ON s.customer_id = p.customer_id GROUP BY p.city",
        connection="scratch",
    )
    path = joined.save(tmp_path / "by_city.parquet")
    report = check(path, bob.audit)
    assert len(report.statements) == 3
    assert [s["statement"].split(" FROM ")[1][:9] for s in report.statements] == [
        "people AS",
        "customers",
        "orders",
    ]
    assert "these" in report.summary() and "came from 3 statements" in report.summary()
