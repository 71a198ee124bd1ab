"""The gateway's engine sessions are bounded: one per identity, closed (with their database
connections) after ``--idle-timeout`` seconds unused or, beyond ``--max-sessions``, least
recently used first; never while a call of theirs runs or a result of theirs streams.

The pool is :class:`jupyter_gov.gateway.server.SessionPool` with the demo policy's real
DuckDB connector and a clock the test moves; the last test runs it inside a real gateway.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.flight as flight
import pytest

from jupyter_gov.errors import GovError, QueryFailed, UsageError
from jupyter_gov.gateway import protocol
from jupyter_gov.gateway.server import (
    DEFAULT_IDLE_SECONDS,
    DEFAULT_MAX_SESSIONS,
    GatewayServer,
    SessionPool,
)
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.service import token_digest
from jupyter_gov.policy import Policy

ALICE = Identity("alice", "Alice", "local", groups=("admins",))
BOB = Identity("bob", "Bob", "local", groups=("analysts",))
CAROL = Identity("carol", "Carol", "local", groups=("analysts",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pool_for(tmp_path: Path, clock: Clock, **kwargs: float) -> SessionPool:
    store = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    return SessionPool(Policy.load(None), store, clock=clock, **kwargs)  # type: ignore[arg-type]


def used(pool: SessionPool, identity: Identity) -> object:
    """Run one statement as ``identity``; the session's connector it ran on."""
    with pool.lease(identity) as session:
        session.sql("SELECT 1 AS one").fetchall()
        return session.connector()


def test_the_defaults_are_documented_numbers() -> None:
    assert (DEFAULT_MAX_SESSIONS, DEFAULT_IDLE_SECONDS) == (256, 900.0)


def test_a_session_idle_past_the_timeout_is_closed_with_its_connections(
    tmp_path: Path, clock: Clock
) -> None:
    pool = pool_for(tmp_path, clock, idle_seconds=60)
    connector = used(pool, ALICE)
    clock.now += 59
    assert pool.expire() == 0 and ALICE in pool
    clock.now += 1
    assert pool.expire() == 1 and ALICE not in pool
    with pytest.raises(QueryFailed, match="closed"):
        connector.execute("SELECT 1", {}).read_all()  # type: ignore[attr-defined]


def test_an_identitys_next_call_after_expiry_gets_a_fresh_session(
    tmp_path: Path, clock: Clock
) -> None:
    pool = pool_for(tmp_path, clock, idle_seconds=60)
    first = used(pool, ALICE)
    clock.now += 61
    second = used(pool, ALICE)
    assert second is not first and len(pool) == 1


def test_beyond_the_maximum_the_least_recently_used_session_is_closed(
    tmp_path: Path, clock: Clock
) -> None:
    pool = pool_for(tmp_path, clock, max_sessions=2)
    used(pool, ALICE)
    used(pool, BOB)
    used(pool, ALICE)  # alice is now the most recent
    used(pool, CAROL)
    assert (ALICE in pool, BOB in pool, CAROL in pool) == (True, False, True)
    assert pool.evicted == 1


def test_a_session_with_a_call_running_is_never_closed(tmp_path: Path, clock: Clock) -> None:
    pool = pool_for(tmp_path, clock, idle_seconds=60, max_sessions=1)
    entry = pool.acquire(ALICE)  # a call (or a streaming result) holds it
    try:
        clock.now += 3600
        assert pool.expire() == 0
        used(pool, BOB)  # over the maximum, but alice's session is busy
        assert ALICE in pool
        assert entry.session.sql("SELECT 2 AS two").fetchall() == [(2,)]
    finally:
        pool.release(entry)


def test_a_second_call_of_the_same_identity_waits_and_then_says_why(
    tmp_path: Path, clock: Clock
) -> None:
    pool = pool_for(tmp_path, clock, wait_seconds=0.05)
    entry = pool.acquire(ALICE)
    try:
        with pytest.raises(GovError, match="Another call of yours is still running"):
            pool.acquire(ALICE)
    finally:
        pool.release(entry)
    used(pool, ALICE)  # free again


@pytest.mark.parametrize(("option", "value"), [("max_sessions", 0), ("idle_seconds", 0)])
def test_a_pool_that_could_keep_nothing_is_refused(
    tmp_path: Path, clock: Clock, option: str, value: float
) -> None:
    with pytest.raises(UsageError):
        pool_for(tmp_path, clock, **{option: value})


def test_a_gateway_closes_its_callers_idle_sessions(tmp_path: Path) -> None:
    """In a real gateway: a caller's session exists after a call, and not once idle."""
    from importlib.resources import files

    import yaml

    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    etl = {"token_sha256": token_digest("s3cret-etl-0123"), "roles": ["admin"]}
    data["services"] = {"etl": etl}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(data))
    server = GatewayServer(
        tmp_path / "policy.yaml",
        audit_store=f"sqlite:///{tmp_path / 'audit.sqlite'}",
        idle_seconds=3600,
    )
    clock = Clock()
    server.sessions.clock = clock
    client = flight.FlightClient(f"grpc://127.0.0.1:{server.port}")
    options = flight.FlightCallOptions(
        headers=[(b"authorization", b"Bearer service:etl:s3cret-etl-0123")]
    )
    try:
        list(client.do_action(flight.Action("hello", protocol.dumps({})), options))
        assert len(server.sessions) == 1
        clock.now += 3600
        assert server.sessions.expire() == 1 and len(server.sessions) == 0
    finally:
        client.close()
        server.shutdown()
