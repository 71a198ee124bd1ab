"""The Spark tests' fixtures: the demo data on the session's Spark Connect server.

The server itself (``spark_server``, ``spark_jobs``) is started once per test session by
``tests/spark_server.py``; the demo data and the governed connector are the engine
matrix's (``tests/connectors/conftest.py``), so Spark is loaded once however many
directories run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.connectors.conftest import Engine, load_engine
from tests.connectors.conftest import live_engines as live_engines  # the fixture


@pytest.fixture(scope="session")
def spark(spark_server: str, live_engines: Any) -> Engine:
    """The demo data on the Spark Connect server, and one governed connector to it."""
    return load_engine("spark", spark_server)


@pytest.fixture(scope="session")
def duckdb_reference(live_engines: Any) -> Engine:
    """DuckDB with the same data, whose masked values Spark must return."""
    return load_engine("duckdb")


@pytest.fixture
def raw_spark(spark_server: str) -> Iterator[Any]:
    """An ungoverned session, for test setup and for looking at the server's state."""
    from pyspark.sql.connect.session import SparkSession

    session: Any = SparkSession(connection=spark_server)
    yield session
    session.stop()
