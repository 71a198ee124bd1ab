"""What an approver is shown, and bound, about a statement before it runs.

``dry_run_rows`` counts the rows a statement will touch with a governed ``SELECT count(*)``
run through the session like any query (same row filters and masks, audited), never as a
raw query. ``plan_digest`` and ``results_digest`` bind what will run: the rewritten SQL
with its internal parameters, and the content of the session results it reads, so
rebuilding a result after the approval invalidates it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from jupyter_gov import analysis
from jupyter_gov.analysis import SqlSyntaxError
from jupyter_gov.connectors import Connector
from jupyter_gov.errors import GovError
from jupyter_gov.plan import Plan

_ALIAS = "_gov_dry_run"
_UNUSABLE = object()


def count_statement(
    text: str, dialect: str, params: Mapping[str, Any] | Sequence[Any] | None
) -> tuple[str | int, Mapping[str, Any] | None] | None:
    """The count query for one statement and its parameters, a known count, or None.

    UPDATE/DELETE: ``SELECT count(*) FROM target WHERE <same condition>``; INSERT ...
    SELECT: the count of the SELECT; INSERT ... VALUES: the number of rows given; reads:
    the count of the whole statement. Positional parameters become named ones, so those the
    count drops (an UPDATE's SET values) do not shift the others.
    """
    try:
        (tree,) = analysis.parse(text, dialect)
    except (SqlSyntaxError, ValueError):
        return None
    values = _named(tree, params, dialect)
    if values is _UNUSABLE:
        return None
    count = exp.select(exp.Count(this=exp.Star()))
    if isinstance(tree, (exp.Update, exp.Delete)):
        if any(tree.args.get(k) for k in ("from", "using", "joins", "from_")):
            return None  # a join decides which rows change: no exact count by target alone
        count = count.from_(tree.this.copy())
        if tree.args.get("where"):
            count.set("where", tree.args["where"].copy())
    elif isinstance(tree, exp.Insert):
        source = tree.expression
        if isinstance(source, exp.Values):
            return len(source.expressions), None
        if not isinstance(source, exp.Query):
            return None
        count = count.from_(source.copy().subquery(_ALIAS))
    elif isinstance(tree, exp.Query):
        count = count.from_(_rows_only(tree.copy()).subquery(_ALIAS))
    else:
        return None
    if tree.args.get("with") and not isinstance(tree, exp.Query):
        count.set("with", tree.args["with"].copy())
    return count.sql(dialect=dialect), values  # type: ignore[return-value]


def _rows_only(query: exp.Query) -> exp.Query:
    """The same rows without their columns, when the projection cannot change the count.

    Counting ``SELECT ssn FROM customers`` needs no ``ssn``: a plain SELECT (no DISTINCT,
    aggregate, window, GROUP BY or set operation) has as many rows with ``SELECT 1``, and
    the count then reads no column it does not filter on.
    """
    plain = (
        isinstance(query, exp.Select)
        and not query.args.get("distinct")
        and not query.args.get("group")
        and not any(p.find(exp.AggFunc, exp.Window) for p in query.expressions)
    )
    if plain:
        query.set("expressions", [exp.Literal.number(1)])
    return query


def dry_run_rows(
    session: Any,
    plan: Plan,
    text: str,
    params: Mapping[str, Any] | Sequence[Any] | None,
    unmask: frozenset[str],
    limit: int | None,
    justification: str,
) -> int | None:
    """How many rows the statement will touch, counted through the governed session.

    None when there is no exact governed count: several statements, an UPDATE/DELETE with a
    join, a count the caller's roles may not run, or an unmask request (a count over raw
    values would tell the requester something about them before anyone approved).
    """
    if unmask or len(plan.statements) != 1:
        return None
    built = count_statement(text, plan.dialect, params)
    if built is None:
        return None
    sql, values = built
    if isinstance(sql, int):
        return sql
    try:
        result = session.sql(
            sql,
            values,
            connection=plan.connection,
            purpose=f"dry-run count for an approval request: {justification.strip()}"[:500],
        )
    except GovError:
        return None
    rows = int(result.fetchall()[0][0])
    is_read = plan.statements[0].info.is_read
    return min(rows, limit) if limit is not None and is_read else rows


def plan_digest(plan: Plan) -> str:
    """The rewritten SQL and its internal parameters (row-filter values): what will run."""
    payload = [
        [s.sql, sorted((k, str(v)) for k, v in s.internal_params.items())] for s in plan.statements
    ]
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()


def results_digest(connector: Connector, plan: Plan) -> str:
    """A hash of the content of every session result the plan reads ("" when none)."""
    names = sorted({t.name for s in plan.statements for t in s.info.tables if t.kind == "result"})
    if not names:
        return ""
    digest = hashlib.sha256()
    for name in names:
        quoted = exp.to_identifier(name, quoted=True).sql(dialect=plan.dialect)
        table = connector.execute(f"SELECT * FROM {quoted}", {}).read_all()
        digest.update(name.encode() + b"\x00" + _table_bytes(table))
    return digest.hexdigest()


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _named(tree: exp.Expr, params: Mapping[str, Any] | Sequence[Any] | None, dialect: str) -> Any:
    """Rename ``?`` placeholders to ``$gov_dry_N`` in the binder's order; their values."""
    if params is None or isinstance(params, Mapping):
        return params
    if isinstance(params, (str, bytes)):
        return _UNUSABLE
    # The same (written) order plan._bind_user_placeholders binds in.
    positional = analysis.positional_placeholders(tree, dialect)
    if len(positional) != len(params):
        return _UNUSABLE
    values = {}
    for index, (placeholder, value) in enumerate(zip(positional, params), start=1):
        placeholder.set("this", f"gov_dry_{index}")
        values[f"gov_dry_{index}"] = value
    return values
