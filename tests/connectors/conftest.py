"""The demo data set loaded into every live engine, once per test session.

DuckDB builds it in memory (``duckdb:demo``); PostgreSQL gets it in the schema
``jupyter_gov_demo_<run>`` of database ``test`` (ADBC bulk ingest), MariaDB in the database
``jupyter_gov_demo_<run>``, SQLite in a temporary file, Spark in the ``default`` schema of
the session's one Spark Connect server (``tests/spark_server.py``). Each engine also gets a
copy of the first customers in a second schema, ``jupyter_gov_analytics_<run>`` (not SQLite:
one schema per file), to prove that schemas other than the default are governed. ``<run>``
is this test session's own suffix (``loaded.RUN``): suites running at once on one machine
load, read and drop their own schemas, which are dropped when the session ends; schemas
of a run that was killed first (its process is gone) are dropped by the next load.

DuckDB, PostgreSQL, MariaDB and SQLite declare the demo tables' primary keys
(:data:`DEMO_KEYS`), as a warehouse would: the live suites then also run late masking's
rule on keys (a mask grouped beside its table's key moves above the aggregate) on every
engine that reads keys. Spark has none to declare.

A test asks for ``engine``, parametrised over :data:`ENGINES`; an engine is loaded the
first time a test asks for it (so a run without Spark tests starts no JVM), and one whose
server is down is skipped through ``tests.conftest.require_server`` (a failure when
``CI=true``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from jupyter_gov.connectors import registry
from jupyter_gov.connectors.base import Connector
from jupyter_gov.demo import demo_tables
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from tests.conftest import require_server
from tests.connectors.loaded import LOADED, RUN

ENGINES = ("duckdb", "postgres", "mysql", "sqlite", "spark")
DEMO = f"jupyter_gov_demo_{RUN}"
OTHER = f"jupyter_gov_analytics_{RUN}"
OTHER_ROWS = 100
#: The demo tables' primary keys, declared on every engine that enforces keys.
DEMO_KEYS = {"customers": "customer_id", "orders": "order_id", "support_tickets": "ticket_id"}
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
MY_SERVER = "mysql://root@127.0.0.1:3306"


@dataclass
class Engine:
    """A live engine holding the demo data: its policy URL and its connector."""

    name: str
    url: str
    connector: Connector
    other_schema: str | None  # a second schema with a copy of customers, if the engine has one

    def policy(self, **overrides: Any) -> Policy:
        """The demo policy (plus a hash mask on ``customers.city``), pointing at this engine."""
        data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
        data["connections"]["demo"]["url"] = self.url
        data["connections"]["demo"].update(overrides)
        data["classifications"]["city"] = ["customers.city"]
        data["masks"]["city"] = {"default": "hash", "admin": "none"}
        return Policy(data)

    def session(self, user: str, policy: Policy | None = None) -> GovernedSession:
        """A governed session for ``user`` reusing this engine's open connector."""
        session = GovernedSession(policy or self.policy(), user)
        session.use_connector("demo", self.connector)
        return session


def _sql_type(dtype: pa.DataType, engine: str) -> str:
    if pa.types.is_integer(dtype):
        return "INTEGER"
    if pa.types.is_string(dtype):
        return "VARCHAR(1000)" if engine == "mysql" else "TEXT"
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "DATETIME(6)" if engine == "mysql" else "TIMESTAMP"
    raise TypeError(f"no demo column type for {dtype}")


def _rows(table: pa.Table, as_text: bool = False) -> list[tuple[Any, ...]]:
    columns = []
    for column in table.columns:
        if as_text and pa.types.is_timestamp(column.type):
            column = pc.strftime(column, "%Y-%m-%d %H:%M:%S")
        elif as_text and (pa.types.is_date(column.type) or pa.types.is_decimal(column.type)):
            column = column.cast(pa.string())
        columns.append(column.to_pylist())
    return list(zip(*columns))


def _create(
    table: pa.Table, engine: str, qualified: str, quote: str, key: str | None = None
) -> str:
    columns = [f"{quote}{f.name}{quote} {_sql_type(f.type, engine)}" for f in table.schema]
    if key is not None:
        columns.append(f"PRIMARY KEY ({quote}{key}{quote})")
    return f"CREATE TABLE {qualified} ({', '.join(columns)})"


