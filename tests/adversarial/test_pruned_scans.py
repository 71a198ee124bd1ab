"""A masked scan carries only the columns the statement reads, and nothing else changes.

The planner used to project every column of a masked table, each with its mask; now each
scan projects the columns read through it (``masking.masked_source(carried=...)``), when
the analysis saw every column the statement reads. These tests pin the three promises of
that rule:

- the scan is narrower exactly when it may be: shapes that name columns implicitly
  (star modifiers, NATURAL/USING joins, whole-row reads, COLUMNS(...), PIVOT) keep the
  whole scan;
- a pruned statement answers exactly what the whole-scan statement answers;
- a kept column keeps its mask and the table keeps its row filter.
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from jupyter_gov import plan as planner

#: Query shapes over the demo tables: joins, self-joins, correlated and uncorrelated
#: subqueries, CTEs, aggregates, windows, set operations, masked columns in every place.
SHAPES = [
    "SELECT city FROM customers ORDER BY customer_id LIMIT 20",
    "SELECT email, city FROM customers ORDER BY customer_id LIMIT 20",
    "SELECT count(*) FROM customers",
    "SELECT count(*), count(email) FROM customers",
    "SELECT c.full_name, o.amount FROM customers AS c JOIN orders AS o "
    "ON c.customer_id = o.customer_id ORDER BY o.order_id LIMIT 20",
    "SELECT a.email, b.city FROM customers AS a JOIN customers AS b "
    "ON a.customer_id = b.customer_id + 1 ORDER BY a.customer_id LIMIT 20",
    "SELECT customer_id, phone FROM customers AS c WHERE EXISTS "
    "(SELECT 1 FROM orders AS o WHERE o.customer_id = c.customer_id AND o.amount > 100) "
    "ORDER BY customer_id LIMIT 20",
    "SELECT c.customer_id FROM customers AS c WHERE c.ssn = "
    "(SELECT max(ssn) FROM customers AS d WHERE d.city = c.city) ORDER BY 1 LIMIT 20",
    "SELECT city, count(*) AS n, min(email) AS e FROM customers GROUP BY city ORDER BY city",
    "WITH x AS (SELECT customer_id, credit_card FROM customers) "
    "SELECT credit_card FROM x ORDER BY customer_id LIMIT 20",
    "SELECT email FROM customers WHERE city = 'Berlin' UNION ALL "
    "SELECT phone FROM customers WHERE city = 'Paris' ORDER BY 1 LIMIT 30",
    "SELECT customer_id, row_number() OVER (PARTITION BY segment ORDER BY birth_date, customer_id) "
    "FROM customers ORDER BY customer_id LIMIT 20",
    "SELECT segment, string_agg(full_name, ',' ORDER BY customer_id) FROM customers "
    "GROUP BY segment ORDER BY segment",
    "SELECT t.subject, c.email FROM support_tickets AS t JOIN customers AS c "
    "USING (customer_id) ORDER BY t.ticket_id LIMIT 20",
    "SELECT * EXCLUDE (ssn) FROM customers ORDER BY customer_id LIMIT 5",
    "SELECT * FROM customers NATURAL JOIN orders ORDER BY order_id LIMIT 5",
    "SELECT to_json(c) FROM customers AS c ORDER BY customer_id LIMIT 5",
    "SELECT COLUMNS('.*mail.*') FROM customers ORDER BY customer_id LIMIT 5",
    "SELECT #2, #3, city FROM customers ORDER BY customer_id LIMIT 5",
    "SELECT * FROM (SELECT segment, city FROM customers) "
    "PIVOT (count(*) FOR segment IN ('consumer', 'enterprise')) ORDER BY city",
    "SELECT region, sum(amount) FROM orders GROUP BY region ORDER BY region",
]


def _names(sql: str, table: str) -> list[set[str]]:
    """The projected column names of each masked scan of ``table`` in a rendered SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return [
        {projection.alias_or_name for projection in select.expressions}
        for select in tree.find_all(exp.Select)
        if isinstance(
            source := select.args["from_"].this if select.args.get("from_") else None, exp.Table
        )
        and source.name == table
        and source.db == "main"
    ]


