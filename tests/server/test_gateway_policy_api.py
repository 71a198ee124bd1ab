"""The sidebar's Policy tab in gateway mode: a real jupyter_server (pytest-jupyter) whose
``GovServer.gateway`` names a real gateway process shows the gateway's policy, as the
gateway summarises it for the owner of the server's token, never the server's local file.

The server is also given a local policy (``GovServer.policy``) named ``LOCAL`` with other
roles, and a local audit store holding a forged PII finding: neither ever shows. The
gateway is the ``served`` fixture of ``tests/gateway`` (its policy is ``served-test``; its
``reporting`` service an analyst).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from jupyter_gov.audit import AuditStore
from jupyter_gov.identity.service import token_digest
from jupyter_gov.policy import Policy
from tests.gateway.conftest import SERVED_SERVICES, Served, served  # noqa: F401  (fixture)

API = ("jupyter-gov", "api")
LOCAL = "policytab-local-file-nobody-enforces"
#: A loopback port nothing listens on: the gateway is down.
UNREACHABLE = "grpc://127.0.0.1:1"


@pytest.fixture
def gateway_address(served: Served) -> str:  # noqa: F811
    """The gateway the server names; a test overrides it by parametrizing this name."""
    return served.address


@pytest.fixture
def jp_server_config(
    gateway_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", Served.token("reporting"))
    monkeypatch.delenv("JUPYTER_GOV_GATEWAY_CA", raising=False)
    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["name"] = LOCAL
    data["roles"]["local_only_role"] = {"description": "only in the local file"}
    local_policy = tmp_path / "local-policy.yaml"
    local_policy.write_text(yaml.safe_dump(data, sort_keys=False))
    local = AuditStore(f"sqlite:///{tmp_path / 'kernel-writable.sqlite'}")
    local.append(
        "classification",
        subject="mallory",
        connection="demo",
        detail={"table": "forged_by_the_kernel", "column": "x", "tag": "email"},
    )
    local.close()
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_gov": True}},
            "GovServer": {
                "gateway": gateway_address,
                "policy": str(local_policy),
                "audit_store": f"sqlite:///{tmp_path / 'kernel-writable.sqlite'}",
            },
        }
    )


def gateway_policy(served: Served) -> Policy:  # noqa: F811
    return Policy.load(served.home / "policy.yaml")


async def get(jp_fetch: Any, *path: str) -> dict[str, Any]:
    response = await jp_fetch(*API, *path, method="GET")
    assert response.code == 200
    return json.loads(response.body)


async def failure(jp_fetch: Any, *path: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch(*API, *path, method="GET")
    return raised.value.code, json.loads(raised.value.response.body)


async def test_the_policy_tab_shows_the_gateways_policy_not_the_local_file(
    jp_fetch,
    served: Served,  # noqa: F811
) -> None:
    body = await get(jp_fetch, "policy")
    enforced = gateway_policy(served)
    assert (body["name"], body["hash"]) == ("served-test", enforced.hash)
    assert body["roles"] == sorted(enforced.roles) and "local_only_role" not in body["roles"]
    assert body["origin"] == f"the gateway at {served.address}"


async def test_the_policy_tab_shows_the_servers_roles_and_masks_as_the_gateway_derives(
    jp_fetch,
) -> None:
    you = (await get(jp_fetch, "policy"))["you"]
    assert (you["subject"], you["roles"]) == ("reporting", ["analyst"])
    assert you["masks"]["email"] == "email" and you["masks"]["ssn"] != "none"


async def test_the_policy_reply_holds_no_url_secret_or_key(jp_fetch, served: Served) -> None:  # noqa: F811
    text = json.dumps(await get(jp_fetch, "policy"))
    forbidden = ["duckdb:demo", str(served.home)]
    for secret, _ in SERVED_SERVICES.values():
        forbidden += [secret, token_digest(secret)]
    key_file = served.home / "mask.key"
    if key_file.exists():
        forbidden.append(key_file.read_bytes().hex())
    assert [f for f in forbidden if f in text] == []


async def test_pii_findings_come_from_the_gateways_audit_never_the_local_store(
    jp_fetch,
    served: Served,  # noqa: F811
) -> None:
    session = served.session("reporting")
    try:
        identity = session.identity
    finally:
        session.close()
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        store.append(
            "classification",
            subject=identity.subject,
            issuer=identity.issuer,
            auth_method=identity.auth_method,
            connection="demo",
            detail={"table": "found_by_the_gateway", "column": "notes", "tag": "email"},
        )
    finally:
        store.close()
    tables = {f["table"] for f in (await get(jp_fetch, "policy"))["pii_findings"]}
    assert "found_by_the_gateway" in tables and "forged_by_the_kernel" not in tables


@pytest.mark.parametrize("gateway_address", [UNREACHABLE])
async def test_an_unreachable_gateway_is_the_audit_views_sentence_not_the_local_policy(
    jp_fetch, gateway_address: str
) -> None:
    policy_status, policy_body = await failure(jp_fetch, "policy")
    audit_status, audit_body = await failure(jp_fetch, "audit")
    assert policy_status == audit_status == 503
    assert policy_body["message"] == audit_body["message"]
    assert policy_body["error"] == "GatewayUnavailable" and LOCAL not in json.dumps(policy_body)
