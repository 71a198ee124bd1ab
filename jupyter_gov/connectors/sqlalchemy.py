"""Any SQLAlchemy URL as the general path: Snowflake, BigQuery, Trino, Databricks, Redshift...

The governed statement is rendered by sqlglot with the engine's profile (its dialect and
masks) in the parameter style of the URL's driver, and executed through that driver's
PEP 249 connection, which SQLAlchemy opens from the URL (``snowflake://``,
``bigquery://``, ``trino://``, ``databricks://``, ``redshift+redshift_connector://``,
``postgresql+pg8000://`` ...). Only the driver is SQLAlchemy's; nothing is compiled by
SQLAlchemy itself, so what runs is exactly what the golden files of
``tests/fixtures/rewrite/`` show.

Reads run inside a transaction that is rolled back, so a write hidden in a "read" is
undone on engines with transactions. Where the engine has a known setting, the server
enforces more (:func:`guard_statements`, rendered before each statement): PostgreSQL and
Redshift run reads in ``SET TRANSACTION READ ONLY`` with a ``SET LOCAL statement_timeout``;
MySQL/MariaDB in ``START TRANSACTION READ ONLY`` with ``max_statement_time`` (MariaDB) and
``max_execution_time`` (MySQL; the one the server does not know is skipped); Snowflake
with ``ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS``; Trino with ``SET SESSION
query_max_execution_time``. BigQuery and Databricks SQL have no such SQL statement: their
timeout is the connector's interrupt only, and read-only is the credentials' business.
Rows are fetched with ``fetchall`` and turned into
Arrow a column at a time (no Python loop per row).

Install with ``pip install 'jupyter-gov[sqlalchemy]'`` plus the engine's SQLAlchemy
dialect (``snowflake-sqlalchemy``, ``sqlalchemy-bigquery``, ``trino[sqlalchemy]``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pyarrow as pa

from jupyter_gov.connectors.base import Connector
from jupyter_gov.connectors.dbapi import DBAPIConnector, Prepared, bind, bulk, to_arrow
from jupyter_gov.connectors.profile import Profile
from jupyter_gov.errors import ConnectionFailed
from jupyter_gov.policy import Connection

#: PEP 249 paramstyles a profile can render.
_STYLES = ("qmark", "numeric", "named", "format", "pyformat")


#: The SQLAlchemy dialect package of each rendering profile, said when it is missing.
DIALECT_PACKAGES = {
    "snowflake": "snowflake-sqlalchemy",
    "bigquery": "sqlalchemy-bigquery",
    "trino": "trino[sqlalchemy]",
    "databricks": "databricks-sqlalchemy",
    "redshift": "sqlalchemy-redshift",
}


def guard_statements(engine: str, timeout_s: float, read: bool) -> list[str]:
    """The statements that make the server enforce the timeout (and read-only for a read).

    Only numbers derived from ``timeout_s`` go into them (formatted from a float, never
    text from a policy or a user). An engine without such settings gets none.
    """
    milliseconds = max(1, int(timeout_s * 1000))
    seconds = max(1, int(-(-timeout_s // 1)))  # whole seconds, rounded up
    if engine in ("postgres", "redshift"):
        return [
            *(["SET TRANSACTION READ ONLY"] if read else []),
            f"SET LOCAL statement_timeout = {milliseconds}",
        ]
    if engine == "mysql":
        return [
            f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}",  # MariaDB
            f"SET SESSION max_execution_time = {milliseconds}",  # MySQL (SELECT only)
            *(["START TRANSACTION READ ONLY"] if read else []),
        ]
    if engine == "snowflake":
        return [f"ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = {seconds}"]
    if engine == "trino":
        return [f"SET SESSION query_max_execution_time = '{seconds}s'"]
    return []


def open_sqlalchemy(connection: Connection, profile: Profile) -> Connector:
    """A connector for ``connection`` through its URL's SQLAlchemy driver, with ``profile``.

    Says in one sentence what to install when SQLAlchemy or the engine's dialect is missing.
    """
    package = DIALECT_PACKAGES.get(profile.name, f"the SQLAlchemy dialect for {profile.title}")
    missing = ConnectionFailed(
        f"Connection {connection.name!r} is a {profile.title} URL, but the {profile.title} "
        f"connector is not installed yet: install jupyter-gov[sqlalchemy] and {package}."
    )
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    except ImportError:
        raise missing from None
    try:
        make_url(connection.expanded_url).get_dialect()
    except (NoSuchModuleError, ImportError):
        raise missing from None
    except ArgumentError:  # never echo the URL: it may hold an expanded secret
        raise ConnectionFailed(
            f"The URL of connection {connection.name!r} is not a valid SQLAlchemy URL; check "
            "its form in the policy."
        ) from None
    return SQLAlchemyConnector(connection, profile)


def _keys_query(engine: str) -> str:
    """The native connector's query of enforced primary keys, for the engines whose keys
    the same query reads through any driver; other engines read none (their masks stay in
    the scan, see docs/databases.md, "Primary keys")."""
    if engine == "postgres":
        from jupyter_gov.connectors.postgres import KEYS_SQL

        return KEYS_SQL
    if engine == "mysql":
        from jupyter_gov.connectors.mysql import KEYS_SQL as MYSQL_KEYS_SQL

        return MYSQL_KEYS_SQL
    return ""


class SQLAlchemyConnector(DBAPIConnector):
    """A governed connection through the PEP 249 driver a SQLAlchemy URL names."""

    def __init__(self, connection: Connection, profile: Profile) -> None:
        self.profile = profile  # replaced by the driver's paramstyle once the URL is parsed
        self.keys_query = _keys_query(profile.name)
        super().__init__(connection)

    def _open(self, connection: Connection) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(connection.expanded_url, poolclass=_single_pool())
        style = self.engine.dialect.paramstyle
        if style not in _STYLES:
            raise ConnectionFailed(
                f"The driver of connection {connection.name!r} binds parameters as {style!r}, "
                "which jupyter-gov cannot render; use another driver for this engine."
            )
        self.profile = replace(self.profile, paramstyle=style)
        self.dialect = self.profile.dialect
        self.con: Any = self.engine.raw_connection()
        self._cursor: Any = None
        default = getattr(self.engine.dialect, "default_schema_name", None)
        if default:
            self.default_schema = str(default)

    def _catalog_query(self, sql: str) -> list[Any]:
        cursor = self.con.cursor()
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()
            self.con.rollback()

    def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table:
        cursor = self.con.cursor()
        self._cursor = cursor
        read = prepared.read or self.read_only
        try:
            values = bind(prepared, params)
            self._guard(cursor, read)
            if self.profile.paramstyle in ("named", "pyformat"):
                cursor.execute(prepared.sql, dict(zip(prepared.names, values)))
            else:
                cursor.execute(prepared.sql, values)
            description = cursor.description
            with bulk():
                rows = cursor.fetchall() if description else []
        except BaseException:
            self.con.rollback()
            raise
        finally:
            self._cursor = None
        if read:
            self.con.rollback()  # a write hidden in a read is undone where there are transactions
        else:
            self.con.commit()
        cursor.close()
        if not description:
            return pa.table({})
        with bulk():
            return to_arrow(rows, [d[0] for d in description], [None] * len(description))

    def _guard(self, cursor: Any, read: bool) -> None:
        """Run the engine's guard statements; one the server does not know is skipped.

        MariaDB knows ``max_statement_time`` and MySQL ``max_execution_time``: each refuses
        the other's, which is fine. Any other failure stops the statement (fail closed).
        """
        for statement in guard_statements(self.profile.name, self.timeout_s, read):
            try:
                cursor.execute(statement)
            except Exception as error:
                if self.profile.name == "mysql" and "max_" in statement and _unknown(error):
                    continue
                raise

    def interrupt(self) -> None:
        """Cancel through whatever the driver offers (cursor, then connection)."""
        driver = getattr(self.con, "driver_connection", None) or self.con
        for target in (self._cursor, driver):
            cancel = getattr(target, "cancel", None) or getattr(target, "interrupt", None)
            if target is not None and callable(cancel):
                cancel()
                return

    def close(self) -> None:
        self.con.close()
        self.engine.dispose()


def _unknown(error: BaseException) -> bool:
    """MySQL/MariaDB said the variable does not exist (error 1193)."""
    return "1193" in str(error) or "Unknown system variable" in str(error)


def _single_pool() -> Any:
    """One connection per kernel and connection name, as for the native connectors."""
    from sqlalchemy.pool import StaticPool

    return StaticPool
