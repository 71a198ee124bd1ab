"""The governed behaviours of the DuckDB demo, proven on every live engine.

Each test runs through :class:`GovernedSession` with the demo policy pointing at the engine
(``engine`` is parametrised over DuckDB, PostgreSQL, MariaDB, SQLite and Spark), so the
masks and row filters are rendered in the engine's dialect, bound in its parameter style
and run on its server.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.demo import demo_tables
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.result import QueryDenied
from tests.connectors.conftest import DEMO, OTHER, OTHER_ROWS, Engine
from tests.connectors.loaded import RUN

PII = ("full_name", "email", "phone", "ssn", "credit_card", "street_address")


def normal(value: Any) -> Any:
    """One spelling per value across drivers (dates as ISO text, decimals as floats)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(map(normal, row)) for row in result.fetchall()]


@cache
def raw_values(column: str, table: str = "customers") -> frozenset[str]:
    """The raw values of the demo data set, as generated (no engine involved)."""
    return frozenset(demo_tables()[table].column(column).to_pylist())


@pytest.mark.parametrize("column", PII)
def test_masked_column_is_never_raw_for_an_analyst(
    engine: Engine, reference: Engine, column: str
) -> None:
    raw = raw_values(column)
    seen = {v for (v,) in engine.session("bob").sql(f"SELECT {column} FROM customers").fetchall()}
    assert seen
    assert not seen & raw


def test_admin_reads_the_same_raw_rows_as_duckdb(engine: Engine, reference: Engine) -> None:
    sql = "SELECT customer_id, full_name, email, birth_date FROM customers ORDER BY 1 LIMIT 20"
    assert rows(engine.session("alice").sql(sql)) == rows(reference.session("alice").sql(sql))


def test_every_mask_returns_duckdbs_value_for_the_same_rows(
    engine: Engine, reference: Engine
) -> None:
    """token, email, partial (x3), redact, year and hash: value by value."""
    sql = (
        "SELECT customer_id, full_name, email, phone, ssn, credit_card, street_address, "
        "birth_date, city FROM customers WHERE customer_id <= 200 ORDER BY customer_id"
    )
    got = rows(engine.session("bob").sql(sql))
    assert len(got) == 200
    assert got == rows(reference.session("bob").sql(sql))


def test_scrubbed_free_text_matches_duckdb(engine: Engine, reference: Engine) -> None:
    sql = "SELECT ticket_id, body FROM support_tickets WHERE ticket_id <= 50 ORDER BY ticket_id"
    got = rows(engine.session("bob").sql(sql))
    assert got == rows(reference.session("bob").sql(sql))
    pii = raw_values("email") | raw_values("phone") | raw_values("credit_card")
    assert not any(value in body for (_, body) in got for value in pii)


def test_row_filter_keeps_only_carols_region(engine: Engine, reference: Engine) -> None:
    sql = "SELECT region, count(*) AS n FROM orders GROUP BY region ORDER BY region"
    carol = rows(engine.session("carol").sql(sql))
    everyone = dict(rows(reference.session("alice").sql(sql)))
    assert carol == [("EMEA", everyone["EMEA"])]


def test_analyst_without_region_sees_every_region(engine: Engine) -> None:
    regions = engine.session("bob").sql("SELECT DISTINCT region FROM orders ORDER BY 1")
    assert rows(regions) == [("AMER",), ("APAC",), ("EMEA",)]


def test_identity_attribute_is_bound_not_pasted_into_the_sql(engine: Engine) -> None:
    plan = engine.session("carol").explain("SELECT count(*) FROM orders")
    assert "EMEA" not in plan.rewritten_sql


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "UPDATE customers SET email = 'x'",
        "INSERT INTO orders (order_id) VALUES (-1)",
        "DROP TABLE customers",
        "INSERT INTO orders SELECT * FROM orders",
    ],
)
def test_read_only_role_cannot_write(engine: Engine, sql: str) -> None:
    with pytest.raises(QueryDenied):
        engine.session("bob").sql(sql)


def test_select_star_expands_to_every_column_with_masks(engine: Engine, reference: Engine) -> None:
    sql = "SELECT * FROM customers WHERE customer_id IN (1, 2, 3) ORDER BY customer_id"
    result = engine.session("bob").sql(sql)
    expected = reference.session("bob").sql(sql)
    assert result.columns == expected.columns
    assert rows(result) == rows(expected)


def test_masked_predicate_sees_masked_values(engine: Engine) -> None:
    count = engine.session("bob").sql("SELECT count(*) FROM customers WHERE ssn LIKE '1%'")
    assert rows(count) == [(0,)]


def test_masking_key_is_bound_not_written_into_the_sql(engine: Engine) -> None:
    plan = engine.session("bob").explain("SELECT city FROM customers")
    assert "test-masking-key" not in plan.rewritten_sql


