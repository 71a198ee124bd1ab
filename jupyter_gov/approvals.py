"""Approvals: a reviewed "yes" for one exact statement, by someone else, for a limited time.

A request binds the requester, the connection, the statement (its fingerprint and the
hash of its exact text), the parameters, the policy version and any tags to unmask. An
approval is valid for that binding only: edit the SQL, the parameters or the connection and
it no longer applies. Nobody approves their own request; approvals expire, are single-use
by default, and can be revoked before use. Every step is an event in the audit's hash
chain, and the requests live in the audit's own SQLite file, so an approver in another
kernel (or another user's JupyterLab sharing the store) sees them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

from jupyter_gov.audit import AuditStore
from jupyter_gov.errors import GovError
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy

STATES = ("pending", "approved", "denied", "expired", "revoked", "used")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
)
"""


class ApprovalError(GovError):
    """An approval step was refused; the message says why in one sentence."""


class ApprovalNotFound(ApprovalError):
    """No request has that id."""


class ApprovalForbidden(ApprovalError):
    """The caller may not take this step (their own request, or not an approver)."""


class ApprovalConflict(ApprovalError):
    """The request is in a state that does not allow this step."""


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
    ) -> Binding:
        return cls(
            requester=principal(identity),
            connection=connection,
            fingerprint=fingerprint,
            statement_hash=_digest(text.strip()),
            params_hash=_digest(json.dumps(_canonical(params), sort_keys=True, default=str)),
            policy_hash=policy.hash,
            unmask=tuple(sorted(set(unmask))),
        )


@dataclass
class ApprovalRequest:
    """One request and its state; ``body`` of a row in the approvals table."""

    id: str
    state: str
    binding: Binding
    requester_name: str
    statement: str  # the statement with literals replaced by ?, for display
    rules: list[str]
    reasons: list[str]
    approvers: list[str]  # roles that may approve
    justification: str
    created_at: float
    expires_at: float
    max_uses: int = 1
    uses: int = 0
    break_glass: bool = False
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["requester"] = self.binding.requester
        data["connection"] = self.binding.connection
        data["unmask"] = list(self.binding.unmask)
        data["fingerprint"] = self.binding.fingerprint
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        binding = dict(data["binding"])
        binding["unmask"] = tuple(binding.get("unmask", ()))
        values["binding"] = Binding(**binding)
        return cls(**values)


def principal(identity: Identity) -> str:
    """The stable id approvals key on: issuer and subject, never a display name."""
    return f"{identity.issuer}|{identity.subject}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(params: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {str(k): params[k] for k in sorted(params)}
    return list(params)


