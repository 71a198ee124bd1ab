"""The audit store in a SQLite file: one kernel or one machine.

SQLite in WAL mode lets several kernels append at once: each append reads the head and
inserts inside one ``BEGIN IMMEDIATE`` transaction, so two writers never fork the chain.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from jupyter_gov.audit.chain import _REAL_FIELDS, FIELDS
from jupyter_gov.audit.store import AuditStore, default_store_url, path_from_url
from jupyter_gov.errors import AuditError
from jupyter_gov.files import private_dir, private_file

try:  # POSIX: writers queue on a file lock (see SQLiteAuditStore._writer_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

_COLUMNS = ", ".join(f"{name} {'REAL' if name in _REAL_FIELDS else 'TEXT'}" for name in FIELDS)
#: No index on ``hash``: nothing looks an event up by it, and each insert would pay for a
#: random-key B-tree (the chain itself, re-hashed by ``verify``, proves no row was forged).
#: Stores made before this keep their UNIQUE index; both verify the same way.
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    {_COLUMNS},
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_query ON events(query_id);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts)
"""


class SQLiteAuditStore(AuditStore):
    """The hash-chained event log in a SQLite file (owner-only permissions)."""

    _errors = (sqlite3.Error,)
    _advice = "Check the disk and the file's permissions."

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

    def _writer_lock(self) -> int | None:
        """This thread's descriptor of ``<store>.lock`` (None where there is no ``flock``).

        Writers queue on it before ``BEGIN IMMEDIATE``: the kernel wakes the next one the
        moment a commit releases it, where SQLite's busy handler would sleep and retry with
        growing back-off (8 processes appending got a fifth of one process's throughput).
        """
        if fcntl is None:
            return None
        fd = getattr(self._local, "lock", None)
        if fd is None:
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._local.lock = fd
        return fd

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        lock = self._writer_lock()
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            db.execute("BEGIN IMMEDIATE")  # still the guard against writers without the lock
            self._local.head = None  # another writer may have moved it: read it under the lock
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
        finally:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        if db.in_transaction:  # called inside a write transaction: that is the snapshot
            yield db
            return
        db.execute("BEGIN")  # in WAL mode a read transaction sees one snapshot throughout
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def _insert(self, db: Any, record: Mapping[str, Any]) -> int:
        """Chain ``record`` after the head; a second event in the same transaction (the
        attempt and its decision) links to the first without reading the head again."""
        sql, values = self._linked_insert(db, record, getattr(self._local, "head", None))
        event_id = int(db.execute(sql, values).lastrowid or 0)
        self._local.head = values[-1]
        return event_id

    def _has_table(self, db: Any, name: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        lock = getattr(self._local, "lock", None)
        if lock is not None:
            os.close(lock)
            self._local.lock = None
