"""``GET /jupyter-gov/api/audit`` never serves a raw value an engine error quoted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import QueryFailed

LITERAL = "Hana Nguyen"


async def test_audit_api_serves_no_raw_value_from_an_engine_error(
    jp_fetch: Any, audit_path: Path, demo_connector: Any, raw: Any
) -> None:
    ((name, address),) = raw("SELECT full_name, street_address FROM customers LIMIT 1")
    session = GovernedSession(None, "alice", audit=AuditStore(f"sqlite:///{audit_path}"))
    session.use_connector("demo", demo_connector)
    for sql in (
        "SELECT CAST(full_name AS INTEGER) FROM customers LIMIT 1",
        "SELECT CAST(street_address AS INTEGER) FROM customers LIMIT 1",
        f"SELECT CAST('{LITERAL}' AS INTEGER) AS n",
    ):
        with pytest.raises(QueryFailed):
            session.sql(sql)
    session.audit.close()
    response = await jp_fetch("jupyter-gov", "api", "audit", params={"limit": 50}, method="GET")
    body = response.body.decode()
    events = json.loads(body)["events"]
    errors = [e["error"] for e in events if e["kind"] == "result"]
    assert len(errors) == 3 and all("Could not convert string '?'" in e for e in errors)
    for value in (name, address, LITERAL, *name.split(), *address.split()[1:3]):
        assert value not in body
