"""carol (analyst, region EMEA) can neither see nor infer an ``orders`` row outside EMEA.

Every probe is judged by the oracle against carol's reference database, whose ``orders``
holds only the EMEA rows: a count, an aggregate, an ``EXISTS``, a join through another
table, a window over the whole table or an approximate count that saw a filtered-out row
would differ from it. Catalog probes (estimated sizes, row counts) must be denied.
"""

from __future__ import annotations

import pytest

from tests.adversarial.oracle import check

PROBES = {
    "count": "SELECT count(*) FROM orders",
    "count_other_region": "SELECT count(*) FROM orders WHERE region <> 'EMEA'",
    "regions": "SELECT region, count(*) FROM orders GROUP BY region",
    "sum_amount": "SELECT sum(amount), max(amount), min(order_id), max(order_id) FROM orders",
    "exists_amer": "SELECT EXISTS (SELECT 1 FROM orders WHERE region = 'AMER')",
    "in_list": "SELECT count(*) FROM orders WHERE region IN ('AMER', 'APAC')",
    "or_true": "SELECT count(*) FROM orders WHERE region = 'EMEA' OR 1 = 1",
    "not_filter": "SELECT count(*) FROM orders WHERE NOT (region = 'EMEA')",
    "null_region": "SELECT count(*) FROM orders WHERE region IS NULL OR region <> 'EMEA'",
    "approx_count": "SELECT approx_count_distinct(order_id) FROM orders",
    "approx_quantile": "SELECT approx_quantile(order_id, 0.99) FROM orders",
    "window_whole_table": "SELECT count(*) OVER () FROM orders LIMIT 1",
    "window_row_number_max": (
        "SELECT max(n) FROM (SELECT row_number() OVER (ORDER BY order_id) n FROM orders)"
    ),
    "window_lead_gap": (
        "SELECT max(next_id - order_id) FROM (SELECT order_id, lead(order_id) OVER "
        "(ORDER BY order_id) next_id FROM orders)"
    ),
    "join_through_customers": (
        "SELECT count(*) FROM customers c JOIN orders o USING (customer_id) "
        "WHERE c.country = 'Japan'"
    ),
    "join_customer_totals": (
        "SELECT c.city, count(o.order_id), sum(o.amount) FROM customers c "
        "LEFT JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.city"
    ),
    "join_tickets": (
        "SELECT count(*) FROM support_tickets t JOIN orders o ON o.customer_id = t.customer_id"
    ),
    "correlated_count": (
        "SELECT count(*) FROM customers c WHERE (SELECT count(*) FROM orders o "
        "WHERE o.customer_id = c.customer_id) > 0"
    ),
    "self_join": "SELECT count(*) FROM orders a JOIN orders b ON a.order_id + 1 = b.order_id",
    "cte": "WITH o AS (SELECT * FROM orders) SELECT region, count(*) FROM o GROUP BY region",
    "union": "SELECT count(*) FROM (SELECT order_id FROM orders UNION ALL SELECT 1)",
    "qualified": "SELECT count(*) FROM main.orders",
    "alias_list": "SELECT count(*) FROM orders x(a, b, c, d, e, f) WHERE f <> 'EMEA'",
    "row_struct": "SELECT count(*) FROM orders o WHERE o.region <> 'EMEA'",
    "list_regions": "SELECT list_sort(list(DISTINCT region)) FROM orders",
    "histogram_region": "SELECT histogram(region) FROM orders",
    "lateral": (
        "SELECT count(*) FROM customers c, LATERAL (SELECT count(*) n FROM orders o "
        "WHERE o.customer_id = c.customer_id) l WHERE l.n > 0"
    ),
    "max_id_gap_by_date": "SELECT order_date, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "catalog_estimated_size": (
        "SELECT estimated_size FROM duckdb_tables() WHERE table_name = 'orders'"
    ),
    "catalog_view": "SELECT estimated_size FROM duckdb_tables WHERE table_name = 'orders'",
    "pg_class_reltuples": "SELECT reltuples FROM pg_class WHERE relname = 'orders'",
    "information_schema": "SELECT * FROM information_schema.tables",
    "summarize": "SUMMARIZE orders",
    "pragma_storage": "SELECT * FROM pragma_storage_info('orders')",
    "table_sample": "SELECT count(*) FROM orders USING SAMPLE 100%",
    "cte_self_reference_duckdb_tables": (
        "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) "
        "SELECT estimated_size FROM duckdb_tables WHERE table_name = 'orders'"
    ),
    "cte_self_reference_pg_class": (
        "WITH pg_class AS (SELECT * FROM pg_class) "
        "SELECT reltuples FROM pg_class WHERE relname = 'orders'"
    ),
    "cte_forward_reference_catalog": (
        "WITH a AS (SELECT estimated_size FROM duckdb_tables WHERE table_name = 'orders'), "
        "duckdb_tables AS (SELECT 1) SELECT * FROM a"
    ),
}

#: Probes answered by the catalog, not by carol's rows: they must be denied outright.
CATALOG = {
    "catalog_estimated_size",
    "catalog_view",
    "pg_class_reltuples",
    "information_schema",
    "summarize",
    "pragma_storage",
    "cte_self_reference_duckdb_tables",
    "cte_self_reference_pg_class",
    "cte_forward_reference_catalog",
}

#: Holes another branch is closing: strict xfails, dropped once the fix is merged.
KNOWN_HOLES: dict[str, str] = {}


@pytest.fixture(scope="module")
def emea_only(reference_for):
    """carol's reference really holds only EMEA orders (the check is not vacuous)."""
    reference = reference_for("carol")
    assert reference.run("SELECT list(DISTINCT region) FROM orders").to_pylist()[0] != []
    regions = reference.con.execute("SELECT DISTINCT region FROM orders").fetchall()
    assert regions == [("EMEA",)]
    return reference


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=KNOWN_HOLES[p]))
        if p in KNOWN_HOLES
        else p
        for p in sorted(PROBES)
    ],
)
def test_carol_cannot_see_or_infer_rows_outside_her_region(session_for, emea_only, probe):
    sql = PROBES[probe]
    session = session_for("carol")
    outcome = check(lambda: session.sql(sql).arrow(), emea_only, sql, ordered="ORDER BY 1" in sql)
    if probe in CATALOG:
        assert outcome.denied, f"catalog probe {probe} ran for a row-filtered user"


def test_unfiltered_count_differs_so_the_probes_mean_something(session_for, emea_only, raw):
    (everyone,) = raw("SELECT count(*) FROM orders")[0]
    (emea,) = emea_only.con.execute("SELECT count(*) FROM orders").fetchone()
    assert everyone > emea > 0
    assert session_for("carol").sql("SELECT count(*) FROM orders").fetchall() == [(emea,)]
