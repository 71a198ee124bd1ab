"""The sidebar's Policy tab lists what ``unclassified: auto`` found, read from the audit."""

from __future__ import annotations

import json

from jupyter_gov.engine import GovernedSession
from tests.pii.conftest import auto_policy


async def test_policy_summary_lists_auto_findings_without_values(
    jp_fetch, audit_path, demo_connector, demo_policy
):
    session = GovernedSession(auto_policy(demo_policy), "bob", audit=f"sqlite:///{audit_path}")
    session.use_connector("demo", demo_connector)
    session.sql("SELECT 1")
    response = await jp_fetch("jupyter-gov", "api", "policy")
    body = json.loads(response.body)
    found = {(f["table"], f["column"]): f for f in body["pii_findings"]}
    assert found[("customers", "email")]["tag"] == "email"
    assert found[("support_tickets", "body")]["tag"] == "free_text"
    assert "@" not in json.dumps(body["pii_findings"])
