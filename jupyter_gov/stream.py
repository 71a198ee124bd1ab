"""The engine's side of a result that streams: row cap, counting, progress, the audit.

Why its own module: a connector hands the engine an Arrow ``RecordBatchReader``; what
leaves the proxy is counted here, batch by batch, and the ``result`` event is written
with the final count when the stream ends (read to the end, capped, failed, or closed
early), never before. A batch is handed over only after anything that must be recorded
about it could be recorded, so a stream whose end cannot be audited raises instead of
delivering its last batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from jupyter_gov.errors import GovError, QueryFailed


class Progress(Protocol):
    """A progress display (a notebook bar, a terminal bar) a front end provides."""

    def update(self, rows: int, nbytes: int) -> None: ...

    def close(self) -> None: ...


#: Makes the progress display of one stream, given a short label; set by front ends.
ProgressFactory = Callable[[str], Progress]

#: A stream shows progress only once it has run this long...
PROGRESS_AFTER_S = 1.0
#: ...or handed over this many batches, so short queries show nothing.
PROGRESS_AFTER_BATCHES = 8


class Ending(Protocol):
    """Called once when a stream ends: rows delivered, the error if any, and whether
    every row was read (False: closed early, or failed)."""

    def __call__(self, rows: int, error: str | None, complete: bool) -> None: ...


class GovernedStream:
    """Reads a connector's batches under the policy's row cap, counting what passes."""

    def __init__(
        self,
        reader: pa.RecordBatchReader,
        *,
        cap: int | None,
        on_end: Ending,
        on_cap: Callable[[int], None],
        interrupt: Callable[[], None],
        progress: ProgressFactory | None = None,
        label: str = "rows",
    ) -> None:
        self.schema = reader.schema
        self.rows = 0
        self.nbytes = 0
        self.batches = 0
        self.done = False
        self.truncated = False
        self.closed_early = False  # closed before its end: a reader of it must not see an end
        self._reader: pa.RecordBatchReader | None = reader
        self._cap = cap
        self._on_end = on_end
        self._on_cap = on_cap
        self._interrupt = interrupt
        self._progress_factory = progress
        self._progress: Progress | None = None
        self._label = label
        self._started = time.monotonic()

    def next_batch(self) -> pa.RecordBatch | None:
        """The next batch, or None once the stream has ended (then its count is audited)."""
        if self.done or self._reader is None:
            return None
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self._end(None, complete=True)
            return None
        except KeyboardInterrupt:
            self._interrupt()
            self._end("cancelled by the user", complete=False)
            raise QueryFailed("The query was cancelled; nothing after it ran.") from None
        except GovError as error:
            self._end(str(error), complete=False)
            raise
        capped = self._cap is not None and self.rows + batch.num_rows > self._cap
        if capped:
            assert self._cap is not None
            batch = batch.slice(0, self._cap - self.rows)
        self.rows += batch.num_rows
        self.nbytes += batch.nbytes
        self.batches += 1
        self._show_progress()
        if capped:
            self.truncated = True
            assert self._cap is not None
            self._on_cap(self._cap)
            self._end(None, complete=True)  # audited before the last batch is handed over
        return batch

    def close(self) -> None:
        """Stop reading; the audit records the rows delivered so far."""
        if not self.done:
            self.closed_early = True
            self._end(None, complete=False)

    def _end(self, error: str | None, *, complete: bool) -> None:
        self.done = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._on_end(self.rows, error, complete)

    def _show_progress(self) -> None:
        if self._progress_factory is None:
            return
        if self._progress is None:
            slow = time.monotonic() - self._started >= PROGRESS_AFTER_S
            if not slow and self.batches < PROGRESS_AFTER_BATCHES:
                return
            self._progress = self._progress_factory(self._label)
        self._progress.update(self.rows, self.nbytes)


class TableStream:
    """A result that arrived whole and was counted and audited where it ran (a gateway's
    reply): read from memory, batch by batch, with nothing left to record."""

    closed_early = False

    def __init__(self, table: pa.Table) -> None:
        self.schema = table.schema
        self.rows = 0
        self.nbytes = 0
        self.done = False
        self._batches = list(table.to_batches())

    def next_batch(self) -> pa.RecordBatch | None:
        if not self._batches:
            self.done = True
            return None
        batch = self._batches.pop(0)
        self.rows += batch.num_rows
        self.nbytes += batch.nbytes
        return batch

    def close(self) -> None:
        self._batches.clear()
        self.done = True
