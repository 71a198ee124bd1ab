"""Approvals: a reviewed "yes" for one exact statement, by someone else, for a limited time.

A request binds the requester, the connection, the statement (its fingerprint, the hash of
its exact text and of the plan that will run), the parameters, the row limit, the content
of any session result it reads, the policy version and any tags to unmask. An approval is
valid for that binding only. Nobody approves their own request; approvals expire, are
single-use by default, and can be revoked before use.

The audit's hash chain is the record; the ``approvals`` table is a cache of it. Every state
change is one transaction holding a compare-and-set on the row and the event in the chain
(so of two racing calls exactly one wins), and an approval counts only when its chain of
events, replayed, says it is approved by someone the policy makes an approver.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from jupyter_gov import notify
from jupyter_gov.audit import (
    ApprovalTrail,
    AuditStore,
    AuditTransaction,
    request_digest,
)
from jupyter_gov.errors import (  # defined with the rest of the table; importable from here
    ApprovalConflict,
    ApprovalError,
    ApprovalForbidden,
    ApprovalNotFound,
    ApprovalRefused,
)
from jupyter_gov.identity import Identity
from jupyter_gov.notify import Notifier
from jupyter_gov.policy import Policy

STATES = ("pending", "approved", "denied", "expired", "revoked", "used")
FINAL = ("denied", "expired", "revoked", "used")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)
"""

#: Columns added after the first release; ``ALTER TABLE ... ADD COLUMN`` is portable SQL.
_ADDED_COLUMNS = {
    "requester": "TEXT",
    "uses": "INTEGER NOT NULL DEFAULT 0",
    "max_uses": "INTEGER NOT NULL DEFAULT 1",
    "request": "TEXT",  # canonical JSON of what never changes; its hash is in the chain
    "request_event": "INTEGER",  # the event that made the request
}

_ID = re.compile(r"[0-9a-f]{6,32}")


@dataclass
class Binding:
    """What an approval is for: change any field and the approval no longer applies."""

    requester: str  # issuer|subject
    connection: str
    fingerprint: str
    statement_hash: str
    params_hash: str
    policy_hash: str
    unmask: tuple[str, ...] = ()
    row_limit: int | None = None
    plan_hash: str = ""  # the rewritten SQL and its internal parameters: what will run
    results_hash: str = ""  # content of the session results the statement reads

    @classmethod
    def of(
        cls,
        identity: Identity,
        connection: str,
        fingerprint: str,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None,
        policy: Policy,
        unmask: Iterable[str] = (),
        *,
        row_limit: int | None = None,
        plan_hash: str = "",
        results_hash: str = "",
    ) -> Binding:
        return cls(
            requester=principal(identity),
            connection=connection,
            fingerprint=fingerprint,
            statement_hash=_digest(text.strip()),
            params_hash=_digest(_params_json(params)),
            policy_hash=policy.hash,
            unmask=tuple(sorted(set(unmask))),
            row_limit=row_limit,
            plan_hash=plan_hash,
            results_hash=results_hash,
        )


#: Fields of a request that never change; their canonical JSON is hashed into the chain.
_IMMUTABLE = (
    "id",
    "binding",
    "requester_name",
    "statement",
    "rules",
    "reasons",
    "approvers",
    "justification",
    "created_at",
    "expires_at",
    "max_uses",
    "break_glass",
    "dry_run_rows",
)


