"""Random SELECT statements over the demo schema, for every demo user, judged by the oracle.

A hypothesis strategy composes tables, joins, projections of any column (classified ones
included), allow-listed functions, aggregates, CTEs, subqueries, set operations and
ORDER BY / LIMIT. Every statement must be denied with one sentence or pass the oracle: no
raw value out for a masked user, and the answer of that user's reference database. Never a
traceback. The fast run is part of ``make test``; the long one is marked ``stress``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.conftest import RAW_USERS, USERS
from tests.adversarial.oracle import check

COLUMNS = {
    "customers": (
        "customer_id", "full_name", "email", "phone", "ssn", "credit_card", "birth_date",
        "street_address", "city", "country", "segment", "signup_date",
    ),
    "orders": ("order_id", "customer_id", "order_date", "amount", "status", "region"),
    "support_tickets": ("ticket_id", "customer_id", "opened_at", "subject", "body"),
}  # fmt: skip
TEXT_FUNCTIONS = (
    "upper({})", "lower({})", "reverse({})", "length({})", "md5({})", "sha256({})",
    "substr({}, 2, 6)", "replace({}, '-', '')", "split_part({}, '@', 2)",
    "regexp_extract({}, '[0-9]+')", "concat({}, '!')", "to_base64(encode({}))", "hex({})",
    "left({}, 3)", "right({}, 4)", "trim({})", "{} || ''", "coalesce({}, 'n/a')",
)  # fmt: skip
AGGREGATES = (
    "count({})", "count(DISTINCT {})", "min({})", "max({})", "approx_count_distinct({})",
    "list_sort(list({}))", "histogram({})", "string_agg({}, ',' ORDER BY {})",
)  # fmt: skip
PREDICATES = (
    "{} LIKE '1%'", "{} LIKE '%@example.com'", "{} = '123-45-6789'", "{} > '5'",
    "{} IS NOT NULL", "length({}) > 10", "{} <> ''", "contains({}, '555')",
)  # fmt: skip


@st.composite
def column_of(draw, table: str, alias: str) -> str:
    column = draw(st.sampled_from(COLUMNS[table]))
    return f"CAST({alias}.{column} AS VARCHAR)"


@st.composite
def select_core(draw) -> tuple[str, int]:
    """One SELECT (maybe joined, filtered, grouped); returns its SQL and its width."""
    table = draw(st.sampled_from(sorted(COLUMNS)))
    source = f"{table} a"
    aliases = [("a", table)]
    if draw(st.booleans()):
        other = draw(st.sampled_from(sorted(COLUMNS)))
        kind = draw(st.sampled_from(["JOIN", "LEFT JOIN"]))
        on = draw(st.sampled_from(["a.customer_id = b.customer_id", "true"]))
        if "customer_id" not in COLUMNS[table] or "customer_id" not in COLUMNS[other]:
            on = "true"
        if on == "true":  # keep the cross product small
            source = f"(SELECT * FROM {table} ORDER BY 1 LIMIT 30) a"
            other_source = f"(SELECT * FROM {other} ORDER BY 1 LIMIT 30) b"
        else:
            other_source = f"{other} b"
        source += f" {kind} {other_source} ON {on}"
        aliases.append(("b", other))
    if draw(st.booleans()):
        inner = f"SELECT * FROM {table}"
        source = source.replace(f"{table} a", f"({inner}) a", 1) if " a" in source else source
    width = draw(st.integers(1, 3))
    aggregate = draw(st.booleans())
    exprs = []
    group = []
    for _ in range(width):
        alias, t = draw(st.sampled_from(aliases))
        col = draw(column_of(t, alias))
        if draw(st.booleans()):
            col = draw(st.sampled_from(TEXT_FUNCTIONS)).format(col)
        if aggregate and draw(st.booleans()):
            template = draw(st.sampled_from(AGGREGATES))
            exprs.append(template.replace("{}", col))
        else:
            exprs.append(col)
            group.append(col)
    sql = f"SELECT {', '.join(f'{e} AS c{i}' for i, e in enumerate(exprs))} FROM {source}"
    if draw(st.booleans()):
        alias, t = draw(st.sampled_from(aliases))
        sql += " WHERE " + draw(st.sampled_from(PREDICATES)).format(draw(column_of(t, alias)))
    if aggregate and group and len(group) < len(exprs):
        sql += " GROUP BY " + ", ".join(group)
    elif aggregate and len(group) == len(exprs):
        sql += " GROUP BY ALL"
    return sql, width


@st.composite
def statements(draw) -> tuple[str, bool]:
    """A full statement and whether its order is total (then compared as a list)."""
    sql, width = draw(select_core())
    shape = draw(st.sampled_from(["plain", "cte", "subquery", "union", "except", "window"]))
    cols = ", ".join(f"c{i}" for i in range(width))
    if shape == "cte":
        sql = f"WITH q AS ({sql}) SELECT {cols} FROM q"
    elif shape == "subquery":
        sql = f"SELECT {cols} FROM ({sql}) s"
    elif shape in ("union", "except"):
        other, other_width = draw(select_core())
        if other_width == width:
            op = "UNION ALL" if shape == "union" else draw(st.sampled_from(["EXCEPT", "INTERSECT"]))
            sql = f"SELECT * FROM ({sql}) l {op} SELECT * FROM ({other}) r"
    elif shape == "window":
        sql = f"SELECT {cols}, count(*) OVER (PARTITION BY c0) AS n FROM ({sql}) w"
        width += 1
    ordered = False
    if draw(st.booleans()):
        positions = ", ".join(str(i + 1) for i in range(width))
        sql = f"SELECT * FROM ({sql}) o ORDER BY {positions} NULLS FIRST"
        if draw(st.booleans()):
            sql += f" LIMIT {draw(st.integers(0, 50))}"
        ordered = True
    return sql, ordered


def _run(session_for, reference_for, user: str, sql: str, ordered: bool) -> None:
    session = session_for(user)
    outcome = check(
        lambda: session.sql(sql).arrow(),
        reference_for(user),
        sql,
        raw_allowed=user in RAW_USERS,
        ordered=ordered,
    )
    if user == "eve":
        assert outcome.denied


_FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_STRESS = settings(
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FAST
@given(user=st.sampled_from(USERS), statement=statements())
def test_random_select_is_denied_or_masked(session_for, reference_for, user, statement):
    _run(session_for, reference_for, user, *statement)


@pytest.mark.stress
@_STRESS
@given(user=st.sampled_from(USERS), statement=statements())
def test_random_select_is_denied_or_masked_at_length(session_for, reference_for, user, statement):
    _run(session_for, reference_for, user, *statement)
