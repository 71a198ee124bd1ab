"""A table name binds where the engine binds it: CTE self- and forward-references, system
catalogs and another identity's saved results never resolve for a governed query.

A CTE is visible only to later CTEs and the main query; inside its own (non-recursive) body
and in earlier CTEs the same name is the real object, which is how DuckDB read
``pg_settings``, ``duckdb_tables`` or an earlier admin's saved result through
``WITH x AS (SELECT * FROM x) SELECT * FROM x``.
"""

from __future__ import annotations

import pytest

from jupyter_gov.analysis import describe, parse
from jupyter_gov.engine import _StaticProvider
from jupyter_gov.identity import Identity
from jupyter_gov.result import QueryDenied

SELF_REFERENCES = [
    "WITH pg_settings AS (SELECT name, setting FROM pg_settings) SELECT * FROM pg_settings",
    "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM duckdb_tables",
    "WITH duckdb_views AS (SELECT * FROM duckdb_views) SELECT * FROM duckdb_views",
    "WITH sqlite_master AS (SELECT * FROM sqlite_master) SELECT * FROM sqlite_master",
    "WITH pg_class AS (SELECT relname, reltuples FROM pg_class) SELECT * FROM pg_class",
    "WITH tables AS (SELECT * FROM information_schema.tables) SELECT * FROM tables",
    "WITH settings AS (SELECT * FROM duckdb_settings) SELECT * FROM settings",
]

FORWARD_REFERENCES = [
    # ``a`` reads ``pg_settings`` before the CTE of that name is defined.
    "WITH a AS (SELECT * FROM pg_settings), pg_settings AS (SELECT 1 AS x) SELECT * FROM a",
    "WITH a AS (SELECT * FROM duckdb_tables), duckdb_tables AS (SELECT 1) SELECT * FROM a",
]

SYSTEM_RELATIONS = [
    "SELECT * FROM pg_settings",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.columns",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM main.duckdb_tables",
    "SELECT * FROM system.main.duckdb_settings",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM sqlite_schema",
    "SELECT * FROM mysql.user",
    "SELECT * FROM performance_schema.threads",
    "SELECT * FROM orders WHERE region IN (SELECT name FROM pg_settings)",
]


@pytest.mark.parametrize("sql", SELF_REFERENCES)
def test_cte_self_reference_to_a_system_relation_is_denied(session_for, sql) -> None:
    plan = session_for("carol").explain(sql)
    assert plan.decision == "deny"
    assert "system-catalog" in plan.rules or "unknown-table" in plan.rules


@pytest.mark.parametrize("sql", FORWARD_REFERENCES)
def test_cte_forward_reference_to_a_system_relation_is_denied(session_for, sql) -> None:
    assert session_for("carol").explain(sql).decision == "deny"


@pytest.mark.parametrize("sql", SYSTEM_RELATIONS)
def test_system_catalog_relation_never_resolves(session_for, sql) -> None:
    plan = session_for("alice").explain(sql)
    assert plan.decision == "deny"
    assert "system-catalog" in plan.rules


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "mysql", "sqlite", "spark"])
@pytest.mark.parametrize(
    "sql",
    [
        "WITH pg_class AS (SELECT * FROM pg_class) SELECT * FROM pg_class",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM sqlite_master",
    ],
)
def test_system_relation_is_system_in_every_dialect(dialect, sql) -> None:
    (tree,) = parse(sql, dialect)
    kinds = {t.kind for t in describe(tree, dialect, {"orders": object()}).tables}
    assert "system" in kinds


def test_cte_self_reference_to_a_governed_table_is_masked_then_denied_as_shadow(
    session_for,
) -> None:
    """The inner ``orders`` is the real table (masked, row-filtered); the CTE shadows it."""
    sql = "WITH orders AS (SELECT * FROM orders) SELECT * FROM orders"
    plan = session_for("carol").explain(sql)
    assert plan.decision == "deny"
    assert "cte-shadows-table" in plan.rules


def test_cte_over_a_governed_table_is_masked(session_for) -> None:
    plan = session_for("carol").explain("WITH c AS (SELECT * FROM orders) SELECT count(*) FROM c")
    assert plan.decision == "allow"
    assert plan.row_filters == ["orders-by-region"]


def test_recursive_cte_self_reference_is_allowed(session_for) -> None:
    sql = (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT sum(n) FROM r"
    )
    assert session_for("bob").sql(sql).fetchall() == [(6,)]


def test_later_cte_sees_earlier_cte(session_for) -> None:
    sql = "WITH a AS (SELECT 1 AS x), b AS (SELECT x + 1 AS y FROM a) SELECT y FROM b"
    assert session_for("bob").sql(sql).fetchall() == [(2,)]


def test_nested_with_inner_cte_body_reads_the_outer_cte(session_for) -> None:
    sql = (
        "WITH a AS (SELECT 1 AS x) "
        "SELECT * FROM (WITH a AS (SELECT x + 1 AS x FROM a) SELECT x FROM a) AS s"
    )
    assert session_for("bob").sql(sql).fetchall() == [(2,)]


def test_cte_name_in_an_update_from_is_refused_as_ambiguous(session_for) -> None:
    sql = "WITH c AS (SELECT 1 AS x) UPDATE orders SET amount = 0 FROM c WHERE c.x = order_id"
    plan = session_for("alice").explain(sql)
    assert plan.decision == "deny"
    assert "ambiguous-name" in plan.rules


def test_cte_self_reference_reads_no_saved_result_of_an_earlier_identity(session_for) -> None:
    """Sign-in changes within one session: the admin's saved raw rows stay hers."""
    session = session_for("alice")
    session.sql("SELECT customer_id, ssn FROM customers LIMIT 5", name="raw_export")
    session.provider = _StaticProvider(
        Identity(subject="bob", display_name="Bob", auth_method="local", groups=("analysts",))
    )
    for sql in (
        "WITH raw_export AS (SELECT * FROM raw_export) SELECT * FROM raw_export",
        "SELECT * FROM raw_export",
        "WITH a AS (SELECT * FROM raw_export), raw_export AS (SELECT 1) SELECT * FROM a",
    ):
        with pytest.raises(QueryDenied) as denied:
            session.sql(sql)
        assert "unknown-table" in denied.value.plan.rules


def test_own_saved_result_still_reads_through_a_cte(session_for) -> None:
    session = session_for("bob")
    session.sql("SELECT 41 AS n", name="mine")
    sql = "WITH m AS (SELECT n + 1 AS n FROM mine) SELECT n FROM m"
    assert session.sql(sql).fetchall() == [(42,)]