def _duckdb() -> Engine:
    connector = registry.profiles()["duckdb"].open(_connection("duckdb:demo"))
    con = connector.con  # type: ignore[attr-defined]
    for table, key in DEMO_KEYS.items():
        con.execute(f'ALTER TABLE main."{table}" ADD PRIMARY KEY ("{key}")')
    con.execute(f"CREATE SCHEMA {OTHER}")
    con.execute(
        f"CREATE TABLE {OTHER}.customers AS SELECT * FROM main.customers "
        f"ORDER BY customer_id LIMIT {OTHER_ROWS}"
    )
    connector.catalog(refresh=True)
    return Engine("duckdb", "duckdb:demo", connector, OTHER)


#: The schemas of a run: ``jupyter_gov_demo_<pid>_<hex>``, ``jupyter_gov_analytics_<pid>_<hex>``.
_RUN_SCHEMA = re.compile(r"^jupyter_gov_(?:demo|analytics)_(\d+)_[0-9a-f]{6}$")


def stale_schemas(names: list[str]) -> list[str]:
    """Schemas a run left behind when it was killed before it could drop them: its process
    is gone. A live process with that number (this run's, another suite's, or an unrelated
    one that reused it) keeps its schemas."""
    stale = []
    for name in names:
        match = _RUN_SCHEMA.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            stale.append(name)
        except (PermissionError, OverflowError):
            pass  # alive under another user, or not a process number at all
    return stale


def _postgres() -> Engine:
    import adbc_driver_postgresql.dbapi as adbc

    con = adbc.connect(PG_SERVER, autocommit=True)
    cursor = con.cursor()
    cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'jupyter\\_gov\\_%'")
    for schema in stale_schemas([row[0] for row in cursor.fetchall()]):
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for schema in (DEMO, OTHER):
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cursor.execute(f"CREATE SCHEMA {schema}")
    tables = demo_tables()
    for name, table in tables.items():
        cursor.adbc_ingest(name, table, mode="create", db_schema_name=DEMO)
    cursor.adbc_ingest(
        "customers", tables["customers"].slice(0, OTHER_ROWS), mode="create", db_schema_name=OTHER
    )
    for name, key in DEMO_KEYS.items():
        cursor.execute(f'ALTER TABLE {DEMO}."{name}" ADD PRIMARY KEY ("{key}")')
    con.close()
    url = f"{PG_SERVER}?options=-csearch_path%3D{DEMO}"
    return Engine("postgres", url, registry.profiles()["postgres"].open(_connection(url)), OTHER)


