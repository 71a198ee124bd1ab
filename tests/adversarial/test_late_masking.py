"""Late masking (``masking: {late: true}``) gives every statement of the masking suite the
answer scan masking gives, and the oracle still finds no raw value in it.

Every fast statement of :mod:`tests.adversarial.test_masking_oracle`, plus the shapes below
that late masking is meant for, is planned both ways, on the demo database with its primary
keys declared (``customer_id``, ``order_id``, ``ticket_id``: the functional-dependency rule
needs them). Where the two plans are the same SQL the answers are the same by construction,
and the test pins which statements those are; where they differ, both run (for ``bob``, and
``carol`` whose row filter applies) and must give identical answers, the late one also
passing the oracle. With late masking the default, ``test_masking_oracle`` itself runs every
shape under it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
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
    # ORDER BY a projected masked column: ordered by its mask computed at the output.
    "order_by_its_output_name": (
        "SELECT email FROM customers ORDER BY email, customer_id LIMIT 20",
        True,
        True,
    ),
    "order_by_its_alias": (
        "SELECT c.email AS e FROM customers c ORDER BY e, c.customer_id LIMIT 20",
        True,
        True,
    ),
    "order_by_its_column_desc": (
        "SELECT c.phone, c.customer_id FROM customers c ORDER BY c.phone DESC NULLS FIRST, "
        "c.customer_id LIMIT 30",
        True,
        True,
    ),
    "token_grouped_and_ordered": (
        "SELECT c.full_name, count(*) AS n FROM customers c JOIN orders o "
        "ON o.customer_id = c.customer_id GROUP BY c.full_name "
        "ORDER BY n DESC, c.full_name LIMIT 25",
        True,
        True,
    ),
    "order_by_an_expression_of_it": (
        "SELECT email FROM customers ORDER BY lower(email), customer_id LIMIT 20",
        True,
        False,
    ),
    "order_by_it_unprojected": (
        "SELECT customer_id FROM customers ORDER BY email, customer_id LIMIT 20",
        True,
        False,
    ),
    # GROUP BY a masked column beside the primary key of the same table: the key's groups.
    "partial_grouped_with_its_key": (
        "SELECT customer_id, phone, ssn, count(*) AS n FROM customers "
        "GROUP BY customer_id, phone, ssn",
        False,
        True,
    ),
    "email_and_year_grouped_with_its_key_after_a_join": (
        "SELECT c.customer_id, c.email, c.birth_date, count(o.order_id) AS n, "
        "sum(o.amount) AS total FROM customers c LEFT JOIN orders o "
        "ON o.customer_id = c.customer_id GROUP BY c.customer_id, c.email, c.birth_date "
        "ORDER BY total DESC NULLS LAST, c.customer_id LIMIT 40",
        True,
        True,
    ),
    "partial_grouped_with_another_tables_key": (
        "SELECT o.order_id, c.phone FROM orders o JOIN customers c "
        "ON c.customer_id = o.customer_id GROUP BY o.order_id, c.phone",
        False,
        False,
    ),
    "partial_grouped_with_the_key_of_another_alias": (
        "SELECT b.customer_id, a.phone, count(*) AS n FROM customers a JOIN customers b "
        "ON a.country = b.country AND b.customer_id < 5 GROUP BY b.customer_id, a.phone",
        False,
        False,
    ),
    # ORDER BY ... LIMIT on other columns: masked on the rows the limit keeps.
    "masked_after_the_limit": (
        "SELECT c.customer_id, c.full_name, c.phone, sum(o.amount) AS total FROM customers c "
        "JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.customer_id, c.full_name, "
        "c.phone ORDER BY total DESC, c.customer_id LIMIT 15",
        True,
        True,
    ),
    "masked_after_the_limit_and_offset": (
        "WITH recent AS (SELECT customer_id, max(order_date) AS last FROM orders "
        "GROUP BY customer_id) SELECT c.customer_id, c.email AS mail, c.ssn, r.last "
        "FROM customers c JOIN recent r ON r.customer_id = c.customer_id "
        "ORDER BY r.last DESC, c.customer_id LIMIT 10 OFFSET 5",
        True,
        True,
    ),
    # EXISTS (SELECT * ...) reads no column of the outer query.
    "beside_exists_star": (
        "SELECT c.email, c.phone FROM customers c WHERE EXISTS "
        "(SELECT * FROM orders o WHERE o.customer_id = c.customer_id AND o.amount > 900)",
        False,
        True,
    ),
    "exists_star_reading_it": (
        "SELECT c.email FROM customers c WHERE EXISTS "
        "(SELECT * FROM orders o WHERE o.customer_id = c.customer_id AND c.email LIKE 'a%')",
        False,
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


#: The demo tables' keys, declared the way a warehouse declares them.
PRIMARY_KEYS = {"customers": "customer_id", "orders": "order_id", "support_tickets": "ticket_id"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[DuckDBConnector]:
    """The demo database (the oracle's references hold for it) with primary keys declared."""
    connector = DuckDBConnector("demo", "duckdb:demo")
    for table, key in PRIMARY_KEYS.items():
        connector.con.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY ("{key}")')
    yield connector
    connector.close()


@pytest.fixture
def session_for(keyed: DuckDBConnector) -> Callable[[str, Policy], GovernedSession]:
    """``session_for(user, policy)``: a governed session on the keyed demo database."""

    def make(user: str, policy: Policy) -> GovernedSession:
        session = GovernedSession(policy, user)
        session.use_connector("demo", keyed)
        return session

    return make


def test_late_masking_moves_masks_only_on_the_proven_shapes(session_for, policies):
    """Which statements mask late: those that only project, order by (or group under a hash
    or token mask, or beside their table's primary key) a masked column; every other
    statement is rewritten exactly as before."""
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


def test_grouping_beside_a_key_moves_no_mask_when_no_key_is_declared(
    demo_connector: DuckDBConnector, policies
):
    """The functional dependency is taken only from a primary key the engine enforces: on
    the same data without declared keys, a partial mask grouped beside ``customer_id``
    stays in the scan."""
    sql = LATE_SHAPES["partial_grouped_with_its_key"][0]
    plans = {}
    for late in (False, True):
        session = GovernedSession(policies[late], "bob")
        session.use_connector("demo", demo_connector)
        plans[late] = session.explain(sql).rewritten_sql
    assert plans[True] == plans[False]
