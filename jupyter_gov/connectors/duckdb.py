"""DuckDB, locked down so the kernel cannot reach around the proxy through the engine.

Replacement scans (``SELECT * FROM some_dataframe``), file and network access, extension
installs and loads, persistent secrets are all off, then the configuration is locked so a
later ``SET`` fails. The embedded ``demo`` database is built in memory from a fixed seed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.base import BATCH_ROWS, Catalog, no_rows, safe_error
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call
from jupyter_gov.connectors.streaming import BufferedStream, HoldsStream
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

#: Primary keys (DuckDB enforces them: unique and not null).
_KEYS_SQL = """
SELECT schema_name, table_name, constraint_column_names
FROM duckdb_constraints()
WHERE constraint_type = 'PRIMARY KEY' AND database_name = current_database()
"""


class DuckDBConnector(HoldsStream):
    """A governed DuckDB connection: ``duckdb:demo``, ``duckdb:memory`` or ``duckdb:///path``."""

    dialect = "duckdb"
    #: Results may stay mid-stream between calls: the engine runs in this process, so an
    #: unread result holds no server statement or transaction open.
    lazy_results = True

    def __init__(
        self, name: str, url: str, read_only: bool = False, *, policy_url: str | None = None
    ) -> None:
        """``url`` is the expanded URL; ``policy_url`` the policy's own form, with its
        ``${VAR}`` references unexpanded, which is the only form any message shows."""
        self.name = name
        self.url = url
        shown = self.policy_url = policy_url or url
        self._lock = threading.RLock()
        self._pending = None  # a result still streaming (HoldsStream)
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
                self._detach()
                try:
                    rows = self.con.execute(PROFILE.catalog_query).fetchall()
                    keys = self.con.execute(_KEYS_SQL).fetchall()
                except duckdb.Error as error:
                    raise ConnectionFailed(
                        f"Could not read the catalog of connection {self.name!r}: "
                        f"{safe_error(str(error), self.policy_url)}"
                    ) from None
                self._catalog = Catalog.from_rows(
                    rows,
                    default_schema=PROFILE.default_schema,
                    dialect=PROFILE.dialect,
                    keys=keys,
                )
            return self._catalog

    def set_timeout(self, seconds: float | None) -> None:
        """The policy's statement timeout for the next statements (None: no limit)."""
        self.timeout_s = seconds

    def execute(self, sql: str, params: Mapping[str, Any]) -> pa.RecordBatchReader:
        """Run one statement and stream its rows from DuckDB as Arrow batches.

        The first batch is fetched here (so errors and the timeout of most statements are
        raised by ``execute`` itself); the rest is fetched as the reader is read. A stream
        still open when this connection runs anything else is read to the end into memory
        first, so the earlier reader stays valid.
        """
        with self._lock:
            self._detach()
            stream = _Stream(self, self.timeout_s)
            try:
                with stream.running():
                    cursor = self.con.execute(sql, dict(params) if params else None)
                    if cursor.description is None:
                        stream.end()
                        return no_rows()
                    stream.source = cursor.to_arrow_reader(BATCH_ROWS)
                    stream.first = stream.source.read_next_batch()
            except StopIteration:
                schema = stream.source.schema if stream.source is not None else pa.schema([])
                stream.end()
                return pa.RecordBatchReader.from_batches(schema, [])
            except BaseException:
                stream.end(failed=True)
                raise
            return self._hand_over(stream, stream.source.schema)

    def _names(self) -> set[str]:
        """Catalog tables and columns: the names an error message may keep."""
        catalog = self.catalog()
        names = {e.name for e in catalog.tables.values()}
        names.update(c for e in catalog.tables.values() for c in e.columns)
        return names

    def register_result(self, name: str, table: pa.Table) -> None:
        with self._lock:
            self._detach()
            self.con.register(name, table)

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        with self._lock:
            self._abandon_pending()
            self.con.close()


class _Stream(BufferedStream):
    """A DuckDB result (see :class:`BufferedStream`): each read runs under what is left of
    the policy's statement timeout, and DuckDB's errors become one redacted sentence."""

    connector: DuckDBConnector

    def __init__(self, connector: DuckDBConnector, timeout_s: float | None) -> None:
        super().__init__(connector)
        #: Seconds of engine work left under the policy's statement timeout: only time
        #: spent executing and fetching counts, not time the reader waits between batches.
        self.budget = timeout_s
        self.timed_out = False

    def _read(self, source: pa.RecordBatchReader) -> pa.RecordBatch:
        with self.running():
            return source.read_next_batch()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Engine work: under a timer for what is left of the statement timeout (DuckDB
        runs in this process, so a timer interrupts it in place of a server-side timeout),
        and with DuckDB's errors turned into one redacted sentence (values never leave)."""
        connector = self.connector
        done = threading.Event() if self.budget is not None else None
        started = time.monotonic()
        if done is not None:
            threading.Thread(
                target=self._time_out, args=(max(self.budget, 0.001), done), daemon=True
            ).start()
        try:
            yield
        except duckdb.InterruptException as error:
            if self.timed_out:
                raise QueryFailed(
                    f"The query ran past the policy's statement timeout of "
                    f"{connector.timeout_s:g} s and was stopped."
                ) from None
            raise QueryFailed("The query was cancelled.") from error
        except (duckdb.Error, pa.ArrowException, OSError) as error:
            # Engine errors echo values ("Could not convert string 'Hana Nguyen'"): only
            # the redacted form may reach the user, the audit or an API response.
            message = safe_error(str(error), connector.policy_url, connector._names())
            raise QueryFailed(
                f"DuckDB rejected the governed statement: {scrub_text(message)}"
            ) from None
        finally:
            if done is not None:
                done.set()
            if self.budget is not None:
                self.budget -= time.monotonic() - started

    def _time_out(self, after_s: float, done: threading.Event) -> None:
        """Interrupt the work once it is past its budget, and keep interrupting until it
        ends: DuckDB drops an interrupt that lands before the statement starts running."""
        if done.wait(after_s):
            return
        self.timed_out = True
        while True:
            self.connector.con.interrupt()
            if done.wait(0.01):
                return


class DuckDBMasks(MaskDialect):
    """DuckDB's ``regexp_replace`` replaces the first match unless given the ``'g'`` option."""

    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        return call("MD5", text)  # lower-case hex of the UTF-8 bytes, as DuckDB's

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
