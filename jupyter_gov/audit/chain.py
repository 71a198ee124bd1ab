"""The hash chain itself: what an event is, how it is hashed, and how a walk checks it.

Nothing here touches a database, so every store (SQLite, PostgreSQL) hashes and verifies
with the same code and a chain copied from one to the other still verifies. Leaf hashes
are domain-separated with a 0x00 prefix, as in RFC 6962.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

#: Columns of the ``events`` table, in hashing order. ``id``, ``prev_hash`` and ``hash``
#: are the chain itself; everything else is the event.
FIELDS: tuple[str, ...] = (
    "ts",
    "kind",
    "query_id",
    "session_id",
    "subject",
    "display_name",
    "auth_method",
    "issuer",
    "verified",
    "identity_kind",
    "token_expires_at",
    "roles",
    "policy_name",
    "policy_version",
    "policy_hash",
    "connection",
    "statement",
    "statement_kind",
    "fingerprint",
    "rewritten_sql",
    "rewritten_hash",
    "decision",
    "rules",
    "reasons",
    "masked_columns",
    "purpose",
    "rows",
    "duration_ms",
    "error",
    "detail",
)

_FIELD_NAMES = frozenset(FIELDS)
_JSON_FIELDS = {"roles", "rules", "reasons", "masked_columns", "detail"}

#: Fields stored as floating point numbers (8 bytes on every store: a 4-byte float would
#: round ``ts`` and break the chain).
_REAL_FIELDS = {"rows", "duration_ms", "ts", "token_expires_at"}

#: Event kinds written by the engine and the approvals workflow.
KINDS = (
    "attempt",  # written before anything runs; if it cannot be written nothing runs
    "decision",  # allow / deny / approval_required, with rules and reasons
    "result",  # rows returned, duration, or the database error
    "approval_requested",
    "approval_approved",
    "approval_denied",
    "approval_expired",
    "approval_revoked",
    "approval_used",
    "break_glass",
    "sign_in",
    "sign_out",
    # written about the export itself (jupyter_gov.audit.sinks, jupyter_gov.notify)
    "sink_backlog",  # events dropped because the sinks' queue was full
    "sink_failure",  # a sink started failing (once, until it recovers)
    "sink_recovered",  # a failing sink delivered again
    "notify_failure",  # an approval notification could not be delivered
    "classification",  # a column found to hold PII (tag, confidence, counts; no value)
    "detokenize",  # tokens reversed by an authorized role (how many; no value)
)

APPROVAL_KINDS = tuple(k for k in KINDS if k.startswith("approval_") or k == "break_glass")

#: Which event moves an approval from which states to which state.
_TRANSITIONS = {
    "approval_approved": (("pending",), "approved"),
    "approval_denied": (("pending",), "denied"),
    "approval_revoked": (("pending", "approved"), "revoked"),
    "approval_expired": (("pending", "approved"), "expired"),
}


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of walking the chain."""

    ok: bool
    rows: int
    head: str
    broken_at: int | None = None
    reason: str = ""
    problems: tuple[str, ...] = ()  # every approval that does not match the chain

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head": self.head,
            "broken_at": self.broken_at,
            "reason": self.reason,
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain ok: {self.rows} events, head {self.head[:16]}"
        return f"audit chain BROKEN at event {self.broken_at}: {self.reason}"


