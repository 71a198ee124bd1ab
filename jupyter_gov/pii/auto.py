"""The engine's two PII hooks: ``unclassified: auto`` and ``scan_results``.

:func:`classified_policy` is called when a statement's context is built: the first time a
connection's catalog version is seen, the columns nobody classified are profiled (one
bounded ``SELECT ... LIMIT`` per table, run on the connector directly, never returned to
anyone), each finding is written to the audit as a ``classification`` event (tag,
confidence, counts - no value), and a policy with the findings pinned as classifications
replaces the file's for every plan on that catalog version. So a column added last night
is masked before the first statement that reads it returns.

The profile is cached per *connector* (the open database connection that holds the data),
catalog version and policy hash, not per session object: sessions that share a connector
(the pgwire door's client connections, several users of one kernel, a test's sessions)
profile once per catalog version. A session with its own connector profiles on its own
first statement: two connectors may reach databases whose catalogs look alike and whose
data differs (two in-memory DuckDBs), so findings never cross connectors. A session whose
audit store has not seen a cached profile's findings gets them appended, flagged
``cached``, so every audit trail says why its columns were masked.

:func:`scan_result` scrubs every string column of a result (masked ones too), with the
vectorized, checksum-validated detector, and reports per column what it replaced.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from jupyter_gov.errors import PolicyError

try:
    from jupyter_gov.pii.classify import ColumnFinding, profile_catalog
except ImportError as missing:  # numpy: the pii extra
    _MISSING: ImportError | None = missing
else:
    _MISSING = None

_CACHE_SIZE = 16


@dataclass
class _Profile:
    """One profiled catalog version: the derived policy and the audit details it wrote."""

    policy: Any
    details: list[dict[str, Any]]
    audited: set[Any] = field(default_factory=set)  # audit stores holding them (_store_key)


@dataclass
class _Cache:
    """One connector's profiles, and the lock its first statements profile under."""

    profiles: dict[tuple[str, str, str], _Profile] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: connector -> its profiles by (connection, catalog version, policy hash); weak, so a
#: closed connector's profiles go with it.
_CACHES: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _owner(connector: Any) -> Any:
    """The object that holds the data: a wrapper's (pgwire's lazy connector) real connector."""
    return getattr(connector.catalog, "__self__", connector)


def _store_key(store: Any) -> Any:
    """Which audit trail a store writes to: its URL, or the object for an in-memory one."""
    url = getattr(store, "url", None)
    return url if isinstance(url, str) and ":memory:" not in url else id(store)


def classified_policy(session: Any, connection: Any) -> Any:
    """The session's policy with this connection's auto findings pinned (cached per version)."""
    from jupyter_gov.policy.model import SCRATCH

    policy = session.policy
    if not policy.auto_classify or connection.name == SCRATCH.name:
        return policy
    if _MISSING is not None:  # fail closed: no statement runs unprofiled
        raise PolicyError(
            "The policy sets unclassified: auto, which needs the pii extra: "
            "pip install 'jupyter-gov[pii]'."
        )
    connector = session.connector(connection.name)
    catalog = connector.catalog()
    key = (connection.name, catalog.version, policy.hash)
    with _CACHES_LOCK:
        try:
            cache = _CACHES.setdefault(_owner(connector), _Cache())
        except TypeError:  # not weakly referenceable: cache on the session only
            cache = session.__dict__.setdefault("_pii_auto_cache", _Cache())
    # Concurrent first statements on one connector (gateway threads) profile once; other
    # connectors do not wait for it.
    with cache.lock:
        profile = cache.profiles.get(key)
        if profile is None:
            profile = _profile(session, connection.name, connector, catalog)
            if len(cache.profiles) >= _CACHE_SIZE:
                cache.profiles.pop(next(iter(cache.profiles)))
            cache.profiles[key] = profile
        elif _store_key(session.audit) not in profile.audited:
            for detail in profile.details:
                _audit(session, connection.name, "classification", {**detail, "cached": True})
        profile.audited.add(_store_key(session.audit))
    return profile.policy


