"""The audit through the gateway: the sidebar's views, the report and ``jupyter-gov audit``
read what the gateway lets the token's owner read, from the gateway's store.

A caller reads their own events; the roles of ``gateway.audit_roles`` read everyone's;
anyone signed in verifies the whole chain. The gateway is the ``served`` fixture (a real
``gateway serve`` process) with ``audit_roles: [admin]``: the ``etl`` service is an admin,
``reporting`` an analyst.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.audit.checkpoints import generate_key, sign_checkpoint
from jupyter_gov.cli import main
from jupyter_gov.errors import UsageError
from tests.gateway.conftest import Served


@pytest.fixture(scope="module")
def ran(served: Served) -> Served:
    """Both services ran statements through the gateway (so each has events of its own)."""
    for service in ("etl", "reporting"):
        kernel = served.session(service)
        try:
            kernel.sql("SELECT count(*) AS n FROM customers", purpose=f"audit test {service}")
        finally:
            kernel.close()
    return served


@pytest.fixture
def reader(ran: Served) -> Iterator[Any]:
    """``reader("reporting")``: the gateway's audit as that service reads it."""
    sessions: list[Any] = []

    def make(service: str) -> Any:
        sessions.append(ran.session(service))
        return sessions[-1].audit_reader

    yield make
    for session in sessions:
        session.close()


def local_store(served: Served) -> AuditStore:
    return AuditStore(f"sqlite:///{served.audit_path}")


def test_a_caller_reads_only_their_own_events(reader: Any) -> None:
    events = reader("reporting").events(limit=10_000)
    assert events and {(e["subject"], e["auth_method"]) for e in events} == {
        ("reporting", "service-token")
    }


def test_an_audit_role_reads_every_callers_events(reader: Any) -> None:
    subjects = {e["subject"] for e in reader("etl").events(limit=10_000)}
    assert {"etl", "reporting"} <= subjects


def test_asking_for_another_callers_events_reads_nothing(reader: Any) -> None:
    mine = reader("reporting")
    assert mine.events(subject="etl") == [] and mine.count(subject="etl") == 0
    assert mine.stats(bucket=3600, subject="etl") == []


def test_counts_and_statistics_are_of_what_the_caller_may_read(reader: Any, ran: Served) -> None:
    mine = reader("reporting")
    decisions = mine.count(kinds=["decision"])
    assert decisions == len(mine.events(limit=10_000, kinds=["decision"])) > 0
    assert sum(r.count for r in mine.stats(bucket=3600, kinds=["decision"])) == decisions
    store = local_store(ran)
    try:
        assert reader("etl").count() == store.count() > mine.count()
    finally:
        store.close()


def test_anyone_signed_in_verifies_the_whole_chain_in_the_gateway(reader: Any, ran: Served) -> None:
    report = reader("reporting").verify()
    store = local_store(ran)
    try:
        assert report.ok and report.head == store.head()[1]
        assert report.rows >= store.checkpoint()["count"] - 5  # others may append meanwhile
    finally:
        store.close()


def test_a_filter_the_gateway_does_not_know_is_one_sentence(reader: Any) -> None:
    with pytest.raises(UsageError, match="Audit filters are an object of"):
        reader("reporting").events(issuer="anyone")


def test_a_signed_checkpoint_verifies_through_the_gateway_for_a_caller_who_reads_only_theirs(
    reader: Any, ran: Served, tmp_path: Any
) -> None:
    """The store's identity (its first event) comes from the gateway, not from the events
    the caller may read."""
    from jupyter_gov.audit.checkpoints import load_public_key, verify_against

    private, public = generate_key(tmp_path / "cp.key")
    store = local_store(ran)
    try:
        from jupyter_gov.audit.checkpoints import load_private_key

        checkpoint = sign_checkpoint(store, load_private_key(private))
    finally:
        store.close()
    report = verify_against(reader("reporting"), checkpoint, load_public_key(public))
    assert report.ok, report.reason


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def as_service(ran: Served, monkeypatch: pytest.MonkeyPatch) -> Any:
    def sign_in(service: str) -> None:
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY", ran.address)
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", Served.token(service))
        monkeypatch.delenv("JUPYTER_GOV_GATEWAY_CA", raising=False)
        monkeypatch.delenv("JUPYTER_GOV_AUDIT_STORE", raising=False)

    return sign_in


def test_cli_audit_verify_runs_in_the_gateway(as_service: Any, capsys: Any) -> None:
    as_service("reporting")
    assert main(["audit", "verify", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["rows"] > 0


def test_cli_audit_tail_shows_the_callers_own_events(as_service: Any, capsys: Any) -> None:
    as_service("reporting")
    assert main(["audit", "tail", "-n", "50", "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert events and {e["subject"] for e in events} == {"reporting"}


def test_cli_audit_checkpoint_through_the_gateway_is_the_whole_chains(
    as_service: Any, capsys: Any, ran: Served
) -> None:
    as_service("reporting")
    assert main(["audit", "checkpoint"]) == 0
    checkpoint = json.loads(capsys.readouterr().out)
    store = local_store(ran)
    try:
        assert store.verify(checkpoint).ok and checkpoint["count"] > 0
    finally:
        store.close()


def test_cli_refuses_to_sign_a_gateways_checkpoint_locally(
    as_service: Any, capsys: Any, tmp_path: Any
) -> None:
    as_service("etl")
    private, _ = generate_key(tmp_path / "cp.key")
    assert main(["audit", "checkpoint", "--sign-key", str(private)]) == 2
    assert "signed by the gateway" in capsys.readouterr().err


def test_cli_report_through_the_gateway_covers_what_the_caller_may_read(
    as_service: Any, capsys: Any
) -> None:
    as_service("reporting")
    assert main(["report", "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert "Chain intact:" in text  # the whole chain, verified in the gateway
    totals = text.split("| events |", 1)[1].splitlines()[2].strip("| ").split(" | ")
    assert totals[-1] == "1"  # identities: the caller alone


def test_audit_roles_the_policy_does_not_have_stop_the_gateway(tmp_path: Any) -> None:
    from importlib.resources import files

    import yaml

    from jupyter_gov.errors import PolicyError
    from jupyter_gov.gateway.server import GatewayServer

    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["gateway"] = {"audit_roles": ["auditors"]}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError, match=r"audit_roles names roles .*'auditors'"):
        GatewayServer(tmp_path / "policy.yaml", audit_store=f"sqlite:///{tmp_path / 'a.sqlite'}")
