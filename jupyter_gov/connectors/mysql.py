"""MySQL and MariaDB: the profile (rendering, catalog, lockdown) and its connector.

Reads on MariaDB go through ``connectorx`` (Rust, rows straight into Arrow; five to eight
times faster than PyMySQL on a million rows, ``bench/databases.py``) when it is installed.
It cannot bind parameters, so the governed statement's values are spelt by
:func:`literal`, which never lets a value's text into the SQL: text and bytes become hex
literals with a charset introducer (``_utf8mb4 X'656d6561'``: only hex digits), numbers,
dates and timestamps are spelt from their Python type, anything else sends the statement
to PyMySQL. The server-side defences ride on the statement itself: ``SET STATEMENT
max_statement_time=N, tx_read_only=1 FOR <query>`` (MariaDB), so the read runs in a
read-only transaction with the policy's timeout on connectorx's own connection, and a
comment with a random tag lets an interrupt find its thread for ``KILL QUERY``.

Everything else (writes, MySQL, a value :func:`literal` refuses, no connectorx) uses
PyMySQL (pure Python, maintained, no client library to build), with the values bound
(PyMySQL escapes them into the statement). Rows are fetched at once and turned into Arrow
a column at a time.
The session is locked down before the first statement (``SET SESSION TRANSACTION READ
ONLY``, ``max_statement_time`` on MariaDB, ``max_execution_time`` on MySQL); every read
runs in ``START TRANSACTION READ ONLY``, a write in ``START TRANSACTION READ WRITE`` only on
a connection the policy does not mark ``read_only``. Interrupting a cell sends ``KILL
QUERY`` for the connection's thread from a second connection.

``REGEXP_REPLACE(s, p, r)`` replaces every match; a fourth argument would be a *position*,
so no flags are passed. ``DATE_TRUNC`` does not exist: the first day of a year is
``MAKEDATE(YEAR(x), 1)``. Lengths are ``CHAR_LENGTH`` (``LENGTH`` counts bytes).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call

if TYPE_CHECKING:
    import pyarrow as pa

    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.connectors.dbapi import Prepared
    from jupyter_gov.policy import Connection

CATALOG_SQL = """
SELECT table_schema, table_name, column_name, column_type
FROM information_schema.columns
WHERE table_schema NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')
ORDER BY table_schema, table_name, ordinal_position
"""

#: Primary keys (``PRIMARY``: unique, and MySQL/MariaDB make its columns NOT NULL) of tables
#: whose storage engine enforces them on the rows it holds; an engine that reads rows from
#: elsewhere (FEDERATED, CONNECT, Spider, ...) declares a key it cannot enforce. Views have
#: none.
KEYS_SQL = """
SELECT k.table_schema, k.table_name, k.constraint_name, k.column_name
FROM information_schema.key_column_usage AS k
JOIN information_schema.tables AS t
  ON t.table_schema = k.table_schema AND t.table_name = k.table_name
WHERE k.constraint_name = 'PRIMARY'
  AND t.engine IN ('InnoDB', 'MyISAM', 'Aria', 'MEMORY')
  AND k.table_schema NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')
ORDER BY k.table_schema, k.table_name, k.ordinal_position
"""


class MySQLMasks(MaskDialect):
    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        return call("MD5", text)  # lower-case hex of the UTF-8 bytes, as DuckDB's

    def year_start(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        first_day = call("MAKEDATE", call("YEAR", ref), exp.Literal.number(1))
        return exp.cast(first_day, dtype.copy())


def _connect(connection: Connection) -> Connector:
    try:
        connector_class = _connector_class()
    except ImportError:
        from jupyter_gov.connectors.dbapi import missing_driver

        raise missing_driver(PROFILE, connection) from None
    return connector_class(connection)


def literal(value: Any) -> str:
    """A bound value spelt as a MariaDB literal that cannot change the statement's shape.

    Text and bytes become hex literals (``_utf8mb4 X'..'``, ``X'..'``): no quote, backslash
    or multi-byte trick of the value reaches the SQL. Integers, finite floats and decimals,
    dates and timestamps are spelt from their type; ``None`` is ``NULL``. Anything else
    raises ``TypeError`` and the statement goes through PyMySQL instead.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return repr(float(value))
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, str):
        return f"_utf8mb4 X'{value.encode().hex()}'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"no safe MariaDB literal for a {type(value).__name__}")


