"""Fixtures for the server extension: pytest-jupyter's real jupyter_server, and a seeded store.

pytest 8+ refuses ``pytest_plugins`` in a conftest below the root one, so pytest-jupyter's
fixtures and hooks are imported here instead; they then apply to this folder only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and hooks of the plugin)
from traitlets.config import Config

from jupyter_gov.audit import AuditStore

from .approval_contract import install as install_approval_contract

#: 2025-01-01T00:00:00Z: seeded events start here, one minute apart.
T0 = 1_735_689_600.0


@pytest.fixture(autouse=True)
def approval_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ApprovalRequest.to_dict(approver=)`` and its fields (a no-op once they have landed)."""
    install_approval_contract(monkeypatch.setattr)


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "server-audit" / "audit.sqlite"


@pytest.fixture
def gov_policy() -> str | None:
    """The ``GovServer.policy`` a test runs with; override with indirect parametrization."""
    return None


@pytest.fixture
def jp_server_config(audit_path: Path, gov_policy: str | None, gov_user: str | None) -> Config:
    config: dict = {
        "ServerApp": {"jpserver_extensions": {"jupyter_gov": True}},
        "GovServer": {"audit_store": f"sqlite:///{audit_path}"},
    }
    if gov_policy is not None:
        config["GovServer"]["policy"] = gov_policy
    if gov_user is not None:
        config["GovServer"]["user"] = gov_user
    return Config(config)


@pytest.fixture
def gov_user() -> str | None:
    """The ``GovServer.user`` (local provider) the server approves as; ``None`` = OS user."""
    return None


@pytest.fixture
def store(audit_path: Path):
    audit = AuditStore(f"sqlite:///{audit_path}")
    yield audit
    audit.close()


def seed(store: AuditStore) -> list[dict]:
    """Thirty events across three users, two connections and every decision.

    Returns what was written, in order (event ``i`` has chain position ``i + 1``).
    """
    plan = [
        # (kind, subject, connection, decision, statement, extra)
        ("decision", "alice", "demo", "allow", "SELECT name FROM customers", {}),
        (
            "decision",
            "alice",
            "demo",
            "allow",
            "SELECT email FROM customers",
            {"masked_columns": {"customers.email": "hash"}, "rules": ["mask:pii"]},
        ),
        (
            "decision",
            "bob",
            "demo",
            "deny",
            "DELETE FROM customers WHERE id = ?",
            {"rules": ["read_only"], "reasons": ["bob's role may only read"]},
        ),
        (
            "decision",
            "bob",
            "warehouse",
            "approval_required",
            "SELECT ssn FROM employees",
            {"rules": ["approval:unmask"], "reasons": ["unmasking ssn needs approval"]},
        ),
        ("result", "carol", "warehouse", "error", "SELECT * FROM missing", {"error": "no table"}),
        ("attempt", "carol", "demo", None, "SELECT 1", {}),
    ]
    written = []
    for i in range(30):
        kind, subject, connection, decision, statement, extra = plan[i % len(plan)]
        event = {
            "ts": T0 + 60 * i,
            "subject": subject,
            "display_name": subject.title(),
            "auth_method": "local",
            "verified": False,
            "connection": connection,
            "decision": decision,
            "statement": statement,
            "fingerprint": f"fp{i % len(plan)}",
            "query_id": f"q{i:02d}",
            "policy_hash": "ab" * 32,
            "rows": 3 if kind == "result" else None,
            "duration_ms": 1.5 if kind == "result" else None,
            **extra,
        }
        store.append(kind, **event)
        written.append({"kind": kind, **event})
    return written


@pytest.fixture
def seeded(store: AuditStore) -> list[dict]:
    return seed(store)
