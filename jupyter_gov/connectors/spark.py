"""Spark SQL through Spark Connect: the profile (rendering, catalog, lockdown) and its connector.

The connector opens a Spark Connect session for an ``sc://host:port`` URL (``pyspark[connect]``,
nothing but the gRPC client on the kernel's side). The governed statement runs on the
cluster with its values bound as Spark named parameters (``spark.sql(sql, args=...)``), and
only the masked rows come back, as Arrow (``DataFrame.toArrow()``). Spark has no read-only
transactions: a connection the policy marks ``read_only`` refuses anything but a query in
the connector, and writes are otherwise the guardrails' business.

Before the first statement the session is locked to settings that make Spark behave like
the other engines and close one way around the planner: ``spark.sql.runSQLOnFiles=false``
(the server itself refuses ``parquet.`/path``` sources), ``spark.sql.timestampType=
TIMESTAMP_NTZ`` (``TIMESTAMP`` means "without time zone", as in DuckDB and PostgreSQL) and
``spark.sql.session.timeZone=UTC`` (the ``year`` mask of a zoned timestamp is the same
instant everywhere). Spark's own ``TIMESTAMP`` columns are read from the catalog as
``TIMESTAMP_LTZ``, so a mask keeps their type.

Every statement runs under an operation tag (``SparkSession.addTag`` in the worker thread
that runs it): interrupting the cell (``KeyboardInterrupt`` in the kernel's main thread),
``interrupt()`` from another thread, or the statement running past its timeout calls
``interruptTag`` until the server holds no operation under the tag and the worker has
returned. The session runs with adaptive query execution off
(``spark.sql.adaptive.enabled=false``): with it on, Spark 4 plans and submits a query's
shuffle stages from a thread pool of its own, so a cancel that lands while the stage is
still being planned finds no job to cancel and the job then starts anyway, orphaned (seen
here on the first query of a cold server). Without it the job is submitted by the
operation's own thread, which the interrupt stops before or while it waits on the job.
The timeout is kept by the connector (Spark has no per-statement timeout of its own), so
``server_timeout`` is not claimed: if the kernel dies, Spark Connect's own clean-up of
abandoned operations is what remains.

Masks: ``sha2(x, 256)`` is lower-case hex of the UTF-8 bytes, ``||`` is a NULL-propagating
concat and ``regexp_replace`` replaces every match, so the default building blocks already
return DuckDB's values. Java treats ``$`` and ``\\`` in a replacement specially: they are
escaped so the replacement stays literal.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlglot
from sqlglot import exp

from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call
from jupyter_gov.errors import ConnectionFailed, QueryFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.connectors.dbapi import Prepared
    from jupyter_gov.policy import Connection

CATALOG_SQL = ""  # the catalog is read through spark.catalog (listDatabases/Tables/Columns)

#: Format prefixes that make a file path a table (``SELECT * FROM parquet.`/tmp/x```).
FILE_FORMATS = frozenset("csv json parquet orc text avro binaryfile delta jdbc".split())

#: How long a cancelled statement may take to stop before the cell gives up waiting on it.
CANCEL_GRACE_S = 30.0

#: How long opening a session may wait for the server to answer.
CONNECT_TIMEOUT_S = 10.0

#: pyspark logs every server error, with its query context, to stderr: errors reach users
#: only through the connector, redacted.
_CHATTY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


class SparkMasks(MaskDialect):
    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        return call("MD5", text)  # lower-case hex of the UTF-8 bytes, as DuckDB's

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        literal = replacement.replace("\\", "\\\\").replace("$", "\\$")
        return call(
            "REGEXP_REPLACE", text, exp.Literal.string(pattern), exp.Literal.string(literal)
        )


class _Run:
    """One statement in flight: its operation tag and how far it got."""

    def __init__(self, tag: str, read: bool) -> None:
        self.tag = tag
        self.read = read
        self.cancelled = threading.Event()
        self.fetching = threading.Event()
        #: set by the worker when it ends; waited on instead of ``Thread.join``, whose state
        #: a KeyboardInterrupt can leave wrong (``is_alive()`` False while it still runs)
        self.done = threading.Event()


def _unreadable_files(error: BaseException, spark: Any, prepared: Prepared) -> QueryFailed | None:
    """A read that found a table's files gone or changed: one sentence, and a fresh listing.

    Why: a session caches each table's file listing; when another session overwrites or
    drops the table, or its files are removed, the next read fails with ``FAILED_READ_FILE``
    naming a warehouse path (no business of the user's) and keeps failing for as long as the
    listing stays cached. The statement fails closed (no rows, audited as failed); the
    listings of the tables it reads are refreshed, so running it again reads the files
    that are there now.
    """
    condition = _condition(error)
    if not condition.startswith("FAILED_READ_FILE") and "FileNotFoundException" not in str(error):
        return None
    try:
        tree = sqlglot.parse_one(prepared.sql, read=PROFILE.dialect)
        tables = {table.sql(dialect=PROFILE.dialect) for table in tree.find_all(exp.Table)}
    except sqlglot.errors.ParseError:
        tables = set()
    for table in sorted(tables):
        with contextlib.suppress(Exception):  # a table that is gone altogether: nothing to do
            spark.catalog.refreshTable(table)
    kind = f" ({condition})" if re.fullmatch(r"[A-Z_.]+", condition) else ""
    return QueryFailed(
        f"Spark could not read the files of a table this statement reads{kind}: they were "
        "removed or replaced after the session listed them, so no rows were returned; run "
        "the statement again to read the table as it is now."
    )


def _condition(error: BaseException) -> str:
    """Spark's error condition (``FAILED_READ_FILE.FILE_NOT_EXIST``), or ``""``."""
    getter = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    try:
        return str(getter() or "") if getter else ""
    except Exception:
        return ""


def _spark_type(data_type: str) -> str:
    """Spark's ``timestamp`` is zoned; say so, since ``TIMESTAMP`` means NTZ in our session."""
    return "timestamp_ltz" if data_type.strip().lower() == "timestamp" else data_type


def _endpoint(connection: Connection) -> tuple[str, int]:
    url = connection.expanded_url
    if url.split(":", 1)[0].lower() != "sc":
        raise ConnectionFailed(
            f"Connection {connection.name!r} must be a Spark Connect URL, "
            "sc://host:port (a spark:// master URL cannot run governed SQL)."
        )
    parts = urlsplit(url.split(";", 1)[0])
    return parts.hostname or "localhost", parts.port or 15002


def _connect(connection: Connection) -> Connector:
    try:
        connector_class = _connector_class()
    except ImportError:
        from jupyter_gov.connectors.dbapi import missing_driver

        raise missing_driver(PROFILE, connection) from None
    return connector_class(connection)


@cache
def _connector_class() -> type:
    import pyarrow as pa
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession

    from jupyter_gov.connectors.dbapi import DBAPIConnector

    class SparkConnector(DBAPIConnector):
        """A governed Spark Connect session."""

        profile = PROFILE

        def _open(self, connection: Connection) -> None:
            host, port = _endpoint(connection)
            # gRPC retries an absent server for ten minutes: ask the socket first.
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
            for name in _CHATTY_LOGGERS:
                logging.getLogger(name).disabled = True
            # Not through the builder: it would make this session the kernel's default, which
            # any code could then pick up with getActiveSession() and query ungoverned.
            self.spark: Any = SparkSession(connection=connection.expanded_url)
            self.spark.client.set_retry_policies([DefaultPolicy(max_retries=3, max_backoff=2000)])
            self._run_state: _Run | None = None
            #: the operation tag of the latest statement (its jobs on the server carry it)
            self.last_tag: str | None = None
            for setting, value in PROFILE.lockdown.items():
                self.spark.conf.set(setting, str(value))
            self.default_schema = str(self.spark.catalog.currentDatabase())

        def _catalog_rows(self) -> list[tuple[str, str, str, str]]:
            catalog = self.spark.catalog
            rows = []
            for database in catalog.listDatabases():
                for table in catalog.listTables(database.name):
                    if table.isTemporary:
                        continue  # session-local: not part of the governed catalog
                    qualified = f"`{database.name}`.`{table.name}`"
                    for column in catalog.listColumns(qualified):
                        rows.append(
                            (database.name, table.name, column.name, _spark_type(column.dataType))
                        )
            return rows

        def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table:
            if not prepared.read:
                self._check_write(prepared)
            try:
                args = {name: params[name] for name in prepared.names}
            except KeyError as error:
                raise QueryFailed(
                    f"The governed statement needs the parameter {error.args[0]!r}, which was "
                    "not bound; report this to an administrator."
                ) from None
            run = _Run(f"jupyter-gov-{uuid.uuid4().hex}", prepared.read)
            self.last_tag = run.tag
            outcome: dict[str, Any] = {}

            def work() -> None:
                self.spark.addTag(run.tag)  # tags are per thread: this one's operations only
                try:
                    # A query is analysed here; a write already runs here.
                    frame = self.spark.sql(prepared.sql, args=args or None)
                    if run.cancelled.is_set():
                        raise QueryFailed("The query was cancelled before it ran.")
                    run.fetching.set()
                    outcome["table"] = frame.toArrow()
                except BaseException as error:
                    outcome["error"] = error
                finally:
                    self.spark.removeTag(run.tag)
                    run.done.set()

            worker = threading.Thread(target=work, name="jupyter-gov-spark", daemon=True)
            self._run_state = run
            deadline = time.monotonic() + self.timeout_s
            try:
                worker.start()
                while not run.done.is_set():  # a timed wait: KeyboardInterrupt gets through
                    if run.cancelled.is_set():  # interrupt() from another thread
                        self._cancel(run)
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._cancel(run)
                        raise QueryFailed(
                            f"The statement ran past its {self.timeout_s:g} s timeout and was "
                            "cancelled on the Spark cluster."
                        )
                    run.done.wait(min(left, 0.1))
            except KeyboardInterrupt:
                self._cancel(run)
                raise
            finally:
                self._run_state = None
            if run.cancelled.is_set():
                raise QueryFailed("The query was cancelled and stopped on the Spark cluster.")
            if "error" in outcome:
                raise _unreadable_files(outcome["error"], self.spark, prepared) or outcome["error"]
            table = outcome["table"]
            return table if table.num_columns else pa.table({})

        def _check_write(self, prepared: Prepared) -> None:
            """Only queries, and plain writes on a writable connection, reach the session.

            Spark has no read-only transaction and runs ``SET``, ``ADD JAR`` or ``CACHE`` as
            readily as a query: the planner denies them, and this is the second line.
            """
            if self.read_only:
                raise QueryFailed(
                    f"Connection {self.name!r} is read-only; the Spark connector runs only "
                    "queries on it."
                )
            tree = sqlglot.parse_one(prepared.sql, read=PROFILE.dialect)
            writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
            if not isinstance(tree, writes) or isinstance(tree.this, exp.Directory):
                raise QueryFailed(
                    "The Spark connector runs only queries and INSERT, UPDATE, DELETE or MERGE "
                    "statements; this statement was refused."
                )

        def _cancel(self, run: _Run) -> None:
            """Interrupt the statement's operations until none is left and its worker returned.

            An operation registered after an ``interruptTag`` (the fetch following the
            analysis) is caught by the next round; a worker that never returns is given up
            on after a grace period, so the cell is not held forever.
            """
            run.cancelled.set()
            deadline = time.monotonic() + CANCEL_GRACE_S
            while time.monotonic() < deadline:
                try:
                    interrupted = self.spark.interruptTag(run.tag)
                except Exception:  # a call cut short by the interrupt itself: again
                    interrupted = ["?"]
                if not interrupted and run.done.is_set():
                    return
                run.done.wait(0.05)

        @property
        def running(self) -> bool:
            """A statement's job has been asked for (its fetch has started)."""
            run = self._run_state
            return run is not None and run.fetching.is_set()

        @property
        def running_tag(self) -> str | None:
            """The operation tag of the statement in flight (its jobs carry it), or None."""
            run = self._run_state
            return run.tag if run is not None else None

        def interrupt(self) -> None:
            """Cancel the statement in flight from another thread.

            The thread running the statement sees the flag and keeps interrupting until
            the server holds nothing under its tag.
            """
            run = self._run_state
            if run is None:
                return
            run.cancelled.set()
            self.spark.interruptTag(run.tag)

        def close(self) -> None:
            with contextlib.suppress(Exception):  # a session whose server went away
                self.spark.stop()

    return SparkConnector


PROFILE = Profile(
    name="spark",
    title="Spark SQL",
    schemes=("sc", "spark"),
    dialect="spark",
    paramstyle="named",
    default_schema="default",
    catalog_query=CATALOG_SQL,
    masks=SparkMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=False, result_registration=False, server_timeout=False
    ),
    dangerous_functions=frozenset({"reflect", "java_method", "try_reflect", "input_file_name"}),
    file_readers=FILE_FORMATS | {"read_files"},
    lockdown={
        "spark.sql.runSQLOnFiles": "false",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "false",
    },
    connect=_connect,
    install_hint="pip install 'jupyter-gov[spark]'",
)
