"""``unclassified: auto`` profiles once per connector and catalog version, not per session."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.pii import auto

POLICY = {
    "name": "cache",
    "version": 1,
    "connections": {"db": {"url": "duckdb:memory"}},
    "roles": {"analyst": {"users": ["bob"], "connections": ["db"]}},
    "unclassified": "auto",
}


@pytest.fixture
def profiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables each profiling run sampled, in order."""
    runs: list[str] = []
    original = auto.profile_catalog

    def counting(connector, catalog, dialect, todo, rows):  # type: ignore[no-untyped-def]
        runs.append(",".join(sorted(t for _, t in todo)))
        time.sleep(0.05)  # widens the window two racing first statements would both enter
        return original(connector, catalog, dialect, todo, rows)

    monkeypatch.setattr(auto, "profile_catalog", counting)
    return runs


def _connector(emails: bool) -> DuckDBConnector:
    connector = DuckDBConnector("db", "duckdb:memory")
    value = "'user' || i || '@example.com'" if emails else "'note ' || i"
    connector.con.execute(f"CREATE TABLE t AS SELECT i, {value} AS contact FROM range(50) r(i)")
    return connector


@pytest.fixture
def shared() -> Iterator[DuckDBConnector]:
    connector = _connector(emails=True)
    yield connector
    connector.close()


def _session(connector: DuckDBConnector, audit: str | None = None) -> GovernedSession:
    from jupyter_gov.policy import Policy

    session = GovernedSession(Policy(POLICY), "bob", audit=audit)
    session.use_connector("db", connector)
    return session


def test_sessions_sharing_a_connector_profile_once_per_catalog_version(shared, profiled):
    for _ in range(3):
        session = _session(shared)
        session.sql("SELECT contact FROM t LIMIT 1")
        session.sql("SELECT count(*) FROM t")
    assert profiled == ["t"]


def test_a_new_column_profiles_again(shared, profiled):
    _session(shared).sql("SELECT 1")
    shared.con.execute("ALTER TABLE t ADD COLUMN mail VARCHAR DEFAULT 'x@example.org'")
    shared.catalog(refresh=True)
    got = _session(shared).sql("SELECT mail FROM t LIMIT 1").arrow().column(0).to_pylist()
    assert len(profiled) == 2 and got == ["<EMAIL_ADDRESS>"]


def test_a_session_reusing_a_profile_still_audits_its_findings(shared, profiled, tmp_path):
    _session(shared).sql("SELECT 1")
    second = _session(shared, audit=f"sqlite:///{tmp_path / 'other-audit.sqlite'}")
    second.sql("SELECT 1")
    [event] = second.audit.events(kinds=["classification"])
    assert event["detail"]["tag"] == "email" and event["detail"]["cached"] is True
    assert profiled == ["t"]


def test_connectors_with_alike_catalogs_never_share_findings(profiled):
    clean, holding = _connector(emails=False), _connector(emails=True)
    try:
        assert clean.catalog().version == holding.catalog().version
        assert _session(clean).sql("SELECT contact FROM t LIMIT 1").arrow().num_rows == 1
        got = _session(holding).sql("SELECT contact FROM t LIMIT 1").arrow()
        assert "@example.com" not in str(got.to_pylist()) and len(profiled) == 2
    finally:
        clean.close()
        holding.close()


def test_concurrent_first_statements_on_one_connector_profile_once(shared, profiled):
    import threading

    sessions = [_session(shared) for _ in range(4)]
    start = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def first_statement(session: GovernedSession) -> None:
        start.wait()
        try:
            session.sql("SELECT contact FROM t LIMIT 1").arrow()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first_statement, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and profiled == ["t"]
