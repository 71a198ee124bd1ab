"""A gateway that dies mid-query, or a connection that drops mid-stream: one sentence in the
notebook, no partial result shown, and the gateway's audit already holds what ran.

These use a second, plain-gRPC gateway of their own (this module kills it), signed in with
a service principal's token (so an unattended run's approval flow is checked here too).
The test that kills it runs last.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_gov.audit import AuditStore
from jupyter_gov.identity.service import token_digest
from tests.gateway.conftest import audit_events, start_gateway, stop, wait_for

SECRET = "pipeline-secret-0123456789"
SLOW = "SELECT sum(a.amount * b.amount) AS s FROM orders a, orders b, orders c"


class Doomed:
    def __init__(self, process: Any, address: str, home: Path) -> None:
        self.process, self.address, self.home = process, address, home

    @property
    def audit(self) -> Path:
        return self.home / "audit.sqlite"


@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doomed]:
    from importlib.resources import files

    home = tmp_path_factory.mktemp("doomed")
    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["services"] = {"etl": {"token_sha256": token_digest(SECRET), "roles": ["admin"]}}
    (home / "policy.yaml").write_text(yaml.safe_dump(data))
    process, address = start_gateway(home / "policy.yaml", user=None, home=home)
    handle = Doomed(process, address, home)
    yield handle
    stop(handle.process)


def notebook_for(address: str, monkeypatch: pytest.MonkeyPatch) -> InteractiveShell:
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY", address)
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", f"service:etl:{SECRET}")
    monkeypatch.delenv("JUPYTER_GOV_GATEWAY_CA", raising=False)
    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    return shell


class CuttingProxy:
    """Forwards one TCP connection at a time to ``target`` and cuts the server's reply
    after ``limit`` bytes: a connection that drops mid-stream."""

    def __init__(self, target: tuple[str, int], limit: int) -> None:
        self.target, self.limit = target, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, self.limit), daemon=True
            ).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while limit is None or sent < limit:
                chunk = source.recv(16384)
                if not chunk:
                    break
                sink.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_connection_dropped_mid_stream_shows_nothing_and_the_run_is_audited(
    doomed: Doomed, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = doomed.address.removeprefix("grpc://").rsplit(":", 1)
    proxy = CuttingProxy((host, int(port)), limit=300_000)
    try:
        shell = notebook_for(f"grpc://127.0.0.1:{proxy.port}", monkeypatch)
        with pytest.raises(UsageError) as caught:
            shell.run_cell_magic("gsql", "-o everything", "SELECT * FROM orders")
    finally:
        proxy.close()
    assert "no rows reached this notebook" in str(caught.value)
    assert "everything" not in shell.user_ns
    results = [
        e
        for e in audit_events(doomed.audit)
        if e["kind"] == "result" and (e.get("statement") or "").startswith("SELECT * FROM orders")
    ]
    assert [e["rows"] for e in results] == [50_000]  # it ran, and the audit says so


def test_an_unattended_run_through_the_gateway_names_the_request_and_reruns_once_approved(
    doomed: Doomed,
) -> None:
    from jupyter_gov.connectors.gateway import GatewaySession
    from jupyter_gov.errors import PipelineNeedsApproval

    pipeline = GatewaySession(doomed.address, f"service:etl:{SECRET}")
    sql = "UPDATE orders SET amount = amount WHERE order_id = 7"
    with pytest.raises(PipelineNeedsApproval) as pending:
        pipeline.sql(sql)
    request_id = pending.value.request_id
    assert request_id and f"needs approval request {request_id}" in str(pending.value)
    assert pending.value.plan.rules == ["approval:admin-write-production"]
    store = AuditStore(f"sqlite:///{doomed.audit}")
    try:  # an approver decides in the gateway's store (here directly, as the CLI would)
        from jupyter_gov.approvals import ApprovalStore
        from jupyter_gov.identity.base import Identity
        from jupyter_gov.policy import Policy

        policy = Policy.load(doomed.home / "policy.yaml")
        dave = Identity("dave", "Dave", "local", groups=("approvers",))
        ApprovalStore(store, policy).approve(request_id, dave, "ok")
    finally:
        store.close()
    result = pipeline.sql(sql)  # the same run again: the approval for exactly this run
    assert result.decision == "allow" and f"approved:{request_id}" in result.plan.rules


def test_a_gateway_killed_mid_query_is_one_sentence_and_the_attempt_is_audited(
    doomed: Doomed, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = notebook_for(doomed.address, monkeypatch)
    shell.run_cell_magic("gsql", "--quiet", "SELECT 1 AS warm")  # the session exists
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = shell.run_cell_magic("gsql", "", SLOW)
        except UsageError as error:
            outcome["error"] = str(error)

    worker = threading.Thread(target=run)
    worker.start()

    def decided() -> bool:
        return any(
            e["kind"] == "decision"
            and e.get("decision") == "allow"
            and "SUM(" in (e.get("statement") or "").upper()
            for e in audit_events(doomed.audit)
        )

    wait_for(decided)
    doomed.process.kill()
    worker.join(60)
    assert "result" not in outcome
    assert outcome["error"].startswith(f"The gateway at {doomed.address} could not be reached")
    assert "\n" not in outcome["error"]
    slow = [e for e in audit_events(doomed.audit) if "SUM(" in (e.get("statement") or "").upper()]
    events = audit_events(doomed.audit, slow[0]["query_id"])
    assert sorted(e["kind"] for e in events) == ["attempt", "decision"]  # it never returned
    store = AuditStore(f"sqlite:///{doomed.audit}")
    assert store.verify().ok
    store.close()