class ApprovalStore:
    """Requests in the audit's SQLite file; every change also appended to the hash chain."""

    def __init__(self, audit: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self.audit = audit
        self.clock = clock
        with self._db() as db:
            db.execute(_SCHEMA)

    def _db(self) -> closing[sqlite3.Connection]:
        """A short-lived autocommit connection to the audit's SQLite file."""
        return closing(sqlite3.connect(self.audit.path, timeout=30, isolation_level=None))

    # -- reading ---------------------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalRequest:
        with self._db() as db:
            row = db.execute("SELECT body FROM approvals WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise ApprovalNotFound(f"There is no approval request {request_id!r}.")
        return self._expire_if_due(ApprovalRequest.from_dict(json.loads(row[0])))

    def list(self, state: str | None = None, limit: int = 200) -> list[ApprovalRequest]:
        with self._db() as db:
            rows = db.execute(
                "SELECT body FROM approvals ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        requests = [self._expire_if_due(ApprovalRequest.from_dict(json.loads(r[0]))) for r in rows]
        return [r for r in requests if state in (None, "all") or r.state == state]

    def actionable_by(self, identity: Identity, roles: Iterable[str]) -> list[ApprovalRequest]:
        """Pending requests this identity may approve (not their own, a matching role)."""
        mine = set(roles)
        return [
            r
            for r in self.list("pending")
            if r.binding.requester != principal(identity) and mine & set(r.approvers)
        ]

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
        )
        kind = "break_glass" if break_glass else "approval_requested"
        self._event(kind, request, requester, dict(audit_fields or {}))
        with self._db() as db:
            db.execute(
                "INSERT INTO approvals (id, state, body, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (request.id, request.state, json.dumps(request.to_dict()), now, request.expires_at),
            )
        return request

    def approve(
        self, request_id: str, approver: Identity, roles: Iterable[str], comment: str = ""
    ) -> ApprovalRequest:
        return self._decide(request_id, approver, roles, "approved", comment)

    def deny(
        self, request_id: str, approver: Identity, roles: Iterable[str], comment: str = ""
    ) -> ApprovalRequest:
        if not comment.strip():
            raise ApprovalError("Say why the request is denied: the requester will see it.")
        return self._decide(request_id, approver, roles, "denied", comment)

    def revoke(self, request_id: str, actor: Identity, comment: str = "") -> ApprovalRequest:
        request = self.get(request_id)
        if request.state not in ("pending", "approved"):
            raise ApprovalConflict(
                f"Request {request_id} is {request.state}; it cannot be revoked."
            )
        if principal(actor) not in (request.binding.requester, request.decided_by):
            raise ApprovalForbidden("Only the requester or the approver can revoke a request.")
        request.state = "revoked"
        request.comment = comment or request.comment
        self._event("approval_revoked", request, actor)
        return self._save(request)

    def consume(self, request_id: str, identity: Identity, binding: Binding) -> ApprovalRequest:
        """Use an approval for a run: it must be approved, unexpired and for this exact binding."""
        request = self.get(request_id)
        if request.state != "approved":
            raise ApprovalError(
                f"Approval {request_id} is {request.state}, not approved; nothing was run."
            )
        if binding != request.binding:
            changed = [
                name
                for name in (
                    "requester",
                    "connection",
                    "statement_hash",
                    "params_hash",
                    "policy_hash",
                    "unmask",
                )
                if getattr(binding, name) != getattr(request.binding, name)
            ]
            raise ApprovalError(
                f"Approval {request_id} was given for a different "
                f"{', '.join(_FIELD_NAMES[c] for c in changed)}; request a new approval."
            )
        request.uses += 1
        if request.uses >= request.max_uses:
            request.state = "used"
        self._event("approval_used", request, identity)
        return self._save(request)

    # -- internals -------------------------------------------------------------------------

    def _decide(
        self, request_id: str, approver: Identity, roles: Iterable[str], state: str, comment: str
    ) -> ApprovalRequest:
        request = self.get(request_id)
        if request.state != "pending":
            raise ApprovalConflict(f"Request {request_id} is already {request.state}.")
        if principal(approver) == request.binding.requester:
            raise ApprovalForbidden("Nobody can approve or deny their own request.")
        if not set(roles) & set(request.approvers):
            raise ApprovalForbidden(
                f"Only {', '.join(request.approvers)} may decide request {request_id}; "
                f"your roles are {', '.join(roles) or 'none'}."
            )
        request.state = state
        request.decided_by = principal(approver)
        request.decided_by_name = approver.display_name
        request.decided_at = self.clock()
        request.comment = comment.strip() or None
        self._event(f"approval_{state}", request, approver)
        return self._save(request)

    def _expire_if_due(self, request: ApprovalRequest) -> ApprovalRequest:
        if request.state in ("pending", "approved") and self.clock() >= request.expires_at:
            request.state = "expired"
            self._event("approval_expired", request, None)
            self._save(request)
        return request

    def _save(self, request: ApprovalRequest) -> ApprovalRequest:
        with self._db() as db:
            db.execute(
                "UPDATE approvals SET state = ?, body = ? WHERE id = ?",
                (request.state, json.dumps(request.to_dict()), request.id),
            )
        return request

    def _event(
        self,
        kind: str,
        request: ApprovalRequest,
        actor: Identity | None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        fields: dict[str, Any] = {}
        if actor is not None:
            fields = actor.audit_fields()
            fields.pop("groups", None)
        fields.update(extra or {})
        fields.update(
            connection=request.binding.connection,
            fingerprint=request.binding.fingerprint,
            policy_hash=request.binding.policy_hash,
            statement=request.statement,
            rules=request.rules,
            purpose=request.justification,
            decision=request.state,
            detail={
                "approval_id": request.id,
                "requester": request.binding.requester,
                "approvers": request.approvers,
                "comment": request.comment,
                "unmask": list(request.binding.unmask),
                "break_glass": request.break_glass,
                "uses": request.uses,
            },
        )
        request.history.append({"kind": kind, "at": self.clock(), "by": fields.get("subject")})
        self.audit.append(kind, **fields)


_FIELD_NAMES = {
    "requester": "requester",
    "connection": "connection",
    "statement_hash": "statement",
    "params_hash": "set of parameters",
    "policy_hash": "policy version",
    "unmask": "set of unmasked columns",
}