def _profile(session: Any, connection: str, connector: Any, catalog: Any) -> _Profile:
    """Sample every unclassified column, audit the findings, pin them in a derived policy."""
    policy = session.policy
    entries = list({id(e): e for e in catalog.tables.values()}.values())
    todo: dict[tuple[str | None, str], list[str]] = {}
    skipped: list[tuple[str | None, str, str]] = []
    for index, entry in enumerate(entries):
        columns = [c for c in entry.columns if not policy.tags_for(entry.name, c, entry.schema)]
        if index < policy.pii_max_tables:
            todo[(entry.schema, entry.name)] = columns
        else:
            skipped.extend((entry.schema, entry.name, c) for c in columns)
    findings, failed = profile_catalog(
        connector, catalog, session.dialect(connection), todo, policy.pii_sample_rows
    )
    for schema, table in failed:
        skipped.extend((schema, table, c) for c in todo[(schema, table)])
    details = [finding.audit_detail() for finding in findings]
    if skipped:
        details.append({"tag": "unprofiled", "columns": len(skipped), "source": "not sampled"})
    for detail in details:  # a failed write raises: the statement stops, nothing is cached
        _audit(session, connection, "classification", detail)
    return _Profile(policy.with_auto_findings(findings, skipped), details)


def _audit(session: Any, connection: str, kind: str, detail: dict[str, Any]) -> None:
    policy = session.policy
    session.audit.append(
        kind,
        connection=connection,
        policy_name=policy.name,
        policy_version=policy.short_hash,
        policy_hash=policy.hash,
        session_id=getattr(session, "session_id", None),
        detail=detail,
    )


def findings_notes(plan: Any, policy: Any) -> Any:
    """The plan with a banner note per auto-classified column it reads and masks."""
    findings: dict[tuple[str, str], ColumnFinding] = getattr(policy, "pii_findings", {})
    if not findings or plan.decision != "allow":  # a refusal's sentence stays its own
        return plan
    from jupyter_gov.guardrails import Finding

    read = {t.name.lower() for s in plan.statements for t in s.info.tables}
    notes = []
    for (table, _column), finding in sorted(findings.items()):
        if table not in read:
            continue
        spec, _ = policy.column_mask(finding.table, finding.column, plan.roles, finding.schema)
        shown = "masked" if spec.function != "none" else "shown raw to your role"
        notes.append(
            Finding("allow", "pii-auto", f"{finding.qualified} looks like {finding.tag}: {shown}")
        )
    if not notes:
        return plan
    return replace(plan, findings=[*plan.findings, *notes])


def scan_result(session: Any, plan: Any, table: pa.Table) -> tuple[pa.Table, Any]:
    """Scrub PII from the string columns of a result; report what was found per column."""
    from jupyter_gov.guardrails import Finding
    from jupyter_gov.pii.detect import scan_array
    from jupyter_gov.pii.operators import load_keyring, operator_for

    policy = session.policy
    if set(plan.roles) & set(policy.pii_raw_roles) or not table.num_columns:
        return table, plan
    ring = None
    name = policy.pii_operator_for(plan.roles)
    if name in ("hash", "encrypt"):
        import os

        from jupyter_gov.audit import default_home

        ring = load_keyring(os.environ, default_home(), policy.mask_key_env)
    op = operator_for(name, ring)
    notes = []
    columns = list(table.columns)
    for index, name in enumerate(table.column_names):
        kind = table.schema.field(index).type
        textual = (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
        )
        # Every text column, masked ones too: an output name says nothing about its source
        # (``SELECT notes AS email``), and masked values hold nothing a detector matches.
        if not textual:
            continue
        scanned = scan_array(table.column(index), operator=op)
        counts = Counter({e: int(c.sum()) for e, c in scanned.hits.items() if int(c.sum())})
        if not counts:
            continue
        columns[index] = scanned.array
        what = ", ".join(f"{n} {e}" for e, n in sorted(counts.items()))
        notes.append(Finding("allow", "pii-scan", f"{name}: scrubbed {what}"))
        _audit(
            session,
            plan.connection,
            "classification",
            {"column": name, "source": "scan_results", "entities": dict(counts)},
        )
    if not notes:
        return table, plan
    table = pa.Table.from_arrays(columns, names=table.column_names)
    return table, replace(plan, findings=[*plan.findings, *notes])
