"""What the PEP 249 connectors (PostgreSQL, MySQL/MariaDB, SQLite) share.

The engine hands a connector the governed statement in the connection's dialect with
placeholders sqlglot prints for it (``%(g_k1)s`` for PostgreSQL, ``:g_k1`` elsewhere) and
a dict of bound values. :func:`prepare` parses it back once (cached), renders it in the
driver's paramstyle through the profile, lists the bound names in the driver's order and
says whether it only reads, so a connector can run reads inside a read-only transaction
whatever the role: a write hidden in a "read" fails on the server too.

Driver messages can carry the URL, its password or the values of the statement: errors
go through :func:`redact` and :func:`~jupyter_gov.scrub.scrub_text` before anyone sees them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import sqlglot
from sqlglot import exp

from jupyter_gov.connectors.base import Catalog, no_rows, table_reader
from jupyter_gov.connectors.profile import Profile
from jupyter_gov.connectors.streaming import BufferedStream, HoldsStream
from jupyter_gov.errors import ConnectionFailed, QueryFailed
from jupyter_gov.policy import Connection

#: Server-side statement timeout when the policy sets none (``timeout_seconds`` on the
#: connection or a role): long enough for analytics, short enough to free a stuck server.
DEFAULT_STATEMENT_TIMEOUT_S = 300

_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

_log = logging.getLogger(__name__)


class Prepared(NamedTuple):
    """A governed statement ready for one driver."""

    sql: str  # in the driver's paramstyle
    names: tuple[str, ...]  # bound names, in the order a positional driver wants them
    read: bool  # only reads: runs in a read-only transaction


def prepare(profile: Profile, sql: str) -> Prepared:
    """Parse the engine's SQL back in the profile's dialect and render it for the driver."""
    try:
        tree = sqlglot.parse_one(sql, read=profile.dialect)
    except sqlglot.errors.ParseError as error:
        raise QueryFailed(
            f"The governed statement could not be prepared for {profile.title}; "
            "report this to an administrator."
        ) from error
    for placeholder in tree.find_all(exp.Placeholder):  # %(g_k1)s parses to an Identifier
        placeholder.set("this", str(placeholder.name))
    rendered = profile.render(tree)
    return Prepared(rendered.sql, rendered.names, _is_read(tree))


def _is_read(tree: exp.Expr) -> bool:
    if not isinstance(tree, exp.Query):
        return False
    return not any(
        isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Into))
        for node in tree.walk()
    )


def bind(prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
    """The values for a positional driver, in the order of its placeholders."""
    try:
        return [params[name] for name in prepared.names]
    except KeyError as error:
        raise QueryFailed(
            f"The governed statement needs the parameter {error.args[0]!r}, which was not "
            "bound; report this to an administrator."
        ) from None


def secrets_of(connection: Connection) -> list[str]:
    """What a connection URL holds that is never shown: the URL, its password, env values."""
    url = connection.expanded_url
    found = [url, connection.url]
    for match in _ENV_REFERENCE.finditer(connection.url):
        value = os.environ.get(match.group(1) or match.group(2) or "")
        if value:
            found.append(value)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact(
    message: str, secrets: Sequence[str], scrub: bool = True, names: Iterable[str] = ()
) -> str:
    """``message`` without any secret and (``scrub``) without a value of a row or a statement.

    A query's error goes through :func:`~jupyter_gov.scrub.redact_server_message`: servers
    quote the values they fail on, and only quoted catalog ``names`` and types stay.
    """
    for secret in secrets:
        message = message.replace(secret, "***")
    if not scrub:  # connection errors hold hosts and ports, no values: keep them readable
        return message
    from jupyter_gov.scrub import redact_server_message  # presidio: only on an error

    return redact_server_message(message, names)


def server_message(error: BaseException) -> str:
    """The server's own sentence, without the driver's echo of the query text."""
    driver = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    fields = driver.args[0] if driver.args else None
    if isinstance(fields, Mapping) and isinstance(fields.get("M"), str):
        return fields["M"].strip().split("\n")[0]  # pg8000: the protocol's fields, M the message
    text = str(error)
    match = re.search(r"ERROR:\s+(.*)", text)  # libpq: "... Failed to execute query '...': ERROR:"
    if match:
        text = match.group(1)
    elif isinstance(error.args, tuple) and len(error.args) == 2 and isinstance(error.args[1], str):
        text = error.args[1]  # PEP 249 drivers in C style: (errno, message)
    return text.strip().split("\n")[0]


@contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while a result is built: its tuples hold no cycles, and
    collections triggered by a hundred thousand allocations cost a quarter of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_arrow(rows: Sequence[Sequence[Any]], names: Sequence[str], types: Sequence[Any]) -> pa.Table:
    """Rows from ``fetchall`` to Arrow, a column at a time: no Python loop per row.

    ``types`` are Arrow types where the driver says them (``None``: inferred from values);
    an empty result keeps the declared types, else a column is text.
    """
    columns = list(zip(*rows)) if rows else [() for _ in names]
    arrays = []
    for values, dtype in zip(columns, types):
        try:
            arrays.append(pa.array(values, type=dtype))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays.append(pa.array(values))  # the declared type was too narrow: infer
    if not rows:
        arrays = [a if a.type != pa.null() else pa.array([], pa.string()) for a in arrays]
    return pa.Table.from_arrays(arrays, names=_unique(names))


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out


def primary_keys(rows: Iterable[Sequence[Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(schema, table, constraint, column)`` rows, in key order, as ``(schema, table,
    columns)`` keys for :meth:`Catalog.from_rows`: one per constraint, columns in order."""
    keys: dict[tuple[str, str, str], list[str]] = {}
    for schema, table, constraint, column in rows:
        keys.setdefault((str(schema), str(table), str(constraint)), []).append(str(column))
    return [(schema, table, tuple(columns)) for (schema, table, _), columns in keys.items()]


