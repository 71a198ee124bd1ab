"""An agents-and-services policy: the demo policy plus a pipeline service and an MCP agent."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.identity import Identity
from jupyter_gov.identity.service import agent_identity
from jupyter_gov.policy import Policy
from jupyter_gov.policy.loader import demo_policy_text

SERVICE_TOKEN = "nightly-churn-token-6f1c2a9e"
AGENT_TOKEN = "jupyternaut-token-0b7d44e1"


def agents_policy_data() -> dict:
    data = yaml.safe_load(demo_policy_text())
    data["name"] = "agents-demo"
    data["roles"]["assistant"] = {"description": "What an AI agent holds.", "access": "read_only"}
    data["roles"]["pipeline"] = {"description": "Nightly feature pipelines.", "access": "read_only"}
    data["masks"]["phone"]["assistant"] = "redact"
    data["masks"]["email"]["pipeline"] = "none"
    data["masks"]["birth_date"]["assistant"] = "none"  # so an agent for an admin can need approval
    data["row_filters"].append(
        {
            "id": "assistant-open-orders",
            "table": "orders",
            "roles": ["assistant"],
            "where": "status <> 'cancelled'",
        }
    )
    data["services"] = {
        "nightly-churn": {
            "description": "The churn feature pipeline.",
            "roles": ["pipeline"],
            "token_sha256": hashlib.sha256(SERVICE_TOKEN.encode()).hexdigest(),
        }
    }
    data["agents"] = {
        "jupyternaut": {
            "description": "Jupyter AI's agent.",
            "roles": ["assistant"],
            "max_rows": 50,
            "queries_per_minute": 5,
            "deny_statements": ["delete"],
        },
        "export-bot": {"roles": ["assistant"], "max_rows": 5000},
        "keyed-bot": {
            "roles": ["assistant"],
            "token_sha256": hashlib.sha256(AGENT_TOKEN.encode()).hexdigest(),
        },
    }
    return data


@pytest.fixture(scope="session")
def agents_policy() -> Policy:
    return Policy(agents_policy_data(), "<agents test policy>")


@pytest.fixture
def agents_policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents-policy.yaml"
    path.write_text(yaml.safe_dump(agents_policy_data(), sort_keys=False))
    return path


@pytest.fixture
def local_user(agents_policy: Policy) -> Callable[[str], Identity]:
    from jupyter_gov.identity.local import LocalProvider

    config = agents_policy.identity_config

    def make(name: str) -> Identity:
        return LocalProvider(config["users"], config["default_groups"], user=name).current()

    return make


@pytest.fixture
def agent_session(
    demo_connector: DuckDBConnector, agents_policy: Policy, local_user
) -> Callable[..., GovernedSession]:
    """``agent_session("bob")``: jupyternaut acting for bob on the shared demo database."""

    def make(user: str | None, agent: str = "jupyternaut") -> GovernedSession:
        who = local_user(user) if user else None
        session = GovernedSession(agents_policy, agent_identity(agents_policy.agents, agent, who))
        session.use_connector("demo", demo_connector)
        return session

    return make
