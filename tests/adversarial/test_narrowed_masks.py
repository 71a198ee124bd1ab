"""Late masking, rule 7: a partial mask read only through a prefix is computed only for that
prefix (docs/security.md, "Late masking").

TPC-H Q22 reads ``c_phone`` only as ``substring(c_phone FROM 1 FOR 2)``; under a
``partial`` mask that keeps no first character, those two characters are ``**`` for every
value long enough to show, and ``**`` of ``****`` for the others, so the scan need not build
the whole mask. Each statement here is planned with scan masking (``masking: {late: false}``)
and with late masking; the shapes marked to narrow must change only that, and answer exactly
as scan masking does (for ``bob``, and ``carol`` whose row filter applies), passing the
oracle; every near miss must be rewritten exactly as scan masking rewrites it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import pytest
from sqlglot import exp

from jupyter_gov import masking
from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import MaskSpec, Policy
from tests.adversarial.oracle import assert_same_answer, attempt, check
from tests.conftest import require_server
from tests.connectors.conftest import PG_SERVER

#: The demo's Q22: a prefix of the masked phone in a derived table's projection and WHERE,
#: in a scalar subquery's WHERE, beside NOT EXISTS (SELECT * ...) on the row-filtered orders.
Q22 = (
    "SELECT cntrycode, count(*) AS numcust, sum(customer_id) AS total FROM ("
    "SELECT substring(phone FROM 1 FOR 2) AS cntrycode, customer_id FROM customers "
    "WHERE substring(phone FROM 1 FOR 2) IN ('+1', '**', '+4') AND customer_id > "
    "(SELECT avg(customer_id) FROM customers WHERE customer_id > 10 "
    "AND substring(phone FROM 1 FOR 2) IN ('**', '+1')) "
    "AND NOT EXISTS (SELECT * FROM orders WHERE orders.customer_id = customers.customer_id)"
    ") AS custsale GROUP BY cntrycode ORDER BY cntrycode"
)

#: name: (sql, ordered, narrows) under the demo policy (phone, ssn, credit_card: partial,
#: keep_last 4, so at most 4 leading characters are fixed).
SHAPES: dict[str, tuple[str, bool, bool]] = {
    "q22": (Q22, True, True),
    "left_and_substr_grouped": (
        "SELECT left(c.phone, 3) AS p, substr(c.ssn, 1, 4) AS s, count(*) AS n "
        "FROM customers c GROUP BY p, s ORDER BY p, s",
        True,
        True,
    ),
    "prefix_in_a_cte_and_a_union": (
        "WITH heads AS (SELECT customer_id, left(credit_card, 2) AS head FROM customers) "
        "SELECT head, count(*) AS n FROM heads GROUP BY head "
        "UNION ALL SELECT substring(credit_card, 1, 1), 0 FROM customers WHERE customer_id < 3",
        False,
        True,
    ),
    "correlated_prefix_of_the_outer_table": (
        "SELECT c.customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
        "WHERE o.customer_id = c.customer_id AND left(c.phone, 2) = '**') "
        "ORDER BY c.customer_id LIMIT 50",
        True,
        True,
    ),
    # Near misses: the whole mask stays in the scan.
    "bare_projection_beside_the_prefix": (
        "SELECT phone, left(phone, 2) AS p FROM customers",
        False,
        False,
    ),
    "star_beside_the_prefix": ("SELECT *, left(phone, 2) AS p FROM customers", False, False),
    "prefix_beyond_the_bound": ("SELECT substring(phone, 1, 5) FROM customers", False, False),
    "one_prefix_beyond_the_bound": (
        "SELECT left(phone, 2), left(phone, 5) FROM customers",
        False,
        False,
    ),
    "start_two": ("SELECT substring(phone, 2, 2) FROM customers", False, False),
    "non_literal_length": (
        "SELECT substring(phone, 1, customer_id % 3) FROM customers",
        False,
        False,
    ),
    "length_as_a_string": ("SELECT substring(phone, 1, '2') FROM customers", False, False),
    "no_length": ("SELECT substring(phone, 1) FROM customers", False, False),
    "using_join": (
        "SELECT left(c.phone, 2), o.order_id FROM customers c JOIN orders o USING (customer_id)",
        False,
        False,
    ),
    "natural_join": (
        "SELECT left(c.phone, 2), o.order_id FROM customers c NATURAL JOIN orders o",
        False,
        False,
    ),
    "table_as_a_value": (
        "SELECT left(phone, 2) AS p, customers FROM customers",
        False,
        False,
    ),
    "alias_as_a_value": (
        "SELECT left(c.phone, 2) AS p, to_json(c) AS j FROM customers c",
        False,
        False,
    ),
    "order_by_the_column": (
        "SELECT left(phone, 2) AS p FROM customers ORDER BY phone, customer_id",
        True,
        False,
    ),
    "grouped_by_the_column": (
        "SELECT left(phone, 2) AS p, count(*) FROM customers GROUP BY phone",
        False,
        False,
    ),
    "filtered_on_the_whole_value": (
        "SELECT left(phone, 2) FROM customers WHERE phone LIKE '%1%'",
        False,
        False,
    ),
    "joined_on_the_column": (
        "SELECT left(a.phone, 2) FROM customers a JOIN customers b ON a.phone = b.phone",
        False,
        False,
    ),
    "cte_carrying_it_bare": (
        "WITH x AS (SELECT customer_id, phone FROM customers) SELECT left(phone, 2) FROM x",
        False,
        False,
    ),
    "correlated_whole_value_beside_a_prefix": (
        "SELECT left(c.phone, 2) FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
        "WHERE o.customer_id = c.customer_id AND c.phone LIKE '%5%')",
        False,
        False,
    ),
    "aliased_like_the_column_and_grouped": (
        "SELECT left(phone, 2) AS phone, count(*) FROM customers GROUP BY phone",
        False,
        False,
    ),
    "table_alias_column_list": (  # email renamed phone, phone renamed ph and read whole
        "SELECT left(phone, 2) AS p, ph FROM customers AS c(a, b, phone, ph)",
        False,
        False,
    ),
    "columns_pattern": ("SELECT left(phone, 2), COLUMNS('ph.*') FROM customers", False, False),
    "prefix_of_a_parenthesised_column": (
        "SELECT left((phone), 2) FROM customers",
        False,
        False,
    ),
    "slice_of_the_column": ("SELECT phone[1:2] FROM customers", False, False),
}
NARROWS = {name for name, (_, _, narrows) in SHAPES.items() if narrows}


def with_masking(policy: Policy, late: bool, **phone: Any) -> Policy:
    """``policy`` with late masking on or off and, given ``phone``, that phone mask."""
    data = dict(policy.data)
    data["masking"] = {**(data.get("masking") or {}), "late": late}
    if phone:
        data["masks"] = {
            **data["masks"],
            "phone": {"default": {"function": "partial", **phone}, "admin": "none"},
        }
    return Policy(data)


@pytest.fixture(scope="module")
def policies(demo_policy: Policy) -> dict[bool, Policy]:
    return {late: with_masking(demo_policy, late) for late in (False, True)}


def plans(session_for: Callable[..., GovernedSession], policies: dict[bool, Policy], sql: str):
    """The rewritten SQL with scan masking and with late masking, for bob."""
    return [session_for("bob", policies[late]).explain(sql).rewritten_sql for late in (False, True)]


def test_only_prefix_reads_within_the_bound_narrow_the_mask(session_for, policies):
    narrowed = {
        name
        for name, (sql, _, _) in SHAPES.items()
        if len(set(plans(session_for, policies, sql))) == 2
    }
    assert narrowed == NARROWS


def test_q22_scans_two_stars_instead_of_the_whole_mask(session_for, policies):
    scan, late = plans(session_for, policies, Q22)
    whole = """REPEAT('*', LENGTH("phone") - 4) || RIGHT("phone", 4) END AS "phone\""""
    two_stars = """CASE WHEN "phone" IS NULL THEN NULL ELSE '**' END AS "phone\""""
    assert scan.count(whole) == 2 and two_stars not in scan
    assert late.count(two_stars) == 2 and whole not in late