_PYFORMAT = re.compile(r"%%|%\((\w+)\)s")


def spell(sql: str, values: Mapping[str, Any]) -> str:
    """A pyformat statement with each ``%(name)s`` spelt by :func:`literal` (``%%`` is %)."""

    def one(match: re.Match[str]) -> str:
        return "%" if match.group(0) == "%%" else literal(values[match.group(1)])

    return _PYFORMAT.sub(one, sql)


def _arrow_types() -> dict[int, Any]:
    """PyMySQL's field types to Arrow; absent ones (decimals, bit, JSON) are inferred."""
    import pyarrow as pa
    from pymysql.constants import FIELD_TYPE as F

    integer = {F.TINY, F.SHORT, F.LONG, F.LONGLONG, F.INT24, F.YEAR}
    text = {F.VARCHAR, F.VAR_STRING, F.STRING, F.ENUM, F.SET}
    types: dict[int, Any] = {code: pa.int64() for code in integer}
    types.update({code: pa.string() for code in text})
    types.update({F.FLOAT: pa.float64(), F.DOUBLE: pa.float64(), F.DATE: pa.date32()})
    types.update({F.DATETIME: pa.timestamp("us"), F.TIMESTAMP: pa.timestamp("us")})
    return types


@cache
def _connector_class() -> type:
    import pyarrow as pa
    import pymysql

    from jupyter_gov.connectors.dbapi import DBAPIConnector, bind, bulk, to_arrow

    types = _arrow_types()

    def _type(column: Sequence[Any]) -> Any:
        # Typing decimals up front is ten times faster than letting Arrow infer them.
        code, precision, scale = column[1], column[4], column[5]
        decimal = code in (
            pymysql.constants.FIELD_TYPE.NEWDECIMAL,
            pymysql.constants.FIELD_TYPE.DECIMAL,
        )
        if decimal and precision and scale is not None and 0 <= scale <= precision <= 38:
            return pa.decimal128(precision, scale)
        return types.get(code)

    class MySQLConnector(DBAPIConnector):
        """A governed MySQL or MariaDB connection through PyMySQL."""

        profile = PROFILE
        keys_query = KEYS_SQL

        def _open(self, connection: Connection) -> None:
            url = urlsplit(connection.expanded_url)
            options = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._params = {
                "host": url.hostname or "127.0.0.1",
                "port": url.port or 3306,
                "user": unquote(url.username or "root"),
                "password": unquote(url.password or ""),
                "database": unquote(url.path.lstrip("/")) or None,
                "charset": "utf8mb4",
                "autocommit": True,
                "connect_timeout": int(options.get("connect_timeout", 10)),
            }
            self.con = pymysql.connect(**self._params)
            cursor = self.con.cursor()
            cursor.execute("SELECT VERSION(), DATABASE()")
            version, database = cursor.fetchone()
            self.default_schema = database or ""
            self._mariadb = "mariadb" in str(version).lower()
            self._cx_url = (
                f"mysql://{quote(self._params['user'], safe='')}:"
                f"{quote(self._params['password'], safe='')}@{self._params['host']}:"
                f"{self._params['port']}/{quote(database or '', safe='')}"
            )
            self._cx_tag: str | None = None
            self._apply_timeout(cursor)
            cursor.execute("SET NAMES utf8mb4")
            cursor.execute("SET SESSION TRANSACTION READ ONLY")

        def _apply_timeout(self, cursor: Any) -> None:
            """MariaDB counts seconds for every statement; MySQL milliseconds, for SELECT."""
            if self._mariadb:
                cursor.execute(f"SET SESSION max_statement_time = {float(self.timeout_s)}")
            else:
                milliseconds = max(1, int(self.timeout_s * 1000))
                cursor.execute(f"SET SESSION max_execution_time = {milliseconds}")
            self._applied_timeout = self.timeout_s

        def _catalog_query(self, sql: str) -> list[Any]:
            with self.con.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())

        def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table:
            fast = self._fast_read(prepared, params)
            if fast is not None:
                return fast
            read_only = prepared.read or self.read_only
            with self.con.cursor() as cursor:
                if self.timeout_s != self._applied_timeout:  # the policy's, for these roles
                    self._apply_timeout(cursor)
                cursor.execute(
                    "START TRANSACTION READ ONLY" if read_only else "START TRANSACTION READ WRITE"
                )
                try:
                    cursor.execute(prepared.sql, dict(zip(prepared.names, bind(prepared, params))))
                    with bulk():
                        rows = cursor.fetchall()
                    description = cursor.description
                except BaseException:
                    self.con.rollback()
                    raise
                self.con.commit()
            if not description:
                return pa.table({})
            with bulk():
                return to_arrow(rows, [d[0] for d in description], [_type(d) for d in description])

        def _fast_read(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table | None:
            """A MariaDB read through connectorx, or None when PyMySQL must take it."""
            if not (prepared.read and self._mariadb):
                return None
            try:
                import connectorx
            except ImportError:
                return None
            try:
                text = spell(prepared.sql, dict(zip(prepared.names, bind(prepared, params))))
            except TypeError:
                return None
            tag = uuid.uuid4().hex
            sql = (
                f"SET STATEMENT max_statement_time={float(self.timeout_s)}, tx_read_only=1 "
                f"FOR /* jupyter-gov {tag} */ {text}"
            )
            outcome: dict[str, Any] = {}
            done = threading.Event()

            def work() -> None:
                try:
                    outcome["table"] = connectorx.read_sql(self._cx_url, sql, return_type="arrow")
                except BaseException as error:
                    outcome["error"] = error
                finally:
                    done.set()

            self._cx_tag = tag
            try:
                threading.Thread(target=work, name="jupyter-gov-mariadb", daemon=True).start()
                while not done.wait(0.1):  # a timed wait: KeyboardInterrupt gets through
                    pass
            except KeyboardInterrupt:
                self._kill(tag)
                done.wait(30)
                raise
            finally:
                self._cx_tag = None
            if "error" in outcome:
                raise outcome["error"]
            return outcome["table"]

        def _kill(self, tag: str) -> None:
            """``KILL QUERY`` the connectorx thread whose statement carries ``tag``."""
            killer = pymysql.connect(**{**self._params, "autocommit": True})
            try:
                cursor = killer.cursor()
                cursor.execute(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE info LIKE %s AND id <> CONNECTION_ID()",
                    (f"%jupyter-gov {tag}%",),
                )
                for (thread,) in cursor.fetchall():
                    cursor.execute("KILL QUERY %s", (thread,))
            finally:
                killer.close()

        def interrupt(self) -> None:
            tag = self._cx_tag
            if tag is not None:
                self._kill(tag)
                return
            # A second connection: the first is blocked waiting for the statement's result.
            killer = pymysql.connect(**{**self._params, "autocommit": True})
            try:
                killer.cursor().execute("KILL QUERY %s", (self.con.thread_id(),))
            finally:
                killer.close()

        def close(self) -> None:
            self.con.close()

    return MySQLConnector


PROFILE = Profile(
    name="mysql",
    title="MySQL/MariaDB",
    schemes=("mysql", "mariadb"),
    dialect="mysql",
    paramstyle="pyformat",
    default_schema="",  # the URL's database: the connector passes it
    catalog_query=CATALOG_SQL,
    masks=MySQLMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=True, result_registration=False, server_timeout=True
    ),
    functions=functions.DIALECT_FUNCTIONS["mysql"],
    dangerous_functions=frozenset(
        "load_file sleep benchmark get_lock release_lock sys_exec sys_eval".split()
    ),
    file_readers=frozenset({"load_file"}),
    # utf8mb4 on the connection: the keyed hash digests the same bytes as other engines.
    lockdown={"transaction_read_only": "ON", "character_set_connection": "utf8mb4"},
    connect=_connect,
    install_hint="pip install 'jupyter-gov[mysql]'",
)
