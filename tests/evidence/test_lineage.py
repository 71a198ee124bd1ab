"""OpenLineage for every governed read: a RunEvent per result, sent to a real receiver.

The receivers are started by the tests on loopback; the events fed to the sink are the
ones the engine stored in the audit chain, read back through the store's reader.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.audit import _JSON_FIELDS
from jupyter_gov.audit.lineage import SINKS, OpenLineageSink, namespace_of
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError, PolicyError, QueryDenied
from jupyter_gov.policy import Policy


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    """An OpenLineage HTTP endpoint (Marquez's path) on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _policy_with(demo_policy: Policy, sink: dict[str, Any]) -> Policy:
    data = dict(demo_policy.data)
    data["audit"] = {"sinks": [sink]}
    return Policy(data)


@pytest.fixture
def lineage_session(
    demo_connector: Any, demo_policy: Policy, receiver: ThreadingHTTPServer, monkeypatch
) -> Callable[[str], tuple[GovernedSession, OpenLineageSink]]:
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/features.ipynb")

    def make(user: str) -> tuple[GovernedSession, OpenLineageSink]:
        host, port = receiver.server_address[:2]
        sink_config = {"kind": "openlineage", "url": f"http://{host}:{port}"}
        policy = _policy_with(demo_policy, sink_config)
        session = GovernedSession(policy, user)
        session.use_connector("demo", demo_connector)
        return session, OpenLineageSink(sink_config, policy)

    return make


def _send_all(session: GovernedSession, sink: OpenLineageSink) -> None:
    """Deliver the session's stored events to the sink, oldest first.

    Through the session's audit-sink dispatcher when it has one (``jupyter_gov.audit.sinks``
    builds it from the same policy entry); otherwise by hand, as that dispatcher would.
    """
    dispatcher = getattr(session, "sinks", None)
    if dispatcher is not None:
        assert dispatcher.flush()
        return
    for event in session.audit.events(limit=1000, newest_first=False):
        sink.emit(event)
    sink.close()


def test_a_read_sends_one_complete_run_event_to_the_marquez_endpoint(
    lineage_session, receiver
) -> None:
    session, sink = lineage_session("bob")
    session.job_cell = 7
    session.sql("SELECT full_name, email, city FROM customers LIMIT 3")
    _send_all(session, sink)
    assert [path for path, _ in receiver.received] == ["/api/v1/lineage"]
    event = receiver.received[0][1]
    assert event["eventType"] == "COMPLETE"
    assert event["job"] == {
        "namespace": "jupyter-gov",
        "name": "notebooks/features.ipynb#cell-7",
        "facets": event["job"]["facets"],
    }
    assert event["job"]["facets"]["sql"]["query"].startswith("SELECT full_name")
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
        ("duckdb://demo", "main.customers")
    ]
    fields = event["inputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [
        ("city", "TEXT"),
        ("email", "TEXT"),
        ("full_name", "TEXT"),
    ]


