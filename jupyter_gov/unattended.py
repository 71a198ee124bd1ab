"""Unattended runs (service identities): fail fast on an approval rule, naming the request.

Nobody is at the keyboard at 2 a.m. to click an approval widget, so a service's statement
that needs approval files (or finds) the approval request for exactly that statement and
raises at once with its id. Once an approver approves it, the same run re-run finds the
approved request for its exact binding and uses it; nothing else can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_gov.errors import PipelineNeedsApproval  # importable from here as before

if TYPE_CHECKING:
    from jupyter_gov.approvals import Binding
    from jupyter_gov.engine import GovernedSession
    from jupyter_gov.identity import Identity
    from jupyter_gov.plan import Plan


def is_unattended(identity: Identity) -> bool:
    return identity.kind == "service"


def _find(session: GovernedSession, binding: Binding, state: str) -> str | None:
    for request in session.approvals.list(state):
        if request.binding == binding and (state != "approved" or request.uses < request.max_uses):
            return request.id
    return None


def approved_request(
    session: GovernedSession,
    plan: Plan,
    text: str,
    params: Mapping[str, Any] | Sequence[Any] | None,
    identity: Identity,
    unmask: Iterable[str],
    limit: int | None,
) -> str | None:
    """The id of an approved, unused request for exactly this run, if there is one."""
    binding = session.approval_flow.binding(plan, text, params, identity, frozenset(unmask), limit)
    return _find(session, binding, "approved")


def needs_approval(
    session: GovernedSession,
    plan: Plan,
    text: str,
    params: Mapping[str, Any] | Sequence[Any] | None,
    identity: Identity,
    unmask: Iterable[str],
    limit: int | None,
    decision_id: int | None,
    query_id: str,
    purpose: str | None,
) -> PipelineNeedsApproval:
    """File the request (once: a re-run before approval finds the pending one) and say so."""
    unmask = frozenset(unmask)
    binding = session.approval_flow.binding(plan, text, params, identity, unmask, limit)
    request_id = _find(session, binding, "pending")
    if request_id is None:
        request = session.request_approval(
            text,
            params,
            justification=f"Unattended run of service {identity.subject}"
            + (f": {purpose}" if purpose else "."),
            connection=plan.connection,
            unmask=unmask,
            limit=limit,
        )
        request_id = request.id
    return PipelineNeedsApproval(plan, decision_id, query_id, request_id, identity.subject)
