"""What every audit store does, whatever holds its rows: the reader protocol and the base.

:class:`AuditStore` holds the logic (filters, stats, verify, approval replay) once; a
subclass per database says how to connect, how to serialize writers so the chain never
forks, and how to insert a row. ``AuditStore(url)`` picks the subclass from the URL, so
every caller that opened a SQLite file keeps working and ``postgresql://...`` opens the
team store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jupyter_gov.audit.chain import (
    APPROVAL_KINDS,
    FIELDS,
    GENESIS,
    ApprovalTrail,
    VerifyReport,
    _decode,
    _record,
    _Walk,
    feed_trail,
    row_hash,
)
from jupyter_gov.errors import AuditError

# True when an event has at least one masked column (stored as JSON).
_MASKED_SQL = "(masked_columns IS NOT NULL AND masked_columns NOT IN ('', '{}', '[]', 'null'))"

_COLUMNS = f"id, {', '.join(FIELDS)}, prev_hash, hash"


@dataclass(frozen=True)
class StatsRow:
    """How many events of one decision fell in one time bucket (``masked``: any masked column)."""

    start: int
    decision: str | None
    masked: bool
    count: int


@runtime_checkable
class AuditReader(Protocol):
    """What front ends (the sidebar's API, the CLI, later a gateway) read from an audit store.

    Filters are :func:`filter_clause`'s keywords. A store of another kind (a gateway's
    client) implements these five methods; nothing outside the store runs SQL against its
    tables.
    """

    def events(
        self, *, limit: int = 100, offset: int = 0, newest_first: bool = True, **filters: Any
    ) -> list[dict[str, Any]]: ...

    def count(self, **filters: Any) -> int: ...

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]: ...

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport: ...

    def head(self) -> tuple[int, str]: ...


class Cursor(Protocol):
    """The part of a DB-API cursor the stores and the approvals use."""

    rowcount: int
    description: Any

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """One connection of a store: ``?`` placeholders, rows readable by name and position."""

    def execute(self, sql: str, args: Sequence[Any] = ...) -> Cursor: ...


#: The INSERT every event of a store using ``_linked_insert`` goes through.
_INSERT = "INSERT INTO events ({}) VALUES ({})".format(
    ", ".join((*FIELDS, "prev_hash", "hash")), ", ".join("?" * (len(FIELDS) + 2))
)


def default_home() -> Path:
    """Where jupyter-gov keeps its state: ``$JUPYTER_GOV_HOME`` or the Jupyter data dir."""
    env = os.environ.get("JUPYTER_GOV_HOME")
    if env:
        return Path(env).expanduser()
    try:
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "jupyter_gov"
    except ImportError:  # pragma: no cover - jupyter_core ships with ipykernel
        return Path.home() / ".local" / "share" / "jupyter" / "jupyter_gov"


def default_store_url() -> str:
    return f"sqlite:///{default_home() / 'audit.sqlite'}"


def is_postgres_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path`` or a plain path to a filesystem path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).expanduser()
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise AuditError(
            f"Audit stores of kind {scheme!r} are not supported; use a sqlite:/// URL, a file "
            "path or a postgresql:// URL."
        )
    return Path(url).expanduser()


class AuditStore:
    """The hash-chained event log; ``AuditStore(url)`` opens the right kind for the URL.

    Every write happens in its own short transaction; a failed write raises
    :class:`AuditError`, and the engine treats that as "do not run".
    """

    url: str
    path: Any  # where the store is, for messages: a file path or a URL without secrets
    _errors: tuple[type[BaseException], ...] = ()
    _like = "LIKE"

    def __new__(cls, *args: Any, **kwargs: Any) -> AuditStore:
        url = args[0] if args else kwargs.get("url")
        if cls is AuditStore:
            if url is not None and is_postgres_url(str(url)):
                from jupyter_gov.audit.postgres import PostgresAuditStore

                cls = PostgresAuditStore
            else:
                from jupyter_gov.audit.sqlite import SQLiteAuditStore

                cls = SQLiteAuditStore
        elif cls._connect is AuditStore._connect:
            raise TypeError(f"{cls.__name__}: subclass SQLiteAuditStore or PostgresAuditStore")
        return super().__new__(cls)

    # -- what a kind of store provides ---------------------------------------------------

    def _connect(self) -> Database:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Database]:
        """A write transaction that excludes every other writer of the chain until it ends."""
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Database]:
        """A read-only view that does not change while it is read (for ``verify``)."""
        raise NotImplementedError

    def _insert(self, db: Database, record: Mapping[str, Any]) -> int:
        """Insert one event after the head; the caller holds the write transaction."""
        raise NotImplementedError

    def _linked_insert(
        self, db: Database, record: Mapping[str, Any], prev: str | None = None
    ) -> tuple[str, list[Any]]:
        """The INSERT of ``record`` chained after the current head, and its values (the
        last is the new row's hash).

        ``prev``: the head hash when the caller already knows it (it inserted the head in
        this same write transaction); otherwise it is read here, under the write lock.
        """
        if prev is None:
            head = db.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
            prev = head[0] if head else GENESIS
        values = [record[name] for name in FIELDS] + [prev, row_hash(prev, record)]
        return _INSERT, values

    def _slot_sql(self) -> str:
        """SQL for the bucket number of ``ts`` given the bucket width as the first argument."""
        return "CAST(ts / ? AS INTEGER)"

    def _has_table(self, db: Database, name: str) -> bool:
        raise NotImplementedError

    _advice = "Check the store and try again."

    def _write_error(self, error: BaseException, what: str) -> AuditError:
        return AuditError(
            f"The audit store at {self.path} cannot be written ({error}); {what} {self._advice}"
        )

    def _read_error(self, error: BaseException) -> AuditError:
        return AuditError(f"The audit store at {self.path} cannot be read ({error}).")

    def close(self) -> None:
        raise NotImplementedError

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, **event: Any) -> int:
        """Append one event and return its id; raise :class:`AuditError` if it cannot."""
        record = _record(kind, event)
        committed: list[dict[str, Any]] = []
        try:
            with self._transaction() as db:
                event_id = self._insert_collected(db, record, committed)
        except (OSError, *self._errors) as error:
            raise self._write_error(error, "the statement was not run.") from error
        self._publish(committed)
        return event_id

    def append_many(self, events: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Append several events, chained in order, in one transaction: all or none.

        The engine writes a statement's attempt and decision this way (both before anything
        runs), paying one commit instead of two.
        """
        records = [_record(kind, dict(event)) for kind, event in events]
        committed: list[dict[str, Any]] = []
        try:
            with self._transaction() as db:
                ids = [self._insert_collected(db, record, committed) for record in records]
        except (OSError, *self._errors) as error:
            raise self._write_error(error, "the statement was not run.") from error
        self._publish(committed)
        return ids

    @contextmanager
    def transaction(self) -> Iterator[AuditTransaction]:
        """One atomic unit over the chain and the other tables of this store.

        Approvals change a request's state and append its event here, so both happen or
        neither does. The transaction excludes every other writer from its start, so what
        is read inside cannot change before the commit.
        """
        try:
            with self._transaction() as db:
                tx = AuditTransaction(db, self)
                yield tx
        except (OSError, *self._errors) as error:
            raise self._write_error(error, "nothing was changed.") from error
        self._publish(tx.committed)

    # -- commit subscribers (audit sinks: jupyter_gov.audit.sinks) -------------------------

    def subscribe(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        """Call ``callback(events)`` after each commit with the events it appended, as stored.

        Each event has every chain field (JSON fields still encoded, exactly what was
        hashed) plus ``id``, ``prev_hash`` and ``hash``. The callback runs on the writer's
        thread after the commit: it must not block (the sinks' dispatcher only enqueues).
        """
        self._subscribers = (*getattr(self, "_subscribers", ()), callback)

    def unsubscribe(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        self._subscribers = tuple(c for c in getattr(self, "_subscribers", ()) if c != callback)

    def _insert_collected(
        self, db: Database, record: Mapping[str, Any], committed: list[dict[str, Any]]
    ) -> int:
        """Insert one event; with subscribers, keep it (and its link) to publish on commit."""
        event_id = self._insert(db, record)
        if getattr(self, "_subscribers", ()):
            link = db.execute("SELECT prev_hash, hash FROM events WHERE id = ?", (event_id,))
            prev_hash, hash_ = tuple(link.fetchone())
            committed.append({"id": event_id, **record, "prev_hash": prev_hash, "hash": hash_})
        return event_id

    def _publish(self, committed: list[dict[str, Any]]) -> None:
        """Hand committed events to the subscribers; their failure is never the writer's."""
        if not committed:
            return
        for callback in getattr(self, "_subscribers", ()):
            with suppress(Exception):  # exporting is best effort; the chain is the record
                callback(committed)

    @staticmethod
    def new_query_id() -> str:
        return uuid.uuid4().hex

    # -- reading -------------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(self._connect().execute(sql, args).fetchall())
        except self._errors as error:
            raise self._read_error(error) from error

    def events(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = True,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Events matching every given filter (see :func:`filter_clause`), JSON fields decoded."""
        clause, args = filter_clause(like=self._like, **filters)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM events {clause} ORDER BY id {order} LIMIT ? OFFSET ?"
        return [_decode(row) for row in self._read(sql, [*args, limit, offset])]

    def count(self, **filters: Any) -> int:
        """How many events match the filters (all of them without filters)."""
        clause, args = filter_clause(like=self._like, **filters)
        return int(self._read(f"SELECT count(*) FROM events {clause}", args)[0][0])

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]:
        """Event counts per ``bucket``-second slot, decision and masked-or-not, oldest first.

        Only non-empty groups are returned; the caller zero-fills the window it shows.
        """
        if bucket <= 0:
            raise ValueError("bucket must be a positive number of seconds")
        clause, args = filter_clause(like=self._like, **filters)
        sql = (
            f"SELECT {self._slot_sql()} AS slot, decision, {_MASKED_SQL} AS masked, "
            f"count(*) FROM events {clause} GROUP BY slot, decision, masked ORDER BY slot"
        )
        return [
            StatsRow(int(slot) * bucket, decision, bool(masked), int(n))
            for slot, decision, masked, n in (tuple(r) for r in self._read(sql, [bucket, *args]))
        ]

    def head(self) -> tuple[int, str]:
        rows = self._read("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1")
        return (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS)

    def checkpoint(self) -> dict[str, Any]:
        """The head hash and count, to keep somewhere else and detect a truncated tail."""
        last_id, head = self.head()
        return {"count": self.count(), "last_id": last_id, "head": head}

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport:
        """Walk the chain from the first row; report the first row that does not fit.

        Then replay every approval's events and compare them with the approvals table: a use
        without a decision before it, or a request row that differs from what its events
        recorded (edited, inserted, rolled back), makes the report fail too. Everything is
        read from one snapshot, so appends by other kernels meanwhile do not disturb it.
        """
        try:
            with self._snapshot() as db:
                return self._verify(db, checkpoint)
        except self._errors as error:
            raise self._read_error(error) from error

    def _verify(self, db: Database, checkpoint: Mapping[str, Any] | None) -> VerifyReport:
        trails: dict[str, ApprovalTrail] = {}
        walk = _Walk(GENESIS)
        for row in db.execute(f"SELECT {_COLUMNS} FROM events ORDER BY id"):
            if not walk.step(row):
                return walk.report()
            if row["kind"] in APPROVAL_KINDS:
                feed_trail(trails, _decode(row))
        rows, prev = walk.rows, walk.prev
        if checkpoint is not None:
            if rows < int(checkpoint["count"]):
                return VerifyReport(
                    False,
                    rows,
                    prev,
                    None,
                    f"the log has {rows} events but the checkpoint recorded {checkpoint['count']} "
                    "(its tail was truncated)",
                )
            found = db.execute(
                "SELECT 1 FROM events WHERE id = ? AND hash = ?",
                (int(checkpoint["last_id"]), checkpoint["head"]),
            ).fetchone()
            if checkpoint["count"] and not found:
                return VerifyReport(
                    False,
                    rows,
                    prev,
                    int(checkpoint["last_id"]),
                    "the checkpointed head is no longer in the log",
                )
        problems = [p for trail in trails.values() for p in trail.problems]
        problems += self._approval_rows_against(db, trails)
        if problems:
            return VerifyReport(
                False,
                rows,
                prev,
                None,
                f"approvals do not match the chain: {problems[0]}",
                tuple(problems),
            )
        self._remember_verified(walk.last_id, prev)
        return VerifyReport(True, rows, prev)

    def verify_through(self, event_id: int) -> VerifyReport:
        """Verify the chain from its start through ``event_id``, cheaply.

        The prefix verified by an earlier call of this store is not walked again: its last
        row must still carry the remembered hash, and only rows after it are hashed. The
        target row and its neighbours' links are always rechecked, so editing it after an
        earlier verification is still found.
        """
        try:
            with self._snapshot() as db:
                return self._verify_through(db, event_id)
        except self._errors as error:
            raise self._read_error(error) from error

    def _verify_through(self, db: Database, event_id: int) -> VerifyReport:
        anchor_id, anchor_hash = getattr(self, "_verified", (0, GENESIS))
        if anchor_id:
            row = db.execute("SELECT hash FROM events WHERE id = ?", (anchor_id,)).fetchone()
            if row is None or row[0] != anchor_hash:
                return VerifyReport(
                    False, 0, anchor_hash, anchor_id, "an event verified earlier was changed"
                )
        if event_id > anchor_id:
            walk = _Walk(anchor_hash)
            cursor = db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id > ? AND id <= ? ORDER BY id",
                (anchor_id, event_id),
            )
            for row in cursor:
                if not walk.step(row):
                    return walk.report()
            if walk.last_id != event_id:
                return VerifyReport(False, walk.rows, walk.prev, event_id, "the event is missing")
            self._remember_verified(walk.last_id, walk.prev)
            return VerifyReport(True, walk.rows, walk.prev)
        window = db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE id < ? ORDER BY id DESC LIMIT 1", (event_id,)
        ).fetchone()
        walk = _Walk(window["hash"] if window else GENESIS)
        for row in db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE id >= ? ORDER BY id LIMIT 2", (event_id,)
        ):
            if not walk.step(row):
                return walk.report()
        return VerifyReport(True, walk.rows, walk.prev)

    def _remember_verified(self, last_id: int, head: str) -> None:
        if last_id > getattr(self, "_verified", (0, GENESIS))[0]:
            self._verified = (last_id, head)

    def approval_events(self, approval_id: str, since: int) -> list[dict[str, Any]]:
        """The chain's events for one approval request, from event ``since`` on, oldest first."""
        pattern = f'%"approval_id": "{approval_id}"%'
        marks = ", ".join("?" * len(APPROVAL_KINDS))
        rows = self._read(
            f"SELECT * FROM events WHERE id >= ? AND kind IN ({marks}) AND detail LIKE ? "
            "ORDER BY id",
            (since, *APPROVAL_KINDS, pattern),
        )
        events = [_decode(row) for row in rows]
        return [e for e in events if (e.get("detail") or {}).get("approval_id") == approval_id]

    def _approval_rows_against(
        self, db: Database, trails: Mapping[str, ApprovalTrail]
    ) -> list[str]:
        """Requests in the approvals table whose state is not what their events say."""
        if not self._has_table(db, "approvals"):
            return []
        columns = {d[0] for d in db.execute("SELECT * FROM approvals WHERE 1 = 0").description}
        if not {"uses", "request"} <= columns:  # an approvals table from before 0.3
            return []
        rows = db.execute(
            "SELECT id, state, uses, request FROM approvals ORDER BY created_at"
        ).fetchall()
        problems = []
        for row in rows:
            trail = trails.get(row["id"])
            if trail is None or trail.state is None:
                problems.append(f"approval {row['id']} has no request event in the chain")
                continue
            problems += trail.disagreements(row["state"], row["uses"], row["request"])
        return problems


class AuditTransaction:
    """The handle :meth:`AuditStore.transaction` yields: chain appends and other statements.

    Statements use ``?`` placeholders on every store; rows are readable by name and position.
    """

    def __init__(self, db: Database, store: AuditStore | None = None) -> None:
        self.db = db
        self.store = store
        self.committed: list[dict[str, Any]] = []  # published to subscribers on commit

    def append(self, kind: str, **event: Any) -> int:
        if self.store is None:  # pragma: no cover - every store passes itself
            raise AuditError("This transaction has no audit store to append to.")
        return self.store._insert_collected(self.db, _record(kind, event), self.committed)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(sql, args)


def filter_clause(
    *,
    subject: str | None = None,
    issuer: str | None = None,
    connection: str | None = None,
    decision: str | None = None,
    query_id: str | None = None,
    kinds: Sequence[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    text: str | None = None,
    like: str = "LIKE",
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and arguments for the audit's filters; every value is bound.

    ``like`` is the store's case-insensitive match operator (``ILIKE`` on PostgreSQL).
    """
    if like not in ("LIKE", "ILIKE"):
        raise ValueError("like must be LIKE or ILIKE")
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("subject", subject),
        ("issuer", issuer),  # with subject: one identity's events (the gateway's audit views)
        ("connection", connection),
        ("decision", decision),
        ("query_id", query_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        args.extend(kinds)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts <= ?")
        args.append(until)
    if text:
        where.append(f"(statement {like} ? OR reasons {like} ? OR subject {like} ?)")
        args.extend([f"%{text}%"] * 3)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args
