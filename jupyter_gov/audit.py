"""A tamper-evident, append-only audit store: one hash-chained row per event.

Each row stores the hash of the previous row, and its own hash covers every field and
that link, so an edited, deleted or reordered row breaks the chain at a findable place
(``verify``). A truncated tail is only detectable against a checkpoint kept elsewhere
(``checkpoint`` / ``verify(checkpoint=...)``). Leaf hashes are domain-separated with a
0x00 prefix, as in RFC 6962.

SQLite in WAL mode lets several kernels append at once: each append reads the head and
inserts inside one ``BEGIN IMMEDIATE`` transaction, so two writers never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jupyter_gov.errors import AuditError
from jupyter_gov.files import private_dir, private_file

GENESIS = "0" * 64

#: Columns of the ``events`` table, in hashing order. ``id``, ``prev_hash`` and ``hash``
#: are the chain itself; everything else is the event.
FIELDS: tuple[str, ...] = (
    "ts",
    "kind",
    "query_id",
    "session_id",
    "subject",
    "display_name",
    "auth_method",
    "issuer",
    "verified",
    "identity_kind",
    "token_expires_at",
    "roles",
    "policy_name",
    "policy_version",
    "policy_hash",
    "connection",
    "statement",
    "statement_kind",
    "fingerprint",
    "rewritten_sql",
    "rewritten_hash",
    "decision",
    "rules",
    "reasons",
    "masked_columns",
    "purpose",
    "rows",
    "duration_ms",
    "error",
    "detail",
)

_JSON_FIELDS = {"roles", "rules", "reasons", "masked_columns", "detail"}

#: Event kinds written by the engine and the approvals workflow.
KINDS = (
    "attempt",  # written before anything runs; if it cannot be written nothing runs
    "decision",  # allow / deny / approval_required, with rules and reasons
    "result",  # rows returned, duration, or the database error
    "approval_requested",
    "approval_approved",
    "approval_denied",
    "approval_expired",
    "approval_revoked",
    "approval_used",
    "break_glass",
    "sign_in",
    "sign_out",
)

# True when an event has at least one masked column (stored as JSON).
_MASKED_SQL = "(masked_columns IS NOT NULL AND masked_columns NOT IN ('', '{}', '[]', 'null'))"

_REAL_FIELDS = {"rows", "duration_ms", "ts", "token_expires_at"}
_COLUMNS = ", ".join(f"{name} {'REAL' if name in _REAL_FIELDS else 'TEXT'}" for name in FIELDS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    {_COLUMNS},
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS events_query ON events(query_id);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts)
"""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of walking the chain."""

    ok: bool
    rows: int
    head: str
    broken_at: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head": self.head,
            "broken_at": self.broken_at,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain ok: {self.rows} events, head {self.head[:16]}"
        return f"audit chain BROKEN at event {self.broken_at}: {self.reason}"


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

    Filters are :func:`filter_clause`'s keywords. A store of another kind (PostgreSQL, a
    gateway's client) implements these five methods; nothing outside the store runs SQL
    against its tables.
    """

    def events(
        self, *, limit: int = 100, offset: int = 0, newest_first: bool = True, **filters: Any
    ) -> list[dict[str, Any]]: ...

    def count(self, **filters: Any) -> int: ...

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]: ...

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport: ...

    def head(self) -> tuple[int, str]: ...


