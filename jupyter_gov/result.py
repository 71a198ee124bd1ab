"""What a governed query returns: Arrow data plus the decision that shaped it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

# QueryDenied and ApprovalRequired live in errors.py; importable from here as before.
from jupyter_gov.errors import ApprovalRequired as ApprovalRequired
from jupyter_gov.errors import GovError
from jupyter_gov.errors import QueryDenied as QueryDenied

if TYPE_CHECKING:
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


class GovernedResult:
    """Rows that passed the policy, as Arrow, with the decision that produced them.

    ``.arrow()``, ``.df()`` (pandas), ``.pl()`` (polars) and ``.relation`` (a DuckDB
    relation on a private scratch connection that holds nothing but this result, so it
    cannot be used to reach the governed database).
    """

    displaylimit = 10

    def __init__(
        self,
        table: pa.Table,
        plan: Plan,
        identity: Identity,
        *,
        query_id: str,
        audit_id: int | None,
        duration_ms: float,
        name: str | None = None,
    ) -> None:
        self._table = table
        self.plan = plan
        self.identity = identity
        self.query_id = query_id
        self.audit_id = audit_id
        self.duration_ms = duration_ms
        self.name = name
        self._scratch: duckdb.DuckDBPyConnection | None = None

    # -- data ----------------------------------------------------------------------------

    def arrow(self) -> pa.Table:
        return self._table

    def df(self) -> Any:
        return self._table.to_pandas()

    def pl(self) -> Any:
        import polars as pl

        return pl.from_arrow(self._table)

    @property
    def relation(self) -> duckdb.DuckDBPyRelation:
        if self._scratch is None:
            self._scratch = duckdb.connect(":memory:", config={"enable_external_access": False})
        return self._scratch.from_arrow(self._table)

    def fetchall(self) -> list[tuple[Any, ...]]:
        columns = [self._table.column(i).to_pylist() for i in range(self._table.num_columns)]
        return list(zip(*columns)) if columns else []

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    @property
    def row_count(self) -> int:
        """How many rows the result holds (``to_dict()["rows"]`` holds the rows themselves)."""
        return self._table.num_rows

    @property
    def rows(self) -> int:
        """The row count, as :attr:`row_count`; kept for existing notebooks and scripts."""
        return self.row_count

    def __len__(self) -> int:
        return self._table.num_rows

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
        table = self._table if max_rows is None else self._table.slice(0, max_rows)
        rows = (
            [list(row) for row in zip(*(c.to_pylist() for c in table.columns))]
            if table.num_columns
            else []
        )
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
        return banner_text(self.plan, self.identity, self.row_count, self.duration_ms)

    def _preview(self, limit: int) -> list[list[str]]:
        head = self._table.slice(0, limit)
        return [[_cell(v) for v in row] for row in zip(*(c.to_pylist() for c in head.columns))]

    def __repr__(self) -> str:
        limit = self.displaylimit
        rows = self._preview(limit)
        widths = [
            max([len(str(c))] + [len(r[i]) for r in rows]) for i, c in enumerate(self.columns)
        ]

        def fmt(values: list[str]) -> str:
            return " | ".join(v.ljust(w) for v, w in zip(values, widths))

        lines = [self.banner(), fmt(self.columns), "-+-".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows]
        if self.row_count > limit:
            lines.append(f"… {self.row_count - limit:,} more rows (displaylimit={limit})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        limit = self.displaylimit
        masked = set(self.masked_columns)
        head = "".join(
            f'<th title="masked: {html.escape(self.masked_columns[c])}">🔒 {html.escape(c)}</th>'
            if c in masked
            else f"<th>{html.escape(c)}</th>"
            for c in self.columns
        )
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self._preview(limit)
        )
        more = (
            f"<div style='font-size:11px;opacity:.7'>{self.row_count - limit:,} more rows not "
            f"shown (displaylimit={limit}); use .df() or -o NAME for all of them.</div>"
            if self.row_count > limit
            else ""
        )
        banner = banner_html(self.plan, self.identity, self.row_count, self.duration_ms)
        table = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        return f"{banner}<table class='jp-gov-result'>{table}</table>{more}"


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
