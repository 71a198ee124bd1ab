"""PostgreSQL: the profile (rendering, catalog, lockdown) and its ADBC connector.

The connector speaks ADBC (``adbc-driver-postgresql``): results arrive as Arrow, never
as Python rows, and values are bound server-side as ``$1, $2, ...``. The session is
locked down before the first statement: ``default_transaction_read_only = on`` and a
``statement_timeout``; every read runs in ``BEGIN READ ONLY``, a write in
``BEGIN READ WRITE`` only on a connection the policy does not mark ``read_only``.
Interrupting a cell cancels the running statement on the server (ADBC cursor cancel).

``sha256`` takes ``bytea`` in PostgreSQL, so the keyed hash is spelled
``encode(sha256(convert_to(k || v, 'UTF8')), 'hex')``: the digest of the value's UTF-8
bytes, as on every other engine. ``regexp_replace`` needs the ``'g'`` flag to replace
every match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call

if TYPE_CHECKING:
    import pyarrow as pa

    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.connectors.dbapi import Prepared, Streamed
    from jupyter_gov.policy import Connection

CATALOG_SQL = """
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_catalog = current_database()
  AND table_schema NOT IN ('information_schema', 'pg_catalog', 'pg_toast')
ORDER BY table_schema, table_name, ordinal_position
"""

#: Primary keys PostgreSQL enforces for every row a query of the table reads, the rule
#: PostgreSQL's own planner uses before it trusts a key for GROUP BY: not ``DEFERRABLE``
#: (duplicates may exist until commit), backed by a valid index, and not on a table with
#: inheritance children (``SELECT`` from it reads theirs too, which its index does not
#: cover); a partitioned table's key covers every partition. Views have none.
KEYS_SQL = """
SELECT n.nspname, c.relname, con.conname, a.attname
FROM pg_catalog.pg_constraint AS con
JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_index AS i ON i.indexrelid = con.conindid
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, position)
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE con.contype = 'p' AND NOT con.condeferrable AND i.indisvalid AND i.indisunique
  AND n.nspname NOT IN ('information_schema', 'pg_catalog', 'pg_toast')
  AND (c.relkind = 'p' OR NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_inherits AS h WHERE h.inhparent = c.oid))
ORDER BY n.nspname, c.relname, con.conname, k.position
"""


class PostgresMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        utf8 = call("CONVERT_TO", text, exp.Literal.string("UTF8"))
        return call("ENCODE", call("SHA256", utf8), exp.Literal.string("hex"))

    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        return call("MD5", call("CONVERT_TO", text, exp.Literal.string("UTF8")))

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        return call(
            "REGEXP_REPLACE",
            text,
            exp.Literal.string(pattern),
            exp.Literal.string(replacement),
            exp.Literal.string("g"),
        )


def _connect(connection: Connection) -> Connector:
    # The connector class is built on first use: importing the profile (the registry does,
    # for every engine) must not import the driver.
    return _connector_class()(connection)


@cache
def _connector_class() -> type:
    import pyarrow as pa

    from jupyter_gov.connectors.dbapi import DBAPIConnector, Streamed, bind

    class PostgresConnector(DBAPIConnector):
        """A governed PostgreSQL connection through ADBC."""

        profile = PROFILE
        keys_query = KEYS_SQL

        def _open(self, connection: Connection) -> None:
            import adbc_driver_postgresql.dbapi as adbc

            rest = connection.expanded_url.split(":", 1)[1]
            self.con = adbc.connect("postgresql:" + rest, autocommit=True)
            self._cursor: Any = None
            cursor = self.con.cursor()
            for setting, value in {
                **PROFILE.lockdown,
                "statement_timeout": f"{max(1, int(self.timeout_s * 1000))}ms",
            }.items():
                cursor.execute(f"SET {setting} = '{value}'")
            self._applied_timeout = self.timeout_s
            cursor.execute("SELECT current_schema()")
            self.default_schema = str(cursor.fetchone()[0] or "public")
            cursor.close()

        def _catalog_query(self, sql: str) -> list[Any]:
            cursor = self.con.cursor()
            try:
                cursor.execute("BEGIN READ ONLY")
                try:
                    cursor.execute(sql)
                    rows = cursor.fetchall()
                except BaseException:
                    with contextlib.suppress(Exception):  # the session stays usable
                        cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
                return rows
            finally:
                cursor.close()

        def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table | Streamed:
            """A write returns its (empty) result; a read streams its rows over ADBC's
            binary COPY, and its transaction ends when the stream does."""
            cursor = self.con.cursor()
            self._cursor = cursor
            streaming = False
            try:
                if self.timeout_s != self._applied_timeout:  # the policy's, for these roles
                    milliseconds = max(1, int(self.timeout_s * 1000))
                    cursor.execute(f"SET statement_timeout = '{milliseconds}ms'")
                    self._applied_timeout = self.timeout_s
                read_only = prepared.read or self.read_only
                cursor.execute("BEGIN READ ONLY" if read_only else "BEGIN READ WRITE")
                try:
                    cursor.execute(prepared.sql, bind(prepared, params) or None)
                    if cursor.description and prepared.read:
                        reader = cursor.fetch_record_batch()
                        streaming = True
                        return Streamed(reader, lambda failed: self._end(cursor, reader, failed))
                    table = cursor.fetch_arrow_table() if cursor.description else pa.table({})
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
                return table
            finally:
                if not streaming:
                    self._cursor = None
                    cursor.close()

        def _end(self, cursor: Any, reader: pa.RecordBatchReader, failed: bool) -> None:
            """End a streamed read: commit, or cancel and roll back one cut short."""
            try:
                if failed:
                    with contextlib.suppress(Exception):
                        cursor.adbc_cancel()
                    with contextlib.suppress(Exception):
                        reader.close()
                cursor.execute("ROLLBACK" if failed else "COMMIT")
            finally:
                if self._cursor is cursor:
                    self._cursor = None
                cursor.close()

        def interrupt(self) -> None:
            cursor = self._cursor
            if cursor is not None:
                cursor.adbc_cancel()

        def close(self) -> None:
            with self._lock:
                self._abandon_pending()
                self.con.close()

    return PostgresConnector


PROFILE = Profile(
    name="postgres",
    title="PostgreSQL",
    schemes=("postgresql", "postgres"),
    dialect="postgres",
    paramstyle="dollar_numeric",
    default_schema="public",
    catalog_query=CATALOG_SQL,
    masks=PostgresMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=True, result_registration=False, server_timeout=True
    ),
    functions=functions.DIALECT_FUNCTIONS["postgres"],
    dangerous_functions=frozenset(
        """
        pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file lo_import lo_export lo_get
        lo_put lo_from_bytea dblink dblink_exec dblink_connect set_config current_setting
        pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_sleep
        query_to_xml table_to_xml cursor_to_xml query_to_xml_and_xmlschema
        """.split()
    ),
    file_readers=frozenset({"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import"}),
    lockdown={"default_transaction_read_only": "on", "client_encoding": "UTF8"},
    connect=_connect,
    install_hint="pip install 'jupyter-gov[postgres]'",
)
