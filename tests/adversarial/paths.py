"""One governed attempt taken two ways, in the kernel and through the gateway, and compared.

The governance suites judge what a session does; the same identity can reach the engine
in its own kernel (:class:`~jupyter_gov.engine.GovernedSession`) or through a gateway
(:class:`~jupyter_gov.connectors.gateway.GatewaySession`, same interface). A
:class:`Paths` holds both sessions of one identity; :func:`observe` reduces one attempt to
what a user can see of it (decision, rules, reasons, masks, filters, error class and
sentence, and the rows), and :func:`assert_same` demands that both paths saw the same thing,
value by value, column names and Arrow types included, in order when the statement fixes one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from jupyter_gov.errors import ApprovalRequired, GovError, QueryDenied
from jupyter_gov.gateway.protocol import wire_schema
from tests.adversarial.oracle import assert_same_answer

KERNEL, GATEWAY = "kernel", "gateway"
#: The plan fields both paths report (the gateway's wire form of a plan, protocol.py).
PLAN_FIELDS = (
    "decision",
    "connection",
    "dialect",
    "roles",
    "masked_columns",
    "row_filters",
    "rewritten_sql",
    "fingerprint",
    "normalized",
    "statement_kind",
)


def plan_view(plan: Any) -> dict[str, Any]:
    """What a front end shows of a plan (banner, ``--explain``), from either kind of plan."""
    view = {name: getattr(plan, name) for name in PLAN_FIELDS}
    view["roles"] = tuple(view["roles"])
    view["masked_columns"] = dict(view["masked_columns"])
    view["row_filters"] = list(view["row_filters"])
    view["findings"] = [(f.verdict, f.rule, f.reason) for f in plan.findings]
    return view


@dataclass
class Observed:
    """What one attempt showed its user: the plan and rows, or the refusal."""

    plan: dict[str, Any] | None = None
    error: tuple[str, str] | None = None  # class name, sentence
    table: pa.Table | None = None
    raised: GovError | None = field(default=None, compare=False, repr=False)

    @property
    def denied(self) -> bool:
        return self.error is not None


def observe(run: Callable[[], Any], *, ids: dict[str, str] | None = None) -> Observed:
    """Run one attempt (``run()`` returns a GovernedResult); ``ids`` maps this path's
    approval request ids to stable names, so messages that quote them compare."""

    def sentence(text: str) -> str:
        for real, stable in (ids or {}).items():
            text = text.replace(real, stable)
        return text

    try:
        result = run()
    except (QueryDenied, ApprovalRequired) as stopped:
        kind = "ApprovalRequired" if isinstance(stopped, ApprovalRequired) else "QueryDenied"
        return Observed(plan_view(stopped.plan), (kind, sentence(str(stopped))), raised=stopped)
    except GovError as error:
        return Observed(None, (type(error).__name__, sentence(str(error))), raised=error)
    table = result.arrow() if hasattr(result, "arrow") else result
    view = plan_view(result.plan)
    view["result_masked_columns"] = dict(result.masked_columns)
    view["result_decision"] = result.decision
    return Observed(view, None, table)


def assert_same(
    kernel: Observed, gateway: Observed, *, ordered: bool, sql: str = "", which_rows: bool = True
) -> None:
    """The gateway showed exactly what the kernel showed: plan, refusal, names, types, rows
    (as a list when ``ordered``, else as a multiset: an engine may order ties either way;
    only as many when ``which_rows`` is False: a LIMIT without a total order picks any)."""
    assert gateway.error == kernel.error, f"{sql}: {gateway.error} vs {kernel.error}"
    if gateway.plan != kernel.plan:
        assert gateway.plan is not None and kernel.plan is not None, sql
        differ = {k: (gateway.plan.get(k), kernel.plan.get(k)) for k in kernel.plan}
        differ = {k: v for k, v in differ.items() if v[0] != v[1]}
        raise AssertionError(f"{sql}: plans differ (gateway, kernel): {differ}")
    if kernel.table is None:
        assert gateway.table is None, sql
        return
    assert gateway.table is not None, sql
    assert gateway.table.schema.names == kernel.table.schema.names, sql
    assert gateway.table.schema.types == kernel.table.schema.types, (
        f"{sql}: {gateway.table.schema} vs {kernel.table.schema}"
    )
    if not which_rows:
        assert gateway.table.num_rows == kernel.table.num_rows, sql
    elif ordered:
        assert decoded(gateway.table).equals(decoded(kernel.table)), f"{sql}: rows differ"
    elif not gateway.table.equals(kernel.table):
        assert_same_answer(gateway.table, kernel.table, sql=sql)


def decoded(table: pa.Table) -> pa.Table:
    """``table`` with dictionaries as their values, at any depth (the gateway's wire schema):
    the gateway rebuilds a dictionary (a DuckDB ENUM) from the values it sends, so an ENUM's
    unused members are not in it; the values and the type are what must match."""
    return table.cast(wire_schema(table.schema))


@dataclass
class Paths:
    """One identity's two sessions: ``kernel`` (in this process) and ``gateway`` (remote)."""

    user: str
    kernel: Any
    gateway: Any

    def session(self, path: str) -> Any:
        return self.kernel if path == KERNEL else self.gateway

    def both(
        self,
        attempt: Callable[[Any], Any],
        *,
        ordered: bool = False,
        sql: str = "",
        which_rows: bool = True,
    ) -> Observed:
        """``attempt(session)`` on each path; asserts they agree; the gateway's observation."""
        kernel = observe(lambda: attempt(self.kernel))
        gateway = observe(lambda: attempt(self.gateway))
        assert_same(kernel, gateway, ordered=ordered, sql=sql, which_rows=which_rows)
        return gateway
