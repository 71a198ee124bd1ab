"""Spark's own ways out of the policy, and what the Spark connector enforces on the server.

The dangers are denied for an administrator on the live server in the engine matrix
(``tests/connectors/test_engine_dangers.py``). The connector is called directly here,
with statements the guardrails would never let through, to prove the
second line: the session refuses file paths as tables, a read-only connection runs only
queries, non-query statements are refused, and interrupting the cell, interrupting from
another thread or timing out cancels the job on the cluster: the server's own job list
(its REST API) shows the statement's job running, then no job of its tag running.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import ConnectionFailed, QueryFailed
from tests.connectors.conftest import Engine, _connection

pytestmark = pytest.mark.server

#: Keeps one of the server's cores busy for hours; only a cancel stops it (the other core
#: keeps the server's web UI answering).
BUSY = "SELECT sum(id % 7) AS s FROM range(0, 10000000000000, 1, 1)"

#: BUSY's shape on a few rows (compiles the same code).
WARM = "SELECT sum(id % 7) AS s FROM range(0, 1000, 1, 1)"

#: How long the server may take to show a cancelled job as stopped.
STOP_WITHIN_S = 60


def _until(condition: Callable[[], Any], within: float = STOP_WITHIN_S) -> Any:
    """Poll ``condition`` until it holds (its value) or ``within`` seconds pass (falsy)."""
    deadline = time.monotonic() + within
    while not (value := condition()) and time.monotonic() < deadline:
        threading.Event().wait(0.1)
    return value


def _job_started(spark_jobs: Callable[[str], dict[int, str]], connector: Any) -> str:
    """Wait until the server runs a job of ``connector``'s statement; its operation tag."""
    tag = _until(lambda: connector.running_tag)
    assert tag, "the statement never started"
    assert _until(lambda: "RUNNING" in spark_jobs(tag).values()), "no job started on the server"
    return tag


def _assert_stopped_on_the_server(spark_jobs: Callable[[str], dict[int, str]], tag: str) -> None:
    """The statement's jobs ran on the server and none of them is running any more."""
    assert spark_jobs(tag), "no job ever ran under the statement's tag"
    assert _until(lambda: "RUNNING" not in spark_jobs(tag).values()), spark_jobs(tag)


@pytest.fixture
def own(spark: Engine) -> Any:
    """A connector of its own (the cancel tests change its timeout)."""
    connector = registry.profiles()["spark"].open(_connection(spark.url))
    yield connector
    connector.close()


def test_capabilities_claim_only_what_the_connector_enforces() -> None:
    capabilities = registry.profiles()["spark"].capabilities
    assert capabilities.cancel is True  # the tests below prove it on the server
    assert capabilities.read_only_transactions is False  # Spark has none
    assert capabilities.server_timeout is False  # the connector keeps the clock


def test_server_refuses_a_file_path_as_a_table_even_past_the_planner(spark: Engine) -> None:
    assert spark.connector.spark.conf.get("spark.sql.runSQLOnFiles") == "false"  # type: ignore[attr-defined]
    with pytest.raises(QueryFailed):
        spark.connector.execute("SELECT * FROM parquet.`/tmp`", {})


@pytest.mark.parametrize(
    "sql",
    [
        "SET spark.sql.runSQLOnFiles = true",
        "ADD JAR '/tmp/jupyter_gov.jar'",
        "CACHE TABLE customers",
        "CREATE TEMPORARY VIEW raw_customers AS SELECT * FROM customers",
    ],
)
def test_connector_refuses_what_is_not_a_query_or_a_write_even_past_the_planner(
    spark: Engine, sql: str
) -> None:
    with pytest.raises(QueryFailed):
        spark.connector.execute(sql, {})
    assert spark.connector.spark.conf.get("spark.sql.runSQLOnFiles") == "false"  # type: ignore[attr-defined]