def test_column_lineage_marks_masked_columns_with_their_mask(lineage_session, receiver) -> None:
    session, sink = lineage_session("bob")
    session.sql("SELECT full_name, email AS mail, city FROM customers LIMIT 3")
    _send_all(session, sink)
    fields = receiver.received[0][1]["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert set(fields) == {"full_name", "mail", "city"}
    (mail,) = fields["mail"]["inputFields"]
    assert (mail["namespace"], mail["name"], mail["field"]) == (
        "duckdb://demo",
        "main.customers",
        "email",
    )
    assert mail["transformations"][0]["masking"] is True
    assert mail["transformations"][0]["description"] == "masked: email"
    (city,) = fields["city"]["inputFields"]
    assert city["transformations"][0]["masking"] is False


def test_a_join_traces_each_output_column_to_its_own_table(lineage_session, receiver) -> None:
    session, sink = lineage_session("bob")
    session.sql(
        "WITH big AS (SELECT customer_id, amount FROM orders WHERE amount > 10) "
        "SELECT c.city, sum(b.amount) AS total FROM customers c "
        "JOIN big b ON b.customer_id = c.customer_id GROUP BY c.city"
    )
    _send_all(session, sink)
    event = receiver.received[0][1]
    assert sorted(d["name"] for d in event["inputs"]) == ["main.customers", "main.orders"]
    fields = event["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert [(f["name"], f["field"]) for f in fields["total"]["inputFields"]] == [
        ("main.orders", "amount")
    ]
    assert [(f["name"], f["field"]) for f in fields["city"]["inputFields"]] == [
        ("main.customers", "city")
    ]


def test_the_governance_facet_names_identity_policy_masks_filters_and_chain_position(
    lineage_session, receiver
) -> None:
    session, sink = lineage_session("carol")
    session.sql("SELECT order_id, region FROM orders LIMIT 5")
    _send_all(session, sink)
    facet = receiver.received[0][1]["run"]["facets"]["jupyterGov_governance"]
    result = session.audit.events(limit=1, kinds=["result"])[0]
    assert facet["subject"] == "carol"
    assert facet["policy"]["hash"] == session.policy.hash
    assert facet["rowFilters"] == ["orders-by-region"]
    assert facet["audit"] == {
        "id": result["id"],
        "queryId": result["query_id"],
        "fingerprint": result["fingerprint"],
        "prevHash": result["prev_hash"],
        "hash": result["hash"],
    }
    assert facet["rows"] == result["rows"]
    assert "EMEA" not in json.dumps(receiver.received)  # the filter's value stays bound


def test_a_read_that_fails_in_the_database_is_a_fail_run_with_a_scrubbed_message(
    lineage_session, receiver
) -> None:
    session, sink = lineage_session("bob")
    with pytest.raises(GovError):
        session.sql("SELECT CAST(city AS INTEGER) AS n FROM customers")
    _send_all(session, sink)
    (event,) = [body for _, body in receiver.received]
    assert event["eventType"] == "FAIL"
    assert [d["name"] for d in event["inputs"]] == ["main.customers"]
    (stored,) = session.audit.events(limit=1, kinds=["result"])
    assert event["run"]["facets"]["errorMessage"]["message"] == stored["error"]


def test_denied_statements_and_non_result_events_send_nothing(lineage_session, receiver) -> None:
    session, sink = lineage_session("eve")
    with pytest.raises(QueryDenied):
        session.sql("SELECT * FROM customers")
    _send_all(session, sink)
    assert receiver.received == []


def test_the_file_transport_appends_one_json_event_per_read(
    demo_connector, demo_policy, tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "lineage.jsonl"
    config = {"kind": "openlineage", "path": str(path)}
    policy = _policy_with(demo_policy, config)
    session = GovernedSession(policy, "bob")
    session.use_connector("demo", demo_connector)
    session.sql("SELECT city FROM customers LIMIT 1")
    session.sql("SELECT status FROM orders LIMIT 1")
    sink = OpenLineageSink(config, policy)
    _send_all(session, sink)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["inputs"][0]["name"] for e in lines] == ["main.customers", "main.orders"]


def test_lineage_is_not_computed_when_no_sink_wants_it(session_for) -> None:
    session = session_for("bob")
    session.sql("SELECT city FROM customers LIMIT 1")
    (result,) = session.audit.events(limit=1, kinds=["result"])
    assert "lineage" not in (result.get("detail") or {})


def test_a_sink_needs_exactly_one_destination(demo_policy) -> None:
    with pytest.raises(PolicyError, match="exactly one of url"):
        OpenLineageSink({"kind": "openlineage"}, demo_policy)
    with pytest.raises(PolicyError, match="http"):
        OpenLineageSink({"kind": "openlineage", "url": "file:///etc/passwd"}, demo_policy)


def test_the_namespace_keeps_host_and_port_but_never_credentials(demo_policy) -> None:
    data = dict(demo_policy.data)
    data["connections"] = {"pg": {"url": "postgresql://bob:s3cret@db.internal:5433/sales"}}
    policy = Policy(data)
    assert namespace_of(policy, "pg") == "postgresql://db.internal:5433"


def test_the_sink_is_registered_under_its_kind() -> None:
    assert SINKS["openlineage"] is OpenLineageSink
    assert OpenLineageSink.kind == "openlineage"


def test_events_as_the_dispatcher_hands_them_with_json_fields_encoded(lineage_session) -> None:
    session, sink = lineage_session("bob")
    session.sql("SELECT email FROM customers LIMIT 1")
    (stored,) = session.audit.events(limit=1, kinds=["result"])
    encoded = {k: json.dumps(v) if k in _JSON_FIELDS else v for k, v in stored.items()}
    run = sink.run_event(encoded)
    assert run.run.facets["jupyterGov_governance"].maskedColumns == {"email": "email"}
    assert [d.name for d in run.inputs] == ["main.customers"]


def test_an_agents_read_names_the_agent_and_the_person_it_acts_for(
    demo_connector, receiver, monkeypatch
) -> None:
    from jupyter_gov.identity.local import LocalProvider
    from jupyter_gov.identity.service import agent_identity
    from tests.agents.conftest import agents_policy_data

    host, port = receiver.server_address[:2]
    config = {"kind": "openlineage", "url": f"http://{host}:{port}"}
    data = agents_policy_data()
    data["audit"] = {"sinks": [config]}
    policy = Policy(data)
    users = policy.identity_config
    bob = LocalProvider(users["users"], users["default_groups"], user="bob").current()
    session = GovernedSession(policy, agent_identity(policy.agents, "jupyternaut", bob))
    session.use_connector("demo", demo_connector)
    session.sql("SELECT status FROM orders LIMIT 2")
    _send_all(session, OpenLineageSink(config, policy))
    facet = receiver.received[0][1]["run"]["facets"]["jupyterGov_governance"]
    assert (facet["subject"], facet["identityKind"]) == ("jupyternaut", "agent")
    assert facet["onBehalfOf"]["subject"] == "bob"
    assert facet["rowFilters"] == ["assistant-open-orders"]


def test_a_service_identitys_job_is_its_pipeline(session_for, monkeypatch) -> None:
    from dataclasses import replace

    from jupyter_gov.audit.lineage import job_of

    service = replace(session_for("bob").identity, kind="service", subject="nightly-churn")
    assert job_of(service) == {"pipeline": "nightly-churn"}
    monkeypatch.setenv("JUPYTER_GOV_PIPELINE", "churn-features-daily")
    assert job_of(service) == {"pipeline": "churn-features-daily"}
