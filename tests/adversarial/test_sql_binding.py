"""Positional ``?`` values bind to the ``?`` they are written at, whatever the tree's shape.

A breadth-first walk numbered a scalar subquery's ``?`` after the WHERE's, and a WITH's
after the main SELECT's: values silently swapped places.
"""

from __future__ import annotations

import pytest

from jupyter_gov.dryrun import count_statement

IN_TEXT_ORDER = [
    ("SELECT ? AS a, (SELECT ?) AS b WHERE ? = 3", ["x", "y", 3], [("x", "y")]),
    ("WITH c AS (SELECT ? AS v) SELECT v, ? AS w FROM c WHERE ? = 3", ["x", "y", 3], [("x", "y")]),
    (
        "SELECT ? AS a FROM range(10) AS t(i) WHERE i = ? LIMIT ?",
        ["x", 4, 1],
        [("x",)],
    ),
    ("SELECT (SELECT (SELECT ?)) AS a, ? AS b", ["x", "y"], [("x", "y")]),
]


@pytest.mark.parametrize(("sql", "params", "rows"), IN_TEXT_ORDER)
def test_positional_parameters_bind_in_text_order(session_for, sql, params, rows) -> None:
    assert session_for("bob").sql(sql, params).fetchall() == rows


def test_positional_parameters_bind_in_text_order_in_a_governed_read(session_for) -> None:
    sql = "SELECT (SELECT ?) AS tag, count(*) AS n FROM orders WHERE order_id = ?"
    assert session_for("alice").sql(sql, ["t", 1]).fetchall() == [("t", 1)]


def test_dry_run_count_binds_in_the_same_order_as_the_run() -> None:
    sql, values = count_statement(
        "SELECT DISTINCT (SELECT ?) AS a FROM orders WHERE order_id = ?", "duckdb", ["t", 1]
    )
    assert values == {"gov_dry_1": "t", "gov_dry_2": 1}
    assert sql.index("$gov_dry_1") < sql.index("order_id = $gov_dry_2")