@pytest.mark.parametrize("user", ["bob", "carol"])
@pytest.mark.parametrize("name", sorted(NARROWS))
def test_narrowed_masks_answer_as_scan_masking_does(
    session_for, reference_for, policies, user: str, name: str
):
    sql, ordered, _ = SHAPES[name]
    scan = attempt(lambda: session_for(user, policies[False]).sql(sql).arrow())
    late = check(
        lambda: session_for(user, policies[True]).sql(sql).arrow(),
        reference_for(user),
        sql,
        ordered=ordered,
    )
    assert scan.error is None and late.error is None
    assert scan.table is not None and late.table is not None
    assert late.table.column_names == scan.table.column_names
    assert_same_answer(late.table, scan.table, sql=sql, ordered=ordered)


def test_q22_shape_returns_rows_so_the_comparison_means_something(session_for, policies):
    assert session_for("bob", policies[True]).sql(Q22).arrow().num_rows > 0


# -- values the demo data lacks: NULL and short phones, and a kept head ---------------------


@pytest.fixture(scope="module")
def odd_phones() -> Iterator[DuckDBConnector]:
    """The demo database with NULL phones and phones of every length from 0 to 11."""
    connector = DuckDBConnector("demo", "duckdb:demo")
    connector.con.execute("UPDATE customers SET phone = NULL WHERE customer_id % 7 = 0")
    connector.con.execute(
        "UPDATE customers SET phone = substr(phone, 1, customer_id % 12) "
        "WHERE customer_id % 5 = 0 AND customer_id % 7 <> 0"
    )
    connector.catalog(refresh=True)
    yield connector
    connector.close()