def _whole_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan as before the rule: every scan carries its whole table."""
    monkeypatch.setattr(planner, "_names_every_column", lambda qualified: False)


def test_a_scan_carries_only_the_columns_it_reads(session_for):
    sql = session_for("bob").explain("SELECT email FROM customers").statements[0].sql
    assert _names(sql, "customers") == [{"email"}]


def test_each_scan_of_a_self_join_carries_its_own_columns(session_for):
    sql = (
        session_for("bob")
        .explain(
            "SELECT a.email FROM customers AS a JOIN customers AS b "
            "ON a.customer_id = b.customer_id WHERE b.city = 'Berlin'"
        )
        .statements[0]
        .sql
    )
    assert _names(sql, "customers") == [{"customer_id", "email"}, {"customer_id", "city"}]


def test_a_correlated_column_is_carried_by_the_outer_scan(session_for):
    sql = (
        session_for("bob")
        .explain(
            "SELECT c.full_name FROM customers AS c WHERE EXISTS "
            "(SELECT 1 FROM support_tickets AS t WHERE t.customer_id = c.customer_id)"
        )
        .statements[0]
        .sql
    )
    assert _names(sql, "customers") == [{"customer_id", "full_name"}]


def test_count_star_keeps_one_column(session_for):
    sql = session_for("bob").explain("SELECT count(*) FROM customers").statements[0].sql
    assert len(_names(sql, "customers")[0]) == 1


@pytest.mark.parametrize(
    "shape",
    [
        "SELECT * EXCLUDE (ssn) FROM customers",
        "SELECT * REPLACE (1 AS city) FROM customers",
        "SELECT * FROM customers NATURAL JOIN support_tickets",
        "SELECT email FROM customers JOIN support_tickets USING (customer_id)",
        "SELECT to_json(c) FROM customers AS c",
        "SELECT COLUMNS('.*mail.*') FROM customers",
        "SELECT #2 FROM customers",
        "SELECT #3, email FROM customers",
        "SELECT * FROM (SELECT * FROM customers) PIVOT (count(*) FOR segment IN ('consumer'))",
    ],
)
def test_a_shape_that_names_columns_implicitly_keeps_the_whole_scan(session_for, shape):
    plan = session_for("bob").explain(shape)
    if plan.decision != "allow":
        return  # denied outright: nothing runs, nothing to carry
    sql = plan.statements[0].sql
    columns = session_for("bob").connector().catalog().get("customers").columns
    assert all(scan == set(columns) for scan in _names(sql, "customers"))


def test_a_kept_masked_column_keeps_its_mask(session_for, raw):
    ((value,),) = (
        session_for("bob").sql("SELECT ssn FROM customers WHERE customer_id = 7").fetchall()
    )
    ((raw_value,),) = raw("SELECT ssn FROM customers WHERE customer_id = 7")
    assert value != raw_value and value.endswith(raw_value[-4:]) and "*" in value


def test_the_row_filter_applies_when_its_column_is_not_read(session_for, raw):
    carol = session_for("carol")  # region EMEA: the orders-by-region filter applies
    plan = carol.explain("SELECT order_id FROM orders")
    assert _names(plan.statements[0].sql, "orders") == [{"order_id"}]
    got = {r[0] for r in carol.sql("SELECT order_id FROM orders").fetchall()}
    assert got == {r[0] for r in raw("SELECT order_id FROM orders WHERE region = 'EMEA'")}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("user", ["bob", "carol"])
def test_pruned_scans_answer_as_whole_scans(session_for, monkeypatch, shape, user):
    pruned = session_for(user).sql(shape).fetchall()
    _whole_scans(monkeypatch)
    whole = session_for(user).sql(shape).fetchall()
    assert pruned == whole
