"""Progress bars for long governed reads: rows and bytes streamed so far.

Front ends set ``session.progress`` to one of these factories; the engine only calls the
:class:`~jupyter_gov.stream.Progress` protocol, so it never imports a display library.
A stream asks for a bar only once it has run for a second or handed over several
batches (:mod:`jupyter_gov.stream`), so short queries show nothing.
"""

from __future__ import annotations

import sys
from typing import Any


class _Bar:
    """A tqdm counter of rows (the total is unknown while streaming) with bytes after it."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, rows: int, nbytes: int) -> None:
        self._bar.update(rows - self._bar.n)
        self._bar.set_postfix_str(_size(nbytes))  # one refresh per batch

    def close(self) -> None:
        self._bar.close()


def notebook(label: str) -> _Bar:
    """An ipywidgets bar in a notebook (tqdm.auto falls back to text elsewhere)."""
    from tqdm.auto import tqdm

    return _Bar(tqdm(desc=label, unit=" rows", unit_scale=True, leave=False))


def terminal(label: str) -> _Bar:
    """A text bar on standard error, so piped standard output stays clean."""
    from tqdm import tqdm

    return _Bar(tqdm(desc=label, unit=" rows", unit_scale=True, leave=False, file=sys.stderr))


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"
