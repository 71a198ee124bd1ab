"""The general SQLAlchemy path, live: PostgreSQL through ``postgresql+pg8000://``.

pg8000 is a pure-Python driver with the ``format`` paramstyle (``%s``), unlike ADBC's
``$1``: the same governed statement is rendered for it by the PostgreSQL profile and must
return exactly what the native connector returns. The warehouses this path is for
(Snowflake, BigQuery, Trino, Databricks, Redshift) cannot run here: their governed SQL is
checked by golden files and a parse-back in ``tests/test_rewrite_fixtures.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_gov.connectors.sqlalchemy import SQLAlchemyConnector, open_sqlalchemy
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import ConnectionFailed, QueryFailed
from jupyter_gov.policy.model import Connection
from jupyter_gov.result import QueryDenied
from tests.conftest import require_server
from tests.connectors.conftest import DEMO, Engine
from tests.connectors.test_live_governance import raw_values, rows

pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")
pytest.importorskip("pg8000", reason="pg8000 (a pure-Python PostgreSQL driver) is not installed")

URL = "postgresql+pg8000://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pg8000_connector(live_engines: dict[str, Any]) -> Any:
    found = live_engines["postgres"]
    if isinstance(found, str):
        require_server(found)
    from jupyter_gov.connectors import registry

    connector = open_sqlalchemy(Connection("demo", URL), registry.profiles()["postgres"])
    yield connector
    connector.close()


@pytest.fixture
def both(live_engines: dict[str, Any], pg8000_connector: Any):
    """``both("bob")``: a session through pg8000 and one through ADBC, same policy."""
    native: Engine = live_engines["postgres"]

    def make(user: str) -> tuple[GovernedSession, GovernedSession]:
        through = GovernedSession(native.policy(), user)
        through.use_connector("demo", pg8000_connector)
        return through, native.session(user)

    return make


def test_connector_renders_in_the_drivers_paramstyle(pg8000_connector: Any) -> None:
    assert isinstance(pg8000_connector, SQLAlchemyConnector)
    assert pg8000_connector.profile.paramstyle == "format"
    assert pg8000_connector.dialect == "postgres"


def test_every_mask_matches_the_native_connector_value_by_value(both) -> None:
    through, native = both("bob")
    sql = (
        f"SELECT customer_id, full_name, email, phone, ssn, credit_card, street_address, "
        f"birth_date, city FROM {DEMO}.customers WHERE customer_id <= 100 ORDER BY 1"
    )
    got = rows(through.sql(sql))
    assert len(got) == 100
    assert got == rows(native.sql(sql))
    assert not {r[2] for r in got} & raw_values("email")


def test_row_filter_is_bound_through_the_driver(both) -> None:
    through, _ = both("carol")
    result = through.sql(f"SELECT DISTINCT region FROM {DEMO}.orders")
    assert result.fetchall() == [("EMEA",)]
    assert "EMEA" not in result.plan.rewritten_sql  # bound, never pasted


def test_user_parameters_and_literal_percent_signs_survive_format_style(both) -> None:
    through, native = both("bob")
    sql = (
        f"SELECT count(*) FROM {DEMO}.customers "
        "WHERE segment = :segment AND email LIKE '%@example%'"
    )
    params = {"segment": "enterprise"}
    assert through.sql(sql, params).fetchall() == native.sql(sql, params).fetchall()


def test_writes_are_denied_for_read_only_roles(both) -> None:
    through, _ = both("bob")
    with pytest.raises(QueryDenied):
        through.sql(f"DELETE FROM {DEMO}.orders")


def test_missing_dialect_says_what_to_install() -> None:
    from jupyter_gov.connectors import registry

    with pytest.raises(ConnectionFailed, match="snowflake-sqlalchemy") as raised:
        registry.open_connector(Connection("wh", "snowflake://u:s3cret-pw@acct/db"))
    assert "s3cret" not in str(raised.value)


# -- server-side timeout and read-only, per dialect -----------------------------------------

GUARDS = {
    ("postgres", True): ["SET TRANSACTION READ ONLY", "SET LOCAL statement_timeout = 1500"],
    ("postgres", False): ["SET LOCAL statement_timeout = 1500"],
    ("redshift", True): ["SET TRANSACTION READ ONLY", "SET LOCAL statement_timeout = 1500"],
    ("mysql", True): [
        "SET SESSION max_statement_time = 1.500",
        "SET SESSION max_execution_time = 1500",
        "START TRANSACTION READ ONLY",
    ],
    ("snowflake", True): ["ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 2"],
    ("trino", True): ["SET SESSION query_max_execution_time = '2s'"],
    ("bigquery", True): [],
    ("databricks", True): [],
}


@pytest.mark.parametrize("engine,read", sorted(GUARDS))
def test_guard_statements_per_dialect_are_rendered_and_parse_back(engine: str, read: bool) -> None:
    import sqlglot

    from jupyter_gov.connectors import registry
    from jupyter_gov.connectors.sqlalchemy import guard_statements

    statements = guard_statements(engine, 1.5, read)
    assert statements == GUARDS[(engine, read)]
    dialect = registry.profiles()[engine].dialect
    for statement in statements:
        assert sqlglot.parse_one(statement, read=dialect) is not None


def test_timeout_is_enforced_by_the_server_through_the_driver(pg8000_connector: Any) -> None:
    pg8000_connector.set_timeout(0.05)
    try:
        with pytest.raises(QueryFailed, match=r"(?i)statement timeout"):
            pg8000_connector.execute("SELECT pg_sleep(30)", {})
        assert pg8000_connector.execute("SELECT 1 AS one", {}).read_all().column(0)[0].as_py() == 1
    finally:
        pg8000_connector.set_timeout(None)


def test_a_read_that_writes_is_refused_by_the_servers_read_only_transaction(
    pg8000_connector: Any, live_engines: dict[str, Any]
) -> None:
    from tests.connectors.test_connector_defences import _create_sequence

    _create_sequence(live_engines["postgres"])
    sql = f"SELECT nextval('{DEMO}.jupyter_gov_demo_probe')"
    with pytest.raises(QueryFailed, match=r"(?i)read.only"):
        pg8000_connector.execute(sql, {})


def test_the_catalog_through_the_driver_lists_the_keys_postgresql_enforces(
    pg8000_connector: Any,
) -> None:
    """The same enforced keys as the native connector, so late masking's rule on keys holds
    through any PostgreSQL driver."""
    catalog = pg8000_connector.catalog(refresh=True)
    keys = {t: catalog.get(t, DEMO).keys for t in ("customers", "orders", "support_tickets")}
    assert keys == {
        "customers": (("customer_id",),),
        "orders": (("order_id",),),
        "support_tickets": (("ticket_id",),),
    }


def test_only_engines_whose_keys_one_query_reads_get_a_keys_query() -> None:
    from jupyter_gov.connectors.sqlalchemy import _keys_query

    assert _keys_query("postgres") and _keys_query("mysql")
    assert not any(_keys_query(e) for e in ("redshift", "snowflake", "trino", "bigquery"))
