"""A plan is pure: building it rewrites a copy, so the cached plan keeps the statement as
written (lineage and a re-plan read it), and each of its table references points into it."""

from __future__ import annotations

import pytest
import sqlglot
import yaml

from jupyter_gov.plan import Plan
from jupyter_gov.policy import Policy
from jupyter_gov.policy.loader import demo_policy_text

#: (user, statement): a late mask and a parameter; a scan mask under a join; a row filter;
#: a mask inside a CTE and a subquery.
STATEMENTS = [
    ("bob", "SELECT email FROM customers WHERE customer_id = :id"),
    (
        "bob",
        "SELECT c.ssn, o.amount FROM customers c JOIN orders o "
        "ON o.customer_id = c.customer_id WHERE c.email LIKE ?",
    ),
    ("carol", "SELECT region, sum(amount) FROM orders GROUP BY region"),
    (
        "carol",
        "WITH x AS (SELECT customer_id, phone FROM customers) "
        "SELECT phone FROM x WHERE customer_id IN (SELECT customer_id FROM orders)",
    ),
]


def _as_written(text: str) -> str:
    return sqlglot.parse_one(text, read="duckdb").sql("duckdb")


@pytest.mark.parametrize(("user", "text"), STATEMENTS)
def test_cached_plan_keeps_the_statement_as_written(session_for, user: str, text: str) -> None:
    session = session_for(user)
    params = {"id": 1} if ":id" in text else ["%@example.com"] if "?" in text else None
    plan = session.explain(text, params)
    assert plan.decision == "allow"
    assert plan.statements[0].sql != _as_written(text)  # it was rewritten ...
    cached: Plan = session.explain(text, params)
    assert cached.statements[0].info.expression.sql("duckdb") == _as_written(text)  # ... a copy


@pytest.mark.parametrize(("user", "text"), STATEMENTS)
def test_table_references_point_into_the_statement_as_written(
    session_for, user: str, text: str
) -> None:
    params = {"id": 1} if ":id" in text else ["%@example.com"] if "?" in text else None
    info = session_for(user).explain(text, params).statements[0].info
    assert info.tables
    assert all(ref.node.root() is info.expression for ref in info.tables)


def test_a_write_with_a_row_filter_keeps_its_where_as_written(session_for) -> None:
    """The rewrite ANDs the writer's row filter into an UPDATE's WHERE: on its own copy."""
    data = yaml.safe_load(demo_policy_text())
    data["identity"]["users"]["frank"] = {"groups": ["clerks"], "attributes": {"region": "EMEA"}}
    data["roles"]["clerk"] = {"groups": ["clerks"], "access": "read_write"}
    data["connections"]["demo"]["environment"] = "staging"
    data["row_filters"][0]["roles"].append("clerk")
    text = "UPDATE orders SET status = 'held' WHERE order_id = 7"
    plan = session_for("frank", Policy(data)).explain(text)
    assert plan.decision == "allow"
    assert "region" in plan.statements[0].sql  # the filter is in what runs ...
    assert plan.statements[0].info.expression.sql("duckdb") == _as_written(text)  # ... only


def test_the_same_statement_rewrites_the_same_from_an_emptied_cache(session_for) -> None:
    session = session_for("carol")
    text = "SELECT o.region, c.email FROM orders o JOIN customers c USING (customer_id)"
    first = session.explain(text)
    session._plans.clear()
    second = session.explain(text)
    assert second.statements[0].sql == first.statements[0].sql
    assert second.statements[0].info.expression.sql("duckdb") == _as_written(text)


def test_a_parsed_statement_carries_no_token_positions_into_its_copies():
    """The plan copies each statement several times; the parser's per-node positions
    would be deep-copied in Python every time, and nothing reads them after a parse."""
    from jupyter_gov.analysis import parse

    sql = "SELECT c.email AS e FROM customers AS c WHERE c.customer_id = 1"
    (statement,) = parse(sql, "duckdb")
    positions = {"line", "col", "start", "end"}
    assert not [n for n in statement.walk() if n._meta and positions & n._meta.keys()]
