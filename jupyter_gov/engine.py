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
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from jupyter_gov import agents, keys, unattended
from jupyter_gov.approvals import ApprovalRequest, ApprovalStore
from jupyter_gov.approvals.flow import ApprovalWorkflow
from jupyter_gov.audit import AuditStore, default_home
from jupyter_gov.audit import lineage as _lineage
from jupyter_gov.audit import sinks as audit_sinks
from jupyter_gov.audit.events import AuditEvents
from jupyter_gov.config import resolve
from jupyter_gov.connectors import Connector, open_connector
from jupyter_gov.errors import GovError, IdentityError, QueryFailed
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
from jupyter_gov.stream import GovernedStream, ProgressFactory

_PLAN_CACHE_SIZE = 512
#: See :attr:`GovernedSession.prefetch_rows`.
PREFETCH_ROWS = 200_000


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
        self.session_id = uuid.uuid4().hex[:16]
        self.events = AuditEvents(
            audit if isinstance(audit, AuditStore) else AuditStore(self.settings.audit_store),
            self.policy,
            self.session_id,
            lambda: getattr(self.provider, "name", None),
        )
        # Hook (notify): copy each committed event to the policy's audit sinks, off this thread.
        self.sinks = audit_sinks.attach(self.audit, self.policy, self.session_id)
        self._connectors: dict[str, Connector] = {}
        self._results: dict[str, dict[str, str]] = {}  # connection -> {name: identity key}
        self._plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
        # Results still streaming (their audit count is written when they end).
        self._streaming: weakref.WeakSet[GovernedResult] = weakref.WeakSet()
        #: Rows a result is read ahead when it is returned (a smaller one is then complete).
        self.prefetch_rows = PREFETCH_ROWS
        #: A progress display for long reads, set by a front end (notebook or terminal).
        self.progress: ProgressFactory | None = None
        self.keys = keys.KeyRing(self.policy.mask_key_env, os.environ, default_home)
        self.approval_flow = ApprovalWorkflow(self)
        # Bulk-export accounting: raw values each identity received, per approval rule,
        # and what each saved result holds, per connection: name -> (owner, exposure).
        self._exposure_spent: dict[str, dict[str, int]] = {}
        self._result_exposure: dict[str, dict[str, tuple[str, Exposure]]] = {}
        # The connections each saved result's values came from (a result saved on the
        # scratch connection inherits those of the results it read): the approval rules
        # scoped to those connections apply when it is read back.
        self._result_sources: dict[str, frozenset[str]] = {}
        # provenance: the statements behind each saved result, its own and those of the
        # results it read (name -> query ids), so a file saved from a join of results names all
        self._result_queries: dict[str, tuple[str, ...]] = {}
        # Lineage (audit/lineage.py): computed for reads only when the policy sends it
        # somewhere; ``job_cell`` is the front end's cell number (the magic sets it).
        self._lineage = _lineage.wanted(self.policy)
        self.job_cell: Any = None

    # -- public API ----------------------------------------------------------------------

    @property
    def audit(self) -> AuditStore:
        """The store every event of this session goes to."""
        return self.events.store

    @audit.setter
    def audit(self, store: AuditStore) -> None:
        """Write to another store (several sessions sharing one chain, tests).

        The policy's sinks follow: they export what the session writes, so they leave the
        first store (shared ones stay for its other sessions) and subscribe to this one.
        """
        if store is self.events.store:
            return
        if self.sinks is not None:
            self.sinks.close()
        self.events.store = store
        self.sinks = audit_sinks.attach(store, self.policy, self.session_id)

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
        self._finish_streams()
        query_id = AuditStore.new_query_id()
        connection_name = self.policy.connection(connection or self.default_connection).name
        try:
            identity = self.provider.current()
        except IdentityError as error:
            self.events.identity_failure(query_id, connection_name, str(error))
            raise
        plan = self._plan(text, params, identity, connection_name, frozenset(unmask), limit)
        base = self.events.base(identity, plan, query_id, purpose)
        # Decided without an approval step: the attempt and its decision share one commit.
        together = plan.decision != "approval_required"
        if not together:
            self.events.attempt(base)  # raises AuditError: then nothing runs
        if (
            plan.decision == "approval_required"
            and unattended.is_unattended(identity)
            and not (approval_id or break_glass)
        ):  # a re-run of a pipeline uses the approval given for exactly this run
            approval_id = unattended.approved_request(
                self, plan, text, params, identity, unmask, limit
            )
        if plan.decision == "approval_required" and (approval_id or break_glass):
            plan = self.approval_flow.authorize(
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
        if together:  # raises AuditError: then nothing runs
            decision_id = self.events.attempt_and_decision(base, plan)
        else:
            decision_id = self.events.decision(base, plan)
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
        return self.approval_flow.store

    @approvals.setter
    def approvals(self, store: ApprovalStore | None) -> None:
        """Use another session's approval store (several users of one kernel, tests)."""
        self.approval_flow.store = store

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
        return self.approval_flow.request(
            plan, text, params, identity, unmask, limit, justification
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
                spec, tags = ctx.policy.column_mask(entry.name, column, roles, entry.schema)
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
        for result in list(self._streaming):
            result.close()
        for connector in self._connectors.values():
            connector.close()
        self._connectors.clear()
        if self.sinks is not None:  # hook (notify): deliver what is queued, then stop
            self.sinks.close()
        self.audit.close()

    def __enter__(self) -> GovernedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _context(self, identity: Identity, connection: str | None) -> Context:
        conn = self.policy.connection(connection or self.default_connection)
        policy = self.policy
        if policy.auto_classify:  # pii hook: unclassified: auto (jupyter_gov.pii.auto)
            from jupyter_gov.pii.auto import classified_policy

            policy = classified_policy(self, conn)
        return Context(
            policy=policy,
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
        if ctx.policy.pii_findings:  # pii hook: banner notes for auto-classified columns
            from jupyter_gov.pii.auto import findings_notes

            plan = findings_notes(plan, ctx.policy)
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
        if plan.decision == "deny" or not ctx.policy.approval_rules:
            return plan  # no rule to add (the common case: skip the walk on every run)
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
        counted = [rule for rule in self.policy.approval_rules if rule.unmasked_tags]
        if name is None and not counted:
            return  # nothing keeps count of raw values: no rule limits them, no result saved
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
        for rule in counted:
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
        last = len(plan.statements) - 1
        try:
            for index, statement in enumerate(plan.statements):
                bound = statement.bind(params, self.keys.params)
                reader = connector.execute(statement.sql, bound)
                if index < last:
                    reader.read_all()  # earlier statements run to the end, rows unreturned
        except KeyboardInterrupt:
            connector.interrupt()
            self.events.result(base, started, error="cancelled by the user")
            raise QueryFailed("The query was cancelled; nothing after it ran.") from None
        except GovError as error:
            # lineage: a failed read is a FAIL run of the same inputs
            lineage = self._lineage_of(plan, identity)
            self.events.result(
                base, started, error=str(error), extra={"lineage": lineage} if lineage else None
            )
            raise
        is_read = bool(plan.statements) and plan.statements[-1].info.is_read
        holder: dict[str, GovernedResult] = {}

        def on_cap(cap: int) -> None:
            notice = Finding(
                "allow",
                "row-cap",
                f"Only the first {cap:,} rows are returned: the policy caps results for your "
                f"roles on {plan.connection!r} at {cap:,} rows; filter or aggregate for the rest.",
            )
            result = holder["result"]
            result.plan = replace(result.plan, findings=[*result.plan.findings, notice])

        def on_end(rows: int, error: str | None, complete: bool) -> None:
            self._streaming.discard(holder["result"])
            result = holder["result"]
            extra: dict[str, Any] = {}
            if not (complete or error):
                extra["stream"] = "closed before the end"
            if lineage := self._lineage_of(plan, identity):  # lineage: inputs, column lineage
                extra["lineage"] = lineage
            result.audit_id = self.events.result(
                base,
                started,
                rows=rows if rows or not error else None,
                error=error,
                extra=extra or None,
            )
            saved = name if result._stream.schema.names else None
            self._account_exposure(result.plan, identity, rows, None if error else saved)

        if self.policy.scan_results and is_read:  # pii hook: scanned whole, then streamed
            from jupyter_gov.pii.auto import scan_result

            try:
                table, plan = scan_result(self, plan, reader.read_all())
            except GovError as error:
                self.events.result(base, started, error=str(error))
                raise
            reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

        stream = GovernedStream(
            reader,
            cap=limits.max_rows if is_read else None,
            on_end=on_end,
            on_cap=on_cap,
            interrupt=connector.interrupt,
            progress=self.progress,
            label=f"{plan.connection}: rows",
        )
        result = GovernedResult(
            stream,
            plan,
            identity,
            query_id=query_id,
            audit_id=None,
            duration_ms=(time.perf_counter() - started) * 1000,
            name=name,
        )
        holder["result"] = result
        self._streaming.add(result)
        result.audit = self.audit  # provenance: result.save() reads the chain it came from
        read = {
            t.name.lower() for st in plan.statements for t in st.info.tables if t.kind == "result"
        }
        result.upstream = tuple(  # provenance: the statements of the saved results it read
            dict.fromkeys(q for r in sorted(read) for q in self._result_queries.get(r, ()))
        )
        # A small result is read whole here, so its count is in the audit when sql() returns;
        # a larger one streams, and its count is recorded when it has been read. Only an
        # engine in this process is left mid-result (DuckDB): a database server would keep
        # a statement and its transaction open, under its statement timeout, while the
        # notebook waits, so its results are read to the end here (still batch by batch,
        # counted, with progress).
        lazy = name is None and getattr(connector, "lazy_results", False)
        result._fetch(self.prefetch_rows if lazy else None)
        result.duration_ms = (time.perf_counter() - started) * 1000
        if name is not None and result.columns:
            self._save_result(result.plan, name, result.to_arrow_table(), identity)
            self._result_queries[name.lower()] = (query_id, *result.upstream)
        return result

    def _finish_streams(self) -> None:
        """Settle every result still streaming before this session runs anything else, so
        the raw values it delivered count toward the bulk-export limit of the next plan.

        A result the session still holds is read to the end (it stays usable); one handed
        out as a stream is closed with the rows delivered so far, and its reader raises a
        one-sentence error instead of ending as if whole.
        """
        if not self._streaming:  # the common case: every earlier result was read whole
            return
        for result in list(self._streaming):
            if result.complete:
                continue
            if result._streamed:
                result.close()
            else:
                result._fetch()

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
            # lower case, as SQL reads it: "PG_People" is read as pg_people (a system name)
            self._results.setdefault(where, {})[name.lower()] = identity.key
        if plan.connection == SCRATCH.name:
            read = {t.name.lower() for s in plan.statements for t in s.info.tables}
            sources = frozenset().union(*(self._result_sources.get(r, frozenset()) for r in read))
        else:
            sources = frozenset({plan.connection})
        self._result_sources[name.lower()] = sources

    def _masking_keys(self) -> dict[str, str]:
        return self.keys.params()

    def _lineage_of(self, plan: Plan, identity: Identity) -> dict[str, Any] | None:
        """What an OpenLineage sink needs about a read (names only), if the policy has one."""
        if not self._lineage:
            return None
        try:
            catalog = self.connector(plan.connection).catalog()
        except GovError:  # lineage is evidence about a read, never a reason for it to fail
            return None
        return _lineage.describe(plan, catalog, _lineage.job_of(identity, self.job_cell))


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


def _param_types(params: Mapping[str, Any] | Sequence[Any] | None) -> tuple[Any, ...]:
    if params is None:
        return ()
    if isinstance(params, Mapping):
        return tuple(sorted((k, type(v).__name__) for k, v in params.items()))
    return tuple(type(v).__name__ for v in params)
