"""Batches and group commit on the team audit store (PostgreSQL).

A batch is one server call: one lock, one head read, one INSERT, one commit. Concurrent
appends of one store object are committed together by one of their callers. Neither may
change a hash, lose or reorder an event, return before its events are committed, or
succeed when its commit failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.errors import AuditError
from tests.conftest import TEAM_STORE_SERVER, raw_sql

DEADLINE = 120  # seconds: a guard against a hung thread or process, never a wait
PROCESSES = 8
BATCHES = 6  # per process
THREADS = 8

#: Events with every kind of value the chain hashes: JSON fields, floats that are and are
#: not whole, a boolean, NULLs, text outside ASCII and characters JSON escapes.
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("attempt", {"ts": 1_700_000_000.125, "subject": "zoë", "statement": 'SELECT "ü" -- \\n'}),
    (
        "decision",
        {
            "ts": 1_700_000_000.0,
            "subject": "bob",
            "verified": True,
            "roles": ["analyst", "ops"],
            "masked_columns": {"email": "email", "név": "token"},
            "rules": [],
            "reasons": ["tab\there", 'quote " and emoji 😀'],
            "decision": "allow",
        },
    ),
    ("result", {"ts": 1_700_000_001.5, "rows": 3, "duration_ms": 0.1, "detail": {"a": None}}),
    ("result", {"ts": 1_700_000_002, "rows": 0.0, "token_expires_at": 1e20, "error": ""}),
]


@pytest.fixture
def team_url(team_store_schemas) -> str:
    return team_store_schemas()


def chain_links(store: AuditStore) -> list[tuple[str, str]]:
    """Every event's (prev_hash, hash), in chain order."""
    return [(e["prev_hash"], e["hash"]) for e in store.events(newest_first=False, limit=10_000)]


def advisory_lock_key(store: Any) -> tuple[int, int]:
    """The (classid, objid) under which ``pg_locks`` shows the store's advisory lock."""
    key = store._lock_key & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


def waiting_writer(admin: Any, store: Any, other_than: int | None = None) -> int:
    """The backend pid of the store's writer blocked on its advisory lock."""
    classid, objid = advisory_lock_key(store)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        rows = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s AND pid IS DISTINCT FROM %s",
            [classid, objid, other_than],
        ).fetchall()
        if rows:
            return int(rows[0][0])
        time.sleep(0.01)
    raise AssertionError("no writer came to wait on the store's lock")


def lock_holder(admin: Any, store: Any) -> int:
    """The backend pid holding the store's advisory lock, once one does."""
    classid, objid = advisory_lock_key(store)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        rows = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s",
            [classid, objid],
        ).fetchall()
        if rows:
            return int(rows[0][0])
        time.sleep(0.01)
    raise AssertionError("nobody took the store's lock")


def wait_until_queued(store: Any, count: int) -> None:
    """Until ``count`` batches wait behind the current leader."""
    deadline = time.monotonic() + DEADLINE
    while store._group().queued() < count:
        assert time.monotonic() < deadline, "the appends did not queue behind the leader"
        time.sleep(0.01)


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads at once; each one's result or raised error."""
    outcomes: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait(timeout=DEADLINE)
        try:
            outcomes[i] = work(i)
        except Exception as error:  # the outcome under test
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE)
    return outcomes


# -- batches ------------------------------------------------------------------------------


def test_a_batch_on_postgresql_hashes_exactly_as_the_same_events_on_sqlite(team_url, tmp_path):
    postgres = AuditStore(team_url)
    sqlite = AuditStore(tmp_path / "audit.sqlite")
    assert postgres.append_many(EVENTS) == [1, 2, 3, 4]
    sqlite.append_many(EVENTS)
    assert chain_links(postgres) == chain_links(sqlite)
    assert postgres.verify().ok and sqlite.verify().ok


def test_a_batch_hashes_exactly_as_the_same_events_appended_one_by_one(team_store_schemas):
    batched, single = AuditStore(team_store_schemas()), AuditStore(team_store_schemas())
    batched.append_many(EVENTS)
    for kind, event in EVENTS:
        single.append(kind, **event)
    assert chain_links(batched) == chain_links(single)


def test_a_batch_continues_the_chain_after_single_appends(team_url):
    store = AuditStore(team_url)
    store.append("sign_in", subject="a")
    store.append_many(EVENTS)
    store.append("sign_out", subject="a")
    report = store.verify()
    assert report.ok and report.rows == len(EVENTS) + 2


