"""Spark's own ways out of the policy, and what the Spark connector enforces on the server.

The dangers are denied for an administrator, on the live server. The connector is then
called directly, with statements the guardrails would never let through, to prove the
second line: the session refuses file paths as tables, a read-only connection runs only
queries, non-query statements are refused, and interrupting or timing out cancels the job
on the cluster (the probe after it needs both of ``local[2]``'s cores, so it only finishes
if the busy job was really cancelled).
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import ConnectionFailed, QueryFailed
from jupyter_gov.result import QueryDenied
from tests.connectors.conftest import Engine, _connection

pytestmark = pytest.mark.server

DANGERS = [
    "ADD JAR '/tmp/jupyter_gov.jar'",
    "ADD FILE '/etc/passwd'",
    "SELECT reflect('java.lang.Runtime', 'getRuntime')",
    "SELECT java_method('java.lang.System', 'getenv', 'HOME')",
    "SELECT try_reflect('java.lang.System', 'getenv', 'HOME')",
    "SELECT * FROM parquet.`/tmp/jupyter_gov`",
    "SELECT * FROM csv.`file:///etc/passwd`",
    "SELECT * FROM `json`.`/etc/passwd`",
    "SELECT * FROM read_files('/etc/passwd')",
    "SELECT input_file_name() FROM customers",
    "CACHE TABLE customers",
    "CACHE TABLE leak AS SELECT * FROM customers",
    "UNCACHE TABLE customers",
    "CLEAR CACHE",
    "REFRESH TABLE customers",
    "REFRESH '/tmp/jupyter_gov'",
    "INSERT OVERWRITE DIRECTORY '/tmp/jupyter_gov_out' SELECT * FROM customers",
    "INSERT OVERWRITE LOCAL DIRECTORY '/tmp/jupyter_gov_out' SELECT * FROM customers",
    "INSERT OVERWRITE DIRECTORY '/tmp/jupyter_gov_out' USING parquet SELECT * FROM customers",
    "SET spark.sql.runSQLOnFiles = true",
    "SET spark.sql.ansi.enabled = false",
    "RESET",
    "CREATE FUNCTION leak AS 'com.example.Leak' USING JAR '/tmp/jupyter_gov.jar'",
    "CREATE TEMPORARY FUNCTION leak AS 'com.example.Leak'",
    "CREATE TEMPORARY VIEW raw_customers AS SELECT * FROM customers",
]

#: Keeps both of the server's cores busy for hours; only a cancel stops it.
BUSY = "SELECT sum(id % 7) AS s FROM range(0, 10000000000000, 1, 2)"
#: Needs a free core: it finishes only once BUSY is gone.
PROBE = "SELECT count(*) AS n FROM range(0, 1000, 1, 2)"


def _probe(connector: Any) -> int:
    connector.timeout_s = 120  # a cancel that failed shows as a timeout, not a hang
    return connector.execute(PROBE, {}).read_all().column(0)[0].as_py()


@pytest.fixture
def own(spark: Engine) -> Any:
    """A connector of its own (the cancel tests change its timeout)."""
    connector = registry.profiles()["spark"].open(_connection(spark.url))
    yield connector
    connector.close()


@pytest.mark.parametrize("sql", DANGERS)
def test_spark_danger_is_denied_even_for_an_admin(spark: Engine, sql: str) -> None:
    policy = spark.policy(environment="development")  # no approval rule in the way
    with pytest.raises(QueryDenied):
        spark.session("alice", policy).sql(sql)


def test_profile_declares_sparks_dangerous_functions_and_file_formats() -> None:
    profile = registry.profiles()["spark"]
    assert {"reflect", "java_method", "try_reflect"} <= profile.dangerous_functions
    assert {"parquet", "csv", "json", "read_files"} <= profile.file_readers


def test_capabilities_claim_only_what_the_connector_enforces() -> None:
    capabilities = registry.profiles()["spark"].capabilities
    assert capabilities.cancel is False  # interrupting the cell is not proven to stop the job
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


def test_timeout_cancels_the_job_on_the_cluster(own: Any) -> None:
    own.timeout_s = 20  # past analysis: the job is running when the clock runs out
    with pytest.raises(QueryFailed, match="timeout"):
        own.execute(BUSY, {})
    assert _probe(own) == 1000


@pytest.mark.skip(
    reason="an interrupt that lands while Spark is still analysing the statement can leave "
    "the job running (seen in CI), which also starves the shared server; cancel is not claimed"
)
def test_interrupt_cancels_the_job_on_the_cluster(own: Any) -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            own.execute(BUSY, {})
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    while worker.is_alive():  # until the statement has started and been cancelled
        own.interrupt()
        worker.join(0.1)
    assert len(outcome) == 1 and isinstance(outcome[0], QueryFailed)
    assert _probe(own) == 1000


@pytest.mark.skip(
    reason="KeyboardInterrupt in the main thread did not reliably stop the Spark job "
    "(the probe waited behind it); Capabilities.cancel is False until it does"
)
def test_interrupting_the_cell_cancels_the_job_on_the_cluster(spark: Engine) -> None:
    """KeyboardInterrupt in the engine's execute path, as Jupyter's interrupt delivers it."""
    session = GovernedSession(spark.policy(environment="development"), "alice")
    session._connectors["demo"] = spark.connector
    connector = spark.connector

    def interrupt_once_running() -> None:
        while not connector.running:  # type: ignore[attr-defined]
            threading.Event().wait(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    with pytest.raises(QueryFailed, match="cancelled"):
        session.sql(BUSY)
    assert _probe(connector) == 1000


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
