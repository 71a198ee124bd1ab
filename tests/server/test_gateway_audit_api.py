"""The sidebar's Audit views in gateway mode: a real jupyter_server (pytest-jupyter) whose
``GovServer.gateway`` names a real gateway process reads the gateway's audit, as the owner
of the server's token, and never the local store the kernels could write.

The local store named by ``GovServer.audit_store`` holds one forged event; it never shows.
The gateway is the ``served`` fixture of ``tests/gateway`` (``gateway serve``, its
``reporting`` service an analyst who reads only their own events).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_gov.audit import AuditStore
from tests.gateway.conftest import Served, served  # noqa: F401  (the fixture)

API = ("jupyter-gov", "api")
FORGED = "SELECT 'forged by the kernel user'"


@pytest.fixture
def ran(served: Served) -> Served:  # noqa: F811
    kernel = served.session("reporting")
    try:
        kernel.sql("SELECT count(*) AS n FROM orders", purpose="sidebar test")
    finally:
        kernel.close()
    return served


@pytest.fixture
def jp_server_config(ran: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", Served.token("reporting"))
    monkeypatch.delenv("JUPYTER_GOV_GATEWAY_CA", raising=False)
    local = AuditStore(f"sqlite:///{tmp_path / 'kernel-writable.sqlite'}")
    local.append("decision", subject="mallory", decision="allow", statement=FORGED)
    local.close()
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_gov": True}},
            "GovServer": {
                "gateway": ran.address,
                "audit_store": f"sqlite:///{tmp_path / 'kernel-writable.sqlite'}",
            },
        }
    )


async def get(jp_fetch: Any, *path: str, **params: Any) -> dict[str, Any]:
    response = await jp_fetch(*API, *path, params=params, method="GET")
    assert response.code == 200
    return json.loads(response.body)


async def test_the_audit_view_lists_the_gateways_events_of_the_servers_user(jp_fetch) -> None:
    body = await get(jp_fetch, "audit", limit=500)
    assert body["events"] and {e["subject"] for e in body["events"]} == {"reporting"}
    assert body["total"] == len(body["events"])
    assert all(e.get("statement") != FORGED for e in body["events"])


async def test_the_verify_button_walks_the_gateways_chain(jp_fetch, ran: Served) -> None:
    body = await get(jp_fetch, "audit", "verify")
    store = AuditStore(f"sqlite:///{ran.audit_path}")
    try:
        assert body["ok"] and body["rows"] >= 1 and body["head"] == store.head()[1]
    finally:
        store.close()


async def test_the_chart_counts_the_gateways_decisions_of_the_servers_user(jp_fetch) -> None:
    stats = await get(jp_fetch, "audit", "stats", bucket=3600)
    listed = await get(jp_fetch, "audit", kind="decision", limit=500)
    assert sum(b["total"] for b in stats["buckets"]) == len(listed["events"]) > 0


async def test_the_report_tab_reads_the_gateways_audit(jp_fetch, ran: Served) -> None:
    response = await jp_fetch(*API, "report", params={"format": "json"}, method="GET")
    report = json.loads(response.body)
    assert report["store"] == ran.address and report["chain"]["ok"]
