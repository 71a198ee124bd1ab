"""Defence in depth on the server: what each connector enforces if the planner were wrong.

These call the connectors directly, with statements the guardrails would never let
through, to prove that the server itself refuses them: writes on a read-only connection,
writes hidden in a read, SQLite's authorizer, statement timeouts and cancelling.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from jupyter_gov.connectors import dbapi, registry
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import ConnectionFailed, GovError, QueryFailed
from tests.connectors.conftest import Engine

SERVERS = ["postgres", "mysql", "sqlite"]

#: A statement that keeps the engine busy for many seconds, and nothing else.
BUSY = {
    "postgres": "SELECT count(*) FROM generate_series(1, 2000000000)",
    "mysql": "SELECT count(*) FROM orders AS a, orders AS b, orders AS c",
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
        "SELECT count(*) FROM c"
    ),
}


def reopen(engine: Engine, connection_for: Callable[..., Any], read_only: bool = False) -> Any:
    return registry.profiles()[engine.name].open(connection_for(engine.url, read_only))


@pytest.mark.parametrize("engine", SERVERS, indirect=True)
def test_read_only_connection_rejects_writes_on_the_server(
    engine: Engine, connection_for: Callable[..., Any]
) -> None:
    connector = reopen(engine, connection_for, read_only=True)
    try:
        with pytest.raises(QueryFailed):
            connector.execute("DELETE FROM orders WHERE order_id = -1", {})
    finally:
        connector.close()


@pytest.mark.parametrize("engine", ["postgres", "mysql"], indirect=True)
def test_writable_connection_still_runs_reads_in_a_read_only_transaction(
    engine: Engine,
) -> None:
    # A "read" that writes: the planner classifies by the statement, the server by what it does.
    sql = {
        "postgres": "SELECT nextval('jupyter_gov_demo_probe')",
        "mysql": "SELECT NEXTVAL(jupyter_gov_demo_probe)",
    }[engine.name]
    _create_sequence(engine)
    with pytest.raises(QueryFailed, match=r"(?i)read.only"):
        engine.connector.execute(sql, {})


def _create_sequence(engine: Engine) -> None:
    if engine.name == "postgres":
        import adbc_driver_postgresql.dbapi as adbc

        from tests.connectors.conftest import DEMO, PG_SERVER

        with adbc.connect(PG_SERVER, autocommit=True) as con, con.cursor() as cursor:
            cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {DEMO}.jupyter_gov_demo_probe")
    else:
        import pymysql

        from tests.connectors.conftest import DEMO

        con = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
        con.cursor().execute(f"CREATE SEQUENCE IF NOT EXISTS {DEMO}.jupyter_gov_demo_probe")
        con.close()


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE ':memory:' AS other",
        "SELECT load_extension('/tmp/jupyter_gov.so')",
        "PRAGMA writable_schema = ON",
        "SELECT * FROM pragma_database_list",
        "SELECT readfile('/etc/passwd')",
    ],
)
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sqlite_authorizer_denies_what_the_guardrails_deny(engine: Engine, sql: str) -> None:
    with pytest.raises(QueryFailed):
        engine.connector.execute(sql, {})


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sqlite_write_mistaken_for_a_read_is_denied_by_the_authorizer(engine: Engine) -> None:
    sql = "DELETE FROM orders WHERE order_id = -1"
    engine.connector._prepared[sql] = dbapi.Prepared(sql, (), read=True)  # a planner bug
    try:
        with pytest.raises(QueryFailed, match="not authorized"):
            engine.connector.execute(sql, {})
    finally:
        del engine.connector._prepared[sql]


@pytest.mark.parametrize("engine", SERVERS, indirect=True)
def test_statement_timeout_is_enforced_by_the_engine(
    engine: Engine, connection_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbapi, "DEFAULT_STATEMENT_TIMEOUT_S", 0.001)
    connector = reopen(engine, connection_for)
    try:
        with pytest.raises(QueryFailed):
            connector.execute(BUSY[engine.name], {})
        # the connection lives on
        (one,) = connector.execute("SELECT 1 AS one", {}).read_all().column(0)
        assert one.as_py() == 1
    finally:
        connector.close()


@pytest.mark.parametrize("engine", SERVERS, indirect=True)
def test_interrupt_cancels_the_statement_on_the_server(
    engine: Engine, connection_for: Callable[..., Any]
) -> None:
    connector = reopen(engine, connection_for)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            connector.execute(BUSY[engine.name], {})
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    while worker.is_alive():  # until the statement has started and been cancelled
        connector.interrupt()
        worker.join(0.05)
    try:
        assert len(outcome) == 1
        assert isinstance(outcome[0], QueryFailed)
    finally:
        connector.close()


SECRET = "s3cr3t-Pa55word"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:${JG_TEST_DB_SECRET}@127.0.0.1:1/test",
        "postgresql://nobody:${JG_TEST_DB_SECRET}@127.0.0.1:5432/test",
        "mysql://root:${JG_TEST_DB_SECRET}@127.0.0.1:3306/test",
        "mysql://root:${JG_TEST_DB_SECRET}@127.0.0.1:1/test",
        "sqlite:////nonexistent/${JG_TEST_DB_SECRET}.db",
    ],
)
def test_password_from_the_environment_never_appears_in_an_error(
    url: str, reference: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JG_TEST_DB_SECRET", SECRET)
    policy = reference.policy()
    policy.connections["demo"] = type(policy.connections["demo"])(name="demo", url=url)
    session = GovernedSession(policy, "bob")
    with pytest.raises(ConnectionFailed) as error:
        session.sql("SELECT 1")
    assert SECRET not in str(error.value)
    assert "Traceback" not in str(error.value)


def test_query_error_does_not_echo_a_value_from_the_statement(reference: Engine) -> None:
    from jupyter_gov.connectors.dbapi import redact

    message = 'invalid input syntax for type integer: "ravi.olsen67@example.com"'
    assert "ravi.olsen67@example.com" not in redact(message, [])


#: Statements an administrator (raw values) runs whose server error quotes a value: a
#: name from a row (PostgreSQL's cast), a literal in the statement text (MariaDB's syntax
#: error quotes the statement from the error on, literal spelt in hex and all).
QUOTING = {
    "postgres": (
        "SELECT CAST(full_name AS INTEGER) AS n FROM customers WHERE customer_id = 1 LIMIT 1"
    ),
    "mysql": (
        "SELECT CAST(full_name AS JSON) AS j, 'Hana400000 Nguyen' AS v FROM customers "
        "WHERE customer_id = 1 LIMIT 1"
    ),
}


@pytest.mark.parametrize("engine", ["postgres", "mysql"], indirect=True)
def test_server_error_quoting_a_value_shows_and_audits_no_part_of_it(engine: Engine) -> None:
    session = engine.session("alice")
    raw = session.sql(
        "SELECT full_name FROM customers WHERE customer_id = 1 LIMIT 1"
    ).to_arrow_table()
    name = raw.column("full_name")[0].as_py()
    with pytest.raises(QueryFailed) as error:
        session.sql(QUOTING[engine.name]).to_arrow_table()
    message = str(error.value)
    audited = session.audit.events()[0]["error"]
    forbidden = [name, *name.split(), "Hana400000", "Nguyen", b"Hana400000 Nguyen".hex()]
    for shown in (message, audited):
        assert "rejected the governed statement" in shown
        assert not [v for v in forbidden if v.lower() in shown.lower()], shown
        assert "'?'" in shown or '"?"' in shown


def test_a_database_connector_never_holds_saved_results(
    live_engines: dict[str, Any],
) -> None:
    """Saved results live on the kernel's scratch DuckDB (tests/connectors/test_saved_results)."""
    engine = live_engines["sqlite"]
    if isinstance(engine, str):
        pytest.fail(engine)
    with pytest.raises(GovError, match="scratch connection"):
        engine.connector.register_result("mine", None)