def test_read_only_connection_runs_only_queries(spark: Engine) -> None:
    connector = registry.profiles()["spark"].open(_connection(spark.url, read_only=True))
    try:
        with pytest.raises(QueryFailed, match="read-only"):
            connector.execute("INSERT INTO default.orders SELECT * FROM default.orders LIMIT 0", {})
    finally:
        connector.close()


def test_session_runs_without_adaptive_execution_so_a_cancel_reaches_every_job(
    spark: Engine,
) -> None:
    conf = spark.connector.spark.conf  # type: ignore[attr-defined]
    assert conf.get("spark.sql.adaptive.enabled") == "false"


def test_timeout_cancels_the_job_on_the_cluster(own: Any, spark_jobs: Any) -> None:
    own.execute(WARM, {})  # the same plan, compiled once: the timeout lands on a running job
    own.timeout_s = 3
    with pytest.raises(QueryFailed, match="timeout") as error:
        own.execute(BUSY, {})
    _assert_stopped_on_the_server(spark_jobs, own.last_tag)
    assert "cancelled" in str(error.value)


def test_interrupt_from_another_thread_cancels_the_running_job(own: Any, spark_jobs: Any) -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            own.execute(BUSY, {})
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    tag = _job_started(spark_jobs, own)
    own.interrupt()
    worker.join()
    assert len(outcome) == 1 and isinstance(outcome[0], QueryFailed)
    assert "cancelled" in str(outcome[0])
    _assert_stopped_on_the_server(spark_jobs, tag)


def test_interrupt_during_analysis_leaves_no_job_and_no_operation(
    own: Any, spark_jobs: Any
) -> None:
    """The interrupt lands as soon as the statement is sent, before any job exists."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            own.execute(BUSY, {})
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    tag = _until(lambda: own.running_tag)
    own.interrupt()
    worker.join()
    assert len(outcome) == 1 and isinstance(outcome[0], QueryFailed)
    assert own.spark.interruptTag(tag) == []  # the server holds no operation under it
    own.execute(WARM, {})  # a job planned behind the interrupt would have started by now
    assert "RUNNING" not in spark_jobs(tag).values()


def test_interrupting_the_cell_cancels_the_job_on_the_cluster(
    spark: Engine, own: Any, spark_jobs: Any
) -> None:
    """KeyboardInterrupt in the engine's execute path, as Jupyter's interrupt delivers it."""
    session = spark.session("alice", spark.policy(environment="development"))
    session.use_connector("demo", own)
    tags: list[str] = []

    def interrupt_once_running() -> None:
        tags.append(_job_started(spark_jobs, own))
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    with pytest.raises(QueryFailed, match="cancelled"):
        session.sql(BUSY)
    _assert_stopped_on_the_server(spark_jobs, tags[0])


SECRET = "s3cr3t-Sp4rk-t0ken"


@pytest.mark.parametrize(
    "url",
    [
        "sc://localhost:1/;token=${JG_TEST_SPARK_SECRET}",
        "sc://127.0.0.1:1/;use_ssl=true;token=${JG_TEST_SPARK_SECRET}",
        "spark://${JG_TEST_SPARK_SECRET}@127.0.0.1:7077",
    ],
)
def test_token_from_the_environment_never_appears_in_an_error(
    url: str, spark: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JG_TEST_SPARK_SECRET", SECRET)
    policy = spark.policy()
    policy.connections["demo"] = type(policy.connections["demo"])(name="demo", url=url)
    with pytest.raises(ConnectionFailed) as error:
        GovernedSession(policy, "bob").sql("SELECT 1")
    assert SECRET not in str(error.value)
    assert "Traceback" not in str(error.value)


def test_connector_session_is_not_handed_out_as_the_kernels_active_session(
    spark: Engine,
) -> None:
    from pyspark.sql.connect.session import SparkSession

    active = SparkSession.getActiveSession()
    assert active is not spark.connector.spark  # type: ignore[attr-defined]
