"""DuckDB, locked down so the kernel cannot reach around the proxy through the engine.

Replacement scans (``SELECT * FROM some_dataframe``), file and network access, extension
installs and loads, persistent secrets are all off, then the configuration is locked so a
later ``SET`` fails. The embedded ``demo`` database is built in memory from a fixed seed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.base import Catalog, safe_error
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call
from jupyter_gov.errors import ConnectionFailed, QueryFailed
from jupyter_gov.policy import Connection
from jupyter_gov.scrub import scrub_text

LOCKDOWN: dict[str, Any] = {
    "python_enable_replacements": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
}

#: Table functions (and their sqlglot classes) that read files, URLs or other catalogs.
FILE_READERS = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "parquet_scan",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_ndjson",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "glob",
        "sniff_csv",
        "read_xlsx",
        "iceberg_scan",
        "delta_scan",
        "parquet_metadata",
        "parquet_schema",
        "readcsv",
        "readparquet",
        "readjson",
    }
)

_CATALOG_SQL = """
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_catalog = current_database()
  AND table_schema NOT IN ('information_schema', 'pg_catalog')
ORDER BY table_schema, table_name, ordinal_position
"""


class DuckDBConnector:
    """A governed DuckDB connection: ``duckdb:demo``, ``duckdb:memory`` or ``duckdb:///path``."""

    dialect = "duckdb"

    def __init__(
        self, name: str, url: str, read_only: bool = False, *, policy_url: str | None = None
    ) -> None:
        """``url`` is the expanded URL; ``policy_url`` the policy's own form, with its
        ``${VAR}`` references unexpanded, which is the only form any message shows."""
        self.name = name
        self.url = url
        shown = self.policy_url = policy_url or url
        self._lock = threading.RLock()
        self._catalog: Catalog | None = None
        self.timeout_s: float | None = None  # the policy's; DuckDB has no server-side one
        target = url.removeprefix("duckdb:")
        try:
            if target in ("demo", "memory", "", "//:memory:", "///:memory:"):
                self.con = duckdb.connect(":memory:", config=dict(LOCKDOWN))
                if target == "demo":
                    from jupyter_gov.demo import load_demo

                    load_demo(self.con)
            else:
                path = Path(target.removeprefix("///").removeprefix("//")).expanduser()
                if not path.exists():
                    raise ConnectionFailed(
                        f"The DuckDB file of connection {name!r} ({shown}) does not exist; "
                        "check its URL in the policy and the variables it uses."
                    )
                config = dict(LOCKDOWN, access_mode="READ_ONLY" if read_only else "AUTOMATIC")
                self.con = duckdb.connect(str(path), config=config)
            # Only now: the demo loader registers Arrow tables, which needs the API, not files.
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except duckdb.Error as error:
            raise ConnectionFailed(
                f"Could not open DuckDB connection {name!r} ({shown}): "
                f"{safe_error(str(error), shown)}"
            ) from error

    def catalog(self, refresh: bool = False) -> Catalog:
        with self._lock:
            if self._catalog is None or refresh:
                try:
                    rows = self.con.execute(PROFILE.catalog_query).fetchall()
                except duckdb.Error as error:
                    raise ConnectionFailed(
                        f"Could not read the catalog of connection {self.name!r}: "
                        f"{safe_error(str(error), self.policy_url)}"
                    ) from None
                self._catalog = Catalog.from_rows(
                    rows, default_schema=PROFILE.default_schema, dialect=PROFILE.dialect
                )
            return self._catalog

    def set_timeout(self, seconds: float | None) -> None:
        """The policy's statement timeout for the next statements (None: no limit)."""
        self.timeout_s = seconds

    def execute(self, sql: str, params: Mapping[str, Any]) -> pa.Table:
        with self._lock:
            # The engine runs in this process: a timer interrupts the statement in place of
            # a server-side timeout.
            timer = threading.Timer(self.timeout_s, self.con.interrupt) if self.timeout_s else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                cursor = self.con.execute(sql, dict(params) if params else None)
                if cursor.description is None:
                    return pa.table({})
                return cursor.to_arrow_table()
            except duckdb.InterruptException as error:
                if timer is not None and timer.finished.is_set():
                    raise QueryFailed(
                        f"The query ran past the policy's statement timeout of "
                        f"{self.timeout_s:g} s and was stopped."
                    ) from None
                raise QueryFailed("The query was cancelled.") from error
            except duckdb.Error as error:
                # Engine errors echo values ("Could not convert string 'Hana Nguyen'"): only
                # the redacted form may reach the user, the audit or an API response.
                message = safe_error(str(error), self.policy_url, self._names())
                raise QueryFailed(
                    f"DuckDB rejected the governed statement: {scrub_text(message)}"
                ) from None
            finally:
                if timer is not None:
                    timer.cancel()

    def _names(self) -> set[str]:
        """Catalog tables and columns: the names an error message may keep."""
        catalog = self.catalog()
        names = {e.name for e in catalog.tables.values()}
        names.update(c for e in catalog.tables.values() for c in e.columns)
        return names

    def register_result(self, name: str, table: pa.Table) -> None:
        with self._lock:
            self.con.register(name, table)

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        self.con.close()


class DuckDBMasks(MaskDialect):
    """DuckDB's ``regexp_replace`` replaces the first match unless given the ``'g'`` option."""

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        return call(
            "REGEXP_REPLACE",
            text,
            exp.Literal.string(pattern),
            exp.Literal.string(replacement),
            exp.Literal.string("g"),
        )


def _connect(connection: Connection) -> DuckDBConnector:
    return DuckDBConnector(
        connection.name,
        connection.expanded_url,
        read_only=connection.read_only,
        policy_url=connection.url,
    )


PROFILE = Profile(
    name="duckdb",
    title="DuckDB",
    schemes=("duckdb",),
    dialect="duckdb",
    paramstyle="dollar",
    default_schema="main",
    catalog_query=_CATALOG_SQL,
    masks=DuckDBMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=True, result_registration=True, server_timeout=False
    ),
    functions=functions.DIALECT_FUNCTIONS["duckdb"],
    dangerous_functions=frozenset(
        {"getenv", "current_setting", "duckdb_settings", "duckdb_secrets", "query", "query_table"}
    ),
    file_readers=FILE_READERS,
    lockdown={**LOCKDOWN, "enable_external_access": False, "lock_configuration": True},
    connect=_connect,
)
