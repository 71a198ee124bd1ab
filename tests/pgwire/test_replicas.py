"""Two gateway replicas, one team store: stateless front doors that share approvals and one
audit chain.

Two ``jupyter-gov gateway pgwire`` processes (the Arrow Flight gateway's own replicas are
tested with it) share the PostgreSQL team store. A write that needs approval is requested
through replica A, approved through replica B by an approver, and run through A; both
replicas append to one chain, which verifies. Skips without PostgreSQL (fails when CI=true).
"""

from __future__ import annotations

import re

import psycopg
import pytest

from jupyter_gov.audit import AuditStore
from tests.pgwire.conftest import TOKENS

UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 5"

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def replicas(pgwire_factory, team_store_schemas):
    url = team_store_schemas()
    AuditStore(url).append("sign_in", subject="setup")  # the tables exist before both start
    return pgwire_factory.start(url, replicas=2)


def test_a_request_made_through_one_replica_is_approved_through_the_other(replicas):
    a, b = replicas
    with psycopg.connect(a.dsn(TOKENS["writer"]), autocommit=True) as writer:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as needed:
            writer.execute(UPDATE)
        request_id = re.search(r"approval request (\w+)", str(needed.value)).group(1)
        with psycopg.connect(b.dsn(TOKENS["ops"]), autocommit=True) as approver:
            row = approver.execute(f"SELECT jupyter_gov_approve('{request_id}', 'ok')").fetchone()
        assert row == (request_id, "approved")
        cursor = writer.execute(UPDATE)  # the same run, re-run: the approval now covers it
        assert cursor.statusmessage == "UPDATE 1"
    store = AuditStore(a.store)
    kinds = [e["kind"] for e in store.events(limit=100, newest_first=False)]
    for kind in ("approval_requested", "approval_approved", "approval_used"):
        assert kinds.count(kind) == 1
    approved = store.events(kinds=["approval_approved"], limit=1)[0]
    assert (approved["subject"], approved["auth_method"]) == ("ops", "service-token")


def test_both_replicas_write_one_chain_that_verifies(replicas):
    a, b = replicas
    query = "SELECT full_name FROM customers WHERE customer_id = 7"
    names = []
    for replica in (a, b, a, b):
        with psycopg.connect(replica.dsn(TOKENS["etl"]), autocommit=True) as conn:
            names.append(conn.execute(query).fetchone()[0])
    assert len(set(names)) == 1 and names[0].startswith("person_name_")  # one key, one token
    store = AuditStore(a.store)
    report = store.verify()
    assert report.ok, report
    assert report.rows == store.count()
    sessions = {e["session_id"] for e in store.events(kinds=["result"], subject="etl")}
    assert len(sessions) == 4  # four client sessions, across both processes, one chain
