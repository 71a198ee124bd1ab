"""The guardrail suite, each statement in the kernel and through the gateway.

Every statement of ``tests/test_guardrails.py`` (dangerous ones however dressed up, writes
without a real WHERE, writes by a read-only role, writes and bulk exports that need an
approval, a user without a role, legitimate analysis) runs once on each path for the same
identity (:mod:`tests.adversarial.paths`): the decision, the rules, the reasons, the
error's class and sentence, and the rows when it runs, must be the same; the gateway's
decision must also be the one the in-kernel suite expects.
"""

from __future__ import annotations

import pytest

from tests import test_guardrails
from tests.gateway.conftest import PathFactory
from tests.test_guardrails import DENIED

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]

DISGUISED = (
    *test_guardrails.DISGUISED,
    "DELETE FROM orders WHERE order_id = 1; DROP TABLE orders",
    "SELECT 1; SELECT * FROM read_csv('x')",
)
UNBOUNDED = [
    f"DELETE FROM orders {where}"
    for where in (
        "",
        "WHERE 1=1",
        "WHERE true",
        "WHERE 1 = 1 OR order_id = 3",
        "WHERE order_id = order_id",
        "WHERE status LIKE '%'",
    )
] + ["UPDATE orders SET amount = 0"]
#: Ten rows, any ten (a LIMIT without a total order): the paths agree on the count only.
ANY_TEN = next(sql for sql in test_guardrails.LEGITIMATE if "OVER (" in sql)
LEGITIMATE = test_guardrails.LEGITIMATE

#: (user, statement, the rules the gateway's plan must hold, the decision).
CASES: list[tuple[str, str, list[str] | None, str]] = [
    *[("alice", sql, [rule], "deny") for sql, rule in DENIED.items()],
    *[("alice", sql, None, "deny") for sql in DISGUISED],
    *[("alice", sql, ["unbounded-write"], "deny") for sql in UNBOUNDED],
    ("bob", "SELECT email FROM customers WHERE", ["parse-error"], "deny"),
    ("bob", "UPDATE orders SET amount = 0 WHERE order_id = 1", ["read-only-role"], "deny"),
    ("eve", "SELECT 1", ["no-role"], "deny"),
    (
        "alice",
        "UPDATE orders SET status = 'cancelled' WHERE order_id = 1",
        ["approval:admin-write-production"],
        "approval_required",
    ),
    (
        "alice",
        "SELECT email, ssn FROM customers",
        ["approval:bulk-unmasked-pii"],
        "approval_required",
    ),
    ("alice", "SELECT body FROM support_tickets", None, "approval_required"),
    *[("bob", sql, None, "allow") for sql in LEGITIMATE],
]


@pytest.mark.parametrize(
    ("user", "sql", "rules", "decision"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_guardrail_decides_alike_in_the_kernel_and_through_the_gateway(
    paths: PathFactory, user: str, sql: str, rules: list[str] | None, decision: str
) -> None:
    observed = paths(user).both(
        lambda session: session.sql(sql),
        ordered="ORDER BY 1" in sql,
        sql=sql,
        which_rows=sql != ANY_TEN,
    )
    assert observed.plan is not None and observed.plan["decision"] == decision
    found = [rule for _, rule, _ in observed.plan["findings"]]
    assert rules is None or set(rules) <= set(found), found
    if decision == "deny":
        assert observed.error is not None and observed.error[0] == "QueryDenied"
        assert all(reason.endswith(".") for _, _, reason in observed.plan["findings"])
    if decision == "allow":
        assert observed.table is not None and observed.table.num_rows > 0


def test_unparseable_sql_names_the_position_through_the_gateway(paths: PathFactory) -> None:
    sql = "SELECT email FROM customers WHERE"
    observed = paths("bob").both(lambda session: session.sql(sql), sql=sql)
    assert "line 1" in observed.plan["findings"][0][2]


def test_a_saved_result_is_read_back_alike_through_the_gateway(paths: PathFactory) -> None:
    bob = paths("bob")
    saved = "SELECT segment, count(*) n FROM customers GROUP BY 1"
    bob.both(lambda session: session.sql(saved, name="by_segment"), sql=saved)
    again = "SELECT sum(n) AS total FROM by_segment"
    observed = bob.both(lambda session: session.sql(again), sql=again)
    assert observed.table.column("total").to_pylist() == [10000]


def test_another_users_saved_result_is_unknown_alike_through_the_gateway(
    paths: PathFactory,
) -> None:
    alice_sql = "SELECT email FROM customers ORDER BY customer_id LIMIT 3"
    paths("alice").both(lambda session: session.sql(alice_sql, name="raw_emails"), sql=alice_sql)
    read = "SELECT * FROM raw_emails"
    observed = paths("bob").both(lambda session: session.sql(read), sql=read)
    assert observed.plan["decision"] == "deny"
    assert [rule for _, rule, _ in observed.plan["findings"]] == ["unknown-table"]
