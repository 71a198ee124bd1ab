"""The governed session: one engine that every front end (magic, CLI, server, API) calls.

identity -> policy -> analysis -> guardrails -> masking (rewrite) -> connector -> audit.

The attempt is written to the audit before anything runs, and if it cannot be written
nothing runs. A denied statement raises :class:`QueryDenied`; one that needs approval
raises :class:`ApprovalRequired`; both carry the plan with its rules and reasons.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from jupyter_gov import agents, keys, masking, unattended
from jupyter_gov.approvals import (
    ApprovalError,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    Binding,
    required_approvers,
)
from jupyter_gov.audit import AuditStore, default_home
from jupyter_gov.config import resolve
from jupyter_gov.connectors import Connector, open_connector
from jupyter_gov.dryrun import dry_run_rows, plan_digest, results_digest
from jupyter_gov.errors import AuditError, GovError, IdentityError, QueryFailed
from jupyter_gov.exposure import Exposure
from jupyter_gov.guardrails import (
    Context,
    Finding,
    check_approvals,
    check_identity,
    verdict_of,
)
from jupyter_gov.identity import Identity, IdentityProvider
from jupyter_gov.plan import Plan, build_plan
from jupyter_gov.policy import Policy
from jupyter_gov.policy.model import SCRATCH
from jupyter_gov.result import ApprovalRequired, GovernedResult, QueryDenied

_PLAN_CACHE_SIZE = 512


def connect(
    policy: Policy | str | Path | None = None,
    identity: Identity | IdentityProvider | str | None = None,
    *,
    connection: str | None = None,
    audit: AuditStore | str | None = None,
    gateway: str | None = None,
) -> GovernedSession:
    """Open a governed session.

    ``policy`` is a :class:`Policy`, a path, or None for ``$JUPYTER_GOV_POLICY`` or the
    built-in demo; ``audit`` a store or its URL, else resolved as every front end does
    (:func:`jupyter_gov.config.resolve`). ``identity`` is an :class:`Identity`, a provider,
    a user name to act as (local provider only), or None for the policy's provider.

    With ``gateway=`` (or ``$JUPYTER_GOV_GATEWAY``) the session is a remote one on that
    gateway (:mod:`jupyter_gov.connectors.gateway`): the gateway holds the policy, the
    credentials and the key, and the token says who you are, so ``policy``, ``identity``
    and ``audit`` are refused.
    """
    from jupyter_gov.config import resolve_gateway

    found = resolve_gateway(gateway)
    if found is not None:
        if policy is not None or identity is not None or audit is not None:
            raise GovError(
                "In gateway mode the gateway holds the policy and the audit and your token "
                "says who you are; drop policy=, identity= and audit=."
            )
        from jupyter_gov.connectors.gateway import GatewaySession

        return GatewaySession(found, connection=connection)  # type: ignore[return-value]
    return GovernedSession(policy, identity, connection=connection, audit=audit)


def provider_for(policy: Policy, user: str | None = None) -> IdentityProvider:
    """The identity provider the policy names, with ``user`` impersonation if allowed."""
    from jupyter_gov.identity.factory import provider_from_config

    return provider_from_config(policy.identity_config, user, services=policy.services)


class _StaticProvider:
    """Wraps a fixed :class:`Identity` (tests, service code that validated it already)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.name = identity.auth_method

    def current(self) -> Identity:
        if self.identity.expired():
            raise IdentityError("Your sign-in has expired; sign in again.")
        return self.identity


