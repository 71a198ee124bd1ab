"""The team audit store on PostgreSQL: one chain and one approval queue for many kernels.

Every test runs against the live server at 127.0.0.1:5432 in its own ``store_<random>``
schema (see ``team_store_schemas`` in ``tests/conftest.py``); without the server they skip,
and with ``CI=true`` they fail.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from jupyter_gov.approvals import ApprovalError
from jupyter_gov.audit import AuditStore
from jupyter_gov.cli import main
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import AuditError
from tests.conftest import raw_sql

PROCESSES = 4
EVENTS = 40  # per process
DEADLINE = 120  # seconds: a guard against a hung worker, never a wait for something
UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 5"


@pytest.fixture
def team_url(team_store_schemas) -> str:
    return team_store_schemas()


def _appender(url: str, worker: int, barrier: Any) -> None:
    store = AuditStore(url)  # its own connection, as another kernel on another machine
    barrier.wait(timeout=DEADLINE)
    for n in range(EVENTS):
        store.append("attempt", query_id=f"w{worker}-e{n}", subject=f"user{worker}")
    store.close()


def test_processes_appending_at_once_keep_one_chain_with_every_event_once(team_url):
    AuditStore(team_url).append("sign_in", subject="setup")  # tables exist before the race
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    workers = [ctx.Process(target=_appender, args=(team_url, w, barrier)) for w in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=DEADLINE)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    store = AuditStore(team_url)
    ids = [e["query_id"] for e in store.events(kinds=["attempt"], limit=10_000)]
    expected = {f"w{w}-e{n}" for w in range(PROCESSES) for n in range(EVENTS)}
    assert sorted(ids) == sorted(expected)  # every event, each exactly once
    report = store.verify()
    assert report.ok, report
    assert report.rows == PROCESSES * EVENTS + 1


def test_threads_of_one_kernel_share_the_store_without_forking_it(team_url):
    import threading

    store = AuditStore(team_url)
    threads = [
        threading.Thread(
            target=lambda t=t: [store.append("attempt", subject=f"t{t}") for _ in range(10)]
        )
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE)
    assert store.count() == 40 and store.verify().ok


def test_an_edited_approval_row_is_found_by_verify(team_url, demo_connector):
    alice = GovernedSession(None, "alice", audit=team_url)
    alice.use_connector("demo", demo_connector)
    request = alice.request_approval(UPDATE, justification="customer called")
    raw_sql(alice.audit, f"UPDATE approvals SET state = 'approved' WHERE id = '{request.id}'")
    report = alice.audit.verify()
    assert not report.ok and request.id in report.reason


def test_a_forged_approval_in_the_team_store_does_not_run(team_url, demo_connector):
    alice = GovernedSession(None, "alice", audit=team_url)
    alice.use_connector("demo", demo_connector)
    request = alice.request_approval(UPDATE, justification="customer called")
    raw_sql(alice.audit, f"UPDATE approvals SET state = 'approved' WHERE id = '{request.id}'")
    with pytest.raises(ApprovalError, match="cannot be trusted"):
        alice.sql(UPDATE, approval_id=request.id)


def test_kernels_on_two_machines_share_one_approval_queue(team_url, demo_connector):
    alice = GovernedSession(None, "alice", audit=team_url)
    dave = GovernedSession(alice.policy, "dave", audit=team_url)  # another connection
    alice.use_connector("demo", demo_connector)
    dave.use_connector("demo", demo_connector)
    request = alice.request_approval(UPDATE, justification="customer called")
    assert [r.id for r in dave.approvals.actionable_by(dave.identity)] == [request.id]
    dave.approve(request.id, "checked")
    assert alice.approvals.get(request.id).state == "approved"
    assert alice.audit.verify().ok


def test_stores_in_two_schemas_are_two_chains(team_store_schemas):
    first, second = AuditStore(team_store_schemas()), AuditStore(team_store_schemas())
    first.append("attempt", subject="a")
    assert second.count() == 0 and first.count() == 1


def test_cli_verifies_and_tails_the_team_store(team_url, capsys):
    AuditStore(team_url).append("attempt", subject="bob", statement="SELECT ?")
    assert main(["audit", "verify", "--store", team_url]) == 0
    assert "audit chain ok: 1 events" in capsys.readouterr().out
    assert main(["audit", "tail", "--store", team_url, "--format", "json"]) == 0
    assert '"bob"' in capsys.readouterr().out


def test_cli_verify_fails_on_a_tampered_team_store(team_url, capsys):
    store = AuditStore(team_url)
    for subject in ("a", "b", "c"):
        store.append("attempt", subject=subject)
    raw_sql(store, "DELETE FROM events WHERE id = 2")
    assert main(["audit", "verify", "--store", team_url]) != 0
    assert "BROKEN at event 3" in capsys.readouterr().out


# -- fail closed, secrets never shown ----------------------------------------------------------


def test_an_unreachable_team_store_runs_nothing_and_says_why_in_one_sentence():
    with pytest.raises(AuditError) as caught:
        GovernedSession(None, "bob", audit="postgresql://gov@127.0.0.1:1/audit")
    message = str(caught.value)
    assert "cannot be reached" in message and "nothing runs until it can" in message
    assert "\n" not in message


def test_the_store_password_is_never_in_an_error(monkeypatch):
    monkeypatch.setenv("GOV_STORE_PASSWORD", "env-secret-42")
    for url in (
        "postgresql://gov:literal-secret-7@127.0.0.1:1/audit",
        "postgresql://gov:${GOV_STORE_PASSWORD}@127.0.0.1:1/audit",
        "postgresql://gov@127.0.0.1:1/audit?password=query-secret-9",
    ):
        with pytest.raises(AuditError) as caught:
            AuditStore(url)
        for secret in ("literal-secret-7", "env-secret-42", "query-secret-9"):
            assert secret not in str(caught.value)


def test_an_unset_variable_in_the_store_url_is_named_and_nothing_runs(monkeypatch):
    monkeypatch.delenv("GOV_STORE_HOST", raising=False)
    with pytest.raises(AuditError, match=r"\$\{GOV_STORE_HOST\}, which is not set"):
        AuditStore("postgresql://gov@${GOV_STORE_HOST}/audit")


def test_a_schema_that_is_not_a_plain_name_is_refused():
    with pytest.raises(AuditError, match="plain name"):
        AuditStore('postgresql://gov@127.0.0.1:1/audit?schema=x";DROP')