#: Prefix reads of phone, each within the bound of the mask it runs under.
ODD_SHAPES = {
    "two_characters": "SELECT left(phone, 2) AS p, count(*) AS n FROM customers GROUP BY p",
    "every_prefix_length": (
        "SELECT substring(phone, 1, 1) AS a, substring(phone, 1, 3) AS b, "
        "left(phone, 4) AS c, count(*) AS n FROM customers GROUP BY a, b, c"
    ),
    "null_prefixes_counted": (
        "SELECT count(left(phone, 2)) AS present, count(*) AS n FROM customers"
    ),
}
KEPT_HEAD_SHAPES = {
    "inside_the_head": ODD_SHAPES["two_characters"],
    "head_and_stars": (
        "SELECT substring(phone, 1, 7) AS p, left(phone, 3) AS h, count(*) AS n "
        "FROM customers GROUP BY p, h"
    ),
    "filtered_on_the_head": (
        "SELECT customer_id, left(phone, 3) AS h FROM customers "
        "WHERE left(phone, 2) = '+1' AND customer_id < 400"
    ),
}


def odd_session(connector: DuckDBConnector, policy: Policy) -> GovernedSession:
    session = GovernedSession(policy, "bob")
    session.use_connector("demo", connector)
    return session


def both_ways(connector: DuckDBConnector, demo_policy: Policy, sql: str, **phone: Any):
    """(scan masking's plan SQL and answer, late masking's) for bob under ``phone``'s mask."""
    out = []
    for late in (False, True):
        session = odd_session(connector, with_masking(demo_policy, late, **phone))
        out.append((session.explain(sql).rewritten_sql, session.sql(sql).arrow()))
    return out


@pytest.mark.parametrize("name", sorted(ODD_SHAPES))
def test_null_and_short_values_give_identical_answers(odd_phones, demo_policy, name):
    sql = ODD_SHAPES[name]
    (scan_sql, scan), (late_sql, late) = both_ways(odd_phones, demo_policy, sql, keep_last=4)
    assert late_sql != scan_sql
    assert_same_answer(late, scan, sql=sql, ordered=False)


