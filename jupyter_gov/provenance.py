"""Datasets that carry their own provenance, checked against the audit chain.

``result.save("features.parquet")`` writes the (already masked) rows as Parquet and puts a
provenance record in the file's key-value metadata (``jupyter_gov.provenance``): the audit
events of the statement that produced them (ids and hashes), who ran it, the policy, the
masked columns and row filters, the approvals that unlocked it, the chain head when the file
was written, and a SHA-256 of the table's contents.

:func:`verify` answers, months later, "where did these rows come from and who approved
them?" from the audit, not from the file: the record only says *which* events to look at.
The contents must still hash to the recorded value (the rows were not edited), each named
event must still be in the chain with the recorded hash, and the chain must verify from
its start through the head recorded at write time (the audit was not edited since). A file
whose record was edited to name someone else fails because the audit's events disagree.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_gov.errors import GovError, ProvenanceMismatch, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from jupyter_gov.audit.store import AuditStore
    from jupyter_gov.result import GovernedResult

#: The Parquet key-value metadata key of the record.
KEY = b"jupyter_gov.provenance"
VERSION = 1


def content_hash(table: pa.Table) -> str:
    """SHA-256 of a table's schema and values, independent of chunking and file metadata.

    The rows are copied into fresh buffers and written as one Arrow IPC stream of a single
    record batch without schema metadata, so a slice, a re-chunked copy or a Parquet round
    trip (which re-chunks and adds metadata) of the same rows hashes the same.
    """
    import pyarrow as pa

    canonical = table.replace_schema_metadata(None)
    # ``take`` copies every value into fresh buffers at offset 0: a slice or a re-chunked
    # copy of the same rows then serializes byte for byte the same.
    canonical = canonical.take(pa.array(range(canonical.num_rows), pa.int64())).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, canonical.schema) as writer:
        for batch in canonical.to_batches(max_chunksize=max(canonical.num_rows, 1)):
            writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def save(result: GovernedResult, path: str | Path, audit: AuditStore | None = None) -> Path:
    """Write ``result`` as Parquet with its provenance record; return the path written."""
    import pyarrow.parquet as pq

    store = audit if audit is not None else getattr(result, "audit", None)
    if store is None:
        raise GovError(
            "This result does not know its audit store; save results returned by a governed "
            "session (session.sql or %%gsql)."
        )
    events = store.events(query_id=result.query_id, limit=1000, newest_first=False)
    upstream = [
        (query_id, store.events(query_id=query_id, limit=1000, newest_first=False))
        for query_id in getattr(result, "upstream", ())
    ]
    if not any(e["kind"] == "result" and e["id"] == result.audit_id for e in events):
        raise GovError(
            f"The audit store at {store.path} has no result event for this result; save it "
            "with the session that ran it."
        )
    head_id, head_hash = store.head()
    table = result.arrow()
    last = events[-1]
    record = {
        "version": VERSION,
        "written_at": time.time(),
        "rows": table.num_rows,
        "content_sha256": content_hash(table),
        "audit_store": str(store.path),
        "statements": [
            _statement(result.query_id, events),
            *(_statement(query_id, found) for query_id, found in upstream if found),
        ],
        "identity": {
            "subject": last.get("subject"),
            "display_name": last.get("display_name"),
            "kind": last.get("identity_kind"),
            "verified": bool(last.get("verified")),
            "on_behalf_of": (last.get("detail") or {}).get("on_behalf_of"),
        },
        "policy": {
            "name": last.get("policy_name"),
            "version": last.get("policy_version"),
            "hash": last.get("policy_hash"),
        },
        "masked_columns": dict(result.plan.masked_columns),
        "row_filters": list(result.plan.row_filters),
        "approvals": _approval_ids([*events, *(e for _, found in upstream for e in found)]),
        "chain_head": {"id": head_id, "hash": head_hash},
    }
    metadata = dict(table.schema.metadata or {})
    metadata[KEY] = json.dumps(record, sort_keys=True).encode()
    target = Path(path).expanduser()
    try:
        pq.write_table(table.replace_schema_metadata(metadata), target)
    except OSError as error:
        raise GovError(f"The file {target} cannot be written ({error.strerror}).") from None
    return target


def _statement(query_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One statement of the record: where it ran and its events (ids, kinds, hashes)."""
    decision = next((e for e in reversed(events) if e["kind"] == "decision"), events[-1])
    return {
        "query_id": query_id,
        "connection": decision.get("connection"),
        "fingerprint": decision.get("fingerprint"),
        "statement": decision.get("statement"),
        "events": [{"id": e["id"], "kind": e["kind"], "hash": e["hash"]} for e in events],
    }


