"""The approval workflow of a session: request, bind, and turn an approval into a run.

Why apart from the engine: the session decides and runs; this module is the only place
that turns an ``approval_required`` plan into an allowed one (a consumed approval or a
permitted break-glass), so the rules for that step are read in one file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jupyter_gov import agents
from jupyter_gov.approvals import (
    ApprovalError,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    Binding,
    required_approvers,
)
from jupyter_gov.dryrun import dry_run_rows, plan_digest, results_digest
from jupyter_gov.guardrails import Finding
from jupyter_gov.result import QueryDenied

if TYPE_CHECKING:
    from jupyter_gov.engine import GovernedSession
    from jupyter_gov.identity import Identity
    from jupyter_gov.plan import Plan

Params = Mapping[str, Any] | Sequence[Any] | None


class ApprovalWorkflow:
    """Requests, bindings and authorisation for one :class:`GovernedSession`."""

    def __init__(self, session: GovernedSession) -> None:
        self.session = session
        self._store: ApprovalStore | None = None

    @property
    def store(self) -> ApprovalStore:
        """The approval requests, kept in the audit store (shared across kernels)."""
        if self._store is None:
            self._store = ApprovalStore(self.session.audit, self.session.policy)
        return self._store

    @store.setter
    def store(self, store: ApprovalStore | None) -> None:
        """Share another session's store (one clock, one cache); None reopens on next use."""
        self._store = store

    def approvers(self, plan: Plan) -> list[str]:
        return required_approvers(self.session.policy, plan.rules)

    def binding(
        self,
        plan: Plan,
        text: str,
        params: Params,
        identity: Identity,
        unmask: frozenset[str],
        limit: int | None,
    ) -> Binding:
        """The binding of a plan: statement, values, limit, what will run, results it reads."""
        return Binding.of(
            identity,
            plan.connection,
            plan.fingerprint,
            text,
            params,
            self.session.policy,
            unmask,
            row_limit=limit,
            plan_hash=plan_digest(plan),
            results_hash=results_digest(self.session.connector(plan.connection), plan),
        )

    def request(
        self,
        plan: Plan,
        text: str,
        params: Params,
        identity: Identity,
        unmask: frozenset[str],
        limit: int | None,
        justification: str,
    ) -> ApprovalRequest:
        """File a request for exactly this plan, with what approvers must see."""
        session = self.session
        policy = session.policy
        if plan.decision == "deny":
            raise QueryDenied(plan)
        if plan.decision == "allow":
            raise ApprovalError("This statement does not need an approval; just run it.")
        binding = self.binding(plan, text, params, identity, unmask, limit)
        rows = None  # no count is run for a request that will be refused for no reason
        if justification.strip():
            rows = dry_run_rows(session, plan, text, params, unmask, limit, justification)
        return self.store.create(
            binding=binding,
            requester=identity,
            statement=plan.normalized,
            rules=[r for r in plan.rules if r.startswith("approval:")],
            reasons=[f.reason for f in plan.findings if f.verdict == "approval_required"],
            approvers=self.approvers(plan),
            justification=justification,
            ttl_seconds=policy.approval_ttl,
            max_uses=policy.approval_max_uses,
            statement_text=text,
            params=params,
            dry_run_rows=rows,
            audit_fields={
                "roles": list(plan.roles),
                "policy_name": policy.name,
                "policy_version": policy.short_hash,
                "session_id": session.session_id,
            },
        )

    def authorize(
        self,
        plan: Plan,
        text: str,
        params: Params,
        identity: Identity,
        unmask: frozenset[str],
        approval_id: str | None,
        break_glass: str | None,
        base: dict[str, Any],
        limit: int | None = None,
    ) -> Plan:
        """Turn an approval-required plan into an allowed one, or raise why not.

        A refused approval (used, expired, revoked, another binding, not backed by the
        chain) is recorded as a ``deny`` decision with its rule before the error is raised.
        """
        binding = self.binding(plan, text, params, identity, unmask, limit)
        try:
            if approval_id:
                request = self.store.consume(approval_id, identity, binding)
                rule = f"approved:{request.id}"
                reason = f"Approved by {request.decided_by_name}" + (
                    f": {request.comment}" if request.comment else "."
                )
            else:
                request = self._break_glass(plan, binding, identity, break_glass, base)
                rule = f"break-glass:{request.id}"
                reason = f"BREAK-GLASS by {identity.display_name}: {request.justification}"
        except ApprovalError as error:
            self.session.events.refusal(
                base, getattr(error, "rule", "approval-refused"), str(error), approval_id
            )
            raise
        return replace(
            plan,
            decision="allow",
            findings=[*plan.findings, Finding("allow", rule, reason)],
        )

    def _break_glass(
        self,
        plan: Plan,
        binding: Binding,
        identity: Identity,
        justification: str | None,
        base: dict[str, Any],
    ) -> ApprovalRequest:
        """File and consume a break-glass request at once, where the policy allows one."""
        policy = self.session.policy
        if agents.is_agent(identity):
            refusal = "Agents cannot break glass"
        elif not set(plan.roles) & set(policy.break_glass_roles):
            refusal = "Break-glass is not enabled for your roles"
        else:
            refusal = None
        if refusal is not None:
            raise ApprovalRefused(
                f"{refusal}; request an approval instead.", "break-glass-not-allowed"
            )
        request = self.store.create(
            binding=binding,
            requester=identity,
            statement=plan.normalized,
            rules=plan.rules,
            reasons=plan.reasons,
            approvers=[],
            justification=justification or "",
            ttl_seconds=policy.approval_ttl,
            break_glass=True,
            audit_fields={"query_id": base["query_id"]},
        )
        self.store.consume(request.id, identity, binding)
        return request