@pytest.mark.parametrize("name", sorted(KEPT_HEAD_SHAPES))
def test_a_prefix_of_a_kept_head_returns_what_scan_masking_returns(odd_phones, demo_policy, name):
    sql = KEPT_HEAD_SHAPES[name]
    (scan_sql, scan), (late_sql, late) = both_ways(
        odd_phones, demo_policy, sql, keep_first=3, keep_last=4
    )
    assert late_sql != scan_sql
    assert_same_answer(late, scan, sql=sql, ordered=False)


def test_a_prefix_beyond_the_kept_head_and_four_stars_keeps_the_whole_mask(odd_phones, demo_policy):
    sql = "SELECT substring(phone, 1, 8) AS p FROM customers"
    (scan_sql, _), (late_sql, _) = both_ways(
        odd_phones, demo_policy, sql, keep_first=3, keep_last=4
    )
    assert late_sql == scan_sql


# -- the rendered SQL on live engines -------------------------------------------------------

#: Portable statements (SQLite has no LEFT): (sql, keep_first of the phone mask).
LIVE_SHAPES = {
    # Fewer outer rows: MariaDB and SQLite run NOT EXISTS without an index on orders.
    "q22": (Q22.replace("customers WHERE", "customers WHERE customer_id < 5800 AND", 1), 0),
    "two_prefixes_grouped": (
        "SELECT substr(c.phone, 1, 3) AS p, substr(c.ssn, 1, 4) AS s, count(*) AS n "
        "FROM customers c GROUP BY substr(c.phone, 1, 3), substr(c.ssn, 1, 4)",
        0,
    ),
    "kept_head_and_stars": (
        "SELECT substr(phone, 1, 3) AS h, substring(phone, 1, 7) AS p, count(*) AS n "
        "FROM customers GROUP BY substr(phone, 1, 3), substring(phone, 1, 7)",
        3,
    ),
}


@pytest.mark.server
@pytest.mark.parametrize("shape", sorted(LIVE_SHAPES))
@pytest.mark.parametrize("name", ["postgres", "mysql", "sqlite"])
def test_narrowed_masks_answer_as_scan_masking_does_on_live_engines(
    live_engines, name: str, shape: str
):
    engine = live_engines[name]
    if isinstance(engine, str):
        require_server(engine)
    sql, keep_first = LIVE_SHAPES[shape]
    answers, rendered = [], []
    for late in (False, True):
        policy = with_masking(engine.policy(), late, keep_first=keep_first, keep_last=4)
        session = engine.session("carol", policy)
        rendered.append(session.explain(sql).rewritten_sql)
        answers.append(check(lambda s=session: s.sql(sql).arrow(), None, sql).table)
    assert rendered[0] != rendered[1]
    assert answers[0] is not None and answers[1] is not None and answers[1].num_rows > 0
    assert_same_answer(answers[1], answers[0], sql=sql, ordered=False)


# -- the narrowed expression itself, over every length ---------------------------------------

#: Values of every length from 0 to 14 (ASCII and multi-byte), and NULL.
VALUES = [
    None,
    *("+1-555-0123456"[:n] for n in range(15)),
    *("éß中🙂xyzåøæ€ÿ"[:n] for n in range(12)),
]


def prefixes_and_masks(dialect: str, dtype: str, keep_first: int, keep_last: int):
    """(SELECT of every prefix of the mask, SELECT of every narrowed prefix) over ``v``."""
    spec = MaskSpec("partial", keep_first=keep_first, keep_last=keep_last)
    ref = exp.column("v")
    kind = exp.DataType.build(dtype)
    whole = masking.mask_expression(spec, ref, kind, tag="phone", dialect=dialect)
    bound = masking.prefix_bound(spec)
    assert bound == keep_first + 4
    cut = [
        exp.Substring(this=whole.copy(), start=exp.Literal.number(1), length=exp.Literal.number(n))
        for n in range(1, bound + 1)
    ]
    narrow = [
        masking.prefix_mask_expression(spec, ref, kind, n, dialect) for n in range(1, bound + 1)
    ]
    return [exp.select(*e).from_("t").order_by("i").sql(dialect) for e in (cut, narrow)]