def _approval_ids(events: list[Mapping[str, Any]]) -> list[str]:
    """Approval (or break-glass) requests a statement's allow decision names in its rules."""
    found: dict[str, None] = {}
    for event in events:
        if event["kind"] != "decision" or event.get("decision") != "allow":
            continue
        for rule in event.get("rules") or ():
            prefix, _, request_id = str(rule).partition(":")
            if prefix in ("approved", "break-glass") and request_id:
                found[request_id] = None
    return list(found)


# -- verifying -----------------------------------------------------------------------------


@dataclass
class Approval:
    """One approval that unlocked a statement, as the chain recorded it."""

    id: str
    requester: str | None = None
    approver: str | None = None
    approver_name: str | None = None
    break_glass: bool = False
    requested_at: float | None = None
    decided_at: float | None = None


@dataclass
class ProvenanceReport:
    """What :func:`verify` found: facts from the audit, and every problem."""

    path: str
    rows: int = 0
    statements: list[dict[str, Any]] = field(default_factory=list)
    subject: str | None = None
    display_name: str | None = None
    policy_name: str | None = None
    policy_version: str | None = None
    masked_columns: dict[str, str] = field(default_factory=dict)
    row_filters: list[str] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    contents_ok: bool = False
    events_ok: bool = False
    chain_ok: bool = False
    chain_head: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.contents_ok and self.events_ok and self.chain_ok and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "rows": self.rows,
            "statements": self.statements,
            "subject": self.subject,
            "policy": {"name": self.policy_name, "version": self.policy_version},
            "masked_columns": self.masked_columns,
            "row_filters": self.row_filters,
            "approvals": [a.__dict__ for a in self.approvals],
            "contents_ok": self.contents_ok,
            "events_ok": self.events_ok,
            "chain_ok": self.chain_ok,
            "chain_head": self.chain_head,
            "problems": self.problems,
        }

    def summary(self) -> str:
        """The answer in sentences: where the rows came from, who ran and approved, what holds."""
        count = len(self.statements)
        lines = [
            f"{self.path}: these {self.rows:,} rows came from {count} statement"
            f"{'s' if count != 1 else ''}:"
        ]
        for s in self.statements:
            lines.append(
                f"  - query {str(s.get('query_id'))[:12]} on {s.get('connection')} "
                f"(fingerprint {s.get('fingerprint')}): {s.get('statement')}"
            )
        who = self.display_name or self.subject or "an unknown identity"
        sentence = f"run by {who} under policy {self.policy_name} {self.policy_version}"
        for approval in self.approvals:
            if approval.break_glass:
                sentence += f", by break-glass (request {approval.id})"
            else:
                by = approval.approver_name or approval.approver or "nobody recorded"
                sentence += f", approved by {by} (request {approval.id})"
        if not self.approvals:
            sentence += ", no approval needed"
        lines.append(sentence + ".")
        if self.masked_columns:
            masks = ", ".join(f"{c} ({m})" for c, m in sorted(self.masked_columns.items()))
            lines.append(f"Masked: {masks}.")
        if self.row_filters:
            lines.append(f"Row filters: {', '.join(self.row_filters)}.")
        lines.append(
            ("contents intact" if self.contents_ok else "contents ALTERED")
            + "; "
            + ("events present" if self.events_ok else "events ALTERED or MISSING")
            + "; "
            + (f"chain intact through event {self.chain_head}" if self.chain_ok else "chain BROKEN")
            + "."
        )
        lines.extend(f"PROBLEM: {p}" for p in self.problems)
        return "\n".join(lines)


