"""The events one governed statement writes: attempt, decision(s) and result.

Why here and not in the engine: every front end that runs a statement (the session, the
gateway, the MCP server) must write the same fields in the same order, and the rule "the
attempt is recorded before anything runs; a result that cannot be recorded is withheld"
lives in one place. :class:`AuditEvents` assembles the fields and appends them to a store;
it never decides anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_gov.audit import lineage
from jupyter_gov.errors import AuditError

if TYPE_CHECKING:
    from jupyter_gov.audit.store import AuditStore
    from jupyter_gov.identity import Identity
    from jupyter_gov.plan import Plan
    from jupyter_gov.policy import Policy


def detail(base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> Any:
    """An event's ``detail``: the base's (who an agent acts for) plus this event's own."""
    merged = {**((base or {}).get("detail") or {}), **dict(extra or {})}
    merged = {k: v for k, v in merged.items() if v is not None}
    return merged or None


def without_detail(base: Mapping[str, Any]) -> dict[str, Any]:
    """The base fields an event carries next to a ``detail`` of its own."""
    return {k: v for k, v in base.items() if k != "detail"}


class AuditEvents:
    """Builds and appends the events of one session's statements to its audit store."""

    def __init__(
        self,
        store: AuditStore,
        policy: Policy,
        session_id: str,
        auth_method: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.session_id = session_id
        self._auth_method = auth_method

    def base(
        self, identity: Identity, plan: Plan, query_id: str, purpose: str | None
    ) -> dict[str, Any]:
        """The fields every event of this statement repeats (who, under which policy, what)."""
        fields = identity.audit_fields()
        fields.pop("groups", None)
        return {
            **fields,
            "query_id": query_id,
            "session_id": self.session_id,
            "roles": list(plan.roles),
            "policy_name": self.policy.name,
            "policy_version": self.policy.short_hash,
            "policy_hash": self.policy.hash,
            "connection": plan.connection,
            "statement": plan.normalized or None,
            "statement_kind": plan.statement_kind,
            "fingerprint": plan.fingerprint or None,
            "purpose": purpose,
            "detail": detail(None, {"on_behalf_of": identity.delegation()}),
        }

    def attempt(self, base: Mapping[str, Any]) -> int:
        """Record the attempt; raises :class:`AuditError`, and then nothing may run."""
        return self.store.append("attempt", **base)

    def decision(self, base: Mapping[str, Any], plan: Plan) -> int:
        """Record the plan's decision with its rules, masks and the SQL that will run."""
        return self.store.append("decision", **self.decision_fields(base, plan))

    def attempt_and_decision(self, base: Mapping[str, Any], plan: Plan) -> int:
        """Record the attempt and its decision in one commit (no approval step between them).

        Raises :class:`AuditError` when the commit fails, and then nothing may run; returns
        the decision's id.
        """
        _, decision_id = self.store.append_many(
            [("attempt", dict(base)), ("decision", self.decision_fields(base, plan))]
        )
        return decision_id

    def decision_fields(self, base: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
        """A decision event: the plan's verdict, masks, row filters and the tags it reads."""
        own: dict[str, Any] = {}
        if plan.row_filters:
            own["row_filters"] = plan.row_filters
        # report: which classification tags the statement reads, masked or not
        if tags := lineage.tags_touched(plan, self.policy):
            own["tags"] = tags
        return dict(
            without_detail(base),
            decision=plan.decision,
            rules=plan.rules,
            reasons=plan.reasons,
            masked_columns=plan.masked_columns,
            rewritten_sql=plan.audited_sql or None,
            rewritten_hash=plan.rewritten_hash,
            detail=detail(base, own or None),
        )

    def refusal(
        self, base: Mapping[str, Any], rule: str, reason: str, approval_id: str | None
    ) -> int:
        """Record a refused approval or break-glass as a ``deny`` decision with its rule."""
        return self.store.append(
            "decision",
            **without_detail(base),
            decision="deny",
            rules=[rule],
            reasons=[reason],
            detail=detail(base, {"approval_id": approval_id} if approval_id else None),
        )

    def result(
        self,
        base: Mapping[str, Any],
        started: float,
        *,
        rows: int | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Record how the statement ended. It has run (or failed) by now, so a failure to
        record says exactly that, never "not run"; a result that cannot be recorded is
        withheld, so nothing leaves the proxy unaudited."""
        if duration_ms is None:
            duration_ms = (time.perf_counter() - started) * 1000
        try:
            fields = dict(base)
            if extra:
                fields["detail"] = detail(base, extra)
            return self.store.append(
                "result",
                **fields,
                rows=rows,
                duration_ms=round(duration_ms, 3),
                error=error,
                decision="error" if error else "allow",
            )
        except AuditError as failure:
            what = (
                "The statement failed, and its failure"
                if error
                else "The statement ran (any change it made stays made), but its result"
            )
            withheld = "" if error else ", so the result is withheld"
            raise AuditError(
                f"{what} could not be recorded in the audit store at {self.store.path}"
                f"{withheld}; check the disk and the file's permissions before running it again."
            ) from failure

    def identity_failure(self, query_id: str, connection: str, reason: str) -> int:
        """Record a statement refused before planning because the caller has no identity."""
        return self.store.append(
            "decision",
            query_id=query_id,
            session_id=self.session_id,
            connection=connection,
            policy_name=self.policy.name,
            policy_version=self.policy.short_hash,
            policy_hash=self.policy.hash,
            decision="deny",
            rules=["identity"],
            reasons=[reason],
            auth_method=self._auth_method(),
        )