def test_a_batch_that_fails_midway_leaves_no_row_and_says_why_in_one_sentence(team_url):
    store = AuditStore(team_url)
    store.append("sign_in", subject="before")
    raw_sql(
        store,
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.subject = 'boom' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$",
    )
    raw_sql(
        store,
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON events FOR EACH ROW "
        "EXECUTE FUNCTION refuse_boom()",
    )
    batch = [("attempt", {"subject": "ok"}), ("decision", {"subject": "boom"}), ("result", {})]
    with pytest.raises(AuditError) as error:
        store.append_many(batch)
    message = str(error.value)
    assert message.startswith("The team audit store at") and "disk full" in message
    assert "the statement was not run." in message and "\n" not in message
    assert store.count() == 1
    store.append("sign_out", subject="after")
    assert store.verify().ok and store.count() == 2


def test_a_value_no_column_can_hold_fails_the_whole_batch_before_anything_is_sent(team_url):
    store = AuditStore(team_url)
    with pytest.raises(AuditError, match="the statement was not run"):
        store.append_many([("attempt", {"subject": "a"}), ("result", {"rows": "many"})])
    assert store.count() == 0


def _batch_appender(url: str, worker: int, barrier: Any) -> None:
    store = AuditStore(url)
    barrier.wait(timeout=DEADLINE)
    for n in range(BATCHES):
        size = (1, 2, 7)[n % 3]
        store.append_many(
            [("attempt", {"query_id": f"w{worker}-b{n}", "subject": f"{i}"}) for i in range(size)]
        )
    store.close()


def test_processes_appending_batches_at_once_keep_one_chain_and_every_batch_whole(team_url):
    AuditStore(team_url).append("sign_in", subject="setup")  # tables exist before the race
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    workers = [
        ctx.Process(target=_batch_appender, args=(team_url, w, barrier)) for w in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=DEADLINE)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    store = AuditStore(team_url)
    report = store.verify()
    sizes = [(1, 2, 7)[n % 3] for n in range(BATCHES)]
    assert report.ok, report
    assert report.rows == 1 + PROCESSES * sum(sizes)
    order = [e["query_id"] for e in store.events(newest_first=False, limit=10_000)][1:]
    runs = [order[0]]  # the chain as runs of one batch's events: each batch is one run
    for query_id in order[1:]:
        if query_id != runs[-1]:
            runs.append(query_id)
    assert sorted(runs) == sorted(f"w{w}-b{n}" for w in range(PROCESSES) for n in range(BATCHES))


# -- group commit -------------------------------------------------------------------------


def test_threads_get_their_own_ids_and_each_is_committed_when_returned(team_url):
    store = AuditStore(team_url)
    psycopg = pytest.importorskip("psycopg")

    def appender(t: int) -> list[tuple[int, str]]:
        mine = []
        with psycopg.connect(f"{TEAM_STORE_SERVER}", autocommit=True) as other:
            other.execute(f'SET search_path TO "{store.schema}"')
            for n in range(25):
                query_id = f"t{t}-{n}"
                if n % 5 == 4:
                    ids = store.append_many([("attempt", {"query_id": query_id})] * 2)
                else:
                    ids = [store.append("attempt", query_id=query_id)]
                for event_id in ids:  # visible to another connection: committed
                    row = other.execute(
                        "SELECT query_id FROM events WHERE id = %s", [event_id]
                    ).fetchone()
                    mine.append((event_id, row[0] if row else None))
        return mine

    outcomes = in_threads(THREADS, appender)
    returned = [pair for outcome in outcomes for pair in outcome]
    assert all(query_id is not None for _, query_id in returned)
    stored = {e["id"]: e["query_id"] for e in store.events(limit=10_000)}
    assert dict(returned) == stored  # each id names the caller's own event, and only those
    assert len(returned) == THREADS * 30
    assert store.verify().ok


