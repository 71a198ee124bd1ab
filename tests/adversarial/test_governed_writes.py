"""Writes by a role that may write but sees masked values: no write is an oracle on raw
values, none returns rows, and the role's row filter confines what it changes.

The demo gives writes only to admins, who see raw values; here a clerk writes on a
staging copy of the demo database with analysts' masks and carol's region filter.
"""

from __future__ import annotations

import pytest
import yaml

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import QueryDenied
from jupyter_gov.policy import Policy
from jupyter_gov.policy.loader import demo_policy_text


@pytest.fixture(scope="module")
def clerk_policy() -> Policy:
    data = yaml.safe_load(demo_policy_text())
    data["identity"]["users"]["frank"] = {
        "display_name": "Frank",
        "groups": ["clerks"],
        "attributes": {"region": "EMEA"},
    }
    data["roles"]["clerk"] = {
        "description": "Writes orders in his region; PII masked.",
        "groups": ["clerks"],
        "access": "read_write",
    }
    data["connections"]["demo"]["environment"] = "staging"
    data["row_filters"][0]["roles"].append("clerk")
    return Policy(data)


@pytest.fixture(scope="module")
def frank(clerk_policy: Policy) -> GovernedSession:
    """A private demo database: these tests change rows the shared one must keep."""
    return GovernedSession(clerk_policy, "frank")


def raw(session: GovernedSession, sql: str) -> list[tuple]:
    return session.connector("demo").con.execute(sql).fetchall()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE customers SET segment = 'x' WHERE ssn = '123-45-6789'",
        "UPDATE customers SET segment = 'x' WHERE email LIKE 'a%'",
        "UPDATE customers SET city = email WHERE customer_id = 1",
        "DELETE FROM customers WHERE credit_card LIKE '4%'",
        "DELETE FROM customers WHERE customer_id IN "
        "(SELECT customer_id FROM customers WHERE phone = '555-0100')",
    ],
    ids=["update-where-ssn", "update-where-email", "update-set-from-email", "delete-where-card",
         "delete-where-phone-subquery"],
)  # fmt: skip
def test_write_that_reads_a_masked_column_of_its_target_is_denied(frank, sql):
    before = raw(frank, "SELECT count(*), sum(hash(segment || city)) FROM customers")
    with pytest.raises(QueryDenied) as denied:
        frank.sql(sql)
    assert "write-reads-masked" in denied.value.plan.rules
    assert raw(frank, "SELECT count(*), sum(hash(segment || city)) FROM customers") == before


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE orders SET status = 'held' WHERE order_id = 1 RETURNING *",
        "DELETE FROM orders WHERE order_id = 2 RETURNING order_id",
        "INSERT INTO orders SELECT * FROM orders WHERE order_id = 3 RETURNING *",
    ],
    ids=["update-returning", "delete-returning", "insert-returning"],
)
def test_write_with_returning_is_denied(frank, sql):
    with pytest.raises(QueryDenied) as denied:
        frank.sql(sql)
    assert "write-returning" in denied.value.plan.rules


def test_update_changes_only_rows_inside_the_writers_row_filter(frank):
    ids = raw(frank, "SELECT min(order_id) FROM orders GROUP BY region ORDER BY region")
    assert len(ids) > 1, "the demo data spans several regions"
    listed = ", ".join(str(i) for (i,) in ids)
    frank.sql(f"UPDATE orders SET status = 'held_by_frank' WHERE order_id IN ({listed})")
    changed = raw(frank, "SELECT DISTINCT region FROM orders WHERE status = 'held_by_frank'")
    assert changed == [("EMEA",)]


def test_delete_removes_only_rows_inside_the_writers_row_filter(frank):
    ids = raw(frank, "SELECT max(order_id) FROM orders GROUP BY region ORDER BY region")
    listed = ", ".join(str(i) for (i,) in ids)
    frank.sql(f"DELETE FROM orders WHERE order_id IN ({listed})")
    kept = raw(frank, f"SELECT region FROM orders WHERE order_id IN ({listed}) ORDER BY region")
    regions = sorted(r for (r,) in raw(frank, "SELECT DISTINCT region FROM orders"))
    assert [r for (r,) in kept] == [r for r in regions if r != "EMEA"]
