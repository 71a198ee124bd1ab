"""Dangerous statements are denied however they are dressed up; legitimate analysis runs."""

from __future__ import annotations

import pytest

from jupyter_gov.result import ApprovalRequired, QueryDenied

DENIED = {
    "DROP TABLE customers": "deny-drop",
    "TRUNCATE orders": "deny-truncatetable",
    "ALTER TABLE customers ADD COLUMN x INT": "deny-alter",
    "CREATE TABLE x AS SELECT * FROM customers": "deny-create",
    "GRANT SELECT ON customers TO bob": "deny-grant",
    "REVOKE SELECT ON customers FROM bob": "deny-revoke",
    "ATTACH 'other.db' AS other": "deny-attach",
    "DETACH other": "deny-detach",
    "INSTALL httpfs": "deny-install",
    "LOAD httpfs": "deny-load",
    "COPY customers TO 'out.csv'": "deny-copy",
    "EXPORT DATABASE 'dump'": "parse-error",
    "IMPORT DATABASE 'dump'": "parse-error",
    "PRAGMA database_list": "deny-pragma",
    "SET threads = 1": "deny-set",
    "RESET threads": "deny-reset",
    "CHECKPOINT": "deny-checkpoint",
    "EXPLAIN SELECT * FROM customers": "deny-explain",
    "CALL pragma_version()": "deny-call",
    "SUMMARIZE customers": "deny-summarize",
    "DESCRIBE customers": "deny-describe",
    "CREATE SECRET s (TYPE s3, KEY_ID 'x')": "deny-create-secret",
    "SELECT * FROM read_csv('/etc/passwd')": "file-read",
    "SELECT * FROM read_csv_auto('/etc/passwd')": "file-read",
    "SELECT * FROM read_parquet('x.parquet')": "file-read",
    "SELECT * FROM read_json('x.json')": "file-read",
    "SELECT * FROM read_json_auto('x.json')": "file-read",
    "SELECT * FROM read_text('/etc/passwd')": "file-read",
    "SELECT * FROM read_blob('/etc/passwd')": "file-read",
    "SELECT * FROM glob('/etc/*')": "file-read",
    "SELECT * FROM '/etc/passwd'": "file-read",
    "SELECT * FROM 'data.parquet'": "file-read",
    "SELECT * FROM query('SELECT * FROM customers')": "table-function",
    "SELECT * FROM query_table('customers')": "table-function",
    "SELECT * FROM duckdb_settings()": "table-function",
    "SELECT * FROM information_schema.tables": "system-catalog",
    "SELECT current_setting('threads')": "dangerous-function",
    "SELECT * FROM no_such_table": "unknown-table",
    "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d": "embedded-write",
    "WITH customers AS (SELECT 1 AS email) SELECT * FROM customers": "cte-shadows-table",
    "selec email from customers": "parse-error",
}


@pytest.mark.parametrize(("sql", "rule"), DENIED.items())
def test_dangerous_statement_is_denied(session_for, sql, rule):
    with pytest.raises(QueryDenied) as denied:
        session_for("alice").sql(sql)
    assert rule in denied.value.plan.rules
    assert all(reason.endswith(".") for reason in denied.value.plan.reasons)


#: Dangerous statements in disguise (also run through the gateway).
DISGUISED = (
    "/* harmless */ DROP TABLE customers",
    "-- comment\nDROP TABLE customers",
    "dRoP TaBlE customers",
    "SELECT 1; DROP TABLE customers",
    "SELECT 1;\n/* x */ drop table orders;",
    "WITH x AS (SELECT 1) SELECT * FROM x; TRUNCATE orders",
    "SELECT * FROM READ_CSV('/etc/passwd')",
    "SELECT * FROM (SELECT * FROM read_text('/etc/passwd'))",
    "WITH f AS (SELECT * FROM glob('*')) SELECT * FROM f",
    "SELECT (SELECT count(*) FROM read_blob('/etc/passwd'))",
)


@pytest.mark.parametrize("sql", DISGUISED)
def test_disguised_dangerous_statement_is_denied(session_for, sql):
    with pytest.raises(QueryDenied):
        session_for("alice").sql(sql)


def test_database_is_unchanged_after_denied_cell(session_for, raw):
    before = raw("SELECT count(*) FROM orders")
    with pytest.raises(QueryDenied):
        session_for("alice").sql("DELETE FROM orders WHERE order_id = 1; DROP TABLE orders")
    assert raw("SELECT count(*) FROM orders") == before


def test_cell_with_one_denied_statement_runs_nothing(session_for):
    session = session_for("alice")
    with pytest.raises(QueryDenied) as denied:
        session.sql("SELECT 1; SELECT * FROM read_csv('x')")
    assert denied.value.plan.decision == "deny"
    events = session.audit.events(kinds=["result"])
    assert events == []


