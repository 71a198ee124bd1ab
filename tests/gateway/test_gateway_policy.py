"""The ``policy.summary`` action: the Policy tab's summary of the policy the gateway
enforces, for the token's owner, with nothing the kernel must not hold.

A real ``jupyter-gov gateway serve`` process (loopback, services' tokens) runs a policy of
its own: a distinctive name, a second connection whose URL names a database password kept
in the gateway's ``chmod 600`` credentials file, a masking key in that file, and
``gateway.audit_roles: [admin]`` (``etl`` is an admin, ``reporting`` an analyst).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_gov.audit import AuditStore
from jupyter_gov.connectors.gateway import GatewaySession
from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.service import token_digest
from jupyter_gov.keys import derived_keys
from jupyter_gov.policy import Policy
from tests.gateway.conftest import start_gateway, stop

NAME = "policytab-gateway-only"
SERVICES = {
    "etl": ("policytab-etl-secret-0123456789", ["admin"]),
    "reporting": ("policytab-reporting-secret-0123456789", ["analyst"]),
}
DB_PASSWORD = "policytab-db-" + secrets.token_hex(8)
MASK_KEY = secrets.token_hex(32)
WAREHOUSE = "postgresql://policytab_reader:${POLICYTAB_PG_PASSWORD}@10.9.8.7:5432/sales"


@dataclass
class Running:
    address: str
    policy_path: Path
    home: Path

    def session(self, service: str, secret: str | None = None) -> GatewaySession:
        return GatewaySession(self.address, f"service:{service}:{secret or SERVICES[service][0]}")

    def summary(self, service: str) -> dict[str, Any]:
        session = self.session(service)
        try:
            return session.policy_summary()
        finally:
            session.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from importlib.resources import files

    home = tmp_path_factory.mktemp("policytab-gateway")
    home.chmod(0o700)
    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["name"] = NAME
    data["gateway"] = {"audit_roles": ["admin"]}
    data["services"] = {
        name: {"token_sha256": token_digest(secret), "roles": roles}
        for name, (secret, roles) in SERVICES.items()
    }
    data["connections"]["warehouse"] = {"url": WAREHOUSE, "description": "never opened here"}
    policy = home / "policy.yaml"
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    env_file = home / "gateway.env"
    env_file.write_text(f"JUPYTER_GOV_MASK_KEY={MASK_KEY}\nPOLICYTAB_PG_PASSWORD={DB_PASSWORD}\n")
    env_file.chmod(0o600)
    process, address = start_gateway(policy, user=None, home=home, env_file=env_file)
    try:
        yield Running(address, policy, home)
    finally:
        stop(process)


def test_the_summary_is_the_policy_the_gateway_enforces(running: Running) -> None:
    summary = running.summary("reporting")
    enforced = Policy.load(running.policy_path)
    assert (summary["name"], summary["hash"]) == (NAME, enforced.hash)
    assert summary["roles"] == sorted(enforced.roles) and "warehouse" in summary["connections"]


def test_you_are_the_tokens_owner_with_the_roles_and_masks_the_gateway_derives(
    running: Running,
) -> None:
    analyst, admin = running.summary("reporting")["you"], running.summary("etl")["you"]
    assert (analyst["subject"], analyst["roles"]) == ("reporting", ["analyst"])
    assert (admin["subject"], admin["roles"]) == ("etl", ["admin"])
    assert analyst["masks"]["email"] == "email" and admin["masks"]["email"] == "none"


def test_roles_sent_by_the_caller_are_ignored(running: Running) -> None:
    session = running.session("reporting")
    try:
        claimed = {"roles": ["admin"], "identity": {"subject": "etl"}, "user": "etl"}
        you = session._action("policy.summary", claimed)["summary"]["you"]
    finally:
        session.close()
    assert (you["subject"], you["roles"]) == ("reporting", ["analyst"])


def test_a_refused_token_gets_no_summary(running: Running) -> None:
    session = running.session("reporting", secret="not-the-secret-0123456789")
    try:
        with pytest.raises(IdentityError):
            session.policy_summary()
    finally:
        session.close()


def test_no_connection_url_secret_token_digest_key_or_gateway_path_crosses(
    running: Running,
) -> None:
    summary = running.summary("etl")
    text = json.dumps(summary)
    key = bytes.fromhex(MASK_KEY)
    forbidden = [
        DB_PASSWORD,
        "policytab_reader",
        "10.9.8.7",
        "postgresql://",
        "duckdb:demo",
        MASK_KEY,
        base64.b64encode(key).decode(),
        *derived_keys(key).values(),
        *(secret for secret, _ in SERVICES.values()),
        *(token_digest(secret) for secret, _ in SERVICES.values()),
        str(running.home),
    ]
    assert [f for f in forbidden if f in text] == []
    assert all(set(c) == {"environment", "description"} for c in summary["connections"].values())
    assert summary["origin"] == f"the gateway at {running.address}"


def _classify(store: AuditStore, identity: Any, table: str) -> None:
    store.append(
        "classification",
        subject=identity.subject,
        issuer=identity.issuer,
        auth_method=identity.auth_method,
        connection="demo",
        detail={"table": table, "column": "notes", "tag": "email", "confidence": 0.9},
    )


def test_pii_findings_are_those_of_the_audit_the_caller_may_read(running: Running) -> None:
    """An analyst sees the findings of their own classification events, an audit role
    everyone's, as ``audit.events`` lets each read them."""
    identities = {}
    for service in SERVICES:
        session = running.session(service)
        identities[service] = session.identity
        session.close()
    store = AuditStore(f"sqlite:///{running.home / 'audit.sqlite'}")
    try:
        _classify(store, identities["reporting"], "reporting_notes")
        _classify(store, identities["etl"], "etl_notes")
    finally:
        store.close()
    own, everyone = running.summary("reporting"), running.summary("etl")
    assert {f["table"] for f in own["pii_findings"]} == {"reporting_notes"}
    assert {f["table"] for f in everyone["pii_findings"]} == {"reporting_notes", "etl_notes"}
    assert (own["pii_findings_scope"], everyone["pii_findings_scope"]) == ("own", "all")
