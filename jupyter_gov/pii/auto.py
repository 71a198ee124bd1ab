"""The engine's two PII hooks: ``unclassified: auto`` and ``scan_results``.

:func:`classified_policy` is called when a statement's context is built: the first time a
connection's catalog version is seen, the columns nobody classified are profiled (one
bounded ``SELECT ... LIMIT`` per table, run on the connector directly, never returned to
anyone), each finding is written to the audit as a ``classification`` event (tag,
confidence, counts - no value), and a policy with the findings pinned as classifications
replaces the file's for every plan on that catalog version. So a column added last night
is masked before the first statement that reads it returns.

:func:`scan_result` scrubs every string column of a result (masked ones too), with the
vectorized, checksum-validated detector, and reports per column what it replaced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pyarrow as pa

from jupyter_gov.errors import PolicyError

try:
    from jupyter_gov.pii.classify import ColumnFinding, profile_catalog
except ImportError as missing:  # numpy: the pii extra
    _MISSING: ImportError | None = missing
else:
    _MISSING = None

_CACHE = "_pii_auto_policies"
_CACHE_SIZE = 16


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
    cache: dict[tuple[str, str, str], Any] = session.__dict__.setdefault(_CACHE, {})
    key = (connection.name, catalog.version, policy.hash)
    if key in cache:
        return cache[key]
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
        connector, catalog, session.dialect(connection.name), todo, policy.pii_sample_rows
    )
    for schema, table in failed:
        skipped.extend((schema, table, c) for c in todo[(schema, table)])
    for finding in findings:
        _audit(session, connection.name, "classification", finding.audit_detail())
    if skipped:
        _audit(
            session,
            connection.name,
            "classification",
            {"tag": "unprofiled", "columns": len(skipped), "source": "not sampled"},
        )
    derived = policy.with_auto_findings(findings, skipped)
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = derived
    return derived


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
