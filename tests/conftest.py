"""Shared fixtures: a temporary jupyter-gov home, the demo database, sessions per user."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy


def require_server(reason: str) -> None:
    """Skip a test that needs a server, unless CI=true, where a missing server is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def gov_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own audit store and masking key."""
    home = tmp_path / "gov-home"
    monkeypatch.setenv("JUPYTER_GOV_HOME", str(home))
    monkeypatch.delenv("JUPYTER_GOV_POLICY", raising=False)
    monkeypatch.setenv("JUPYTER_GOV_MASK_KEY", "test-masking-key-0123456789abcdef")
    return home


@pytest.fixture(scope="session")
def demo_connector() -> Iterator[DuckDBConnector]:
    """One locked-down demo database shared by read-only tests (building it takes ~1 s)."""
    connector = DuckDBConnector("demo", "duckdb:demo")
    yield connector
    connector.close()


@pytest.fixture(scope="session")
def demo_policy() -> Policy:
    return Policy.load()


@pytest.fixture
def session_for(
    demo_connector: DuckDBConnector, demo_policy: Policy
) -> Callable[[str], GovernedSession]:
    """``session_for("bob")``: a governed session on the shared demo database."""

    def make(user: str, policy: Policy | None = None) -> GovernedSession:
        session = GovernedSession(policy or demo_policy, user)
        session.use_connector("demo", demo_connector)
        return session

    return make


@pytest.fixture
def raw(demo_connector: DuckDBConnector):
    """Ungoverned reads of the demo database, to compare against."""

    def query(sql: str) -> list[tuple]:
        return demo_connector.con.execute(sql).fetchall()

    return query


TEAM_STORE_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def team_store_schemas() -> Iterator[Callable[[], str]]:
    """``new()``: the URL of an empty team audit store in its own ``store_<random>`` schema.

    Each call is a fresh schema (a chain per test); all of them are dropped at the end.
    Skips (fails when CI=true) without PostgreSQL at 127.0.0.1:5432.
    """
    import uuid

    try:
        import psycopg

        admin = psycopg.connect(TEAM_STORE_SERVER, autocommit=True, connect_timeout=5)
    except Exception:  # psycopg missing or no server: the team store cannot be tested
        admin = None
    prefix = f"store_{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def new() -> str:
        if admin is None:
            require_server("PostgreSQL at 127.0.0.1:5432 for the team audit store")
        made.append(f"{prefix}_{len(made)}")
        return f"{TEAM_STORE_SERVER}?schema={made[-1]}"

    yield new
    if admin is not None:
        for schema in made:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit store's URL, once per kind of store (SQLite file, team PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    return request.getfixturevalue("team_store_schemas")()


def raw_sql(store: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` placeholders) on a store's tables behind its back, as someone with
    direct database access could; return the rows."""
    if store.url.startswith("postgres"):
        import psycopg

        with psycopg.connect(store.url.split("?")[0], autocommit=True) as db:
            db.execute(f'SET search_path TO "{store.schema}"')
            cursor = db.execute(sql.replace("?", "%s"), args or None)
            return cursor.fetchall() if cursor.description else []
    import sqlite3

    db = sqlite3.connect(store.path, isolation_level=None)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# One Spark Connect server per test session, shared by tests/connectors (Spark in the engine
# matrix), tests/spark and the notebook tests; it starts only when a test asks for it.
# One JupyterHub per test session (registered here, once: a session fixture imported into
# several modules would start one Hub per module), for tests/identity, tests/gateway and
# tests/adversarial; it starts only when a test asks for it.
from tests.hub_server import jupyterhub_server  # noqa: E402, F401
from tests.spark_server import spark_jobs, spark_server, spark_ui_port  # noqa: E402, F401