def missing_driver(profile: Profile, connection: Connection) -> ConnectionFailed:
    return ConnectionFailed(
        f"Connection {connection.name!r} needs the {profile.title} driver, which is not "
        f"installed; install it with {profile.install_hint}."
    )


class Streamed(NamedTuple):
    """What ``_run`` returns for a result it streams from the server instead of fetching.

    ``finish(failed)`` ends the statement on the server (commit, or roll back and cancel
    when it failed or was abandoned) and frees the cursor; it is called exactly once.
    """

    reader: pa.RecordBatchReader
    finish: Callable[[bool], None]


class _Pending(BufferedStream):
    """A result streamed from the server (see :class:`BufferedStream`).

    Why more: a driver error raised while fetching becomes the same redacted
    :class:`QueryFailed` as one from ``execute``, and an abandoned stream must not leave the
    server mid-statement (a finalizer cancels it when the engine drops the reader).
    """

    connector: DBAPIConnector

    def __init__(self, connector: DBAPIConnector, streamed: Streamed) -> None:
        super().__init__(connector)
        self.source = streamed.reader
        self._finish = streamed.finish
        self._finalizer = weakref.finalize(self, _abandon, connector._lock, streamed)

    def _read(self, source: pa.RecordBatchReader) -> pa.RecordBatch:
        try:
            return source.read_next_batch()
        except StopIteration:
            raise
        except Exception as error:
            raise QueryFailed(
                f"{self.connector.profile.title} rejected the governed statement: "
                f"{self.connector._say(error)}"
            ) from None

    def _release(self, failed: bool) -> None:
        self._finalizer.detach()
        self._finish(failed)


def _abandon(lock: threading.RLock, streamed: Streamed) -> None:
    """A stream dropped before its end: stop the statement on the server."""
    with lock, contextlib.suppress(Exception):
        streamed.finish(True)


