"""Row filters run on raw values inside the substituted table, whatever the query shape."""

from __future__ import annotations

import pytest

from jupyter_gov.identity import Identity


@pytest.fixture
def carol(session_for):
    return session_for("carol")


#: Statements whose only regions must be EMEA for carol (also run through the gateway).
EMEA_ONLY = (
    "SELECT DISTINCT region FROM orders",
    "SELECT DISTINCT o.region FROM orders o",
    "WITH x AS (SELECT * FROM orders) SELECT DISTINCT region FROM x",
    "SELECT DISTINCT region FROM (SELECT * FROM orders) t",
    "SELECT DISTINCT region FROM orders WHERE region <> 'EMEA' OR 1=1",
    "SELECT region FROM orders UNION SELECT region FROM orders",
    "SELECT DISTINCT o.region FROM customers c JOIN orders o USING (customer_id)",
    "SELECT DISTINCT first_value(region) OVER (PARTITION BY customer_id) FROM orders",
)


@pytest.mark.parametrize("sql", EMEA_ONLY)
def test_emea_analyst_sees_only_emea_orders(carol, sql):
    assert {row[0] for row in carol.sql(sql).fetchall()} == {"EMEA"}


def test_row_filter_counts_match_the_raw_filter(carol, raw):
    expected = raw("SELECT count(*) FROM orders WHERE region = 'EMEA'")
    assert carol.sql("SELECT count(*) FROM orders").fetchall() == expected


def test_analyst_without_region_sees_every_region(session_for):
    regions = {
        r[0] for r in session_for("bob").sql("SELECT DISTINCT region FROM orders").fetchall()
    }
    assert regions == {"AMER", "EMEA", "APAC"}


def test_identity_attribute_is_bound_not_pasted(session_for, demo_policy):
    """An attribute value with a quote cannot change the filter's SQL."""
    hostile = Identity(
        subject="mallory",
        display_name="m",
        auth_method="local",
        groups=("analysts",),
        attributes={"region": "EMEA' OR '1'='1"},
    )
    session = session_for("bob")
    from jupyter_gov.engine import _StaticProvider

    session.provider = _StaticProvider(hostile)
    assert session.sql("SELECT count(*) FROM orders").fetchall() == [(0,)]
    assert "OR '1'='1" not in session.explain("SELECT * FROM orders").rewritten_sql


def test_filter_shows_in_the_plan(carol):
    plan = carol.explain("SELECT * FROM orders")
    assert plan.row_filters == ["orders-by-region"]
    assert "$g_user_region" in plan.rewritten_sql
