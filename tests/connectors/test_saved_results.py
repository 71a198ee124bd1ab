"""``NAME <<`` on every engine: results land, masked, on the kernel's scratch DuckDB.

One policy declares the DuckDB demo, PostgreSQL and MariaDB (the live engines of
``tests/connectors/conftest.py``); results saved from each are joined in a later cell on
the ``scratch`` connection, governed like any other statement: only their owner sees them,
the bulk-export rule counts what they hold, and nothing is written there.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest
import yaml

from jupyter_gov.engine import GovernedSession, _StaticProvider
from jupyter_gov.errors import GovError, PolicyError
from jupyter_gov.policy import Policy
from jupyter_gov.result import ApprovalRequired, QueryDenied
from tests.conftest import require_server
from tests.connectors.conftest import Engine
from tests.connectors.test_live_governance import raw_values

BULK = "approval:bulk-unmasked-pii"


def _live(live_engines: dict[str, Any], name: str) -> Engine:
    found = live_engines[name]
    if isinstance(found, str):
        require_server(found)
    return found


def three_engine_policy(pg: Engine, maria: Engine) -> Policy:
    """The demo policy with PostgreSQL and MariaDB declared next to the DuckDB demo."""
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["pg"] = {"url": pg.url, "environment": "production"}
    data["connections"]["maria"] = {"url": maria.url, "environment": "staging"}
    return Policy(data)


@pytest.fixture
def engines(live_engines: dict[str, Any]) -> tuple[Engine, Engine, Engine]:
    return (
        _live(live_engines, "duckdb"),
        _live(live_engines, "postgres"),
        _live(live_engines, "mysql"),
    )


@pytest.fixture
def session_as(engines: tuple[Engine, Engine, Engine]):
    """``session_as("bob")``: a session over all three engines, reusing their connectors."""
    duck, pg, maria = engines
    policy = three_engine_policy(pg, maria)

    def make(user: str) -> GovernedSession:
        session = GovernedSession(policy, user)
        for name, live in (("demo", duck), ("pg", pg), ("maria", maria)):
            session.use_connector(name, live.connector)
        return session

    return make


def test_result_saved_from_postgres_is_readable_on_scratch(session_as) -> None:
    bob = session_as("bob")
    bob.sql(
        "SELECT customer_id, email FROM customers WHERE customer_id <= 5",
        connection="pg",
        name="pg_people",
    )
    got = bob.sql("SELECT count(*) FROM pg_people", connection="scratch").fetchall()
    assert got == [(5,)]


def test_result_saved_from_mariadb_is_readable_on_scratch(session_as) -> None:
    bob = session_as("bob")
    bob.sql(
        "SELECT order_id, customer_id FROM orders WHERE customer_id <= 5",
        connection="maria",
        name="my_orders",
    )
    ((n,),) = bob.sql("SELECT count(*) FROM my_orders", connection="scratch").fetchall()
    assert n > 0


def test_postgres_and_mariadb_results_join_on_scratch_with_masks_kept(session_as) -> None:
    bob = session_as("bob")
    bob.sql(
        "SELECT customer_id, email, ssn FROM customers WHERE customer_id <= 50",
        connection="pg",
        name="pg_customers",
    )
    bob.sql(
        "SELECT customer_id, count(*) AS orders FROM orders WHERE customer_id <= 50 GROUP BY 1",
        connection="maria",
        name="my_counts",
    )
    joined = bob.sql(
        "SELECT c.customer_id, c.email, c.ssn, o.orders FROM pg_customers c "
        "JOIN my_counts o USING (customer_id) ORDER BY 1",
        connection="scratch",
    )
    rows = joined.fetchall()
    assert rows and joined.decision == "allow"
    emails = {r[1] for r in rows}
    ssns = {r[2] for r in rows}
    assert not emails & raw_values("email") and not ssns & raw_values("ssn")
    # the same rows as the DuckDB demo gives bob: the masks came from the engines
    demo = dict(
        bob.sql("SELECT customer_id, email FROM customers WHERE customer_id <= 50").fetchall()
    )
    assert all(demo[r[0]] == r[1] for r in rows)


def test_duckdb_result_joins_a_postgres_result_on_scratch(session_as) -> None:
    bob = session_as("bob")
    bob.sql("SELECT customer_id, segment FROM customers WHERE customer_id <= 20", name="duck_seg")
    bob.sql(
        "SELECT customer_id, city FROM customers WHERE customer_id <= 20",
        connection="pg",
        name="pg_city",
    )
    got = bob.sql(
        "SELECT count(*) FROM duck_seg JOIN pg_city USING (customer_id)", connection="scratch"
    ).fetchall()
    assert got == [(20,)]


def test_a_duckdb_result_is_still_readable_on_its_own_connection(session_as) -> None:
    bob = session_as("bob")
    bob.sql("SELECT customer_id FROM customers WHERE customer_id <= 3", name="duck_ids")
    got = bob.sql("SELECT count(*) FROM orders JOIN duck_ids USING (customer_id)").fetchall()
    assert got[0][0] > 0


def test_another_identity_cannot_read_a_saved_result(session_as) -> None:
    alice = session_as("alice")
    alice.sql("SELECT customer_id, email FROM customers LIMIT 3", connection="pg", name="alice_raw")
    eve = session_as("eve")
    eve._results = alice._results  # same kernel
    eve.use_connector("scratch", alice.connector("scratch"))
    with pytest.raises(QueryDenied):
        eve.sql("SELECT * FROM alice_raw", connection="scratch")


def test_sign_in_change_does_not_expose_saved_results(session_as) -> None:
    """The kernel's user signs in as someone else: the old identity's results stay its own."""
    session = session_as("alice")
    session.sql("SELECT email FROM customers LIMIT 3", connection="maria", name="alice_emails")
    bob = GovernedSession(session.policy, "bob").identity
    session.provider = _StaticProvider(bob)
    with pytest.raises(QueryDenied) as denied:
        session.sql("SELECT * FROM alice_emails", connection="scratch")
    assert denied.value.plan.rules == ["unknown-table"]
    with pytest.raises(QueryDenied):
        session.sql("SELECT * FROM alice_emails", connection="maria")


def test_reading_back_raw_saved_results_counts_toward_bulk_export(session_as) -> None:
    alice = session_as("alice")
    page = "SELECT ssn, email FROM customers ORDER BY customer_id LIMIT 200 OFFSET {}"
    alice.sql(page.format(0), connection="pg", name="pg_page0")
    alice.sql(page.format(200), connection="maria", name="my_page1")
    with pytest.raises(ApprovalRequired) as pending:
        alice.sql("SELECT * FROM pg_page0 UNION ALL SELECT * FROM my_page1", connection="scratch")
    assert BULK in pending.value.plan.rules


def test_connection_scoped_rule_follows_rows_to_scratch(engines) -> None:
    """A rule for the production connection still applies when its rows are read back."""
    _, pg, _ = engines
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["pg"] = {"url": pg.url, "environment": "production"}
    data["approvals"]["rules"].append(
        {
            "id": "pg-emails",
            "description": "Raw emails from PostgreSQL need a second person.",
            "unmasked_tags": ["email"],
            "connections": ["pg"],
            "max_rows": 10,
            "approvers": ["approver"],
        }
    )
    session = GovernedSession(Policy(data), "alice")
    session.use_connector("pg", pg.connector)
    session.sql(
        "SELECT email FROM customers ORDER BY customer_id LIMIT 8", connection="pg", name="few"
    )
    with pytest.raises(ApprovalRequired) as pending:
        session.sql("SELECT email FROM few", connection="scratch")  # 8 + 8 > 10
    assert "approval:pg-emails" in pending.value.plan.rules


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE kept AS SELECT * FROM ids",
        "INSERT INTO ids SELECT * FROM ids",
        "DELETE FROM ids",
    ],
)
def test_nothing_is_written_on_scratch(session_as, sql: str) -> None:
    alice = session_as("alice")  # may write on database connections
    alice.sql("SELECT customer_id FROM customers LIMIT 3", connection="pg", name="ids")
    with pytest.raises(QueryDenied):
        alice.sql(sql, connection="scratch")
    assert alice.sql("SELECT count(*) FROM ids", connection="scratch").fetchall() == [(3,)]


def test_approval_binds_to_the_content_of_a_saved_result(engines) -> None:
    """Rebuilding a saved result after the approval invalidates it, as on DuckDB."""
    _, pg, _ = engines
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["pg"] = {"url": pg.url}
    data["approvals"]["rules"].append(
        {
            "id": "scratch-reads",
            "statements": ["select"],
            "connections": ["scratch"],
            "approvers": ["approver"],
        }
    )
    policy = Policy(data)
    bob, dave = GovernedSession(policy, "bob"), GovernedSession(policy, "dave")
    bob.use_connector("pg", pg.connector)
    dave.approvals = bob.approvals
    bob.sql("SELECT customer_id FROM customers WHERE customer_id < 4", connection="pg", name="ids")
    sql = "SELECT * FROM ids"
    request = bob.request_approval(sql, connection="scratch", justification="sample")
    dave.approve(request.id, "ok")
    bob.sql("SELECT customer_id FROM customers", connection="pg", name="ids")  # rebuilt
    with pytest.raises(GovError, match="content of the session results"):
        bob.sql(sql, connection="scratch", approval_id=request.id)


def test_a_policy_cannot_declare_the_scratch_connection() -> None:
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["scratch"] = {"url": "duckdb:memory"}
    with pytest.raises(PolicyError, match="reserved"):
        Policy(data)


def test_role_kept_to_one_connection_reads_its_saved_results(engines) -> None:
    _, pg, _ = engines
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["pg"] = {"url": pg.url}
    data["roles"]["analyst"]["connections"] = ["pg"]
    session = GovernedSession(Policy(data), "bob")
    session.use_connector("pg", pg.connector)
    session.sql("SELECT customer_id FROM customers LIMIT 4", connection="pg", name="mine")
    assert session.sql("SELECT count(*) FROM mine", connection="scratch").fetchall() == [(4,)]


@pytest.mark.parametrize("name", ["MyPeople", "PG_People", "DuckDB_Settings", "Sqlite_Master"])
def test_a_result_saved_under_a_name_with_capitals_reads_back_in_any_case(
    session_for: Any, name: str
) -> None:
    """Names are case-insensitive in SQL: ``PG_People <<`` must not become a system relation
    (nor ``MyPeople`` an unknown table) when read back."""
    bob = session_for("bob")
    bob.sql("SELECT customer_id FROM customers WHERE customer_id < 4", name=name)
    for spelt in (name, name.lower(), name.upper()):
        assert len(bob.sql(f"SELECT * FROM {spelt}").to_arrow_table()) == 3
        scratch = bob.sql(f"SELECT count(*) AS n FROM {spelt}", connection="scratch")
        assert scratch.to_arrow_table().column("n")[0].as_py() == 3