@pytest.mark.parametrize("keep_last", [0, 4])
@pytest.mark.parametrize("keep_first", [0, 1, 3])
def test_a_narrowed_prefix_is_the_prefix_of_the_mask_for_every_length_on_duckdb(
    keep_first: int, keep_last: int
):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(VALUES)))
    cut, narrow = prefixes_and_masks("duckdb", "VARCHAR", keep_first, keep_last)
    assert con.execute(narrow).fetchall() == con.execute(cut).fetchall()


@pytest.mark.parametrize("keep_last", [0, 4])
@pytest.mark.parametrize("keep_first", [0, 1, 3])
def test_a_narrowed_prefix_is_the_prefix_of_the_mask_for_every_length_on_sqlite(
    keep_first: int, keep_last: int
):
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (i INTEGER, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(VALUES)))
    cut, narrow = prefixes_and_masks("sqlite", "TEXT", keep_first, keep_last)
    assert con.execute(narrow).fetchall() == con.execute(cut).fetchall()


def test_a_narrowed_prefix_of_a_number_is_the_prefix_of_its_mask_as_text():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v BIGINT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate([None, 7, 1234567, -9876543210])))
    cut, narrow = prefixes_and_masks("duckdb", "BIGINT", 2, 2)
    assert con.execute(narrow).fetchall() == con.execute(cut).fetchall()


def test_no_prefix_past_the_kept_head_and_four_stars_is_rendered():
    spec = MaskSpec("partial", keep_first=1, keep_last=4)
    with pytest.raises(ValueError):
        masking.prefix_mask_expression(spec, exp.column("v"), exp.DataType.build("TEXT"), 6)
    with pytest.raises(ValueError):
        masking.prefix_mask_expression(
            MaskSpec("hash"), exp.column("v"), exp.DataType.build("TEXT"), 1
        )


def _connect(dialect: str) -> Any:
    """A DB-API connection to the shared server of ``dialect`` (skips when it is down)."""
    try:
        if dialect == "postgres":
            import adbc_driver_postgresql.dbapi as adbc

            return adbc.connect(PG_SERVER, autocommit=True)
        import pymysql

        return pymysql.connect(host="127.0.0.1", user="root", charset="utf8mb4", database="test")
    except Exception as error:  # no driver, or no server on 127.0.0.1
        require_server(f"{dialect} on 127.0.0.1 is not available ({type(error).__name__})")


@pytest.mark.server
@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_a_narrowed_prefix_is_the_prefix_of_the_mask_for_every_length_on_live_servers(
    dialect: str,
):
    con = _connect(dialect)
    marks = "$1, $2" if dialect == "postgres" else "%s, %s"
    try:
        cursor = con.cursor()
        cursor.execute(  # a temporary table: the shared server keeps nothing of it
            "CREATE TEMP TABLE t (i INTEGER, v TEXT)"
            if dialect == "postgres"
            else "CREATE TEMPORARY TABLE t (i INTEGER, v VARCHAR(100)) CHARACTER SET utf8mb4"
        )
        cursor.executemany(f"INSERT INTO t VALUES ({marks})", list(enumerate(VALUES)))
        for keep_first in (0, 1, 3):
            cut, narrow = prefixes_and_masks(dialect, "TEXT", keep_first, 4)
            answers = []
            for sql in (cut, narrow):
                cursor.execute(sql)
                answers.append([tuple(row) for row in cursor.fetchall()])
            assert answers[1] == answers[0]
    finally:
        con.close()
