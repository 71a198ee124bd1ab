"""Any SQLAlchemy URL as the general path: Snowflake, BigQuery, Trino, Databricks, Redshift...

The governed statement is rendered by sqlglot with the engine's profile (its dialect and
masks) in the parameter style of the URL's driver, and executed through that driver's
PEP 249 connection, which SQLAlchemy opens from the URL (``snowflake://``,
``bigquery://``, ``trino://``, ``databricks://``, ``redshift+redshift_connector://``,
``postgresql+pg8000://`` ...). Only the driver is SQLAlchemy's; nothing is compiled by
SQLAlchemy itself, so what runs is exactly what the golden files of
``tests/fixtures/rewrite/`` show.

Reads run inside a transaction that is rolled back, so a write hidden in a "read" is
undone on engines with transactions. Rows are fetched with ``fetchall`` and turned into
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


class SQLAlchemyConnector(DBAPIConnector):
    """A governed connection through the PEP 249 driver a SQLAlchemy URL names."""

    def __init__(self, connection: Connection, profile: Profile) -> None:
        self.profile = profile  # replaced by the driver's paramstyle once the URL is parsed
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

    def _catalog_rows(self) -> list[tuple[str, str, str, str]]:
        cursor = self.con.cursor()
        try:
            cursor.execute(self.profile.catalog_query)
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


def _single_pool() -> Any:
    """One connection per kernel and connection name, as for the native connectors."""
    from sqlalchemy.pool import StaticPool

    return StaticPool