@dataclass
class ApprovalRequest:
    """One request and its state.

    ``statement_text`` (the SQL exactly as submitted, literals included) and ``params`` (the
    bound values) are for approvers only: :meth:`to_dict` leaves them out unless asked, they
    never go into an audit event, and they are erased once the request is final.
    """

    id: str
    state: str
    binding: Binding
    requester_name: str
    statement: str  # the statement with literals replaced by ?, for everyone
    rules: list[str]
    reasons: list[str]
    approvers: list[str]  # roles that may approve
    justification: str
    created_at: float
    expires_at: float
    max_uses: int = 1
    uses: int = 0
    break_glass: bool = False
    statement_text: str = ""
    params: dict[str, Any] | list[Any] | None = None
    dry_run_rows: int | None = None
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def connection(self) -> str:
        return self.binding.connection

    @property
    def unmask(self) -> tuple[str, ...]:
        return self.binding.unmask

    @property
    def row_limit(self) -> int | None:
        return self.binding.row_limit

    def immutable_json(self) -> str:
        """The canonical JSON of what never changes; its hash binds every event."""
        data = asdict(self)
        return json.dumps(
            {k: data[k] for k in _IMMUTABLE}, sort_keys=True, separators=(",", ":"), default=str
        )

    def to_dict(self, approver: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["requester"] = self.binding.requester
        data["connection"] = self.binding.connection
        data["unmask"] = list(self.binding.unmask)
        data["fingerprint"] = self.binding.fingerprint
        data["row_limit"] = self.binding.row_limit
        if not approver:
            data.pop("statement_text")
            data.pop("params")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        binding = dict(data["binding"])
        binding["unmask"] = tuple(binding.get("unmask", ()))
        values["binding"] = Binding(**binding)
        return cls(**values)


def principal(identity: Identity) -> str:
    """The stable id approvals key on: issuer and subject, never a display name.

    An agent acting for a user is its own principal per user (``...|for:local|bob``), so
    one user's approval never runs for another's agent.
    """
    own = f"{identity.issuer}|{identity.subject}"
    user = identity.on_behalf_of
    return f"{own}|for:{principal(user)}" if user is not None else own


def required_approvers(policy: Policy, rules: Iterable[str]) -> list[str]:
    """The roles that may decide a request for these ``approval:*`` rules, from the policy."""
    rule_ids = [r.removeprefix("approval:") for r in rules if r.startswith("approval:")]
    roles = list(policy.approvers_for(rule_ids))
    if "unmask" in rule_ids:  # just-in-time unmasking: any role that approves
        roles += [n for n, r in policy.roles.items() if r.approve and n not in roles]
    return roles


def display_params(params: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    """The bound values as JSON, exactly what ``params_hash`` covers."""
    return json.loads(_params_json(params))


def _params_json(params: Mapping[str, Any] | Sequence[Any] | None) -> str:
    return json.dumps(_params_in_order(params), sort_keys=True, default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _params_in_order(params: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    """Named values sorted by name, positional ones as a list: one JSON form per binding."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {str(k): params[k] for k in sorted(params)}
    return list(params)


class ApprovalStore:
    """Requests in the audit's store; each change and its event commit together or not at all.

    ``policy`` is what roles are derived from: deciding and using approvals need it. A store
    opened without one can only list and show requests.
    """

    def __init__(
        self,
        audit: AuditStore,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
    ) -> None:
        self.audit = audit
        self.policy = policy
        self.clock = clock
        # Hook (notify): the channels of approvals.notify, told after each change commits.
        self.notifier = notifier if notifier is not None else notify.for_policy(policy, audit)
        with self.audit.transaction() as tx:
            tx.execute(_SCHEMA)
            present = {d[0] for d in tx.execute("SELECT * FROM approvals WHERE 1 = 0").description}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    tx.execute(f"ALTER TABLE approvals ADD COLUMN {column} {kind}")

    # -- reading ---------------------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalRequest:
        self._expire_due(request_id)
        with self.audit.transaction() as tx:
            return self._load(tx, request_id)

    def list(
        self, state: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[ApprovalRequest]:
        """Requests newest first, ``state`` pending/approved/... or None/"all"; paged, never cut."""
        self._expire_due()
        where, args = ("", []) if state in (None, "all") else ("WHERE state = ?", [state])
        page = "" if limit is None else " LIMIT ? OFFSET ?"
        args += [] if limit is None else [limit, offset]
        with self.audit.transaction() as tx:
            rows = tx.execute(
                f"SELECT * FROM approvals {where} ORDER BY created_at DESC, id{page}", args
            ).fetchall()
            return [self._from_row(row) for row in rows]

    def count(self, state: str | None = None) -> int:
        self._expire_due()
        where, args = ("", []) if state in (None, "all") else ("WHERE state = ?", [state])
        with self.audit.transaction() as tx:
            return int(tx.execute(f"SELECT count(*) FROM approvals {where}", args).fetchone()[0])

    def actionable_by(
        self, identity: Identity, *, limit: int | None = None, offset: int = 0
    ) -> list[ApprovalRequest]:
        """Pending requests this identity may decide, newest first; every one, unless paged.

        The identity's roles come from the policy, not from the caller. No cap hides an old
        request behind newer ones: without ``limit`` all are returned.
        """
        roles = set(self.roles_of(identity)) if self.policy is not None else set()
        if not roles:
            return []
        self._expire_due()
        with self.audit.transaction() as tx:
            rows = tx.execute(
                "SELECT * FROM approvals WHERE state = ? AND (requester IS NULL OR requester <> ?)"
                " ORDER BY created_at DESC, id",
                ("pending", principal(identity)),
            ).fetchall()
            requests = [self._from_row(row) for row in rows]
        mine = [
            r
            for r in requests
            if r.binding.requester != principal(identity) and roles & set(r.approvers)
        ]
        return mine[offset:] if limit is None else mine[offset : offset + limit]

    def roles_of(self, identity: Identity) -> tuple[str, ...]:
        """The roles the policy gives an identity, derived here and never taken on trust.

        With the local provider, groups are looked up in the policy's user table by subject
        (a hand-made Identity claiming groups gains nothing). With a verified provider the
        identity must be verified; its groups come from the validated token.
        """
        policy = self._policy()
        config = policy.identity_config
        if config.get("provider", "local") == "local":
            if identity.issuer != "local":
                return ()
            from jupyter_gov.identity.local import LocalProvider

            provider = LocalProvider(
                config.get("users"), config.get("default_groups", ()), user=identity.subject
            )
            return policy.roles_for(provider.current())
        if not identity.verified or identity.issuer == "local":
            return ()
        return policy.roles_for(identity)

    # -- writing ---------------------------------------------------------------------------

    def create(
        self,
        *,
        binding: Binding,
        requester: Identity,
        statement: str,
        rules: list[str],
        reasons: list[str],
        approvers: list[str],
        justification: str,
        ttl_seconds: int,
        max_uses: int = 1,
        break_glass: bool = False,
        statement_text: str = "",
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        dry_run_rows: int | None = None,
        audit_fields: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        if not justification.strip():
            raise ApprovalError("A justification is required: say why this statement must run.")
        now = self.clock()
        request = ApprovalRequest(
            id=uuid.uuid4().hex[:12],
            state="approved" if break_glass else "pending",
            binding=binding,
            requester_name=requester.display_name,
            statement=statement,
            rules=rules,
            reasons=reasons,
            approvers=approvers,
            justification=justification.strip(),
            created_at=now,
            expires_at=now + ttl_seconds,
            max_uses=max_uses,
            break_glass=break_glass,
            statement_text=statement_text,
            params=display_params(params),
            dry_run_rows=dry_run_rows,
        )
        if break_glass:
            request.decided_by = principal(requester)
            request.decided_by_name = requester.display_name
            request.decided_at = now
        kind = "break_glass" if break_glass else "approval_requested"
        extra = dict(audit_fields or {})
        if break_glass:  # the decision is the requester's own: record the roles that allow it
            extra["roles"] = list(self.roles_of(requester))
        request.history.append({"kind": kind, "at": now, "by": requester.subject})
        with self.audit.transaction() as tx:
            event_id = self._event(tx, kind, request, requester, extra)
            tx.execute(
                "INSERT INTO approvals (id, state, body, created_at, expires_at, requester, "
                "uses, max_uses, request, request_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.state,
                    _body(request),
                    now,
                    request.expires_at,
                    binding.requester,
                    0,
                    max_uses,
                    request.immutable_json(),
                    event_id,
                ),
            )
        self._notify("break_glass" if break_glass else "requested", request)
        return request

    def approve(self, request_id: str, approver: Identity, comment: str = "") -> ApprovalRequest:
        """Approve as ``approver``, whose roles the policy decides; exactly one racer wins."""
        return self._decide(request_id, approver, "approved", comment)

    def deny(self, request_id: str, approver: Identity, comment: str = "") -> ApprovalRequest:
        if not comment.strip():
            raise ApprovalError("Say why the request is denied: the requester will see it.")
        return self._decide(request_id, approver, "denied", comment)

    def revoke(self, request_id: str, actor: Identity, comment: str = "") -> ApprovalRequest:
        self._expire_due(request_id)
        with self.audit.transaction() as tx:
            request = self._load(tx, request_id)
            if request.state not in ("pending", "approved"):
                raise ApprovalConflict(
                    f"Request {request_id} is {request.state}; it cannot be revoked."
                )
            if principal(actor) not in (request.binding.requester, request.decided_by):
                raise ApprovalForbidden("Only the requester or the approver can revoke a request.")
            before = request.state
            request.state = "revoked"
            request.comment = comment.strip() or request.comment
            self._change(tx, request, "approval_revoked", actor, before)
            return request

    def consume(self, request_id: str, identity: Identity, binding: Binding) -> ApprovalRequest:
        """Use an approval for one run, or raise :class:`ApprovalRefused` saying why not.

        It must be approved by an approver the policy names, unexpired, for this exact
        binding, and its events in the verified chain must say so; the use is counted with a
        compare-and-set, so a single-use approval runs once however many kernels race.
        """
        self._expire_due(request_id)
        self.audit.verify_through(self.audit.head()[0])  # the long walk, outside the lock
        with self.audit.transaction() as tx:
            return self._consume(tx, request_id, identity, binding)

    # -- internals -------------------------------------------------------------------------

    def _policy(self) -> Policy:
        if self.policy is None:
            raise ApprovalError(
                "This approval store was opened without a policy; it can list requests but "
                "not decide or use them."
            )
        return self.policy

    def _consume(
        self, tx: AuditTransaction, request_id: str, identity: Identity, binding: Binding
    ) -> ApprovalRequest:
        request = self._load(tx, request_id)
        if request.state != "approved":
            raise ApprovalRefused(
                f"Approval {request_id} is {request.state}, not approved; nothing was run.",
                f"approval-{request.state}",
            )
        if binding != request.binding:
            changed = [
                name
                for name in _FIELD_NAMES
                if getattr(binding, name) != getattr(request.binding, name)
            ]
            raise ApprovalRefused(
                f"Approval {request_id} was given for a different "
                f"{', '.join(_FIELD_NAMES[c] for c in changed)}; request a new approval.",
                "approval-binding",
            )
        if self.clock() >= request.expires_at:
            raise ApprovalRefused(
                f"Approval {request_id} is expired, not approved; nothing was run.",
                "approval-expired",
            )
        problem, decision = self._unproven(tx, request)
        if problem:
            raise ApprovalRefused(
                f"Approval {request_id} cannot be trusted ({problem}); nothing was run: "
                "run `jupyter-gov audit verify` and request a new approval.",
                "approval-unverified",
            )
        assert decision is not None  # who approved, as the chain says (the row may lie)
        request.decided_by = f"{decision.get('issuer')}|{decision.get('subject')}"
        request.decided_by_name = decision.get("display_name")
        request.comment = (decision.get("detail") or {}).get("comment")
        before, uses = request.state, request.uses
        request.uses += 1
        if request.uses >= request.max_uses:
            request.state = "used"
        self._change(tx, request, "approval_used", identity, before, uses)
        return request

    def _trail(self, tx: AuditTransaction, request: ApprovalRequest) -> tuple[ApprovalTrail, str]:
        """The request replayed from the chain, and why the row disagrees with it (or "")."""
        row = tx.execute(
            "SELECT request, request_event, state, uses FROM approvals WHERE id = ?",
            (request.id,),
        ).fetchone()
        trail = ApprovalTrail(request.id)
        if row["request"] is None or row["request_event"] is None:
            return trail, "it was made before approvals were chained"
        for event in self.audit.approval_events(request.id, int(row["request_event"])):
            trail.feed(event)
        if trail.state is None:
            return trail, "it has no request event in the chain"
        problems = trail.problems + trail.disagreements(row["state"], row["uses"], row["request"])
        return trail, (problems[0] if problems else "")

    def _unproven(
        self, tx: AuditTransaction, request: ApprovalRequest
    ) -> tuple[str, dict[str, Any] | None]:
        """Why the chain does not back this approval ("" when it does), and its decision."""
        policy = self._policy()
        trail, problem = self._trail(tx, request)
        if problem:
            return problem, None
        decision = trail.decision
        if trail.state != "approved" or decision is None:
            return "its events do not say it is approved", None
        if decision.get("policy_hash") != request.binding.policy_hash:
            return "it was decided under another policy version", None
        decided_roles = set(decision.get("roles") or ())
        if decision["kind"] == "break_glass":
            if not decided_roles & set(policy.break_glass_roles):
                return "the break-glass was not made by a break-glass role", None
        elif not decided_roles & set(required_approvers(policy, request.rules)):
            return "it was not decided by a role the policy makes an approver", None
        report = self.audit.verify_through(trail.last_event)
        if not report.ok:
            return f"the audit chain is broken at event {report.broken_at}", None
        return "", decision

    def _decide(
        self, request_id: str, approver: Identity, state: str, comment: str
    ) -> ApprovalRequest:
        if approver.kind == "agent" or approver.on_behalf_of is not None:
            raise ApprovalForbidden("An agent can never approve or deny a request.")
        policy = self._policy()
        roles = self.roles_of(approver)
        self._expire_due(request_id)
        with self.audit.transaction() as tx:
            request = self._load(tx, request_id)
            if request.state != "pending":
                raise ApprovalConflict(f"Request {request_id} is already {request.state}.")
            if principal(approver) == request.binding.requester or (
                request.binding.requester.endswith(f"|for:{principal(approver)}")
            ):
                raise ApprovalForbidden("Nobody can approve or deny their own request.")
            allowed = required_approvers(policy, request.rules)
            if not set(roles) & set(allowed):
                raise ApprovalForbidden(
                    f"Only {', '.join(allowed) or 'nobody'} may decide request {request_id}; "
                    f"your roles are {', '.join(roles) or 'none'}."
                )
            if policy.hash != request.binding.policy_hash:
                raise ApprovalConflict(
                    f"Request {request_id} was made under another version of the policy; "
                    "ask for a new request."
                )
            _, problem = self._trail(tx, request)
            if problem:
                raise ApprovalConflict(
                    f"Request {request_id} does not match its audit events ({problem}); "
                    "run `jupyter-gov audit verify` and ask for a new request."
                )
            request.state = state
            request.decided_by = principal(approver)
            request.decided_by_name = approver.display_name
            request.decided_at = self.clock()
            request.comment = comment.strip() or None
            self._change(
                tx, request, f"approval_{state}", approver, "pending", extra={"roles": list(roles)}
            )
        self._notify(state, request)  # hook (notify): tell the requester, after the commit
        return request

    def _expire_due(self, request_id: str | None = None) -> None:
        """Expire pending or approved requests past their time: each with its event, once."""
        now = self.clock()
        query = "SELECT id FROM approvals WHERE state IN (?, ?) AND expires_at <= ?"
        args: list[Any] = ["pending", "approved", now]
        if request_id is not None:
            query += " AND id = ?"
            args.append(request_id)
        expired = []
        with self.audit.transaction() as tx:
            due = [row[0] for row in tx.execute(query, args).fetchall()]
            for expired_id in due:
                request = self._load(tx, expired_id)
                before = request.state
                request.state = "expired"
                self._change(tx, request, "approval_expired", None, before)
                expired.append(request)
        for request in expired:  # hook (notify): after the commit
            self._notify("expired", request)

    def _notify(self, event: str, request: ApprovalRequest) -> None:
        """Queue a notice for the policy's channels; it never blocks or fails the change."""
        if self.notifier is not None:
            self.notifier.notify(event, request)

    def _load(self, tx: AuditTransaction, request_id: str) -> ApprovalRequest:
        row = None
        if _ID.fullmatch(request_id or ""):
            row = tx.execute("SELECT * FROM approvals WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise ApprovalNotFound(f"There is no approval request {request_id!r}.")
        return self._from_row(row)

    @staticmethod
    def _from_row(row: Any) -> ApprovalRequest:
        data = json.loads(row["body"])
        if row["request"] is not None:
            data.update(json.loads(row["request"]))
        data["id"] = row["id"]  # a copied request under another id hashes differently
        data["state"] = row["state"]
        data["uses"] = row["uses"] or 0
        request = ApprovalRequest.from_dict(data)
        shown = (request.statement_text or request.params is not None) and (
            _digest(request.statement_text.strip()) != request.binding.statement_hash
            or _digest(json.dumps(request.params, sort_keys=True, default=str))
            != request.binding.params_hash
        )
        if shown:  # what an approver would see is not what is bound: show nothing
            request.statement_text, request.params = "", None
        return request

    def _change(
        self,
        tx: AuditTransaction,
        request: ApprovalRequest,
        kind: str,
        actor: Identity | None,
        expected_state: str,
        expected_uses: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Compare-and-set the row and append its event, in the caller's transaction.

        The row changes only if its state and use count are still what was read (and, for
        a use, below the maximum); otherwise another call won and this one is a conflict.
        The same SQL is a correct compare-and-set on PostgreSQL under READ COMMITTED.
        """
        if request.state in FINAL:
            request.statement_text, request.params = "", None
        request.history.append(
            {"kind": kind, "at": self.clock(), "by": actor.subject if actor else None}
        )
        counting = expected_uses is not None
        args: list[Any] = [request.state, request.uses, _body(request), request.id]
        args += [expected_state, expected_uses if counting else request.uses]
        if tx.execute(compare_and_set_sql(counting), args).rowcount != 1:
            raise ApprovalConflict(
                f"Request {request.id} was changed by someone else at the same time; "
                "look at it again."
            )
        self._event(tx, kind, request, actor, extra)

    def _event(
        self,
        tx: AuditTransaction,
        kind: str,
        request: ApprovalRequest,
        actor: Identity | None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        fields: dict[str, Any] = {}
        if actor is not None:
            fields = actor.audit_fields()
            fields.pop("groups", None)
        fields.update(extra or {})
        fields.update(
            connection=request.binding.connection,
            fingerprint=request.binding.fingerprint,
            policy_hash=self.policy.hash if self.policy else request.binding.policy_hash,
            statement=request.statement,
            rules=request.rules,
            purpose=request.justification,
            decision=request.state,
            detail={
                "approval_id": request.id,
                "request_hash": request_digest(request.immutable_json()),
                "requester": request.binding.requester,
                "approvers": request.approvers,
                "comment": request.comment,
                "unmask": list(request.binding.unmask),
                "break_glass": request.break_glass,
                "uses": request.uses,
                "max_uses": request.max_uses,
                "row_limit": request.binding.row_limit,
                "dry_run_rows": request.dry_run_rows,
            },
        )
        return tx.append(kind, **fields)


def compare_and_set_sql(counting: bool) -> str:
    """The one statement that changes a request: it matches only the row as it was read.

    Parameters: new state, new uses, new body, id, expected state, expected uses. A use
    (``counting``) also needs ``uses < max_uses``. Plain SQL: on PostgreSQL under READ
    COMMITTED the UPDATE re-checks its WHERE after waiting for the row lock, so it is the
    same compare-and-set there.
    """
    sql = (
        "UPDATE approvals SET state = ?, uses = ?, body = ? WHERE id = ? AND state = ? AND uses = ?"
    )
    return sql + " AND uses < max_uses" if counting else sql


def _body(request: ApprovalRequest) -> str:
    """The row's changing part (the request column holds the rest)."""
    data = asdict(request)
    return json.dumps(
        {k: v for k, v in data.items() if k not in _IMMUTABLE or k == "id"}, default=str
    )


_FIELD_NAMES = {
    "requester": "requester",
    "connection": "connection",
    "statement_hash": "statement",
    "params_hash": "set of parameters",
    "policy_hash": "policy version",
    "unmask": "set of unmasked columns",
    "row_limit": "row limit",
    "plan_hash": "plan (masks, row filters or limit)",
    "results_hash": "content of the session results it reads",
}
