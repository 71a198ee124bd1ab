"""Eight notebooks querying one gateway at once: every query audited exactly once (attempt,
decision, result), and the chain verifies. (Latency under load is measured in
bench/gateway.py, not asserted here.)"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from jupyter_gov.audit import AuditStore
from tests.gateway.conftest import Gateway, audit_events

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]

CLIENTS = 8
QUERIES = 6  # per client here; 500 in bench/gateway.py
USERS = ("gw-alice", "gw-bob", "gw-dave")


def test_concurrent_clients_each_query_audited_once_and_the_chain_verifies(
    gateway: Gateway,
) -> None:
    for sub in USERS:
        gateway.token(sub)  # tokens first, so the clients start together

    def client(number: int) -> list[str]:
        session = gateway.session(USERS[number % len(USERS)])
        ids = []
        for i in range(QUERIES):
            result = session.sql(
                "SELECT count(*) AS n, min(email) AS e FROM customers WHERE customer_id > :i",
                {"i": number * 100 + i},
            )
            assert result.arrow().column("n").to_pylist() == [10_000 - number * 100 - i]
            ids.append(result.query_id)
        session.close()
        return ids

    with ThreadPoolExecutor(CLIENTS) as pool:
        query_ids = [q for ids in pool.map(client, range(CLIENTS)) for q in ids]
    assert len(set(query_ids)) == CLIENTS * QUERIES
    wanted = set(query_ids)
    kinds = Counter(
        (e["query_id"], e["kind"])
        for e in audit_events(gateway.audit_path)
        if e.get("query_id") in wanted
    )
    assert set(kinds.values()) == {1}
    assert len(kinds) == 3 * CLIENTS * QUERIES  # attempt, decision, result: once each
    store = AuditStore(f"sqlite:///{gateway.audit_path}")
    try:
        assert store.verify().ok
    finally:
        store.close()