def test_appends_queued_behind_a_commit_are_committed_together_in_one_transaction(team_url):
    store = AuditStore(team_url)
    store.append("sign_in", subject="setup")
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(TEAM_STORE_SERVER, autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", [store._lock_key])  # hold every writer
        leader = threading.Thread(target=store.append, args=("attempt",), kwargs={"query_id": "0"})
        leader.start()
        waiting_writer(admin, store)
        followers = threading.Thread(
            target=in_threads,
            args=(THREADS, lambda t: store.append("attempt", query_id=f"{t + 1}")),
        )
        followers.start()
        wait_until_queued(store, THREADS)
        admin.execute("SELECT pg_advisory_unlock(%s)", [store._lock_key])
        leader.join(timeout=DEADLINE)
        followers.join(timeout=DEADLINE)
    transactions = raw_sql(
        store, "SELECT xmin::text, count(*) FROM events WHERE kind = 'attempt' GROUP BY 1"
    )
    assert sorted(n for _, n in transactions) == [1, THREADS]
    assert store.count() == THREADS + 2 and store.verify().ok


def test_a_failed_group_commit_fails_every_waiter_and_writes_none_of_their_events(team_url):
    store = AuditStore(team_url)
    store.append("sign_in", subject="setup")
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(TEAM_STORE_SERVER, autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", [store._lock_key])
        outcomes: list[Any] = []
        leader = threading.Thread(
            target=lambda: outcomes.append(in_threads(1, lambda _: store.append("attempt"))[0])
        )
        leader.start()
        first = waiting_writer(admin, store)
        group = threading.Thread(
            target=lambda: outcomes.extend(
                in_threads(THREADS, lambda t: store.append_many([("attempt", {})] * (t % 3 + 1)))
            )
        )
        group.start()
        wait_until_queued(store, THREADS)
        admin.execute("SELECT pg_terminate_backend(%s)", [first])  # the leader's commit fails
        second = waiting_writer(admin, store, other_than=first)  # the next leader, all 8 queued
        admin.execute("SELECT pg_terminate_backend(%s)", [second])
        leader.join(timeout=DEADLINE)
        group.join(timeout=DEADLINE)
        admin.execute("SELECT pg_advisory_unlock(%s)", [store._lock_key])
    assert len(outcomes) == THREADS + 1
    for outcome in outcomes:
        assert isinstance(outcome, AuditError), outcome
        assert str(outcome).startswith("The team audit store at")
        assert "the statement was not run." in str(outcome)
    assert store.count() == 1
    store.append("sign_out", subject="after")  # a broken connection is replaced
    assert store.count() == 2 and store.verify().ok


def test_subscribers_see_every_committed_event_once_in_chain_order(team_url):
    store = AuditStore(team_url)
    seen: list[dict[str, Any]] = []

    def slow_subscriber(events: list[dict[str, Any]]) -> None:
        time.sleep(0.002)  # a window for a later commit to be published first
        seen.extend(events)

    store.subscribe(slow_subscriber)

    def appender(t: int) -> None:
        for n in range(20):
            if n % 4 == 3:
                store.append_many([("attempt", {"subject": f"{t}"}), ("decision", {})])
            else:
                store.append("result", subject=f"{t}")

    in_threads(THREADS, appender)
    chain = store.events(newest_first=False, limit=10_000)
    assert [e["id"] for e in seen] == [e["id"] for e in chain]
    assert [(e["prev_hash"], e["hash"]) for e in seen] == chain_links(store)


def test_a_subscriber_that_appends_from_its_callback_does_not_wait_for_itself(team_url):
    store = AuditStore(team_url)

    def echo(events: list[dict[str, Any]]) -> None:
        if any(e["kind"] == "attempt" for e in events):
            store.append("sink_failure", subject="echo")

    store.subscribe(echo)
    outcome = in_threads(1, lambda _: store.append("attempt"))
    assert outcome == [1]
    assert [e["kind"] for e in store.events(newest_first=False)] == ["attempt", "sink_failure"]


def test_an_append_inside_a_transaction_commits_alone_while_other_threads_queue(team_url):
    """A thread holding ``transaction()`` holds the chain's lock: queued appends of other
    threads must neither wait for it to lead them (a deadlock) nor join its transaction
    (they would return before it commits, or be rolled back with it)."""
    store = AuditStore(team_url)
    store.append("sign_in", subject="setup")
    psycopg = pytest.importorskip("psycopg")
    inside_done = threading.Event()

    def inside() -> None:
        with contextlib.suppress(RuntimeError), store.transaction():
            waiting_writer(admin, store)  # another thread leads, blocked on this lock
            wait_until_queued(store, 1)  # and one more is queued behind it
            store.append("attempt", subject="inside")
            inside_done.set()
            raise RuntimeError("rolled back")

    with psycopg.connect(TEAM_STORE_SERVER, autocommit=True) as admin:
        holder = threading.Thread(target=inside, daemon=True)
        holder.start()
        lock_holder(admin, store)  # the holder has the lock before the others come
        outside = threading.Thread(
            target=in_threads, args=(1, lambda _: store.append("attempt", subject="leader"))
        )
        outside.start()
        waiting_writer(admin, store)
        queued = threading.Thread(
            target=in_threads, args=(1, lambda _: store.append("attempt", subject="queued"))
        )
        queued.start()
        holder.join(timeout=DEADLINE)
        outside.join(timeout=DEADLINE)
        queued.join(timeout=DEADLINE)
    assert inside_done.is_set()
    subjects = sorted(e["subject"] for e in store.events())
    assert subjects == ["leader", "queued", "setup"] and store.verify().ok