class GovernedSession:
    """A policy, an identity provider, open connectors and the audit store, together."""

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        identity: Identity | IdentityProvider | str | None = None,
        *,
        connection: str | None = None,
        audit: AuditStore | str | None = None,
    ) -> None:
        # One resolution for every front end (see jupyter_gov.config): the kernels, the CLI
        # and the sidebar then agree on the policy and the audit store.
        explicit_store = audit.url if isinstance(audit, AuditStore) else audit
        self.settings = resolve(policy=policy, audit_store=explicit_store, connection=connection)
        self.policy = self.settings.policy
        if isinstance(identity, Identity):
            self.provider: IdentityProvider = _StaticProvider(identity)
        elif isinstance(identity, str) or identity is None:
            self.provider = provider_for(self.policy, identity)
        else:
            self.provider = identity
        self.default_connection = self.settings.connection
        self.audit = (
            audit if isinstance(audit, AuditStore) else AuditStore(self.settings.audit_store)
        )
        self.session_id = uuid.uuid4().hex[:16]
        self._connectors: dict[str, Connector] = {}
        self._results: dict[str, dict[str, str]] = {}  # connection -> {name: identity key}
        self._plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
        self._keys: dict[str, str] | None = None
        self._approvals: ApprovalStore | None = None
        # Bulk-export accounting: raw values each identity received, per approval rule,
        # and what each saved result holds, per connection: name -> (owner, exposure).
        self._exposure_spent: dict[str, dict[str, int]] = {}
        self._result_exposure: dict[str, dict[str, tuple[str, Exposure]]] = {}
        # The connections each saved result's values came from (a result saved on the
        # scratch connection inherits those of the results it read): the approval rules
        # scoped to those connections apply when it is read back.
        self._result_sources: dict[str, frozenset[str]] = {}

    # -- public API ----------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.provider.current()

    def connector(self, name: str | None = None) -> Connector:
        connection = self.policy.connection(name or self.default_connection)
        if connection.name not in self._connectors:
            self._connectors[connection.name] = open_connector(connection)
        return self._connectors[connection.name]

    def use_connector(self, name: str, connector: Connector) -> None:
        """Serve the policy's connection ``name`` with an already open connector.

        Why: several sessions (tests, one kernel acting as several users) then share one
        database instead of each opening its own. The policy still governs every statement.
        """
        self._connectors[self.policy.connection(name).name] = connector

    def dialect(self, connection: str | None = None) -> str:
        """The sqlglot dialect statements on ``connection`` are parsed and rendered in."""
        conn = self.policy.connection(connection or self.default_connection)
        return conn.dialect or self.connector(conn.name).dialect

    def explain(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        connection: str | None = None,
        unmask: Iterable[str] = (),
        limit: int | None = None,
    ) -> Plan:
        """Decide and rewrite without running anything (the audit records nothing)."""
        identity = self.provider.current()
        return self._plan(text, params, identity, connection, frozenset(unmask), limit)

    def sql(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        connection: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        purpose: str | None = None,
        unmask: Iterable[str] = (),
        approval_id: str | None = None,
        break_glass: str | None = None,
    ) -> GovernedResult:
        """Run a cell through the proxy and return its last result.

        ``approval_id`` runs a statement that needs approval, if that approval was given for
        exactly this statement, parameters, connection and caller. ``break_glass`` (a
        justification) runs it at once, for roles the policy allows, flagged in the audit.

        Raises :class:`QueryDenied`, :class:`ApprovalRequired`, or a :class:`GovError`
        with one sentence for anything else that stops it.
        """
        query_id = AuditStore.new_query_id()
        connection_name = self.policy.connection(connection or self.default_connection).name
        try:
            identity = self.provider.current()
        except IdentityError as error:
            self._audit_identity_failure(query_id, connection_name, str(error))
            raise
        plan = self._plan(text, params, identity, connection_name, frozenset(unmask), limit)
        base = self._event_base(identity, plan, query_id, purpose)
        self.audit.append("attempt", **base)  # raises AuditError: then nothing runs
        if (
            plan.decision == "approval_required"
            and unattended.is_unattended(identity)
            and not (approval_id or break_glass)
        ):  # a re-run of a pipeline uses the approval given for exactly this run
            approval_id = unattended.approved_request(
                self, plan, text, params, identity, unmask, limit
            )
        if plan.decision == "approval_required" and (approval_id or break_glass):
            plan = self._authorize(
                plan,
                text,
                params,
                identity,
                frozenset(unmask),
                approval_id,
                break_glass,
                base,
                limit=limit,
            )
        decision_id = self.audit.append(
            "decision",
            **_without_detail(base),
            decision=plan.decision,
            rules=plan.rules,
            reasons=plan.reasons,
            masked_columns=plan.masked_columns,
            rewritten_sql=plan.audited_sql or None,
            rewritten_hash=plan.rewritten_hash,
            detail=_detail(base, {"row_filters": plan.row_filters} if plan.row_filters else None),
        )
        if plan.decision == "deny":
            raise QueryDenied(plan, decision_id)
        if plan.decision == "approval_required":
            if unattended.is_unattended(identity):
                raise unattended.needs_approval(
                    self,
                    plan,
                    text,
                    params,
                    identity,
                    unmask,
                    limit,
                    decision_id,
                    query_id,
                    purpose,
                )
            raise ApprovalRequired(plan, decision_id, query_id)
        if name is not None:
            self._check_result_name(name, connection_name)
        return self._execute(plan, identity, params, query_id, base, name)

    # -- approvals -----------------------------------------------------------------------

    @property
    def approvals(self) -> ApprovalStore:
        """The approval requests, kept in the audit store's file (shared across kernels)."""
        if self._approvals is None:
            self._approvals = ApprovalStore(self.audit, self.policy)
        return self._approvals

    def approve(self, request_id: str, comment: str = "") -> ApprovalRequest:
        """Approve someone else's request as this session's identity (roles from the policy)."""
        return self.approvals.approve(request_id, self.provider.current(), comment)

    def deny(self, request_id: str, comment: str) -> ApprovalRequest:
        """Deny someone else's request as this session's identity; the comment says why."""
        return self.approvals.deny(request_id, self.provider.current(), comment)

    def request_approval(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        justification: str,
        connection: str | None = None,
        unmask: Iterable[str] = (),
        limit: int | None = None,
    ) -> ApprovalRequest:
        """Ask for someone else's approval of exactly this statement, parameters and limit.

        The request carries what approvers must see: the exact SQL and values, the
        justification, the row limit and a dry-run count of the rows it will touch.
        """
        identity = self.provider.current()
        unmask = frozenset(unmask)
        plan = self._plan(text, params, identity, connection, unmask, limit)
        if plan.decision == "deny":
            raise QueryDenied(plan)
        if plan.decision == "allow":
            raise ApprovalError("This statement does not need an approval; just run it.")
        binding = self._binding(plan, text, params, identity, unmask, limit)
        rows = None  # no count is run for a request that will be refused for no reason
        if justification.strip():
            rows = dry_run_rows(self, plan, text, params, unmask, limit, justification)
        return self.approvals.create(
            binding=binding,
            requester=identity,
            statement=plan.normalized,
            rules=[r for r in plan.rules if r.startswith("approval:")],
            reasons=[f.reason for f in plan.findings if f.verdict == "approval_required"],
            approvers=self._approvers(plan),
            justification=justification,
            ttl_seconds=self.policy.approval_ttl,
            max_uses=self.policy.approval_max_uses,
            statement_text=text,
            params=params,
            dry_run_rows=rows,
            audit_fields={
                "roles": list(plan.roles),
                "policy_name": self.policy.name,
                "policy_version": self.policy.short_hash,
                "session_id": self.session_id,
            },
        )

    def _approvers(self, plan: Plan) -> list[str]:
        return required_approvers(self.policy, plan.rules)

    def _binding(
        self,
        plan: Plan,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None,
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
            self.policy,
            unmask,
            row_limit=limit,
            plan_hash=plan_digest(plan),
            results_hash=results_digest(self.connector(plan.connection), plan),
        )

    def _authorize(
        self,
        plan: Plan,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None,
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
        binding = self._binding(plan, text, params, identity, unmask, limit)
        try:
            if approval_id:
                request = self.approvals.consume(approval_id, identity, binding)
                rule = f"approved:{request.id}"
                reason = f"Approved by {request.decided_by_name}" + (
                    f": {request.comment}" if request.comment else "."
                )
            else:
                if agents.is_agent(identity):
                    raise ApprovalRefused(
                        "Agents cannot break glass; request an approval instead.",
                        "break-glass-not-allowed",
                    )
                if not set(plan.roles) & set(self.policy.break_glass_roles):
                    raise ApprovalRefused(
                        "Break-glass is not enabled for your roles; request an approval instead.",
                        "break-glass-not-allowed",
                    )
                request = self.approvals.create(
                    binding=binding,
                    requester=identity,
                    statement=plan.normalized,
                    rules=plan.rules,
                    reasons=plan.reasons,
                    approvers=[],
                    justification=break_glass or "",
                    ttl_seconds=self.policy.approval_ttl,
                    break_glass=True,
                    audit_fields={"query_id": base["query_id"]},
                )
                self.approvals.consume(request.id, identity, binding)
                rule = f"break-glass:{request.id}"
                reason = f"BREAK-GLASS by {identity.display_name}: {request.justification}"
        except ApprovalError as error:
            self.audit.append(
                "decision",
                **_without_detail(base),
                decision="deny",
                rules=[getattr(error, "rule", "approval-refused")],
                reasons=[str(error)],
                detail=_detail(base, {"approval_id": approval_id} if approval_id else None),
            )
            raise
        return replace(
            plan,
            decision="allow",
            findings=[*plan.findings, Finding("allow", rule, reason)],
        )

    def visible_columns(self, connection: str | None = None) -> list[dict[str, Any]]:
        """Every column of the connection with its tags and the mask the caller's roles get.

        Empty for a caller the guardrails would deny outright (no role, or no role allowed
        on this connection): the listing itself is metadata she may not read.
        """
        identity = self.identity
        ctx = self._context(identity, connection)
        if check_identity(ctx):
            return []
        roles = ctx.roles
        catalog = self.connector(ctx.connection.name).catalog()
        rows = []
        for entry in {id(e): e for e in catalog.tables.values()}.values():
            for column, dtype in entry.columns.items():
                spec, tags = self.policy.column_mask(entry.name, column, roles, entry.schema)
                rows.append(
                    {
                        "table": entry.name,
                        "column": column,
                        "type": dtype.sql(),
                        "tags": list(tags),
                        "mask": spec.label,
                    }
                )
        return rows

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self._connectors.clear()
        self.audit.close()

    def __enter__(self) -> GovernedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _context(self, identity: Identity, connection: str | None) -> Context:
        conn = self.policy.connection(connection or self.default_connection)
        return Context(
            policy=self.policy,
            identity=identity,
            roles=self.policy.roles_for(identity),
            connection=conn,
            dialect=self.dialect(conn.name),
        )

    def _plan(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None,
        identity: Identity,
        connection: str | None,
        unmask: frozenset[str],
        limit: int | None,
    ) -> Plan:
        ctx = self._context(identity, connection)
        connector = self.connector(ctx.connection.name)
        catalog = connector.catalog()
        results = self._owned_results(ctx.connection.name, identity)
        cap = self.policy.limits_for(ctx.roles, ctx.connection).max_rows
        if cap is not None and (limit is None or limit > cap):
            limit = cap + 1  # one row more than allowed tells a cut result from an exact one
        key = (
            text,
            _param_types(params),
            identity.key,
            self.policy.hash,
            catalog.version,
            ctx.connection.name,
            unmask,
            limit,
            tuple(sorted(results)),
        )
        cached = self._plans.get(key)
        if cached is not None:
            self._plans.move_to_end(key)
            return self._with_session_exposure(cached, ctx)
        plan = build_plan(text, ctx, catalog, results, unmask=unmask, limit=limit)
        if ctx.connection.name == SCRATCH.name:
            plan = _scratch_reads_only(plan)
        plan = agents.restrict(plan, ctx, unmask)  # an agent's limits (no-op for others)
        self._plans[key] = plan
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return self._with_session_exposure(plan, ctx)

    # -- bulk-export accounting (see jupyter_gov.exposure) ---------------------------------

    def _result_records(self, connection: str, identity: Identity) -> dict[str, Exposure]:
        """What each of this identity's saved results holds, by lower-case name."""
        return {
            name: exposure
            for name, (owner, exposure) in self._result_exposure.get(connection, {}).items()
            if owner == identity.key
        }

    def _with_session_exposure(self, plan: Plan, ctx: Context) -> Plan:
        """Add the approval rules that what this session already received makes apply.

        A plan is decided on one statement; the bulk-export limit is per session: results
        read back (``page0 UNION ALL page1``) add what they hold, and the raw values this
        identity already received count toward the same limit, so paging crosses it.
        """
        if plan.decision == "deny":
            return plan
        spent = self._exposure_spent.get(ctx.identity.key, {})
        records = self._result_records(ctx.connection.name, ctx.identity)
        findings = list(plan.findings)
        seen = {(f.rule, f.statement) for f in findings}
        for index, statement in enumerate(plan.statements):
            exposure = statement.exposure.with_results(records)
            for scope in self._approval_scopes(statement, ctx):
                for finding in check_approvals(statement.info, scope, exposure, index, spent):
                    if (finding.rule, finding.statement) not in seen:
                        seen.add((finding.rule, finding.statement))
                        findings.append(finding)
        if len(findings) == len(plan.findings):
            return plan
        return replace(plan, findings=findings, decision=verdict_of(findings))

    def _approval_scopes(self, statement: Any, ctx: Context) -> list[Context]:
        """The contexts approval rules are checked in: the statement's own connection and,
        on the scratch connection, every connection the saved results it reads came from
        (a rule for ``production`` still holds when its rows are read back from scratch)."""
        if ctx.connection.name != SCRATCH.name:
            return [ctx]
        sources: set[str] = set()
        for ref in statement.info.tables:
            if ref.kind == "result":
                sources |= self._result_sources.get(ref.name.lower(), frozenset())
        scopes = [ctx]
        for source in sorted(sources - {SCRATCH.name}):
            if source in self.policy.connections:
                scopes.append(replace(ctx, connection=self.policy.connection(source)))
        return scopes

    def _account_exposure(
        self, plan: Plan, identity: Identity, rows: int, name: str | None
    ) -> None:
        """Record the raw values a run delivered: per rule for the caller, and in its result."""
        last = plan.statements[-1] if plan.statements else None
        delivered = Exposure(rows=0)  # a write returns a count, never a raw value
        if last is not None and last.info.is_read:
            records = self._result_records(plan.connection, identity)
            delivered = last.exposure.with_results(records).delivered(rows)
        if name is not None:
            for where in dict.fromkeys((plan.connection, SCRATCH.name)):
                saved = self._result_exposure.setdefault(where, {})
                saved[name.lower()] = (identity.key, delivered)
        if any(r.startswith(("approved:", "break-glass:")) for r in plan.rules):
            return  # a reviewed export: the approval covered it
        spent = self._exposure_spent.setdefault(identity.key, {})
        for rule in self.policy.approval_rules:
            if rule.unmasked_tags:
                values = delivered.values(rule.unmasked_tags)
                if values:
                    spent[rule.id] = spent.get(rule.id, 0) + values

    def _owned_results(self, connection: str, identity: Identity) -> dict[str, str]:
        return {
            name: owner
            for name, owner in self._results.get(connection, {}).items()
            if owner == identity.key
        }

    def _check_result_name(self, name: str, connection: str) -> None:
        if not name.isidentifier():
            raise GovError(f"{name!r} is not a valid output name; use letters, digits and _.")
        if self.connector(connection).catalog().get(name.lower()) is not None:
            raise GovError(
                f"{name!r} is a table of connection {connection!r}; choose another output name."
            )

    def _execute(
        self,
        plan: Plan,
        identity: Identity,
        params: Mapping[str, Any] | Sequence[Any] | None,
        query_id: str,
        base: dict[str, Any],
        name: str | None,
    ) -> GovernedResult:
        connector = self.connector(plan.connection)
        limits = self.policy.limits_for(plan.roles, self.policy.connection(plan.connection))
        set_timeout = getattr(connector, "set_timeout", None)
        if set_timeout is not None:
            set_timeout(limits.timeout_seconds)
        started = time.perf_counter()
        table = None
        try:
            for statement in plan.statements:
                bound = self._bind(statement, params)
                table = connector.execute(statement.sql, bound)
        except KeyboardInterrupt:
            connector.interrupt()
            self._audit_result(base, started, error="cancelled by the user")
            raise QueryFailed("The query was cancelled; nothing after it ran.") from None
        except GovError as error:
            self._audit_result(base, started, error=str(error))
            raise
        duration_ms = (time.perf_counter() - started) * 1000
        assert table is not None
        cap = limits.max_rows
        if cap is not None and table.num_rows > cap and plan.statements[-1].info.is_read:
            table = table.slice(0, cap)
            notice = Finding(
                "allow",
                "row-cap",
                f"Only the first {cap:,} rows are returned: the policy caps results for your "
                f"roles on {plan.connection!r} at {cap:,} rows; filter or aggregate for the rest.",
            )
            plan = replace(plan, findings=[*plan.findings, notice])
        result_id = self._audit_result(base, started, rows=table.num_rows, duration_ms=duration_ms)
        if name is not None and table.num_columns:
            self._save_result(plan, name, table, identity)
        self._account_exposure(plan, identity, table.num_rows, name if table.num_columns else None)
        return GovernedResult(
            table,
            plan,
            identity,
            query_id=query_id,
            audit_id=result_id,
            duration_ms=duration_ms,
            name=name,
        )

    def _save_result(self, plan: Plan, name: str, table: Any, identity: Identity) -> None:
        """Keep a (masked) result as a relation for this identity's later cells.

        It is registered on the kernel's scratch DuckDB whatever engine produced it (so
        results of several connections can be joined there), and also on the connection
        itself when that engine can hold it (DuckDB: joins with its own tables). Both are
        zero-copy views of the same Arrow table.
        """
        places = [SCRATCH.name]
        if plan.connection != SCRATCH.name and _holds_results(self.connector(plan.connection)):
            places.append(plan.connection)
        for where in places:
            self.connector(where).register_result(name, table)
            self._results.setdefault(where, {})[name] = identity.key
        if plan.connection == SCRATCH.name:
            read = {t.name.lower() for s in plan.statements for t in s.info.tables}
            sources = frozenset().union(*(self._result_sources.get(r, frozenset()) for r in read))
        else:
            sources = frozenset({plan.connection})
        self._result_sources[name.lower()] = sources

    def _bind(
        self, statement: Any, params: Mapping[str, Any] | Sequence[Any] | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = dict(statement.internal_params)
        if "g_k1" in statement.placeholders:
            values.update(self._masking_keys())
        if isinstance(params, Mapping):
            for user_name, bound in statement.user_params.items():
                if user_name not in params:
                    raise GovError(
                        f"The statement uses parameter :{user_name} but no value was given "
                        "for it; define it or pass params."
                    )
                values[bound] = params[user_name]
        elif statement.user_params:
            missing = ", ".join(f":{n}" for n in statement.user_params)
            raise GovError(f"The statement uses {missing} but no parameters were given.")
        if statement.positional:
            if (
                not isinstance(params, Sequence)
                or isinstance(params, (str, bytes))
                or len(params) != len(statement.positional)
            ):
                raise GovError(
                    f"The statement has {len(statement.positional)} ? placeholder(s); pass "
                    "exactly that many positional parameters."
                )
            values.update(zip(statement.positional, params))
        return {k: v for k, v in values.items() if k in statement.placeholders}

    def _masking_keys(self) -> dict[str, str]:
        if self._keys is None:
            self._keys = masking.masking_keys(self.policy, os.environ, default_home())
        return self._keys

    def _event_base(
        self, identity: Identity, plan: Plan, query_id: str, purpose: str | None
    ) -> dict[str, Any]:
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
            "detail": _detail(None, {"on_behalf_of": identity.delegation()}),
        }

    def _audit_result(
        self,
        base: dict[str, Any],
        started: float,
        *,
        rows: int | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
    ) -> int:
        """Record how the statement ended. It has run (or failed) by now, so a failure to
        record says exactly that, never "not run"; a result that cannot be recorded is
        withheld, so nothing leaves the proxy unaudited."""
        if duration_ms is None:
            duration_ms = (time.perf_counter() - started) * 1000
        try:
            return self.audit.append(
                "result",
                **base,
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
                f"{what} could not be recorded in the audit store at {self.audit.path}"
                f"{withheld}; check the disk and the file's permissions before running it again."
            ) from failure

    def _audit_identity_failure(self, query_id: str, connection: str, reason: str) -> None:
        self.audit.append(
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
            auth_method=getattr(self.provider, "name", None),
        )


def _holds_results(connector: Connector) -> bool:
    """Whether the engine itself can hold a saved result (DuckDB registers Arrow views)."""
    from jupyter_gov.connectors.duckdb import DuckDBConnector

    return isinstance(connector, DuckDBConnector)


def _scratch_reads_only(plan: Plan) -> Plan:
    """Nothing is written on the scratch connection: a table created there would be seen by
    the next identity of the kernel, around the per-identity scoping of saved results."""
    if plan.decision == "deny" or all(s.info.is_read for s in plan.statements):
        return plan
    finding = Finding(
        "deny",
        "scratch-read-only",
        "The scratch connection only reads the results you saved; write to a database "
        "connection instead.",
    )
    return replace(plan, findings=[*plan.findings, finding], decision="deny")


def _detail(base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> Any:
    """An event's ``detail``: the base's (who an agent acts for) plus this event's own."""
    merged = {**((base or {}).get("detail") or {}), **{k: v for k, v in (extra or {}).items()}}
    merged = {k: v for k, v in merged.items() if v is not None}
    return merged or None


def _without_detail(base: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != "detail"}


def _param_types(params: Mapping[str, Any] | Sequence[Any] | None) -> tuple[Any, ...]:
    if params is None:
        return ()
    if isinstance(params, Mapping):
        return tuple(sorted((k, type(v).__name__) for k, v in params.items()))
    return tuple(type(v).__name__ for v in params)


def _home_key() -> bytes:
    """The per-installation masking key (see :func:`jupyter_gov.keys.home_key`)."""
    return keys.home_key(default_home())