# SQLite has one schema per file (ATTACH is denied), so it is not in this list.
@pytest.mark.parametrize("engine", ["duckdb", "postgres", "mysql", "spark"], indirect=True)
def test_schema_other_than_the_default_is_governed(engine: Engine, reference: Engine) -> None:
    assert engine.other_schema is not None
    other = f"{engine.other_schema}.customers"
    sql = f"SELECT customer_id, email, ssn, city FROM {other} ORDER BY customer_id"
    got = rows(engine.session("bob").sql(sql))
    assert len(got) == OTHER_ROWS
    main = "SELECT customer_id, email, ssn, city FROM customers ORDER BY customer_id"
    assert got == rows(reference.session("bob").sql(main))[:OTHER_ROWS]


def test_parameters_are_bound_in_the_engines_style(engine: Engine, reference: Engine) -> None:
    sql = (
        "SELECT customer_id, email FROM customers WHERE customer_id BETWEEN :lo AND :hi ORDER BY 1"
    )
    params = {"lo": 10, "hi": 12}
    got = sorted(rows(engine.session("bob").sql(sql, params)))
    assert got == sorted(rows(reference.session("bob").sql(sql, params)))
    assert [r[0] for r in got] == [10, 11, 12]


def test_equality_probe_on_a_masked_column_finds_nothing(engine: Engine, reference: Engine) -> None:
    email = sorted(raw_values("email"))[0]
    probe = engine.session("bob").sql(
        "SELECT count(*) FROM customers WHERE email = :e", {"e": email}
    )
    assert rows(probe) == [(0,)]


def test_results_arrive_as_arrow(engine: Engine) -> None:
    table = engine.session("bob").sql("SELECT customer_id, email FROM customers LIMIT 5").arrow()
    assert table.num_rows == 5
    assert table.column_names == ["customer_id", "email"]


def test_a_user_error_is_one_sentence_not_a_traceback(engine: Engine) -> None:
    with pytest.raises(GovError) as error:
        engine.session("bob").sql("SELECT no_such_column FROM customers")
    assert "Traceback" not in str(error.value)
    assert "stacktrace" not in str(error.value).lower()  # Spark's JVM stack trace


def test_injection_through_a_parameter_stays_a_value(engine: Engine) -> None:
    probe = engine.session("bob").sql(
        "SELECT count(*) FROM customers WHERE city = :c", {"c": "x' OR '1'='1"}
    )
    assert rows(probe) == [(0,)]


def test_policy_url_opens_the_engines_connector(engine: Engine) -> None:
    with GovernedSession(engine.policy(), "carol") as session:
        result = session.sql("SELECT DISTINCT region FROM orders")
        assert rows(result) == [("EMEA",)]
        assert session.connector("demo").dialect == registry.profiles()[engine.name].dialect


@pytest.mark.parametrize("engine", ["postgres", "mysql", "sqlite", "spark"], indirect=True)
def test_catalog_refresh_sees_a_new_table(engine: Engine) -> None:
    table = "jupyter_gov_refresh_probe"
    engine.connector.catalog()  # cached before the table exists
    run_raw(engine, f"CREATE TABLE {table} (id INTEGER)")
    try:
        assert engine.connector.catalog().get(table) is None
        assert engine.connector.catalog(refresh=True).get(table) is not None
    finally:
        run_raw(engine, f"DROP TABLE {table}")
        engine.connector.catalog(refresh=True)


def run_raw(engine: Engine, sql: str) -> None:
    """An ungoverned DDL statement in the engine's demo schema (test setup only)."""
    if engine.name == "postgres":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(engine.url, autocommit=True) as con, con.cursor() as cursor:
            cursor.execute(sql)
    elif engine.name == "spark":
        from pyspark.sql.connect.session import SparkSession

        spark: Any = SparkSession(connection=engine.url)
        try:
            spark.sql(sql.replace("INTEGER)", "INTEGER) USING parquet"))
        finally:
            spark.stop()
    elif engine.name == "mysql":
        import pymysql

        con = pymysql.connect(host="127.0.0.1", user="root", database=DEMO, autocommit=True)
        con.cursor().execute(sql)
        con.close()
    else:
        import sqlite3

        con = sqlite3.connect(engine.url.removeprefix("sqlite:///"))
        con.execute(sql)
        con.commit()
        con.close()


@pytest.mark.parametrize("engine", ["postgres", "mysql"], indirect=True)
def test_demo_schemas_on_a_shared_server_are_this_test_runs_own(engine: Engine) -> None:
    """Two suites at once on one server never drop or refill each other's demo data."""
    catalog = engine.connector.catalog()
    assert catalog.default_schema == DEMO == f"jupyter_gov_demo_{RUN}"
    assert engine.other_schema == OTHER == f"jupyter_gov_analytics_{RUN}"
    assert catalog.get("customers", OTHER) is not None