def _mysql() -> Engine:
    import pymysql

    con = pymysql.connect(host="127.0.0.1", user="root", charset="utf8mb4", autocommit=True)
    cursor = con.cursor()
    cursor.execute("SHOW DATABASES LIKE 'jupyter\\_gov\\_%'")
    for schema in stale_schemas([row[0] for row in cursor.fetchall()]):
        cursor.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    tables = demo_tables()
    for schema in (DEMO, OTHER):
        cursor.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        cursor.execute(f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4")
    loads = [(DEMO, n, t) for n, t in tables.items()]
    loads.append((OTHER, "customers", tables["customers"].slice(0, OTHER_ROWS)))
    for schema, name, table in loads:
        qualified = f"`{schema}`.`{name}`"
        key = DEMO_KEYS[name] if schema == DEMO else None
        cursor.execute(_create(table, "mysql", qualified, "`", key))
        marks = ", ".join(["%s"] * table.num_columns)
        rows = _rows(table)
        for start in range(0, len(rows), 5000):
            cursor.executemany(f"INSERT INTO {qualified} VALUES ({marks})", rows[start:][:5000])
    con.close()
    url = f"{MY_SERVER}/{DEMO}"
    return Engine("mysql", url, registry.profiles()["mysql"].open(_connection(url)), OTHER)


def _sqlite(directory: Path) -> Engine:
    path = directory / "demo.sqlite"
    con = sqlite3.connect(path)
    for name, table in demo_tables().items():
        # An INTEGER key is the rowid's alias, never NULL: the key SQLite's catalog reads.
        con.execute(_create(table, "sqlite", f'"{name}"', '"', DEMO_KEYS[name]))
        marks = ", ".join(["?"] * table.num_columns)
        con.executemany(f'INSERT INTO "{name}" VALUES ({marks})', _rows(table, as_text=True))
    con.commit()
    con.close()
    url = f"sqlite:///{path}"
    return Engine("sqlite", url, registry.profiles()["sqlite"].open(_connection(url)), None)


def _spark(url: str) -> Engine:
    """The demo tables in Spark's ``default`` schema and customers in the second schema."""
    from pyspark.sql.connect.session import SparkSession

    spark: Any = SparkSession(connection=url)
    try:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        tables = demo_tables()
        loads = [("default", name, table) for name, table in tables.items()]
        loads.append((OTHER, "customers", tables["customers"].slice(0, OTHER_ROWS)))
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {OTHER}")
        for schema, name, table in loads:
            spark.createDataFrame(table).write.mode("overwrite").saveAsTable(f"{schema}.{name}")
    finally:
        spark.stop()
    return Engine("spark", url, registry.profiles()["spark"].open(_connection(url)), OTHER)


def _drop_postgres() -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(PG_SERVER, autocommit=True) as con, con.cursor() as cursor:
        for schema in (DEMO, OTHER):
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _drop_mysql() -> None:
    import pymysql

    con = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        for schema in (DEMO, OTHER):
            con.cursor().execute(f"DROP DATABASE IF EXISTS `{schema}`")
    finally:
        con.close()


#: What a loaded engine leaves on a shared server, dropped when the test session ends.
_DROPS: dict[str, Callable[[], None]] = {"postgres": _drop_postgres, "mysql": _drop_mysql}


def _connection(url: str, read_only: bool = False) -> Any:
    from jupyter_gov.policy.model import Connection

    return Connection(name="demo", url=url, read_only=read_only)


_LOADERS: dict[str, Callable[[str], Engine]] = {
    "duckdb": lambda _: _duckdb(),
    "postgres": lambda _: _postgres(),
    "mysql": lambda _: _mysql(),
    "sqlite": lambda folder: _sqlite(Path(folder)),
    "spark": _spark,  # given the server's sc:// URL
}

#: Engines loaded in this test session (or why one could not be), by name: one registry
#: for both names pytest imports this module under (see tests/connectors/loaded.py).
_LOADED: dict[str, Engine | str] = LOADED


def load_engine(name: str, where: str = "") -> Engine:
    """``name`` holding the demo data, loaded once per test session (skips if it is down).

    ``where`` is the folder for SQLite's file or the Spark Connect server's URL.
    """
    if name not in _LOADED:
        try:
            _LOADED[name] = _LOADERS[name](where)
        except Exception as error:  # a server that is not running: its tests skip
            _LOADED[name] = f"{name} server on 127.0.0.1 is not available ({type(error).__name__})"
    found = _LOADED[name]
    if isinstance(found, str):
        require_server(found)
    assert not isinstance(found, str)  # an Engine, maybe of this module's other copy
    return found


class LiveEngines(dict):  # type: ignore[type-arg]
    """``live_engines[name]``: the engine (loaded on first use) or why it is not available."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> Engine | str:
        if name not in _LOADED:
            with contextlib.suppress(pytest.skip.Exception):  # the reason stays in _LOADED
                load_engine(name, str(self.folder) if name == "sqlite" else "")
        return _LOADED[name]


@pytest.fixture(scope="session")
def live_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngines]:
    """Every engine, loaded when first asked for; closed once at the end of the session."""
    yield LiveEngines(tmp_path_factory.mktemp("engines"))
    for name, engine in _LOADED.items():
        if not isinstance(engine, str):
            engine.connector.close()
            if name in _DROPS:
                with contextlib.suppress(Exception):  # a server gone since: nothing to drop
                    _DROPS[name]()
    _LOADED.clear()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, live_engines: LiveEngines) -> Engine:
    """Each live engine in turn, holding the demo data."""
    name = request.param
    if name == "spark":
        return load_engine(name, request.getfixturevalue("spark_server"))
    if name == "sqlite":
        return load_engine(name, str(live_engines.folder))
    return load_engine(name)


@pytest.fixture(scope="session")
def reference(live_engines: LiveEngines) -> Engine:
    """DuckDB, whose masked values every other engine must return."""
    return load_engine("duckdb")


@pytest.fixture
def connection_for() -> Callable[..., Any]:
    """A policy connection for a URL (for opening connectors directly)."""
    return _connection
