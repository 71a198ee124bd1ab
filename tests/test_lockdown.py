"""The governed DuckDB cannot be used to reach around the proxy."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from jupyter_gov.errors import QueryFailed


def test_replacement_scans_cannot_read_kernel_variables(demo_connector):
    secret_frame = pa.table({"x": [1]})  # noqa: F841 - the point is that it is not visible
    with pytest.raises(QueryFailed, match="does not exist"):
        demo_connector.execute("SELECT * FROM secret_frame", {})


def test_configuration_is_locked(demo_connector):
    with pytest.raises(QueryFailed, match="locked"):
        demo_connector.execute("SET enable_external_access = true", {})


def test_file_access_is_off_even_for_raw_sql(demo_connector):
    with pytest.raises(QueryFailed, match="Permission Error"):
        demo_connector.execute("SELECT * FROM read_text('/etc/hostname')", {})


def test_result_relation_lives_on_a_scratch_connection(session_for):
    result = session_for("bob").sql("SELECT city FROM customers LIMIT 2")
    relation = result.relation
    with pytest.raises(duckdb.Error):
        relation.query("r", "SELECT * FROM customers").fetchall()


def test_results_cannot_shadow_catalog_tables(session_for):
    from jupyter_gov.errors import GovError

    with pytest.raises(GovError, match="choose another output name"):
        session_for("bob").sql("SELECT 1 AS x", name="customers")


def _file_policy(path, read_only: bool):
    import duckdb as db

    from jupyter_gov.policy import Policy

    con = db.connect(str(path))
    con.execute("CREATE TABLE notes(id INTEGER, body VARCHAR)")
    con.execute("INSERT INTO notes VALUES (1, 'hello')")
    con.close()
    return Policy.from_text(f"""
version: 1
name: files
identity: {{provider: local, users: {{ann: {{groups: [admins]}}}}}}
roles:
  admin: {{groups: [admins], access: read_write}}
connections:
  notes: {{url: "duckdb:///{path}", read_only: {str(read_only).lower()}}}
""")


def test_absolute_duckdb_file_url_opens_the_file(tmp_path):
    from jupyter_gov.engine import GovernedSession

    session = GovernedSession(_file_policy(tmp_path / "notes.duckdb", read_only=False), "ann")
    assert session.sql("SELECT body FROM notes").fetchall() == [("hello",)]
    session.sql("UPDATE notes SET body = 'bye' WHERE id = 1")
    assert session.sql("SELECT body FROM notes").fetchall() == [("bye",)]


def test_read_only_connection_refuses_writes_even_for_admins(tmp_path):
    from jupyter_gov.engine import GovernedSession

    session = GovernedSession(_file_policy(tmp_path / "notes.duckdb", read_only=True), "ann")
    with pytest.raises(QueryFailed, match="read-only"):
        session.sql("UPDATE notes SET body = 'bye' WHERE id = 1")