def test_missing_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, connection_for: Callable[..., Any]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pymysql", None)  # as if it were not installed
    from jupyter_gov.connectors import mysql

    mysql._connector_class.cache_clear()
    try:
        with pytest.raises(ConnectionFailed, match=r"jupyter-gov\[mysql\]"):
            registry.open_connector(connection_for("mysql://root@127.0.0.1/test"))
    finally:
        monkeypatch.undo()
        mysql._connector_class.cache_clear()


# -- MariaDB reads through connectorx: values spelt as literals that cannot break out -------


@pytest.mark.parametrize(
    "value,spelt",
    [
        ("x' OR '1'='1", "_utf8mb4 X'7827204f52202731273d2731'"),
        ("\\'; DROP TABLE t; -- é", "_utf8mb4 X'5c273b2044524f50205441424c4520743b202d2d20c3a9'"),
        (b"\x00'", "X'0027'"),
        (None, "NULL"),
        (True, "TRUE"),
        (-42, "-42"),
        (1.5, "1.5"),
        (Decimal("12.30"), "12.30"),
        (dt.date(2024, 2, 29), "DATE '2024-02-29'"),
        (dt.datetime(2024, 2, 29, 13, 5, 1), "TIMESTAMP '2024-02-29 13:05:01'"),
    ],
)
def test_mariadb_literal_spells_values_so_no_quote_of_theirs_reaches_the_sql(
    value: Any, spelt: str
) -> None:
    from jupyter_gov.connectors.mysql import literal

    assert literal(value) == spelt


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), Decimal("NaN"), dt.datetime.now(dt.timezone.utc), [1], object()],
)
def test_mariadb_literal_refuses_what_it_cannot_spell_exactly(value: Any) -> None:
    from jupyter_gov.connectors.mysql import literal

    with pytest.raises(TypeError):
        literal(value)


def test_spelling_keeps_doubled_percent_signs_as_one() -> None:
    from jupyter_gov.connectors.mysql import spell

    assert spell("SELECT '%%' LIKE %(p)s", {"p": "a"}) == "SELECT '%' LIKE _utf8mb4 X'61'"


@pytest.mark.parametrize("engine", ["mysql"], indirect=True)
def test_mariadb_read_runs_through_connectorx_with_bound_values_kept_as_values(
    engine: Engine,
) -> None:
    pytest.importorskip("connectorx", reason="connectorx (the fast MariaDB read) is not installed")
    prepared = dbapi.prepare(
        engine.connector.profile, "SELECT count(*) AS n FROM customers WHERE city = :c"
    )
    table = engine.connector._fast_read(prepared, {"c": "x' OR '1'='1"})  # type: ignore[attr-defined]
    assert table is not None and table.column("n").to_pylist() == [0]