def read_record(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """The table and provenance record of a file; one sentence if it has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = Path(path).expanduser()
    try:
        table = pq.read_table(target)
    except FileNotFoundError:
        raise UsageError(f"There is no file {target}.") from None
    except (OSError, pa.ArrowInvalid):
        raise UsageError(f"{target} is not a readable Parquet file.") from None
    raw = (table.schema.metadata or {}).get(KEY)
    if raw is None:
        raise UsageError(f"{target} carries no jupyter-gov provenance; it was not saved by one.")
    try:
        record = json.loads(raw)
        if not isinstance(record, dict) or record.get("version") != VERSION:
            raise ValueError
    except ValueError:
        raise ProvenanceMismatch(f"The provenance record of {target} is not readable.") from None
    return table, record


def verify(path: str | Path, store: AuditStore) -> ProvenanceReport:
    """Check a file against the audit: contents, the events it names, the chain through them."""
    table, record = read_record(path)
    report = ProvenanceReport(path=str(path), rows=table.num_rows)
    report.contents_ok = content_hash(table) == record.get("content_sha256")
    if not report.contents_ok:
        report.problems.append(
            "the file's rows do not hash to the value recorded when it was written "
            "(the file was altered)"
        )
    if table.num_rows != record.get("rows"):
        report.problems.append("the file holds a different number of rows than it recorded")
    report.events_ok = True
    found_events: list[dict[str, Any]] = []
    highest = 0
    for statement in record.get("statements") or ():
        stored = {
            e["id"]: e for e in store.events(query_id=str(statement.get("query_id")), limit=1000)
        }
        mine: list[dict[str, Any]] = []
        for named in statement.get("events") or ():
            highest = max(highest, int(named["id"]))
            event = stored.get(named["id"])
            if event is None:
                report.events_ok = False
                report.problems.append(f"audit event {named['id']} is no longer in the audit")
            elif event["hash"] != named["hash"] or event["kind"] != named["kind"]:
                report.events_ok = False
                report.problems.append(
                    f"audit event {named['id']} differs from the one recorded in the file"
                )
            else:
                mine.append(event)
        found_events += mine
        decision = next(
            (e for e in mine if e["kind"] == "decision" and e.get("decision") == "allow"), None
        )
        report.statements.append(
            {
                "query_id": statement.get("query_id"),
                "connection": (decision or {}).get("connection"),
                "fingerprint": (decision or {}).get("fingerprint"),
                "statement": (decision or {}).get("statement"),
            }
        )
    if not found_events:
        report.events_ok = False
        if not report.problems:
            report.problems.append("the file names no audit events")
    _facts_from_audit(report, record, found_events)
    _approvals_from_audit(report, record, found_events, store)
    head = record.get("chain_head") or {}
    through = max(int(head.get("id") or 0), highest)
    if through:
        # A fresh reader walks from the first event, so its head is the hash of ``through``.
        from jupyter_gov.audit.store import AuditStore

        chain = AuditStore(store.url).verify_through(through)
        report.chain_ok = chain.ok
        report.chain_head = through
        if not chain.ok:
            report.problems.append(f"the audit chain is broken: {chain.reason}")
        elif head.get("id") and chain.head != head.get("hash"):
            report.chain_ok = False
            report.problems.append(
                "the audit was rewritten since the file was written (its event "
                f"{head.get('id')} no longer has the hash recorded then)"
            )
    return report


def _facts_from_audit(
    report: ProvenanceReport, record: Mapping[str, Any], events: list[dict[str, Any]]
) -> None:
    """Who ran it and under which policy, from the audit; a file that claims otherwise fails."""
    result = next((e for e in events if e["kind"] == "result"), None)
    decision = next((e for e in events if e["kind"] == "decision"), None)
    if result is None:
        return
    report.subject = result.get("subject")
    report.display_name = result.get("display_name")
    report.policy_name = result.get("policy_name")
    report.policy_version = result.get("policy_version")
    report.masked_columns = dict((decision or {}).get("masked_columns") or {})
    report.row_filters = list(((decision or {}).get("detail") or {}).get("row_filters") or ())
    claimed = record.get("identity") or {}
    if claimed.get("subject") != report.subject:
        report.problems.append(
            "the file's record names a different identity than the audit (the record was edited)"
        )
    if (record.get("policy") or {}).get("hash") != result.get("policy_hash"):
        report.problems.append(
            "the file's record names a different policy than the audit (the record was edited)"
        )
    if dict(record.get("masked_columns") or {}) != report.masked_columns:
        report.problems.append(
            "the file's record lists other masked columns than the audit (the record was edited)"
        )


def _approvals_from_audit(
    report: ProvenanceReport,
    record: Mapping[str, Any],
    events: list[dict[str, Any]],
    store: AuditStore,
) -> None:
    for request_id in _approval_ids(events):
        approval = Approval(id=request_id)
        for event in store.approval_events(request_id, 0):
            kind = event["kind"]
            if kind in ("approval_requested", "break_glass"):
                approval.requester = event.get("subject")
                approval.requested_at = event.get("ts")
                approval.break_glass = kind == "break_glass"
            elif kind == "approval_approved":
                approval.approver = event.get("subject")
                approval.approver_name = event.get("display_name")
                approval.decided_at = event.get("ts")
        report.approvals.append(approval)
    if sorted(record.get("approvals") or ()) != sorted(a.id for a in report.approvals):
        report.problems.append(
            "the file's record lists other approvals than the audit (the record was edited)"
        )


def check(path: str | Path, store: AuditStore) -> ProvenanceReport:
    """:func:`verify`, raising :class:`ProvenanceMismatch` (with the report) when it fails."""
    report = verify(path, store)
    if not report.ok:
        raise ProvenanceMismatch(
            f"{path} does not match the audit: {report.problems[0]}.", report=report
        )
    return report
