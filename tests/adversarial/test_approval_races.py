"""Approval races, with real processes released together by a barrier.

Before the fix a single-use approval ran twice in 5 of 20 trials with 4 processes, and an
approve and a deny by two approvers both succeeded. Every state change is now one
compare-and-set with its audit event in the same transaction: exactly one racer wins.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections import Counter
from typing import Any

import pytest

from jupyter_gov.approvals import ApprovalError
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from tests.conftest import require_server

UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 3"
PROCESSES = 6
TRIALS = int(os.environ.get("JUPYTER_GOV_RACE_TRIALS", "8"))  # `make stress` raises it
DEADLINE = 120  # seconds: a guard against a hung worker, never a wait for something


def two_approver_policy() -> Policy:
    """The demo policy with a second approver, grace."""
    data = copy.deepcopy(dict(Policy.load().data))
    data["identity"]["users"]["grace"] = {"display_name": "Grace", "groups": ["approvers"]}
    return Policy(data)


def _worker(url: str, data: dict, tasks: Any, results: Any, barrier: Any) -> None:
    """Take (action, user, request id) tasks; meet the others at the barrier; act at once."""
    policy = Policy(data)
    sessions: dict[str, GovernedSession] = {}
    while (task := tasks.get()) is not None:
        action, user, request_id = task
        if user not in sessions:
            sessions[user] = GovernedSession(policy, user, audit=url)
            if action == "run":
                sessions[user].explain(UPDATE)  # load the database before the race
        session = sessions[user]
        barrier.wait(timeout=DEADLINE)
        try:
            if action == "run":
                session.sql(UPDATE, approval_id=request_id)
                outcome = "ran"
            elif action == "approve":
                session.approve(request_id, "ok")
                outcome = "approved"
            else:
                session.deny(request_id, "no")
                outcome = "denied"
        except ApprovalError as error:
            outcome = type(error).__name__
        results.put(outcome)


class Racers:
    """``PROCESSES`` spawned workers that start each round together."""

    def __init__(self, url: str, policy: Policy) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(PROCESSES)
        self.results = ctx.Queue()
        self.queues = [ctx.Queue() for _ in range(PROCESSES)]
        self.workers = [
            ctx.Process(
                target=_worker, args=(url, dict(policy.data), q, self.results, self.barrier)
            )
            for q in self.queues
        ]
        for worker in self.workers:
            worker.start()

    def round(self, tasks: list[tuple[str, str, str]]) -> Counter[str]:
        for queue, task in zip(self.queues, tasks):
            queue.put(task)
        return Counter(self.results.get(timeout=DEADLINE) for _ in tasks)

    def close(self) -> None:
        for queue in self.queues:
            queue.put(None)
        for worker in self.workers:
            worker.join(timeout=DEADLINE)


@pytest.fixture
def team(store_url, demo_connector):
    """alice and dave in this process, the racers in others: one store (SQLite or team PG)."""
    policy = two_approver_policy()
    alice = GovernedSession(policy, "alice", audit=store_url)
    alice.use_connector("demo", demo_connector)
    dave = GovernedSession(policy, "dave", audit=alice.audit)
    racers = Racers(alice.audit.url, policy)
    yield alice, dave, racers
    racers.close()


def events_for(session: GovernedSession, request_id: str, kind: str) -> list[dict]:
    return [
        e
        for e in session.audit.events(kinds=[kind], limit=100_000)
        if (e.get("detail") or {}).get("approval_id") == request_id
    ]


def test_single_use_approval_runs_once_when_processes_race(team):
    alice, dave, racers = team
    for _ in range(TRIALS):
        request = alice.request_approval(UPDATE, justification="race")
        dave.approve(request.id)
        outcomes = racers.round([("run", "alice", request.id)] * PROCESSES)
        assert outcomes["ran"] == 1, outcomes
        assert outcomes["ApprovalRefused"] == PROCESSES - 1, outcomes
        assert alice.approvals.get(request.id).state == "used"
        assert len(events_for(alice, request.id, "approval_used")) == 1
    assert alice.audit.verify().ok


def test_approve_and_deny_by_two_approvers_never_both_succeed(team):
    alice, _, racers = team
    half = PROCESSES // 2
    for _ in range(TRIALS):
        request = alice.request_approval(UPDATE, justification="race")
        tasks = [("approve", "dave", request.id)] * half
        tasks += [("deny", "grace", request.id)] * (PROCESSES - half)
        outcomes = racers.round(tasks)
        winners = outcomes["approved"] + outcomes["denied"]
        assert winners == 1 and outcomes["ApprovalConflict"] == PROCESSES - 1, outcomes
        final = alice.approvals.get(request.id).state
        assert outcomes[final] == 1  # the row says what the winner did
        decisions = events_for(alice, request.id, "approval_approved")
        decisions += events_for(alice, request.id, "approval_denied")
        assert [e["decision"] for e in decisions] == [final]
    assert alice.audit.verify().ok


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_worker(table: str, tasks: Any, results: Any, barrier: Any) -> None:
    """A racer: for each request id, the store's compare-and-set for a use, on PostgreSQL."""
    import adbc_driver_postgresql.dbapi as pg

    from jupyter_gov.approvals import compare_and_set_sql

    sql = compare_and_set_sql(counting=True).replace("approvals", table)
    for n in range(1, 7):  # the driver's parameter style; the statement is the store's
        sql = sql.replace("?", f"${n}", 1)
    with pg.connect(PG_URL) as con, con.cursor() as cursor:
        while (request_id := tasks.get()) is not None:
            barrier.wait(timeout=DEADLINE)
            cursor.execute(sql + " RETURNING id", ("used", 1, "{}", request_id, "approved", 0))
            won = len(cursor.fetchall())
            con.commit()
            results.put(won)


def test_compare_and_set_lets_exactly_one_racer_use_an_approval_on_postgresql():
    try:
        import adbc_driver_postgresql.dbapi as pg

        admin = pg.connect(PG_URL)
    except Exception:  # any failure to connect means: no server here
        require_server("PostgreSQL at 127.0.0.1:5432")
    table = f"approvals_race_{os.getpid()}"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    queues = [ctx.Queue() for _ in range(PROCESSES)]
    racers = [ctx.Process(target=_pg_worker, args=(table, q, results, barrier)) for q in queues]
    with admin.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL,"
            " uses INTEGER NOT NULL DEFAULT 0, max_uses INTEGER NOT NULL DEFAULT 1)"
        )
        admin.commit()
        for racer in racers:
            racer.start()
        try:
            for trial in range(TRIALS):
                request_id = f"r{trial}"
                cursor.execute(
                    f"INSERT INTO {table} (id, state, body) VALUES ($1, 'approved', '{{}}')",
                    (request_id,),
                )
                admin.commit()
                for queue in queues:
                    queue.put(request_id)
                wins = [results.get(timeout=DEADLINE) for _ in racers]
                assert sum(wins) == 1, wins
        finally:
            for queue in queues:
                queue.put(None)
            for racer in racers:
                racer.join(timeout=DEADLINE)
            cursor.execute(f"DROP TABLE {table}")
            admin.commit()
            admin.close()
