"""SQLite files: the profile (rendering, catalog, lockdown) and its stdlib connector.

The connector opens the file with :mod:`sqlite3`, read-only (``mode=ro`` URI) when the
policy marks the connection ``read_only``. Extension loading is switched off, no database
can be attached (``SQLITE_LIMIT_ATTACHED`` = 0) and an authorizer denies ``ATTACH``,
``DETACH``, ``PRAGMA`` and the profile's dangerous functions as defence in depth; while a
read runs, the authorizer allows only reading (SQLite has no read-only transaction, so this
is its equivalent). A progress handler enforces the statement timeout; interrupting a cell
calls ``sqlite3.Connection.interrupt``.

SQLite has no SHA-256, no regular-expression replace, no ``REPEAT`` and no date types.
The connector registers two deterministic application functions from Python's standard
library on every connection (``gov_sha256``: :mod:`hashlib`; ``gov_regexp_replace``:
:mod:`re`), so ``hash``, ``token`` and ``scrub`` return the same values as on the other
engines; ``REPEAT`` is ``replace(hex(zeroblob(n)), '00', s)``, ``LEFT``/``RIGHT`` are
``substr`` and the first day of a year is ``date(x, 'start of year')``.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call
from jupyter_gov.errors import ConnectionFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.connectors.dbapi import Prepared
    from jupyter_gov.policy import Connection

CATALOG_SQL = """
SELECT 'main', m.name, p.name, p.type
FROM sqlite_schema AS m JOIN pragma_table_info(m.name) AS p
WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
ORDER BY m.name, p.cid
"""

#: Primary keys whose every column is never NULL. SQLite lets a PRIMARY KEY column of an
#: ordinary (rowid) table hold NULLs unless it is declared NOT NULL (a historical bug kept
#: for compatibility), and NULLs are distinct for uniqueness but one group for GROUP BY:
#: rows sharing a NULL key would be one group holding several rows, whose masked column
#: could then split it in one plan and not the other. A column is never NULL when it is
#: declared NOT NULL (WITHOUT ROWID and STRICT tables report their key columns so), or
#: when it is the rowid itself: the ``INTEGER PRIMARY KEY`` that has no index of its own
#: (``INTEGER PRIMARY KEY DESC`` has one, is not the rowid, and takes NULLs). Views have
#: no key (``pk`` is 0).
KEYS_SQL = """
SELECT 'main', m.name, 'primary', p.name
FROM sqlite_schema AS m JOIN pragma_table_info(m.name) AS p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND p.pk > 0
  AND NOT EXISTS (
    SELECT 1 FROM pragma_table_info(m.name) AS q
    WHERE q.pk > 0 AND NOT q."notnull"
      AND NOT (upper(q.type) = 'INTEGER' AND NOT EXISTS (
        SELECT 1 FROM pragma_index_list(m.name) AS i WHERE i.origin = 'pk'))
  )
ORDER BY m.name, p.pk
"""


def sha256_hex(text: object) -> str | None:
    """``gov_sha256``: lower-case hex SHA-256 of the UTF-8 text, as DuckDB's ``sha256``."""
    return None if text is None else hashlib.sha256(str(text).encode()).hexdigest()


def md5_hex(text: object) -> str | None:
    """``gov_md5``: lower-case hex MD5 of the UTF-8 text, as DuckDB's ``md5``."""
    return None if text is None else hashlib.md5(str(text).encode()).hexdigest()


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp_replace(text: object, pattern: str, replacement: str) -> str | None:
    """``gov_regexp_replace``: every match replaced by the *literal* replacement."""
    if text is None:
        return None
    return _compiled(pattern).sub(lambda _match: replacement, str(text))


class SQLiteMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        return call("gov_sha256", text)

    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        return call("gov_md5", text)

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        return call(
            "gov_regexp_replace",
            text,
            exp.Literal.string(pattern),
            exp.Literal.string(replacement),
        )

    def repeat(self, text: str, times: exp.Expr) -> exp.Expr:
        blanks = call("HEX", call("ZEROBLOB", times))
        return call("REPLACE", blanks, exp.Literal.string("00"), exp.Literal.string(text))

    def left(self, text: exp.Expr, count: int) -> exp.Expr:
        return call("SUBSTR", text, exp.Literal.number(1), exp.Literal.number(count))

    def right(self, text: exp.Expr, count: int) -> exp.Expr:
        return call("SUBSTR", text, exp.Literal.number(-count))

    def year_start(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        function = "DATE" if dtype.is_type(exp.DataType.Type.DATE) else "DATETIME"
        return call(function, ref, exp.Literal.string("start of year"))


def path_of(url: str) -> str:
    """``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite:path.db`` -> the file's path."""
    rest = url.split(":", 1)[1]
    if rest.startswith("///"):
        return rest[3:]
    return rest.removeprefix("//")


_ALWAYS_DENIED = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA}
_READING = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}


