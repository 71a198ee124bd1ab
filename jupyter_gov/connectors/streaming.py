"""A result streamed from an engine, read under its connector's lock: shared by the
connectors that stream (DuckDB in process, PostgreSQL over ADBC).

Why one class: the reader the engine holds must stay valid after the connection moves on
(``detach`` reads the rest into memory first, and a failure met there is raised to the
reader after the rows before it), and a result ends exactly once, whether it was read to
the end, failed or was abandoned. What differs per engine is how a batch is read (and
its errors made one redacted sentence) and what ending means on its side.
"""

from __future__ import annotations

import threading
import weakref

import pyarrow as pa

from jupyter_gov.errors import QueryFailed


class BufferedStream:
    """The batches of one result: the first fetched ahead, then from ``source``, or from
    memory once detached. Subclasses read a batch (``_read``) and end (``_release``)."""

    def __init__(self, connector: HoldsStream) -> None:
        self.connector = connector
        self.source: pa.RecordBatchReader | None = None
        self.first: pa.RecordBatch | None = None
        self.buffered: list[pa.RecordBatch] | None = None  # set when detached
        self.failure: QueryFailed | None = None  # raised after the buffered batches
        self._ended = False

    def __iter__(self) -> BufferedStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self.first is not None:
            batch, self.first = self.first, None
            return batch
        if self.buffered is None:
            with self.connector._lock:
                if self.buffered is None:  # not detached while we waited
                    return self.fetch()
        if self.buffered:
            return self.buffered.pop(0)
        if self.failure is not None:
            raise self.failure
        raise StopIteration

    def fetch(self) -> pa.RecordBatch:
        """The next batch from the engine (the caller holds the lock); ends the result at
        its end or on an error."""
        if self.source is None:
            raise StopIteration
        try:
            return self._read(self.source)
        except StopIteration:
            self.end(failed=False)
            raise
        except BaseException:
            self.end(failed=True)
            raise

    def _read(self, source: pa.RecordBatchReader) -> pa.RecordBatch:
        """One batch; an engine's error becomes a redacted :class:`QueryFailed`."""
        return source.read_next_batch()

    def detach(self) -> None:
        """Read what is left into memory (the connection is about to run something else)."""
        rest: list[pa.RecordBatch] = []
        try:
            while True:
                rest.append(self.fetch())
        except StopIteration:
            pass
        except QueryFailed as failure:
            self.failure = failure
        self.buffered = rest

    def end(self, failed: bool = False) -> None:
        """End the result once: read to the end, failed, or abandoned (``failed``)."""
        if self._ended:
            return
        self._ended = True
        self.source = None
        pending = self.connector._pending
        if pending is not None and pending() is self:
            self.connector._pending = None
        self._release(failed)

    def _release(self, failed: bool) -> None:
        """What ending means on the engine's side (commit or cancel, free a cursor)."""


class HoldsStream:
    """A connector whose last result may still be streaming: at most one per connection,
    held weakly (a reader the engine dropped is not read to the end)."""

    _lock: threading.RLock
    _pending: weakref.ref[BufferedStream] | None = None

    def _hand_over(self, stream: BufferedStream, schema: pa.Schema) -> pa.RecordBatchReader:
        """The reader for ``stream``, which this connection now holds open."""
        self._pending = weakref.ref(stream)
        return pa.RecordBatchReader.from_batches(schema, stream)

    def _detach(self) -> None:
        """Read a result still streaming into memory before the connection runs more."""
        pending = self._pending() if self._pending is not None else None
        self._pending = None
        if pending is not None:
            pending.detach()

    def _abandon_pending(self) -> None:
        """End a result still streaming without reading it (the connection closes)."""
        pending = self._pending() if self._pending is not None else None
        self._pending = None
        if pending is not None:
            pending.end(failed=True)
