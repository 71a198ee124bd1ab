"""A representative subset of the masking attacks on every live engine (DuckDB, PostgreSQL,
MariaDB, SQLite), for an analyst and the row-filtered analyst.

Portable SQL only, so each engine answers the same statement. The leak check of the oracle
applies as is; the differential check compares each engine's row count with DuckDB's
reference for the same user (types differ across engines, counts do not).
"""

from __future__ import annotations

import pytest

from tests.adversarial.oracle import check

SUBSET = {
    "plain": "SELECT email, ssn, phone, credit_card FROM customers",
    "alias": "SELECT x.full_name AS v, x.street_address FROM customers x",
    "star": "SELECT * FROM customers",
    "cte": "WITH a AS (SELECT * FROM customers) SELECT email, ssn FROM a",
    "subquery": "SELECT v FROM (SELECT credit_card AS v FROM customers) q",
    "union_all": "SELECT email FROM customers UNION ALL SELECT ssn FROM customers",
    "upper": "SELECT upper(email), lower(full_name) FROM customers",
    "substr": "SELECT substr(ssn, 1, 5), substr(credit_card, 1, 8) FROM customers",
    "group_by": "SELECT email, count(*) FROM customers GROUP BY email",
    "min_max": "SELECT min(ssn), max(ssn), min(phone), max(email) FROM customers",
    "order_by_leak": "SELECT customer_id FROM customers ORDER BY ssn, customer_id",
    "predicate_like": "SELECT count(*) FROM customers WHERE ssn LIKE '1%'",
    "predicate_email": "SELECT count(*) FROM customers WHERE email LIKE '%@example.com'",
    "join_on_masked": (
        "SELECT count(*) FROM customers a JOIN customers b ON a.ssn = b.ssn "
        "WHERE a.customer_id < 200 AND b.customer_id < 200"
    ),
    "join_orders": (
        "SELECT o.order_id, c.email FROM orders o JOIN customers c ON c.customer_id = o.customer_id"
    ),
    "correlated": (
        "SELECT (SELECT max(c.ssn) FROM customers c WHERE c.customer_id = o.customer_id) "
        "FROM orders o WHERE o.order_id < 300"
    ),
    "exists": (
        "SELECT count(*) FROM orders o WHERE o.order_id < 2000 AND EXISTS (SELECT 1 FROM "
        "orders i WHERE i.order_id = o.order_id AND i.region <> 'EMEA')"
    ),
    "case": "SELECT CASE WHEN customer_id > 0 THEN ssn END FROM customers",
    "tickets": "SELECT body FROM support_tickets",
    "tickets_join": (
        "SELECT t.body, c.phone FROM support_tickets t JOIN customers c "
        "ON c.customer_id = t.customer_id"
    ),
    "orders_count": "SELECT region, count(*) FROM orders GROUP BY region",
    "replace": "SELECT replace(ssn, '-', ''), replace(credit_card, ' ', '') FROM customers",
}


@pytest.fixture(scope="module")
def duckdb_counts(live_engines):
    """Row counts per (user, statement) on the DuckDB reference engine."""
    return {}


@pytest.mark.server
@pytest.mark.parametrize("name", sorted(SUBSET))
@pytest.mark.parametrize("user", ["bob", "carol"])
def test_masking_holds_on_every_live_engine(engine, live_engines, duckdb_counts, user, name):
    sql = SUBSET[name]
    outcome = check(lambda: engine.session(user).sql(sql).arrow(), None, sql)
    if outcome.denied:
        return
    key = (user, name)
    if key not in duckdb_counts:
        reference = live_engines["duckdb"]
        duckdb_counts[key] = reference.session(user).sql(sql).rows
    assert outcome.table.num_rows == duckdb_counts[key], f"{engine.name}: {sql}"
