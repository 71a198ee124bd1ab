"""Late masking (``masking: {late: true}``) gives every statement of the masking suite the
answer scan masking gives, and the oracle still finds no raw value in it.

Every fast statement of :mod:`tests.adversarial.test_masking_oracle`, plus the shapes below
that late masking is meant for, is planned both ways. Where the two plans are the same SQL
the answers are the same by construction, and the test pins which statements those are;
where they differ, both run (for ``bob``, and ``carol`` whose row filter applies) and must
give identical answers, the late one also passing the oracle. With late masking the
default, ``test_masking_oracle`` itself runs every shape under it.
"""

from __future__ import annotations

import pytest

from jupyter_gov.policy import Policy
from tests.adversarial.oracle import assert_same_answer, attempt, check
from tests.adversarial.test_masking_oracle import FAST, Attack

#: Shapes late masking is for, and its near misses (``moves``: whether a mask moves up).
LATE_SHAPES: dict[str, tuple[str, bool, bool]] = {
    # name: (sql, ordered, moves)
    "token_grouped": ("SELECT full_name, count(*) FROM customers GROUP BY full_name", False, True),
    "partial_grouped": ("SELECT phone, count(*) FROM customers GROUP BY phone", False, False),
    "projected_after_join_and_filter": (
        "SELECT c.full_name, c.email, o.order_id FROM customers c JOIN orders o "
        "ON o.customer_id = c.customer_id WHERE o.order_id < 50 ORDER BY o.order_id",
        True,
        True,
    ),
    "left_join_null_extended": (
        "SELECT o.order_id, c.ssn, c.full_name FROM orders o LEFT JOIN customers c "
        "ON c.customer_id = o.customer_id + 400 ORDER BY o.order_id",
        True,
        True,
    ),
    "grouped_with_having": (
        "SELECT c.full_name, count(*) AS n FROM customers c JOIN orders o "
        "ON o.customer_id = c.customer_id GROUP BY c.full_name, c.customer_id "
        "HAVING count(*) > 1",
        False,
        True,
    ),
    "beside_a_correlated_subquery": (
        "SELECT c.email, (SELECT max(o.order_id) FROM orders o "
        "WHERE o.customer_id = c.customer_id) AS last_order FROM customers c",
        False,
        True,
    ),
    "order_by_its_output_name": (
        "SELECT email FROM customers ORDER BY email, customer_id LIMIT 20",
        True,
        False,
    ),
    "order_by_its_alias": (
        "SELECT c.email AS e FROM customers c ORDER BY e, c.customer_id LIMIT 20",
        True,
        False,
    ),
    "filtered_on_itself": ("SELECT email FROM customers WHERE email LIKE '%a%'", False, False),
    "same_name_in_a_subquery": (
        "SELECT c.email FROM customers c WHERE c.customer_id IN "
        "(SELECT customer_id FROM customers WHERE email LIKE 'a%')",
        False,
        False,
    ),
    "same_name_on_another_alias": (
        "SELECT a.email FROM customers a JOIN customers b ON a.customer_id = b.customer_id "
        "WHERE b.email LIKE '%a%'",
        False,
        False,
    ),
    "distinct_partial": ("SELECT DISTINCT ssn FROM customers", False, False),
    "masked_in_arithmetic": ("SELECT birth_date + 1 FROM customers", False, False),
}
#: Statements of the fast set whose masks move above the scan.
MOVED_IN_FAST = {
    "customers.full_name-plain",
    "customers.email-table_alias",
    "customers.phone-qualified_schema",
    "join_tickets_to_customers",
    "values_join",
}
EXTRA = [Attack(name, sql, ordered) for name, (sql, ordered, _) in LATE_SHAPES.items()]
MOVES = MOVED_IN_FAST | {name for name, (_, _, moves) in LATE_SHAPES.items() if moves}


def _with_late(policy: Policy, late: bool) -> Policy:
    data = dict(policy.data)
    data["masking"] = {**(data.get("masking") or {}), "late": late}
    return Policy(data)


@pytest.fixture(scope="module")
def policies(demo_policy: Policy) -> dict[bool, Policy]:
    return {late: _with_late(demo_policy, late) for late in (False, True)}


def test_late_masking_moves_masks_only_on_the_proven_shapes(session_for, policies):
    """Which statements mask late: those that only project (or group under a hash or token
    mask) a masked column; every other statement is rewritten exactly as before."""
    scan, late = session_for("bob", policies[False]), session_for("bob", policies[True])
    moved = {
        a.name
        for a in FAST + EXTRA
        if late.explain(a.sql).rewritten_sql != scan.explain(a.sql).rewritten_sql
    }
    assert moved == MOVES


@pytest.mark.parametrize("user", ["bob", "carol"])
@pytest.mark.parametrize(
    "attack", [a for a in FAST + EXTRA if a.name in MOVES], ids=lambda a: a.name
)
def test_late_masking_answers_as_scan_masking_does(
    session_for, reference_for, policies, user: str, attack: Attack
):
    scan = attempt(lambda: session_for(user, policies[False]).sql(attack.sql).arrow())
    late = check(
        lambda: session_for(user, policies[True]).sql(attack.sql).arrow(),
        reference_for(user),
        attack.sql,
        ordered=attack.ordered,
    )
    assert str(scan.error or "") == str(late.error or "")
    assert scan.table is not None and late.table is not None
    assert late.table.column_names == scan.table.column_names
    assert_same_answer(late.table, scan.table, sql=attack.sql, ordered=attack.ordered)
