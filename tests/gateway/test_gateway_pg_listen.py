"""``jupyter-gov gateway serve --pg-listen``: one gateway process serves kernels over Arrow
Flight and standard clients over PostgreSQL's protocol, with one authenticator, one engine
session per identity and one audit chain.

The process is the ``served`` fixture (a real ``gateway serve`` subprocess); the clients are
the stock ``psql`` binary, psycopg and the kernel's ``GatewaySession``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import psycopg
import pytest

from jupyter_gov.audit import AuditStore
from tests.gateway.conftest import Served, need

MASKED = "SELECT customer_id, email FROM customers ORDER BY customer_id LIMIT 3"


def psql(served: Served, token: str, sql: str) -> subprocess.CompletedProcess[str]:
    """The stock ``psql`` with the token as its password, as a user would type it."""
    binary = shutil.which("psql")
    need(binary is not None, "the psql client binary")
    assert binary is not None
    args = [binary, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", served.pg_host]
    args += ["-p", str(served.pg_port), "-U", "whoever", "-d", "governed", "-c", sql]
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def events(served: Served, **filters: object) -> list[dict]:
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        return store.events(limit=10_000, **filters)
    finally:
        store.close()


def test_psql_through_the_pg_door_of_a_serve_process_gets_masked_rows(served: Served) -> None:
    done = psql(served, Served.token("reporting"), MASKED)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.split()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(r[1].startswith("***@") for r in rows)  # an analyst: email masked


def test_a_token_is_the_same_identity_through_both_doors_and_both_write_one_chain(
    served: Served,
) -> None:
    kernel = served.session("reporting")
    try:
        via_flight = kernel.sql("SELECT count(*) AS n FROM orders", purpose="flight door")
    finally:
        kernel.close()
    with psycopg.connect(
        host=served.pg_host,
        port=served.pg_port,
        dbname="governed",
        user="anyone",
        password=Served.token("reporting"),
        sslmode="disable",
        autocommit=True,
    ) as conn:
        conn.execute("SET jupyter_gov.purpose = 'pg door'")
        via_pg = conn.execute("SELECT count(*) AS n FROM orders").fetchone()[0]
    assert via_pg == via_flight.fetchall()[0][0]
    decisions = {e["purpose"]: e for e in events(served, kinds=["decision"]) if e.get("purpose")}
    flight_event, pg_event = decisions["flight door"], decisions["pg door"]
    for field in ("subject", "auth_method", "issuer", "identity_kind", "roles"):
        assert flight_event.get(field) == pg_event.get(field), field
    assert (pg_event["subject"], pg_event["auth_method"]) == ("reporting", "service-token")
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_both_doors_run_in_the_identitys_one_engine_session(served: Served) -> None:
    """A result saved through Flight (``-o NAME``) is readable through the PostgreSQL door
    by the same identity: the same engine session, not one per door."""
    kernel = served.session("etl")
    try:
        kernel.sql("SELECT customer_id FROM customers ORDER BY 1 LIMIT 4", name="etl_sample")
    finally:
        kernel.close()
    done = psql(served, Served.token("etl"), "SELECT count(*) FROM etl_sample")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    other = psql(served, Served.token("reporting"), "SELECT count(*) FROM etl_sample")
    assert other.returncode != 0  # another identity's session has no such result


def test_a_bad_password_at_the_pg_door_is_refused_and_audited_in_the_same_chain(
    served: Served,
) -> None:
    before = len(events(served, kinds=["decision"]))
    done = psql(served, "service:reporting:not-the-secret", "SELECT 1")
    assert done.returncode != 0
    assert "FATAL:  Service 'reporting' could not sign in to the gateway" in done.stderr
    assert "not-the-secret" not in done.stderr
    decisions = events(served, kinds=["decision"])  # newest first
    refused = decisions[: len(decisions) - before]
    assert [(e["decision"], e["rules"], e["subject"]) for e in refused] == [
        ("deny", ["identity"], None)
    ]


@pytest.mark.parametrize("option", ["--pg-listen", "--max-sessions", "--idle-timeout"])
def test_gateway_serve_documents_its_options(option: str) -> None:
    from jupyter_gov.cli import build_parser

    parser = build_parser()
    gateway = parser._subparsers._group_actions[0].choices["gateway"]  # type: ignore[union-attr]
    serve = gateway._subparsers._group_actions[0].choices["serve"]
    assert option in serve.format_help()


def test_a_serve_process_publishes_signed_checkpoints_that_verify_its_store(
    served: Served,
) -> None:
    from jupyter_gov.audit.checkpoints import load_public_key, verify_against

    folder = served.home / "checkpoints"
    checkpoint = json.loads((folder / "latest.json").read_text())
    key = load_public_key(folder / "public-key.pem")
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        assert verify_against(store, checkpoint, key).ok
    finally:
        store.close()
