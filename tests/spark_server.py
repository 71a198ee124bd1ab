"""One local Spark Connect server (``local[2]``) for the whole test session.

The server is ``jupyter_gov.connectors.spark_local.local_server`` (the pyspark wheel's own
``SparkConnectServer`` on loopback, the same start-up ``bench/spark_tpch.py`` uses), with
its web UI on another free loopback port: the cancel tests read the server's job list from
its REST API (``/api/v1/.../jobs``). Without Java or the Spark Connect client the tests
skip with the reason, and fail when ``CI=true``.

The fixtures are registered by ``tests/conftest.py``, so ``tests/connectors`` (Spark in the
engine matrix), ``tests/spark`` and the notebook tests share the one server.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from jupyter_gov.connectors.spark_local import ServerFailed, free_port, local_server, missing


@pytest.fixture(scope="session")
def spark_ui_port() -> int:
    """The loopback port of the test server's web UI (its REST API lists the jobs)."""
    return free_port()


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory: pytest.TempPathFactory, spark_ui_port: int) -> Iterator[str]:
    """``sc://127.0.0.1:PORT`` of a Spark Connect server running for the whole session."""
    reason = missing()
    if reason:
        from tests.conftest import require_server

        require_server(reason)
    conf = {
        "spark.ui.enabled": "true",
        "spark.ui.port": str(spark_ui_port),
        "spark.port.maxRetries": "0",
        "spark.sql.shuffle.partitions": "2",
    }
    with ExitStack() as stack:
        try:
            url = stack.enter_context(
                local_server(tmp_path_factory.mktemp("spark"), name="jupyter-gov-tests", conf=conf)
            )
        except ServerFailed as error:
            pytest.fail(str(error))
        yield url


@pytest.fixture(scope="session")
def spark_jobs(spark_server: str, spark_ui_port: int) -> Callable[[str], dict[int, str]]:
    """``spark_jobs(tag)``: ``{job id: status}`` of the server's jobs run under ``tag``.

    Spark Connect gives every job of an operation tagged with ``addTag(tag)`` the job tag
    ``SparkConnect_SessionTag_..._Tag_<tag>``; the web UI's REST API lists jobs with their
    tags and status (``RUNNING``, ``SUCCEEDED``, ``FAILED``).
    """
    base = f"http://127.0.0.1:{spark_ui_port}/api/v1/applications"

    def get(url: str) -> Any:
        # The UI answers slowly on a loaded machine; a slow answer is not a failed cancel.
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.load(response)

    def jobs(tag: str) -> dict[int, str]:
        (app,) = get(base)
        return {
            job["jobId"]: job["status"]
            for job in get(f"{base}/{app['id']}/jobs")
            if any(t.endswith(f"_Tag_{tag}") for t in job.get("jobTags", []))
        }

    return jobs
