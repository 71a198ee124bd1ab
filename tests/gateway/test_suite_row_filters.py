"""The row-filter oracle and the row-filter suite, each probe in the kernel and through the
gateway, for carol (analyst, region EMEA) and bob (analyst, no region).

Every probe of ``tests/adversarial/test_row_filter_oracle.py`` and every statement of
``tests/test_row_filters.py`` runs once on each path for the same identity
(:mod:`tests.adversarial.paths`): the decisions and answers must be the same value by value,
and the gateway's answer must be carol's reference answer (a database holding only EMEA
orders), catalog probes denied.
"""

from __future__ import annotations

import pytest

from tests.adversarial.oracle import check
from tests.adversarial.test_row_filter_oracle import CATALOG, KNOWN_HOLES, PROBES
from tests.gateway.conftest import PathFactory
from tests.test_row_filters import EMEA_ONLY

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]


@pytest.fixture(scope="module")
def emea_only(paths: PathFactory):
    """carol's reference under the gateway's key really holds only EMEA orders."""
    reference = paths.reference("carol")
    assert reference.con.execute("SELECT DISTINCT region FROM orders").fetchall() == [("EMEA",)]
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
def test_carols_probe_decides_and_answers_alike_through_the_gateway(paths, emea_only, probe):
    sql = PROBES[probe]
    ordered = "ORDER BY 1" in sql
    observed = paths("carol").both(lambda session: session.sql(sql), ordered=ordered, sql=sql)
    outcome = check(
        lambda: observed.table if observed.raised is None else _raise(observed.raised),
        emea_only,
        sql,
        ordered=ordered,
    )
    if probe in CATALOG:
        assert outcome.denied, f"catalog probe {probe} ran through the gateway"


def _raise(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize("sql", EMEA_ONLY)
def test_carol_sees_only_emea_orders_through_the_gateway_as_in_the_kernel(paths, sql):
    observed = paths("carol").both(lambda session: session.sql(sql), sql=sql)
    assert set(observed.table.column(0).to_pylist()) == {"EMEA"}
    assert observed.plan["row_filters"] == ["orders-by-region"]


def test_an_analyst_without_a_region_sees_every_region_through_the_gateway(paths):
    sql = "SELECT DISTINCT region FROM orders ORDER BY region"
    observed = paths("bob").both(lambda session: session.sql(sql), ordered=True, sql=sql)
    assert observed.table.column("region").to_pylist() == ["AMER", "APAC", "EMEA"]


def test_the_filter_shows_alike_in_both_plans(paths):
    carol = paths("carol")
    kernel = carol.kernel.explain("SELECT * FROM orders")
    gateway = carol.gateway.explain("SELECT * FROM orders")
    assert gateway.to_dict() == kernel.to_dict()
    assert gateway.row_filters == ["orders-by-region"]
    assert "$g_user_region" in gateway.rewritten_sql


def test_the_filtered_count_is_smaller_so_the_probes_mean_something(paths, emea_only, raw):
    (everyone,) = raw("SELECT count(*) FROM orders")[0]
    (emea,) = emea_only.con.execute("SELECT count(*) FROM orders").fetchone()
    observed = paths("carol").both(lambda session: session.sql("SELECT count(*) AS n FROM orders"))
    assert observed.table.column("n").to_pylist() == [emea] and everyone > emea > 0