def row_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """The hash of one event: 0x00 || prev_hash || canonical JSON of its fields."""
    body = json.dumps(
        [prev_hash, *[_canonical(event.get(name)) for name in FIELDS]],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(b"\x00" + body.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


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


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path`` or a plain path to a filesystem path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).expanduser()
    if "://" in url:
        raise AuditError(
            f"Audit store {url!r} is not supported yet; use a sqlite:/// URL or a file path."
        )
    return Path(url).expanduser()


class AuditStore:
    """The hash-chained event log in a SQLite file.

    Every write happens in its own short transaction; a failed write raises
    :class:`AuditError`, and the engine treats that as "do not run".
    """

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        self.url = str(url) if url is not None else default_store_url()
        self.path = path_from_url(self.url)
        self._local = threading.local()
        try:
            private_dir(self.path.parent)
            private_file(self.path)
            with self._transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
        except (OSError, sqlite3.Error) as error:
            raise AuditError(
                f"The audit store at {self.path} cannot be opened ({error}); "
                "fix its permissions or point JUPYTER_GOV_HOME elsewhere. Nothing was run."
            ) from error

    # -- connection handling -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            with suppress(OSError):  # sqlite3 would create a missing file 0644; if this
                private_file(self.path)  # fails, connect below reports why
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, **event: Any) -> int:
        """Append one event and return its id; raise :class:`AuditError` if it cannot."""
        unknown = set(event) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        record: dict[str, Any] = {name: None for name in FIELDS}
        record.update(event)
        record["kind"] = kind
        record["ts"] = event.get("ts") or time.time()
        for name in _JSON_FIELDS:
            if record[name] is not None and not isinstance(record[name], str):
                record[name] = json.dumps(record[name], sort_keys=True, default=str)
        if isinstance(record["verified"], bool):
            record["verified"] = "true" if record["verified"] else "false"
        try:
            with self._transaction() as db:
                head = db.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
                prev = head[0] if head else GENESIS
                digest = row_hash(prev, record)
                columns = ", ".join((*FIELDS, "prev_hash", "hash"))
                marks = ", ".join("?" * (len(FIELDS) + 2))
                cursor = db.execute(
                    f"INSERT INTO events ({columns}) VALUES ({marks})",
                    [record[name] for name in FIELDS] + [prev, digest],
                )
                return int(cursor.lastrowid or 0)
        except (OSError, sqlite3.Error) as error:
            raise AuditError(
                f"The audit store at {self.path} cannot be written ({error}); "
                "the statement was not run. Check the disk and the file's permissions."
            ) from error

    @staticmethod
    def new_query_id() -> str:
        return uuid.uuid4().hex

    # -- reading -------------------------------------------------------------------------

    def events(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = True,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Events matching every given filter (see :func:`filter_clause`), JSON fields decoded."""
        clause, args = filter_clause(**filters)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM events {clause} ORDER BY id {order} LIMIT ? OFFSET ?"
        try:
            rows = self._connect().execute(sql, [*args, limit, offset]).fetchall()
        except sqlite3.Error as error:
            raise AuditError(f"The audit store at {self.path} cannot be read ({error}).") from error
        return [_decode(row) for row in rows]

    def count(self, **filters: Any) -> int:
        """How many events match the filters (all of them without filters)."""
        clause, args = filter_clause(**filters)
        try:
            row = self._connect().execute(f"SELECT count(*) FROM events {clause}", args).fetchone()
        except sqlite3.Error as error:
            raise AuditError(f"The audit store at {self.path} cannot be read ({error}).") from error
        return int(row[0])

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]:
        """Event counts per ``bucket``-second slot, decision and masked-or-not, oldest first.

        Only non-empty groups are returned; the caller zero-fills the window it shows.
        """
        if bucket <= 0:
            raise ValueError("bucket must be a positive number of seconds")
        clause, args = filter_clause(**filters)
        sql = (
            f"SELECT CAST(ts / ? AS INTEGER) AS slot, decision, {_MASKED_SQL} AS masked, "
            f"count(*) FROM events {clause} GROUP BY slot, decision, masked ORDER BY slot"
        )
        try:
            rows = self._connect().execute(sql, [bucket, *args]).fetchall()
        except sqlite3.Error as error:
            raise AuditError(f"The audit store at {self.path} cannot be read ({error}).") from error
        return [
            StatsRow(int(slot) * bucket, decision, bool(masked), int(n))
            for slot, decision, masked, n in rows
        ]

    def head(self) -> tuple[int, str]:
        row = (
            self._connect()
            .execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1")
            .fetchone()
        )
        return (int(row[0]), row[1]) if row else (0, GENESIS)

    def checkpoint(self) -> dict[str, Any]:
        """The head hash and count, to keep somewhere else and detect a truncated tail."""
        last_id, head = self.head()
        return {"count": self.count(), "last_id": last_id, "head": head}

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport:
        """Walk the chain from the first row; report the first row that does not fit."""
        prev = GENESIS
        rows = 0
        cursor = self._connect().execute(
            f"SELECT id, {', '.join(FIELDS)}, prev_hash, hash FROM events ORDER BY id"
        )
        for row in cursor:
            rows += 1
            record = {name: row[name] for name in FIELDS}
            if row["prev_hash"] != prev:
                return VerifyReport(
                    False,
                    rows,
                    prev,
                    row["id"],
                    "its link to the previous event does not match "
                    "(an event before it was deleted, inserted or reordered)",
                )
            if row_hash(prev, record) != row["hash"]:
                return VerifyReport(False, rows, prev, row["id"], "its content was changed")
            prev = row["hash"]
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
            found = (
                self._connect()
                .execute(
                    "SELECT 1 FROM events WHERE id = ? AND hash = ?",
                    (checkpoint["last_id"], checkpoint["head"]),
                )
                .fetchone()
            )
            if checkpoint["count"] and not found:
                return VerifyReport(
                    False,
                    rows,
                    prev,
                    int(checkpoint["last_id"]),
                    "the checkpointed head is no longer in the log",
                )
        return VerifyReport(True, rows, prev)


def filter_clause(
    *,
    subject: str | None = None,
    connection: str | None = None,
    decision: str | None = None,
    query_id: str | None = None,
    kinds: Sequence[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    text: str | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and arguments for the audit's filters; every value is bound."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("subject", subject),
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
        where.append("(statement LIKE ? OR reasons LIKE ? OR subject LIKE ?)")
        args.extend([f"%{text}%"] * 3)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON_FIELDS:
        if out.get(name):
            with suppress(ValueError):
                out[name] = json.loads(out[name])
    if out.get("verified") is not None:
        out["verified"] = out["verified"] == "true"
    return out
