"""A result streams out of the gateway as the engine reads it from the connector: the
decision first, then the batches, then the count and the audit id. The audit's ``result``
event is written once, when the stream ends, with the rows it delivered, also when the
client goes away mid-stream.

The gateway is the ``served`` fixture (a real ``gateway serve`` process on the demo
policy's DuckDB, whose results the engine reads lazily); the client is a plain
``pyarrow.flight`` client speaking the wire protocol, so the test sees each message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow.flight as flight
import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.gateway import protocol
from tests.gateway.conftest import Served, wait_for

#: A million rows, more than the engine reads ahead (200,000), produced as they are read.
MILLION = "SELECT a.order_id, b.order_id AS other FROM orders a, orders b LIMIT 1000000"


@pytest.fixture
def client(served: Served) -> Iterator[flight.FlightClient]:
    connection = flight.FlightClient(served.address)
    yield connection
    connection.close()


def options(service: str = "etl") -> flight.FlightCallOptions:
    return flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {Served.token(service)}".encode())]
    )


def ask(client: flight.FlightClient, statement: str, purpose: str) -> Any:
    ticket = {"op": "sql", "statement": statement, "purpose": purpose}
    return client.do_get(flight.Ticket(protocol.dumps(ticket)), options())


def results_of(served: Served, query_id: str) -> list[dict[str, Any]]:
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        return store.events(limit=100, kinds=["result"], query_id=query_id)
    finally:
        store.close()


def test_the_first_batches_leave_before_the_result_is_counted(
    served: Served, client: flight.FlightClient
) -> None:
    reader = ask(client, MILLION, "first batches")
    empty, decision = reader.read_chunk()
    reply = protocol.loads(decision)
    assert (reply["status"], empty.num_rows, "rows" not in reply) == ("ok", 0, True)
    batch, metadata = reader.read_chunk()
    assert batch.num_rows > 0 and metadata is None
    assert results_of(served, reply["query_id"]) == []  # not counted yet: still streaming
    rows = batch.num_rows
    while True:
        batch, metadata = reader.read_chunk()
        if metadata is not None:
            end = protocol.loads(metadata)
            break
        rows += batch.num_rows
    assert (end["status"], end["rows"], rows) == ("end", 1_000_000, 1_000_000)
    [event] = results_of(served, reply["query_id"])
    assert (event["rows"], event["id"]) == (1_000_000, end["audit_id"])


def test_a_client_gone_mid_stream_leaves_one_result_event_with_the_rows_read_so_far(
    served: Served, client: flight.FlightClient
) -> None:
    statement = MILLION.replace("1000000", "20000000")
    reader = ask(client, statement, "gone mid-stream")
    reply = protocol.loads(reader.read_chunk().app_metadata)
    reader.read_chunk()
    reader.cancel()
    client.close()

    def recorded() -> bool:
        return bool(results_of(served, reply["query_id"]))

    wait_for(recorded, timeout=60)
    [event] = results_of(served, reply["query_id"])
    assert 0 < event["rows"] < 20_000_000
    assert event["detail"]["stream"] == "closed before the end"
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_after_a_client_went_away_the_identity_runs_its_next_statement(
    served: Served, client: flight.FlightClient
) -> None:
    """The abandoned stream freed the identity's session (no call waits behind it)."""
    reader = ask(client, MILLION.replace("1000000", "20000000"), "abandoned")
    reader.read_chunk()
    reader.read_chunk()
    reader.cancel()
    kernel = served.session("etl")
    try:
        assert kernel.sql("SELECT 42 AS answer").fetchall() == [(42,)]
    finally:
        kernel.close()


def test_the_kernel_gets_every_row_and_the_audit_id_of_the_result_event(served: Served) -> None:
    kernel = served.session("reporting")
    try:
        result = kernel.sql("SELECT order_id FROM orders", purpose="every row")
    finally:
        kernel.close()
    [event] = results_of(served, result.query_id)
    assert result.row_count == event["rows"] == 50_000
    assert result.audit_id == event["id"]


def test_a_refused_statement_sends_its_decision_and_no_batch(
    served: Served, client: flight.FlightClient
) -> None:
    reader = ask(client, "DROP TABLE customers", "refused")
    chunk, metadata = reader.read_chunk()
    assert protocol.loads(metadata)["status"] == "denied" and chunk.num_rows == 0
    with pytest.raises(StopIteration):
        reader.read_chunk()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'b'::ENUM('a', 'b') AS f UNION ALL SELECT 'a'::ENUM('a', 'b')",
        "SELECT ['a'::ENUM('a', 'b')] AS f",
    ],
)
def test_a_dictionary_column_arrives_with_its_type(served: Served, statement: str) -> None:
    """Flight's batch-by-batch stream sends no dictionaries: the column crosses decoded and
    the kernel casts it back to the type the engine gave it."""
    from jupyter_gov.engine import GovernedSession
    from jupyter_gov.identity.base import Identity

    kernel = served.session("etl")
    local = GovernedSession(None, Identity("alice", "Alice", "local", groups=("admins",)))
    try:
        through = kernel.sql(statement).to_arrow_table()
        here = local.sql(statement).to_arrow_table()
    finally:
        kernel.close()
        local.close()
    assert through.schema == here.schema
    assert through.to_pylist() == here.to_pylist()
