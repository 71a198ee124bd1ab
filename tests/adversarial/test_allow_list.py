"""The function allow-list is checked against the names sqlglot gives each call, and every
call goes through it, including those written without parentheses.

Ordinary analytics must not be denied (``list_transform`` is ``transform`` to sqlglot, a
``MAP {...}`` literal is ``to_map``), and ``SELECT user`` must not slip past as a column.
"""

from __future__ import annotations

import pytest

ORDINARY = [
    "SELECT list_transform([1, 2], x -> x + 1) AS l",
    "SELECT MAP {'a': 1, 'b': 2} AS m",
    "SELECT map_from_entries([('a', 1)]) AS m",
    "SELECT now() IS NOT NULL AS n",
    "SELECT strip_accents('Müller') AS s",
    "SELECT timezone('UTC', order_date::TIMESTAMPTZ) AS t FROM orders LIMIT 1",
    "SELECT list_filter([1, 2, 3], x -> x > 1) AS l",
]


@pytest.mark.parametrize("sql", ORDINARY)
def test_ordinary_analytics_is_allowed_and_runs(session_for, sql) -> None:
    result = session_for("bob").sql(sql)
    assert result.decision == "allow"
    assert result.rows == 1


@pytest.mark.parametrize(
    "sql",
    ["SELECT current_schema", "SELECT user", "SELECT session_user", "SELECT current_user"],
)
def test_call_without_parentheses_goes_through_the_allow_list(session_for, sql) -> None:
    plan = session_for("bob").explain(sql)
    assert plan.rules == ["function-not-allowed"]


def test_a_real_column_named_like_a_niladic_function_is_a_column(session_for) -> None:
    plan = session_for("bob").explain("SELECT c.user FROM (SELECT 1 AS user) AS c")
    assert plan.decision == "allow"


@pytest.mark.parametrize("user", ["bob", "carol"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders PIVOT (sum(amount) FOR status IN ('shipped', 'cancelled'))",
        "SELECT * FROM customers PIVOT (count(*) FOR segment IN ('consumer', 'corporate'))",
        "WITH o AS (SELECT status, amount FROM orders) "
        "SELECT * FROM o PIVOT (sum(amount) FOR status IN ('shipped'))",
    ],
)
def test_pivot_over_a_masked_or_row_filtered_table_runs(session_for, user, sql) -> None:
    result = session_for(user).sql(sql)
    assert result.decision == "allow"
    assert result.rows >= 1


def test_pivot_keeps_the_row_filter(session_for, raw) -> None:
    sql = (
        "SELECT * FROM (SELECT region FROM orders) PIVOT (count(*) FOR region IN ('EMEA', 'AMER'))"
    )
    ((emea, amer),) = session_for("carol").sql(sql).fetchall()
    ((expected,),) = raw("SELECT count(*) FROM orders WHERE region = 'EMEA'")
    assert (emea, amer) == (expected, 0)


def test_dynamic_pivot_is_denied_with_a_sentence(session_for) -> None:
    plan = session_for("carol").explain(
        "SELECT * FROM orders PIVOT (sum(amount) FOR status IN ANY)"
    )
    assert plan.rules == ["pivot-needs-values"]
