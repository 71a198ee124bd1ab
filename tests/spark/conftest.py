"""One local Spark Connect server (``local[2]``) for the whole test session, holding the demo data.

The server is the pyspark wheel's own ``SparkConnectServer``, started with ``spark-submit``
from the wheel's jars (nothing is downloaded), bound to loopback on a free port, with its
warehouse in a temporary folder. Readiness is polled (the port answers, or the process
has died); the server is stopped when the session ends. Without Java or the Spark Connect
client the tests skip with the reason, and fail when ``CI=true``.

The demo tables go into Spark's ``default`` schema; the first customers are copied into a
second schema, ``jupyter_gov_analytics``, as on the other engines.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.demo import demo_tables
from tests.conftest import require_server
from tests.connectors.conftest import OTHER, OTHER_ROWS, Engine, _connection, _duckdb

#: How long the JVM may take to start serving (it takes 10-25 s on two busy cores).
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _missing() -> str | None:
    """Why a Spark Connect server cannot be started here, or None."""
    if shutil.which("java") is None:
        return "Spark tests need a Java runtime (java is not on PATH)"
    try:
        import grpc  # noqa: F401
        import pyspark
        from pyspark.sql.connect.session import SparkSession  # noqa: F401
    except ImportError as error:
        return f"Spark tests need pyspark[connect] ({error.name} is missing)"
    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-submit").exists():
        return "the pyspark wheel has no bin/spark-submit"
    return None


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``sc://127.0.0.1:PORT`` of a Spark Connect server running for the whole session."""
    reason = _missing()
    if reason:
        require_server(reason)
    import pyspark

    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark")
    port = _free_port()
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.sql.catalogImplementation": "in-memory",
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={work}",
    }
    command = [str(home / "bin" / "spark-submit"), "--master", "local[2]"]
    command += ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += ["--name", "jupyter-gov-tests", "spark-internal"]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        for _ in range(START_TIMEOUT_S * 5):
            if _answers(port):
                break
            try:
                server.wait(timeout=0.2)  # the poll interval; returns at once if it died
            except subprocess.TimeoutExpired:
                continue
            tail = (work / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"the Spark Connect server exited ({server.returncode}):\n{tail}")
        else:
            pytest.fail(f"the Spark Connect server did not answer on port {port}")
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _load(url: str) -> None:
    """Write the demo tables into ``default`` and a copy of customers into the second schema."""
    from pyspark.sql.connect.session import SparkSession

    spark: Any = SparkSession(connection=url)
    try:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        tables = demo_tables()
        loads = [("default", name, table) for name, table in tables.items()]
        loads.append((OTHER, "customers", tables["customers"].slice(0, OTHER_ROWS)))
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {OTHER}")
        for schema, name, table in loads:
            spark.createDataFrame(table).write.mode("overwrite").saveAsTable(f"{schema}.{name}")
    finally:
        spark.stop()


@pytest.fixture(scope="session")
def spark(spark_server: str) -> Iterator[Engine]:
    """The demo data on the Spark Connect server, and one governed connector to it."""
    _load(spark_server)
    connector = registry.profiles()["spark"].open(_connection(spark_server))
    yield Engine("spark", spark_server, connector, OTHER)
    connector.close()


@pytest.fixture(scope="session")
def duckdb_reference() -> Iterator[Engine]:
    """DuckDB with the same data, whose masked values Spark must return."""
    engine = _duckdb()
    yield engine
    engine.connector.close()


@pytest.fixture
def raw_spark(spark_server: str) -> Iterator[Any]:
    """An ungoverned session, for test setup and for looking at the server's state."""
    from pyspark.sql.connect.session import SparkSession

    session: Any = SparkSession(connection=spark_server)
    yield session
    session.stop()