def test_unparseable_sql_names_the_position(session_for):
    with pytest.raises(QueryDenied) as denied:
        session_for("bob").sql("SELECT email FROM customers WHERE")
    assert denied.value.plan.rules == ["parse-error"]
    assert "line 1" in denied.value.plan.reasons[0]


def test_a_colon_parameter_duckdb_reads_as_an_alias_is_explained(session_for):
    with pytest.raises(QueryDenied) as denied:
        session_for("bob").sql("SELECT :v AS v", {"v": 1})
    assert denied.value.plan.rules == ["parse-error"]
    assert "write a parameter as $name" in denied.value.plan.reasons[0]
    assert session_for("bob").sql("SELECT $v AS v", {"v": 1}).fetchall() == [(1,)]


@pytest.mark.parametrize(
    "where",
    [
        "",
        "WHERE 1=1",
        "WHERE true",
        "WHERE 1 = 1 OR order_id = 3",
        "WHERE order_id = order_id",
        "WHERE status LIKE '%'",
    ],
)
def test_delete_without_real_where_is_denied(session_for, where):
    with pytest.raises(QueryDenied) as denied:
        session_for("alice").sql(f"DELETE FROM orders {where}")
    assert "unbounded-write" in denied.value.plan.rules


def test_update_without_where_is_denied(session_for):
    with pytest.raises(QueryDenied) as denied:
        session_for("alice").sql("UPDATE orders SET amount = 0")
    assert "unbounded-write" in denied.value.plan.rules


def test_writes_by_read_only_role_are_denied(session_for):
    with pytest.raises(QueryDenied) as denied:
        session_for("bob").sql("UPDATE orders SET amount = 0 WHERE order_id = 1")
    assert denied.value.plan.rules == ["read-only-role"]


def test_admin_write_on_production_needs_approval(session_for):
    with pytest.raises(ApprovalRequired) as pending:
        session_for("alice").sql("UPDATE orders SET status = 'cancelled' WHERE order_id = 1")
    assert pending.value.plan.rules == ["approval:admin-write-production"]


def test_bulk_export_of_unmasked_pii_needs_approval(session_for):
    with pytest.raises(ApprovalRequired) as pending:
        session_for("alice").sql("SELECT email, ssn FROM customers")
    assert pending.value.plan.rules == ["approval:bulk-unmasked-pii"]


def test_small_export_of_unmasked_pii_runs(session_for):
    assert len(session_for("alice").sql("SELECT email, ssn FROM customers LIMIT 100")) == 100


def test_user_without_role_is_denied_with_a_sentence(session_for):
    with pytest.raises(QueryDenied) as denied:
        session_for("eve").sql("SELECT 1")
    assert denied.value.plan.rules == ["no-role"]
    assert "has no role" in str(denied.value)


#: Everyday analysis an analyst runs: allowed (the gateway suite runs it there too).
LEGITIMATE = (
    "SELECT c.segment, count(*) AS n, sum(o.amount) FROM customers c "
    "JOIN orders o USING (customer_id) GROUP BY 1 ORDER BY 1",
    "SELECT region, avg(amount), median(amount) FROM orders GROUP BY ALL",
    "SELECT customer_id, sum(amount) OVER (PARTITION BY customer_id ORDER BY order_date) "
    "FROM orders LIMIT 10",
    "SELECT date_trunc('month', order_date) AS m, count(*) FROM orders GROUP BY 1",
    "WITH top AS (SELECT customer_id, sum(amount) s FROM orders GROUP BY 1 ORDER BY s DESC "
    "LIMIT 5) SELECT c.city, t.s FROM top t JOIN customers c USING (customer_id)",
    "SELECT status, count(*) FILTER (WHERE amount > 100) FROM orders GROUP BY status",
    "SELECT * FROM range(3)",
    "SELECT unnest([1, 2, 3])",
    "SELECT extract(year FROM signup_date) y, count(*) FROM customers GROUP BY y",
)


@pytest.mark.parametrize("sql", LEGITIMATE)
def test_legitimate_analysis_is_allowed_for_analysts(session_for, sql):
    result = session_for("bob").sql(sql)
    assert result.decision == "allow" and result.rows > 0


def test_analysts_cannot_read_another_users_registered_result(session_for, demo_policy):
    alice = session_for("alice")
    alice.sql("SELECT email FROM customers LIMIT 3", name="raw_emails")
    bob = session_for("bob")
    bob._results = alice._results  # same kernel, same connector
    with pytest.raises(QueryDenied) as denied:
        bob.sql("SELECT * FROM raw_emails")
    assert denied.value.plan.rules == ["unknown-table"]


def test_own_registered_result_can_be_queried_again(session_for):
    bob = session_for("bob")
    bob.sql("SELECT segment, count(*) n FROM customers GROUP BY 1", name="by_segment")
    assert bob.sql("SELECT sum(n) FROM by_segment").fetchall() == [(10000,)]