def row_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """The hash of one event: 0x00 || prev_hash || canonical JSON of its fields."""
    body = _CANONICAL_JSON([prev_hash, *map(_canonical, map(event.get, FIELDS))])
    return hashlib.sha256(b"\x00" + body.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """A bool or a whole float hashes as the int it equals (how a store reads it back)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: One encoder each, made once: ``json.dumps`` with options builds a new encoder per call,
#: and the audit encodes a dozen values per statement.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_FIELD_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


def request_digest(request_json: str) -> str:
    """The hash that binds an approval's events to its request (its canonical JSON)."""
    return hashlib.sha256(request_json.encode()).hexdigest()


@dataclass
class ApprovalTrail:
    """One approval request replayed from the chain: what its events say its state is."""

    approval_id: str
    state: str | None = None  # None: no request event seen
    request_hash: str | None = None
    requester: str | None = None
    max_uses: int = 1
    uses: int = 0
    decision: dict[str, Any] | None = None  # the approval_approved or break_glass event
    last_event: int = 0
    problems: list[str] = field(default_factory=list)

    def feed(self, event: Mapping[str, Any]) -> None:
        kind, detail = event["kind"], event.get("detail") or {}
        self.last_event = int(event.get("id") or 0)
        where = f"approval {self.approval_id}, event {self.last_event}"
        if kind in ("approval_requested", "break_glass"):
            if self.state is not None:
                self.problems.append(f"{where}: requested twice")
                return
            self.state = "approved" if kind == "break_glass" else "pending"
            self.request_hash = detail.get("request_hash")
            self.requester = detail.get("requester")
            self.max_uses = int(detail.get("max_uses") or 1)
            self.decision = dict(event) if kind == "break_glass" else None
            return
        if self.state is None:
            self.problems.append(f"{where}: {kind} without a request")
            return
        if self.request_hash and detail.get("request_hash") != self.request_hash:
            self.problems.append(f"{where}: {kind} is for a different version of the request")
            return
        if kind == "approval_used":
            if self.state != "approved" or self.decision is None:
                self.problems.append(f"{where}: used without a matching approval decision")
                return
            self.uses += 1
            self.state = "used" if self.uses >= self.max_uses else "approved"
            return
        sources, target = _TRANSITIONS[kind]
        if self.state not in sources:
            self.problems.append(f"{where}: {kind} after it was {self.state}")
            return
        if kind == "approval_approved":
            if f"{event.get('issuer')}|{event.get('subject')}" == self.requester:
                self.problems.append(f"{where}: approved by its own requester")
                return
            self.decision = dict(event)
        self.state = target

    def disagreements(self, state: str, uses: int | None, request_json: str | None) -> list[str]:
        """How a row of the approvals table differs from this trail (empty: it agrees)."""
        where = f"approval {self.approval_id}"
        if self.request_hash is None and request_json is None:
            return []  # made before approvals were chained: it can no longer be used anyway
        if request_json is None or (
            self.request_hash and request_digest(request_json) != self.request_hash
        ):
            return [f"{where}: its request was edited after its event"]
        if state != self.state or int(uses or 0) != self.uses:
            return [
                f"{where}: the table says {state} ({uses} uses) but its events say "
                f"{self.state} ({self.uses} uses): the row was edited after its event"
            ]
        return []


def feed_trail(trails: dict[str, ApprovalTrail], event: Mapping[str, Any]) -> None:
    """Add one approval event to the trail of its request."""
    approval_id = (event.get("detail") or {}).get("approval_id")
    if isinstance(approval_id, str):
        trails.setdefault(approval_id, ApprovalTrail(approval_id)).feed(event)


class _Walk:
    """Checks rows one by one against the chain, from a known previous hash."""

    def __init__(self, prev: str) -> None:
        self.prev = prev
        self.rows = 0
        self.last_id = 0
        self.broken: tuple[int, str] | None = None

    def step(self, row: Mapping[str, Any]) -> bool:
        self.rows += 1
        record = {name: row[name] for name in FIELDS}
        if row["prev_hash"] != self.prev:
            self.broken = (
                row["id"],
                "its link to the previous event does not match "
                "(an event before it was deleted, inserted or reordered)",
            )
            return False
        if row_hash(self.prev, record) != row["hash"]:
            self.broken = (row["id"], "its content was changed")
            return False
        self.prev = row["hash"]
        self.last_id = int(row["id"])
        return True

    def report(self) -> VerifyReport:
        assert self.broken is not None
        return VerifyReport(False, self.rows, self.prev, self.broken[0], self.broken[1])


def _record(kind: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The row an event becomes: every field present, JSON fields encoded, ``ts`` set."""
    unknown = event.keys() - _FIELD_NAMES
    if unknown:
        raise ValueError(f"unknown audit fields: {sorted(unknown)}")
    record: dict[str, Any] = dict.fromkeys(FIELDS)
    record.update(event)
    record["kind"] = kind
    record["ts"] = event.get("ts") or time.time()
    for name in _JSON_FIELDS:
        if record[name] is not None and not isinstance(record[name], str):
            record[name] = _FIELD_JSON(record[name])
    if isinstance(record["verified"], bool):
        record["verified"] = "true" if record["verified"] else "false"
    return record


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON_FIELDS:
        if out.get(name):
            with suppress(ValueError):
                out[name] = json.loads(out[name])
    if out.get("verified") is not None:
        out["verified"] = out["verified"] == "true"
    return out
