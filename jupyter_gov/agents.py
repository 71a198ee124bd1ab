"""What an agent may never do, on top of the guardrails every caller gets.

``Policy.roles_for`` gives an agent acting for a user both sides' roles, so the strictest
mask and every row filter of either apply. Everything else that roles *grant* must be held
by both sides, and is checked here on the decided plan: writes, the connection, and the
agent's own ``deny_statements``. An agent also runs one statement per call (a second one
smuggled after ``;`` is refused) and never asks to unmask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from jupyter_gov.guardrails import Context, Finding, verdict_of
from jupyter_gov.identity.base import Identity
from jupyter_gov.plan import Plan
from jupyter_gov.policy import Policy

_WRITES = {"insert", "update", "delete", "merge", "create", "drop", "alter", "truncate"}


def is_agent(identity: Identity) -> bool:
    return identity.kind == "agent"


def restrict(plan: Plan, ctx: Context, unmask: Iterable[str] = ()) -> Plan:
    """Add the agent's deny findings to a plan (a no-op for people and services)."""
    identity = ctx.identity
    if not is_agent(identity) or plan.decision == "deny":
        return plan
    policy = ctx.policy
    agent = policy.agents.get(identity.subject)
    findings: list[Finding] = []
    kinds = [s.info.kind for s in plan.statements]
    if len(kinds) > 1:
        findings.append(
            Finding(
                "deny",
                "agent:one-statement",
                f"Agents run one statement per call; the text holds {len(kinds)}, so nothing ran.",
            )
        )
    denied = sorted({k for k in kinds if agent and k in agent.deny_statements})
    if denied:
        findings.append(
            Finding(
                "deny",
                "agent:statement-kind",
                f"Agent {identity.subject!r} may not run {', '.join(denied)} statements.",
            )
        )
    if any(k in _WRITES for k in kinds) and not _both(policy, identity, _can_write):
        findings.append(
            Finding(
                "deny",
                "agent:read-only",
                "Writes need write access for both the agent and the user it acts for.",
            )
        )
    if not _both(policy, identity, lambda p, roles: _may_use(p, roles, ctx.connection.name)):
        findings.append(
            Finding(
                "deny",
                "agent:connection",
                f"The agent and the user it acts for may not both use connection "
                f"{ctx.connection.name!r}.",
            )
        )
    if tuple(unmask):
        findings.append(Finding("deny", "agent:unmask", "Agents cannot ask to unmask anything."))
    if not findings:
        return plan
    findings = [*plan.findings, *findings]
    return replace(plan, findings=findings, decision=verdict_of(findings))


def _sides(policy: Policy, identity: Identity) -> list[tuple[str, ...]]:
    agent = policy.agents.get(identity.subject)
    sides = [agent.roles if agent else ()]
    if identity.on_behalf_of is not None:
        sides.append(policy.roles_for(identity.on_behalf_of))
    return sides


def _both(policy: Policy, identity: Identity, holds) -> bool:
    return all(holds(policy, roles) for roles in _sides(policy, identity))


def _can_write(policy: Policy, roles: tuple[str, ...]) -> bool:
    return any(policy.roles[r].can_write for r in roles)


def _may_use(policy: Policy, roles: tuple[str, ...], connection: str) -> bool:
    return any(
        not policy.roles[r].connections or connection in policy.roles[r].connections for r in roles
    )
