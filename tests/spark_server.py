"""One local Spark Connect server (``local[2]``) for the whole test session.

The server is the pyspark wheel's own ``SparkConnectServer``, started with ``spark-submit``
from the wheel's jars (nothing is downloaded), bound to loopback on a free port, with its
warehouse in a temporary folder. Its web UI listens on another free loopback port: the
cancel tests read the server's job list from its REST API (``/api/v1/.../jobs``).
Readiness is polled (the port answers, or the process has died); the server is stopped
when the session ends. Without Java or the Spark Connect client the tests skip with the
reason, and fail when ``CI=true``.

The fixtures are registered by ``tests/conftest.py``, so ``tests/connectors`` (Spark in the
engine matrix), ``tests/spark`` and the notebook tests share the one server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
def spark_ui_port() -> int:
    """The loopback port of the test server's web UI (its REST API lists the jobs)."""
    return _free_port()


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory: pytest.TempPathFactory, spark_ui_port: int) -> Iterator[str]:
    """``sc://127.0.0.1:PORT`` of a Spark Connect server running for the whole session."""
    reason = _missing()
    if reason:
        from tests.conftest import require_server

        require_server(reason)
    import pyspark

    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark")
    port = _free_port()
    while port == spark_ui_port:  # the OS may hand out a just-closed port again
        port = _free_port()
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "true",
        "spark.ui.port": str(spark_ui_port),
        "spark.port.maxRetries": "0",
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


@pytest.fixture(scope="session")
def spark_jobs(spark_server: str, spark_ui_port: int) -> Callable[[str], dict[int, str]]:
    """``spark_jobs(tag)``: ``{job id: status}`` of the server's jobs run under ``tag``.

    Spark Connect gives every job of an operation tagged with ``addTag(tag)`` the job tag
    ``SparkConnect_SessionTag_..._Tag_<tag>``; the web UI's REST API lists jobs with their
    tags and status (``RUNNING``, ``SUCCEEDED``, ``FAILED``).
    """
    base = f"http://127.0.0.1:{spark_ui_port}/api/v1/applications"

    def get(url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def jobs(tag: str) -> dict[int, str]:
        (app,) = get(base)
        return {
            job["jobId"]: job["status"]
            for job in get(f"{base}/{app['id']}/jobs")
            if any(t.endswith(f"_Tag_{tag}") for t in job.get("jobTags", []))
        }

    return jobs