def _connect(connection: Connection) -> Connector:
    return _connector_class()(connection)


@cache
def _connector_class() -> type:
    from jupyter_gov.connectors.dbapi import DBAPIConnector, bind, bulk, to_arrow

    class SQLiteConnector(DBAPIConnector):
        """A governed SQLite file."""

        profile = PROFILE
        keys_query = KEYS_SQL

        def _open(self, connection: Connection) -> None:
            target = path_of(connection.expanded_url)
            memory = target in ("", ":memory:")
            path = Path(target).expanduser()
            if not memory and not path.exists():
                raise ConnectionFailed(
                    f"The SQLite file of connection {connection.name!r} does not exist; "
                    "check the path in its URL."
                )
            uri = "file::memory:" if memory else path.resolve().as_uri()
            mode = "ro" if self.read_only and not memory else "rw"
            self.con = sqlite3.connect(
                f"{uri}?mode={mode}", uri=True, check_same_thread=False, isolation_level=None
            )
            if hasattr(self.con, "enable_load_extension"):
                self.con.enable_load_extension(False)
            self.con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            for setting in ("trusted_schema", "query_only"):
                value = PROFILE.lockdown[setting] if setting != "query_only" else self.read_only
                self.con.execute(f"PRAGMA {setting} = {'ON' if value else 'OFF'}")
            for name, (arguments, function) in PROFILE.udfs.items():
                self.con.create_function(name, arguments, function, deterministic=True)
            self._reading = False
            self._trusted = False
            self._deadline = float("inf")
            self.con.set_authorizer(self._authorize)
            self.con.set_progress_handler(self._over_time, 10_000)

        def _authorize(self, action: int, arg1: Any, arg2: Any, *_: Any) -> int:
            if self._trusted:
                return sqlite3.SQLITE_OK
            if action in _ALWAYS_DENIED:
                return sqlite3.SQLITE_DENY
            if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in (
                PROFILE.dangerous_functions
            ):
                return sqlite3.SQLITE_DENY
            if self._reading and action not in _READING:
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        def _over_time(self) -> int:
            return 1 if time.monotonic() > self._deadline else 0

        def _catalog_query(self, sql: str) -> list[Any]:
            self._trusted = True  # the pragma_ functions are ours, not the user's
            try:
                return self.con.execute(sql).fetchall()
            finally:
                self._trusted = False

        def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table:
            import pyarrow as pa

            values = dict(zip(prepared.names, bind(prepared, params)))
            self._reading = prepared.read or self.read_only
            self._deadline = time.monotonic() + self.timeout_s
            try:
                cursor = self.con.execute(prepared.sql, values)
                with bulk():
                    rows = cursor.fetchall()
            finally:
                self._reading = False
                self._deadline = float("inf")
            if not cursor.description:
                return pa.table({})
            names = [d[0] for d in cursor.description]
            with bulk():
                return to_arrow(rows, names, [None] * len(names))

        def interrupt(self) -> None:
            self.con.interrupt()

        def close(self) -> None:
            self.con.close()

    return SQLiteConnector


PROFILE = Profile(
    name="sqlite",
    title="SQLite",
    schemes=("sqlite",),
    dialect="sqlite",
    paramstyle="named",
    default_schema="main",
    catalog_query=CATALOG_SQL,
    masks=SQLiteMasks(),
    capabilities=Capabilities(cancel=True, read_only_transactions=True),
    dangerous_functions=frozenset("load_extension readfile writefile edit fts3_tokenizer".split()),
    file_readers=frozenset({"readfile"}),
    # query_only and no extensions, no ATTACH: a file cannot be reached from SQL.
    lockdown={
        "query_only": True,
        "trusted_schema": False,
        "load_extension": False,
        "limit_attached": 0,
    },
    udfs={
        "gov_sha256": (1, sha256_hex),
        "gov_md5": (1, md5_hex),
        "gov_regexp_replace": (3, regexp_replace),
    },
    connect=_connect,
)
