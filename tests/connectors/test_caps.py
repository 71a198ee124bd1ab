"""Per-policy statement timeouts and row caps, enforced on each live engine.

``timeout_seconds`` becomes PostgreSQL's ``statement_timeout``, MariaDB's
``max_statement_time`` (MySQL's ``max_execution_time``), SQLite's progress handler and a
DuckDB interrupt; ``max_rows`` a ``LIMIT`` pushed down to the server, with a notice when
the result was cut. Where a connection and roles set several, the smallest wins.
"""

from __future__ import annotations

from importlib.resources import files

import pytest
import yaml

from jupyter_gov.errors import QueryFailed
from jupyter_gov.policy import Policy
from jupyter_gov.policy.model import Limits
from tests.connectors.conftest import ENGINES, Engine

#: Spark's timeout is the connector's clock, proven on a running job (and the server's job
#: list) in tests/spark/test_spark_defences.py; three more here would cost a JVM's seconds.
TIMED = [name for name in ENGINES if name != "spark"]

#: 2.5 billion joined rows: minutes on every engine, so only a timeout ends it quickly.
ENDLESS = "SELECT count(*) FROM orders a CROSS JOIN orders b"


@pytest.mark.parametrize("engine", TIMED, indirect=True)
def test_statement_past_the_policy_timeout_is_stopped_on_the_server(engine: Engine) -> None:
    session = engine.session("bob", engine.policy(timeout_seconds=0.001))
    with pytest.raises(QueryFailed, match=r"(?i)time|cancel|interrupt"):
        session.sql(ENDLESS)


@pytest.mark.parametrize("engine", TIMED, indirect=True)
def test_connection_is_usable_after_a_timeout(engine: Engine) -> None:
    session = engine.session("bob", engine.policy(timeout_seconds=0.001))
    with pytest.raises(QueryFailed):
        session.sql(ENDLESS)
    relaxed = engine.session("bob", engine.policy(timeout_seconds=60))
    assert relaxed.sql("SELECT count(*) FROM customers").fetchall()[0][0] == 10000


@pytest.mark.parametrize("engine", TIMED, indirect=True)
def test_a_roles_timeout_applies_on_its_own(engine: Engine) -> None:
    policy = _with_role_limits(engine, timeout_seconds=0.001)
    with pytest.raises(QueryFailed):
        engine.session("bob", policy).sql(ENDLESS)


def test_row_cap_is_pushed_down_and_says_the_result_was_cut(engine: Engine) -> None:
    session = engine.session("bob", engine.policy(max_rows=5))
    result = session.sql("SELECT customer_id, email FROM customers ORDER BY customer_id")
    assert result.rows == 5 and result.truncated
    assert "LIMIT 6" in result.plan.rewritten_sql.upper()
    assert "caps results" in result.banner()


def test_result_within_the_cap_has_no_notice(engine: Engine) -> None:
    session = engine.session("bob", engine.policy(max_rows=5))
    result = session.sql("SELECT customer_id FROM customers ORDER BY customer_id LIMIT 5")
    assert result.rows == 5 and not result.truncated


def test_a_smaller_user_limit_is_kept_under_the_cap(engine: Engine) -> None:
    session = engine.session("bob", engine.policy(max_rows=50))
    result = session.sql("SELECT customer_id FROM customers", limit=3)
    assert result.rows == 3 and not result.truncated


def test_a_roles_cap_below_the_connections_wins(engine: Engine) -> None:
    policy = _with_role_limits(engine, max_rows=2, connection_max_rows=100)
    result = engine.session("bob", policy).sql("SELECT customer_id FROM customers")
    assert result.rows == 2 and result.truncated


def test_a_role_without_a_cap_is_unaffected_by_anothers(engine: Engine) -> None:
    policy = _with_role_limits(engine, max_rows=2)  # analysts only
    result = engine.session("alice", policy).sql("SELECT customer_id FROM customers")
    assert result.rows == 10000 and not result.truncated


def test_smallest_limit_wins_across_connection_and_roles() -> None:
    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["demo"].update(timeout_seconds=30, max_rows=1000)
    data["roles"]["analyst"].update(timeout_seconds=5)
    data["roles"]["approver"].update(max_rows=10)
    policy = Policy(data)
    demo = policy.connection("demo")
    assert policy.limits_for(("analyst", "approver"), demo) == Limits(5, 10)
    assert policy.limits_for(("admin",), demo) == Limits(30, 1000)


def test_limits_must_be_positive() -> None:
    from jupyter_gov.errors import PolicyError

    data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
    data["connections"]["demo"]["max_rows"] = 0
    with pytest.raises(PolicyError):
        Policy.from_text(yaml.safe_dump(data))


def _with_role_limits(engine: Engine, connection_max_rows: int | None = None, **limits) -> Policy:
    """The engine's policy with ``limits`` on the analyst role (bob)."""
    policy = engine.policy(**({"max_rows": connection_max_rows} if connection_max_rows else {}))
    data = dict(policy.data)
    data["roles"] = {**data["roles"], "analyst": {**data["roles"]["analyst"], **limits}}
    return Policy(data)
