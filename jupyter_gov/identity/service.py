"""Service and agent principals: the policy's own identities for pipelines and AI agents.

A pipeline (papermill, ``nbconvert --execute``, cron) runs with
``JUPYTER_GOV_AUTH_MODE=service``, ``JUPYTER_GOV_SERVICE`` naming a ``services:`` entry and
its token in ``JUPYTER_GOV_SERVICE_TOKEN`` (or in the file ``JUPYTER_GOV_SERVICE_TOKEN_FILE``
names). The policy holds only the token's SHA-256, so the policy file can be read by anyone
without letting them sign in as the service; what a sign-in proves is possession of the
token, no more (keep it in the scheduler's secret store, not in the notebook).

An agent is not a sign-in of its own: the MCP front end builds an agent identity, optionally
acting for the user the policy's provider says is signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.base import AGENT_AUTH, PRINCIPAL_ISSUER, SERVICE_AUTH, Identity

ENV_SERVICE = "JUPYTER_GOV_SERVICE"
ENV_SERVICE_TOKEN = "JUPYTER_GOV_SERVICE_TOKEN"
ENV_SERVICE_TOKEN_FILE = "JUPYTER_GOV_SERVICE_TOKEN_FILE"
ENV_AGENT_TOKEN = "JUPYTER_GOV_AGENT_TOKEN"


def token_digest(token: str) -> str:
    """The hex SHA-256 a policy lists for a token (``jupyter-gov`` users compute it once)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _token_matches(token: str, expected_sha256: str) -> bool:
    return hmac.compare_digest(token_digest(token), expected_sha256.lower())


class ServiceProvider:
    """Signs a pipeline in as a ``services:`` entry of the policy, proven by its token.

    Fails closed with one sentence when the name is missing or unknown, the token is
    missing, or it does not match; the message never says which of the last two.
    """

    name = SERVICE_AUTH

    def __init__(
        self, services: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
    ) -> None:
        self.services = dict(services or {})
        self.env = os.environ if env is None else env

    def current(self) -> Identity:
        name = self.env.get(ENV_SERVICE, "").strip()
        if not name:
            raise IdentityError(
                f"Service sign-in needs {ENV_SERVICE} set to a service named in the policy's "
                "services: section."
            )
        service = self.services.get(name)
        token = self._token()
        if service is None or token is None or not _token_matches(token, service.token_sha256):
            raise IdentityError(
                f"Service {name!r} could not sign in: the policy lists no such service or its "
                f"token ({ENV_SERVICE_TOKEN} or {ENV_SERVICE_TOKEN_FILE}) does not match."
            )
        return Identity(
            subject=name,
            display_name=f"service {name}",
            auth_method=SERVICE_AUTH,
            issuer=PRINCIPAL_ISSUER,
            verified=True,
            kind="service",
        )

    def _token(self) -> str | None:
        token = self.env.get(ENV_SERVICE_TOKEN)
        if token:
            return token
        path = self.env.get(ENV_SERVICE_TOKEN_FILE)
        if not path:
            return None
        try:
            return Path(path).expanduser().read_text().strip() or None
        except OSError:
            return None


def agent_identity(
    agents: Mapping[str, Any],
    name: str,
    user: Identity | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Identity:
    """The identity of agent ``name`` from the policy's ``agents:``, acting for ``user``.

    An agent whose entry lists ``token_sha256`` must present that token in
    ``JUPYTER_GOV_AGENT_TOKEN``. The user's attributes carry over, so row filters keyed on
    them (``user.region``) still bind to the person the agent acts for.
    """
    env = os.environ if env is None else env
    agent = agents.get(name)
    if agent is None:
        raise IdentityError(
            f"There is no agent named {name!r} in the policy's agents: section; add it or "
            "choose another --agent."
        )
    if agent.token_sha256 and not _token_matches(env.get(ENV_AGENT_TOKEN, ""), agent.token_sha256):
        raise IdentityError(
            f"Agent {name!r} needs its token in {ENV_AGENT_TOKEN}; it is missing or does not match."
        )
    if user is not None and user.kind == "agent":
        raise IdentityError("An agent cannot act on behalf of another agent.")
    display = f"agent {name}" + (f" for {user.display_name}" if user else "")
    return Identity(
        subject=name,
        display_name=display,
        auth_method=AGENT_AUTH,
        issuer=PRINCIPAL_ISSUER,
        verified=True,
        attributes=dict(user.attributes) if user else {},
        expires_at=user.expires_at if user else None,
        kind="agent",
        on_behalf_of=user,
    )
