"""What a governed query returns: Arrow data plus the decision that shaped it."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa

# QueryDenied and ApprovalRequired live in errors.py; importable from here as before.
from jupyter_gov.errors import ApprovalRequired as ApprovalRequired
from jupyter_gov.errors import GovError
from jupyter_gov.errors import QueryDenied as QueryDenied

if TYPE_CHECKING:
    from pathlib import Path

    from jupyter_gov.identity import Identity
    from jupyter_gov.plan import Plan

_ICONS = {"allow": "✔", "deny": "✖", "approval_required": "⏳"}
_LABELS = {"allow": "allowed", "deny": "denied", "approval_required": "approval required"}
_COLORS = {"allow": "#1a7f37", "deny": "#cf222e", "approval_required": "#9a6700"}


def identity_or_none(session: Any) -> Identity | None:
    """The session's identity, or None when it has none (expired, signed out): a banner
    saying what was decided is still useful without a name."""
    try:
        return session.identity
    except GovError:
        return None


def banner_text(
    plan: Plan, identity: Identity | None, rows: int | None = None, duration_ms: float | None = None
) -> str:
    """One or two lines a person reads before the table: decision, who, masks, filters."""
    parts = [f"{_ICONS[plan.decision]} {_LABELS[plan.decision]}"]
    if identity is not None:
        how = identity.auth_method + ("" if identity.verified else ", unverified")
        roles = ", ".join(plan.roles) or "no role"
        parts.append(f"{identity.display_name} ({roles}; {how})")
    parts.append(f"on {plan.connection}")
    line = " · ".join(parts)
    details = []
    if plan.decision != "allow":
        details.extend(f"[{f.rule}] {f.reason}" for f in plan.findings if f.verdict != "allow")
    details.extend(f"[{f.rule}] {f.reason}" for f in plan.findings if f.rule == "row-cap")
    # pii hook: columns found by unclassified: auto / scan_results (jupyter_gov.pii.auto)
    details.extend(f.reason for f in plan.findings if f.rule in ("pii-auto", "pii-scan"))
    if plan.masked_columns:
        details.append(
            "masked: " + ", ".join(f"{col} → {mask}" for col, mask in plan.masked_columns.items())
        )
    if plan.row_filters:
        details.append("row filters: " + ", ".join(plan.row_filters))
    if rows is not None:
        timing = f" in {duration_ms:.0f} ms" if duration_ms is not None else ""
        details.append(f"{rows:,} row{'s' if rows != 1 else ''}{timing}")
    return "\n".join([line, *details])


def banner_html(
    plan: Plan, identity: Identity | None, rows: int | None = None, duration_ms: float | None = None
) -> str:
    lines = banner_text(plan, identity, rows, duration_ms).split("\n")
    color = _COLORS[plan.decision]
    head = html.escape(lines[0])
    body = "".join(f"<div>{html.escape(line)}</div>" for line in lines[1:])
    return (
        f'<div class="jp-gov-banner" data-decision="{plan.decision}" '
        f'style="border-left:4px solid {color};padding:4px 8px;margin:4px 0;'
        f'font-family:var(--jp-ui-font-family,sans-serif);font-size:12px">'
        f'<div style="color:{color};font-weight:600">{head}</div>{body}</div>'
    )


class Banner:
    """A decision banner on its own (denied, or approval required), for notebook display."""

    def __init__(self, plan: Plan, identity: Identity | None) -> None:
        self.plan = plan
        self.identity = identity

    def __repr__(self) -> str:
        return banner_text(self.plan, self.identity)

    def _repr_html_(self) -> str:
        return banner_html(self.plan, self.identity)


class ResultStream(Protocol):
    """What a :class:`GovernedResult` reads its rows from (the engine's side of the stream).

    ``next_batch`` returns the next batch after the policy's row cap, or None at the end;
    the engine counts the rows as they pass and records the final count in the audit
    when the stream ends, whoever read it to the end.
    """

    schema: pa.Schema
    done: bool
    rows: int
    nbytes: int

    closed_early: bool

    def next_batch(self) -> pa.RecordBatch | None: ...

    def close(self) -> None: ...


class GovernedResult:
    """Rows that passed the policy, as Arrow, with the decision that produced them.

    The rows are fetched lazily: a notebook shows ``displaylimit`` rows and fetches little
    more; :meth:`to_arrow_reader` (and ``__arrow_c_stream__``) streams the whole result in
    batches without holding it; :meth:`to_arrow_table`, :meth:`df` and :meth:`pl` read it
    all once and keep it. The names follow duckdb 1.5's (``.arrow()`` is kept and returns
    the table, as documented). ``.relation`` is a DuckDB relation on a private scratch
    connection that holds nothing but this result, so it cannot reach the governed
    database.
    """

    displaylimit = 10
    #: The audit store the result was recorded in (the engine sets it; ``save`` reads it).
    audit: Any = None
    #: Query ids of the saved results this one was computed from (the engine sets it).
    upstream: tuple[str, ...] = ()

    def __init__(
        self,
        stream: ResultStream,
        plan: Plan,
        identity: Identity,
        *,
        query_id: str,
        audit_id: int | None,
        duration_ms: float,
        name: str | None = None,
    ) -> None:
        self._stream = stream
        self._batches: list[pa.RecordBatch] = []  # fetched and kept, in order
        self._table: pa.Table | None = None
        self._streamed = False  # handed out by to_arrow_reader: nothing more is kept
        self.plan = plan
        self.identity = identity
        self.query_id = query_id
        self.audit_id = audit_id
        self.duration_ms = duration_ms
        self.name = name
        self._scratch: duckdb.DuckDBPyConnection | None = None

    # -- fetching ------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every row has been fetched (and the count recorded in the audit)."""
        return self._stream.done

    @property
    def rows_fetched(self) -> int:
        """Rows fetched so far; equals :attr:`row_count` once :attr:`complete`."""
        return self._stream.rows

    @property
    def bytes_fetched(self) -> int:
        return self._stream.nbytes

    def _fetch(self, rows: int | None = None) -> None:
        """Keep fetching until ``rows`` rows are kept (None: all of them)."""
        if self._streamed and not self._stream.done:
            raise GovError(
                "This result was read as a stream already and its rows were not kept; run "
                "the query again to read it another way."
            )
        kept = sum(b.num_rows for b in self._batches)
        while not self._stream.done and (rows is None or kept < rows):
            batch = self._stream.next_batch()
            if batch is None:
                break
            self._batches.append(batch)
            kept += batch.num_rows

    def _head(self, rows: int) -> pa.Table:
        if self._table is not None:
            return self._table.slice(0, rows)
        self._fetch(rows)
        return pa.Table.from_batches(self._batches, schema=self._stream.schema).slice(0, rows)

    # -- data ----------------------------------------------------------------------------

    def to_arrow_table(self) -> pa.Table:
        """The whole result as one Arrow table (fetched once, then kept)."""
        if self._table is None:
            self._fetch()
            self._table = pa.Table.from_batches(self._batches, schema=self._stream.schema)
        return self._table

    def arrow(self) -> pa.Table:
        """The whole result as an Arrow table (the documented name; see to_arrow_table)."""
        return self.to_arrow_table()

    def to_arrow_reader(self, batch_size: int | None = None) -> pa.RecordBatchReader:
        """The result as a stream of Arrow batches, fetched as they are read, not kept.

        Why: a result larger than memory can be written out (``pq.ParquetWriter`` batch by
        batch, ``pl.scan_pyarrow_dataset``...) without holding it. Rows already kept are
        replayed first. ``batch_size`` caps the rows per batch.
        """
        if self._table is not None or self._stream.done:
            table = self.to_arrow_table()
            return pa.RecordBatchReader.from_batches(
                table.schema, table.to_batches(max_chunksize=batch_size)
            )
        if self._streamed:
            self._fetch()  # raises: the stream was handed out once already
        kept, self._batches = self._batches, []
        self._streamed = True
        stream = self._stream

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in _chain(kept, stream):
                if batch_size is None or batch.num_rows <= batch_size:
                    yield batch
                else:
                    yield from pa.Table.from_batches([batch]).to_batches(batch_size)

        return pa.RecordBatchReader.from_batches(stream.schema, batches())

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The Arrow PyCapsule stream protocol: any Arrow consumer reads the result."""
        return self.to_arrow_reader().__arrow_c_stream__(requested_schema)

    def df(self) -> Any:
        """The whole result as a pandas DataFrame (zero-copy from Arrow where it can)."""
        return self.to_arrow_table().to_pandas(split_blocks=True)

    def pl(self, lazy: bool = False) -> Any:
        """The whole result as a polars DataFrame, or a LazyFrame with ``lazy=True``."""
        import polars as pl

        frame = pl.from_arrow(self.to_arrow_table())
        return frame.lazy() if lazy else frame

    @property
    def relation(self) -> duckdb.DuckDBPyRelation:
        if self._scratch is None:
            self._scratch = duckdb.connect(":memory:", config={"enable_external_access": False})
        return self._scratch.from_arrow(self.to_arrow_table())

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in _rows_of(self.to_arrow_table())]

    def close(self) -> None:
        """Stop fetching; the audit records the rows delivered until now."""
        self._stream.close()

    @property
    def columns(self) -> list[str]:
        return list(self._stream.schema.names)

    @property
    def row_count(self) -> int:
        """How many rows the result holds (``to_dict()["rows"]`` holds the rows themselves).

        Exact: a result still streaming is fetched to the end to count it.
        """
        if not self._stream.done:
            self.to_arrow_table()
        return self._stream.rows

    @property
    def rows(self) -> int:
        """The row count, as :attr:`row_count`; kept for existing notebooks and scripts."""
        return self.row_count

    def __len__(self) -> int:
        return self.row_count

    def save(self, path: str | Path) -> Path:
        """Write the rows as Parquet with their provenance (see :mod:`jupyter_gov.provenance`)."""
        from jupyter_gov.provenance import save

        return save(self, path)

    # -- decision ------------------------------------------------------------------------

    @property
    def decision(self) -> str:
        return self.plan.decision

    @property
    def masked_columns(self) -> dict[str, str]:
        return self.plan.masked_columns

    @property
    def truncated(self) -> bool:
        """The policy's row cap cut this result (the banner says so)."""
        return any(f.rule == "row-cap" for f in self.plan.findings)

    def to_dict(self, max_rows: int | None = None) -> dict[str, Any]:
        table = self.to_arrow_table() if max_rows is None else self._head(max_rows)
        rows = _rows_of(table)
        return {
            **self.plan.to_dict(),
            "columns": self.columns,
            "rows": rows,
            "row_count": self.row_count,
            "duration_ms": round(self.duration_ms, 3),
            "audit_id": self.audit_id,
            "query_id": self.query_id,
        }

    # -- display -------------------------------------------------------------------------

    def banner(self) -> str:
        return banner_text(self.plan, self.identity, self._shown_count(), self.duration_ms)

    def _shown_count(self) -> int | None:
        """The count a banner shows: exact once complete; None while still streaming."""
        return self._stream.rows if self._stream.done else None

    def _more(self, limit: int) -> str | None:
        """What the display says about rows it does not show, or None."""
        self._fetch(limit + 1)
        if self._stream.done:
            more = self._stream.rows - limit
            return f"{more:,} more rows" if more > 0 else None
        return "more rows (not fetched yet)"

    def _preview(self, limit: int) -> list[list[str]]:
        return [[_cell(v) for v in row] for row in _rows_of(self._head(limit))]

    def __repr__(self) -> str:
        limit = self.displaylimit
        rows = self._preview(limit)
        more = self._more(limit)
        widths = [
            max([len(str(c))] + [len(r[i]) for r in rows]) for i, c in enumerate(self.columns)
        ]

        def fmt(values: list[str]) -> str:
            return " | ".join(v.ljust(w) for v, w in zip(values, widths))

        lines = [self.banner(), fmt(self.columns), "-+-".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows]
        if more:
            lines.append(f"… {more} (displaylimit={limit})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        limit = self.displaylimit
        preview = self._preview(limit)
        more = self._more(limit)
        masked = set(self.masked_columns)
        head = "".join(
            f'<th title="masked: {html.escape(self.masked_columns[c])}">🔒 {html.escape(c)}</th>'
            if c in masked
            else f"<th>{html.escape(c)}</th>"
            for c in self.columns
        )
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in preview
        )
        more = (
            f"<div style='font-size:11px;opacity:.7'>{more} not shown "
            f"(displaylimit={limit}); use .df() or -o NAME for all of them.</div>"
            if more
            else ""
        )
        banner = banner_html(self.plan, self.identity, self._shown_count(), self.duration_ms)
        table = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        return f"{banner}<table class='jp-gov-result'>{table}</table>{more}"


def _rows_of(table: pa.Table) -> list[list[Any]]:
    """Arrow to Python rows, a column at a time (no per-cell Arrow call)."""
    if not table.num_columns:
        return []
    return [list(row) for row in zip(*(c.to_pylist() for c in table.columns))]


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _chain(kept: list[pa.RecordBatch], stream: ResultStream) -> Iterator[pa.RecordBatch]:
    yield from kept
    while (batch := stream.next_batch()) is not None:
        yield batch
    if stream.closed_early:  # never let a cut stream look like a whole result
        raise GovError(
            "This result was closed before it was read to the end (by close(), or when its "
            "session ran another statement); run the query again to read the rest."
        )