class DBAPIConnector(HoldsStream):
    """The parts of a PEP 249 connector every engine shares: catalog cache, errors, locking."""

    profile: Profile
    #: ``(schema, table, constraint, column)`` rows of the primary keys the engine enforces
    #: (unique, never NULL), in key order; empty: no key is read and every mask grouped
    #: beside a key stays in the scan (late masking's rule on keys, docs/security.md).
    keys_query: str = ""

    def __init__(self, connection: Connection) -> None:
        self.name = connection.name
        self.dialect = self.profile.dialect
        self.read_only = connection.read_only
        self.timeout_s = DEFAULT_STATEMENT_TIMEOUT_S
        self._secrets = secrets_of(connection)
        self._lock = threading.RLock()
        self._catalog: Catalog | None = None
        self._prepared: dict[str, Prepared] = {}  # by the engine's SQL: plans repeat
        self._pending = None  # a result still streaming (HoldsStream)
        self.default_schema = self.profile.default_schema
        try:
            self._open(connection)
        except ConnectionFailed:
            raise
        except ImportError:
            raise missing_driver(self.profile, connection) from None
        except Exception as error:
            raise ConnectionFailed(
                f"Could not connect to {self.profile.title} connection {connection.name!r}: "
                f"{self._say(error, scrub=False)}; check the server and the connection URL."
            ) from None

    # -- per engine -----------------------------------------------------------------------

    def _open(self, connection: Connection) -> None:
        raise NotImplementedError

    def _catalog_query(self, sql: str) -> list[Sequence[Any]]:
        """The rows of one query of the engine's catalog, run as the connector's own."""
        raise NotImplementedError

    def _catalog_rows(self) -> list[tuple[str, str, str, str]]:
        return self._catalog_query(self.profile.catalog_query)  # type: ignore[return-value]

    def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> pa.Table | Streamed:
        """Run one statement: its whole result as a table, or a :class:`Streamed` one."""
        raise NotImplementedError

    def interrupt(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------

    def catalog(self, refresh: bool = False) -> Catalog:
        with self._lock:
            if self._catalog is None or refresh:
                self._detach()
                try:
                    rows = [tuple(map(str, row)) for row in self._catalog_rows()]
                except Exception as error:
                    raise ConnectionFailed(
                        f"Could not read the catalog of {self.profile.title} connection "
                        f"{self.name!r}: {self._say(error, scrub=False)}."
                    ) from None
                self._catalog = Catalog.from_rows(
                    rows,  # type: ignore[arg-type]
                    default_schema=self.default_schema,
                    dialect=self.profile.dialect,
                    keys=self._catalog_keys(),
                )
            return self._catalog

    def _catalog_keys(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """The enforced primary keys, or none when they cannot be read.

        Keys only let late masking move more masks; without them every mask stays in the
        scan, which is always correct. So a failure here does not fail the catalog read,
        and it is logged (at debug: it changes no answer) rather than hidden.
        """
        if not self.keys_query:
            return []
        try:
            return primary_keys(self._catalog_query(self.keys_query))
        except Exception as error:
            _log.debug(
                "Could not read the primary keys of %s connection %r (%s); its masks stay "
                "in the scan.",
                self.profile.title,
                self.name,
                self._say(error, scrub=False),
            )
            return []

    def execute(self, sql: str, params: Mapping[str, Any]) -> pa.RecordBatchReader:
        """Run one statement; the driver fetches its rows at once, handed over as batches."""
        prepared = self._prepared.get(sql)
        if prepared is None:
            prepared = prepare(self.profile, sql)
            if len(self._prepared) >= 512:
                self._prepared.clear()
            self._prepared[sql] = prepared
        with self._lock:
            self._detach()
            try:
                table = self._run(prepared, params)
                if isinstance(table, Streamed):
                    return self._stream(table)
            except (QueryFailed, ConnectionFailed):
                raise
            except Exception as error:
                raise QueryFailed(
                    f"{self.profile.title} rejected the governed statement: {self._say(error)}"
                ) from None
        return table_reader(table) if table.num_columns else no_rows()

    def _stream(self, streamed: Streamed) -> pa.RecordBatchReader:
        """Hand over a streamed result; its first batch is fetched here, so most errors
        and timeouts are raised by ``execute`` itself."""
        pending = _Pending(self, streamed)
        try:
            pending.first = pending.fetch()
        except StopIteration:
            return pa.RecordBatchReader.from_batches(streamed.reader.schema, [])
        return self._hand_over(pending, streamed.reader.schema)

    def register_result(self, name: str, table: pa.Table) -> None:
        # The engine keeps saved results on the kernel's scratch DuckDB, never on a server.
        raise QueryFailed(
            f"{self.profile.title} connections do not hold saved results; read {name} on the "
            "scratch connection."
        )

    def set_timeout(self, seconds: float | None) -> None:
        """The policy's statement timeout for the next statements (None: the default).

        Each engine applies it on its side before the next statement runs, only when it
        changed (``_applied_timeout``), so a cell pays no round trip for it.
        """
        self.timeout_s = float(seconds) if seconds is not None else DEFAULT_STATEMENT_TIMEOUT_S

    def _say(self, error: BaseException, scrub: bool = True) -> str:
        return redact(server_message(error), self._secrets, scrub, self._names())

    def _names(self) -> set[str]:
        """The catalog's schemas, tables and columns (if read): what an error may quote."""
        catalog = self._catalog
        if catalog is None:
            return set()
        entries = catalog.tables.values()
        names = {e.name for e in entries} | {e.schema for e in entries}
        names.update(column for e in entries for column in e.columns)
        return names
