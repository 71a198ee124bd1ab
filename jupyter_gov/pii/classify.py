"""Profile columns nobody classified: a bounded sample of values, plus names and types.

A column is tagged with an entity's policy tag (``email``, ``credit_card``...) when most
sampled values *are* one valid match; ``free_text`` when values merely contain entities
(notes, ticket bodies); a name hint (``dob``, ``phone``, ``api_key``) tags a column even
when its sample is empty or its type holds no text (a ``DATE`` named ``birth_date``).
Findings carry the tag, a confidence, the sample size and hit count - never a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jupyter_gov.pii.detect import scan_array
from jupyter_gov.pii.recognizers import ENTITY_TAGS

#: Rows read per table when profiling.
DEFAULT_SAMPLE_ROWS = 500
#: Share of sampled values that must each be one whole match for an entity's own tag.
WHOLE_SHARE = 0.5
#: Share of sampled values holding some entity for ``free_text``.
TEXT_SHARE = 0.01

#: Column-name words (split on ``_``, ``-``, case changes) that suggest a tag.
NAME_HINTS: dict[str, str] = {
    "email": "email", "mail": "email", "e_mail": "email",
    "phone": "phone", "mobile": "phone", "tel": "phone", "telephone": "phone", "fax": "phone",
    "ssn": "ssn", "cc": "credit_card", "pan": "credit_card", "card": "credit_card",
    "iban": "iban", "ip": "ip_address", "dob": "birth_date", "birth": "birth_date",
    "birthdate": "birth_date", "birthday": "birth_date", "password": "secret",
    "passwd": "secret", "secret": "secret", "token": "secret", "apikey": "secret",
}  # fmt: skip
NAME_CONFIDENCE = 0.6


@dataclass(frozen=True)
class ColumnFinding:
    """One column found to hold PII."""

    schema: str | None
    table: str
    column: str
    tag: str
    confidence: float
    sample_size: int  # non-empty values examined
    hits: int  # of which held the entity
    source: str  # "values", "name" or "values+name"
    entities: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.table}.{self.column}"

    def audit_detail(self) -> dict[str, Any]:
        """What the audit records: tag, confidence, counts; never a value."""
        out = asdict(self)
        out["entities"] = list(self.entities)
        return out


def name_hint(column: str) -> str | None:
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", column).lower())
    for word in [*words, column.lower().replace("_", "")]:
        if word in NAME_HINTS:
            return NAME_HINTS[word]
    return None


def classify_column(
    values: pa.Array | pa.ChunkedArray, column: str, table: str, schema: str | None = None
) -> ColumnFinding | None:
    """The finding for one column's sample, or ``None`` when it looks free of PII."""
    text = _nonempty(_text(values))
    scanned = scan_array(text) if text is not None and len(text) else None
    return _decide(values.type, text, scanned, 0, column, table, schema)


def _nonempty(text: pa.Array | None) -> pa.Array | None:
    if text is None:
        return None
    nonempty = pc.and_(pc.is_valid(text), pc.not_equal(pc.utf8_length(text), 0))
    return text.filter(pc.fill_null(nonempty, False))


def _decide(
    kind: pa.DataType,
    text: pa.Array | None,
    scanned: Any,
    offset: int,
    column: str,
    table: str,
    schema: str | None,
) -> ColumnFinding | None:
    """Classify one column from its rows ``offset:offset+len(text)`` of a scan."""
    hint = name_hint(column)
    sample = 0 if text is None else len(text)
    if sample and scanned is not None:
        span = slice(offset, offset + sample)
        whole = {e: int(w[span].sum()) for e, w in scanned.whole.items()}
        hits = {e: c[span] for e, c in scanned.hits.items()}
        best = max(whole, key=lambda e: whole[e], default=None)
        if best is not None and whole[best] / sample >= WHOLE_SHARE:
            tag = ENTITY_TAGS[best]
            return _finding(
                schema, table, column, tag, whole[best] / sample, sample, whole[best], hint, [best]
            )
        found = [e for e, c in hits.items() if c.any()]
        # Numbers hold one value each: only a whole-value match (a card as BIGINT) counts.
        is_string = not (pa.types.is_integer(kind) or pa.types.is_decimal(kind))
        if found and is_string:
            any_hit = int(np.logical_or.reduce([hits[e] > 0 for e in found]).sum())
            if any_hit / sample >= TEXT_SHARE:
                return _finding(
                    schema,
                    table,
                    column,
                    "free_text",
                    any_hit / sample,
                    sample,
                    any_hit,
                    None,
                    found,
                )
    if hint is not None:
        return ColumnFinding(schema, table, column, hint, NAME_CONFIDENCE, sample, 0, "name")
    return None


def _finding(
    schema: str | None,
    table: str,
    column: str,
    tag: str,
    confidence: float,
    sample: int,
    hits: int,
    hint: str | None,
    entities: list[str],
) -> ColumnFinding:
    source = "values+name" if hint == tag else "values"
    if hint == tag:
        confidence = max(confidence, NAME_CONFIDENCE)
    return ColumnFinding(
        schema, table, column, tag, round(confidence, 3), sample, hits, source, tuple(entities)
    )


def _text(values: pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """The values as text, or ``None`` for types that hold no free text (dates, booleans)."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return values.cast(pa.string())
    if pa.types.is_integer(kind):
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return values.cast(pa.string())
    return None


def classify_table(table: pa.Table, name: str, schema: str | None = None) -> list[ColumnFinding]:
    """Findings for every column of a sampled table: one vectorized scan for all columns."""
    texts = [_nonempty(_text(table.column(c))) for c in table.column_names]
    present = [t for t in texts if t is not None and len(t)]
    scanned = scan_array(pa.concat_arrays(present)) if present else None
    out, offset = [], 0
    for column, text in zip(table.column_names, texts, strict=True):
        kind = table.schema.field(column).type
        finding = _decide(kind, text, scanned, offset, column, name, schema)
        offset += 0 if text is None else len(text)
        if finding is not None:
            out.append(finding)
    return out


def sample_query(schema: str | None, table: str, columns: Iterable[str], rows: int) -> exp.Select:
    """``SELECT <columns> FROM schema.table LIMIT rows`` as a sqlglot tree (names quoted)."""
    return (
        exp.select(*(exp.column(c, quoted=True) for c in columns))
        .from_(
            exp.Table(
                this=exp.to_identifier(table, quoted=True),
                db=exp.to_identifier(schema, quoted=True) if schema else None,
            )
        )
        .limit(rows)
    )


def profile_catalog(
    connector: Any,
    catalog: Any,
    dialect: str,
    unclassified: Mapping[tuple[str | None, str], list[str]],
    rows: int = DEFAULT_SAMPLE_ROWS,
) -> tuple[list[ColumnFinding], list[tuple[str | None, str]]]:
    """Sample and classify the given columns of each table, one query per table.

    Returns the findings and the tables whose sample could not be read (their columns are
    left for the caller to fail closed on).
    """
    from jupyter_gov.connectors.registry import profile_for_dialect

    profile = profile_for_dialect(dialect)
    findings: list[ColumnFinding] = []
    failed: list[tuple[str | None, str]] = []
    for (schema, table), columns in unclassified.items():
        if not columns:
            continue
        try:
            if profile is None:
                raise LookupError(dialect)
            rendered = profile.render(sample_query(schema, table, columns, rows))
            sample = connector.execute(rendered.sql, {}).read_all()
        except Exception:  # any failure leaves the table unprofiled
            failed.append((schema, table))
            continue
        findings.extend(classify_table(sample, table, schema))
    return findings, failed


def classifications_block(findings: Iterable[ColumnFinding]) -> str:
    """A ``classifications:`` YAML block to review and pin, with confidences as comments."""
    by_tag: dict[str, list[ColumnFinding]] = {}
    for finding in findings:
        by_tag.setdefault(finding.tag, []).append(finding)
    lines = ["classifications:"]
    for tag in sorted(by_tag):
        lines.append(f"  {tag}:")
        for f in sorted(by_tag[tag], key=lambda f: (f.table, f.column)):
            where = f"{f.schema}.{f.table}.{f.column}" if f.schema else f.qualified
            lines.append(
                f'    - "{where}"  # confidence {f.confidence:.2f}, '
                f"{f.hits}/{f.sample_size} sampled values, from {f.source}"
            )
    if len(lines) == 1:
        lines[0] = "classifications: {}  # no PII found in the sampled columns"
    return "\n".join(lines)
