"""Masking by rewrite: every base-table scan becomes a masked, row-filtered subquery.

``FROM customers c`` becomes ``FROM (SELECT <masked columns> FROM main.customers WHERE
<row filters>) AS c``. The alias is kept, so ``c.email`` still resolves, but to the masked
value; projections, predicates, joins, aggregates, window functions, casts and JSON
packing above it can only ever see masked values. Row filters run inside, on raw values,
before the masks. This is how PostgreSQL Anonymizer and Superset's row-level security
substitute tables, and how Snowflake and Databricks apply masks at read.

Mask expressions are sqlglot trees, rendered in the target dialect. Keys and identity
attributes are bound parameters (``g_*``), never literals in the SQL text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlglot import exp

from jupyter_gov import keys
from jupyter_gov.analysis import template_to_placeholders
from jupyter_gov.errors import PolicyError
from jupyter_gov.identity import Identity
from jupyter_gov.policy import MaskSpec, Policy

#: presidio's entity names; the ``scrub`` mask replaces each match by ``<ENTITY>``, as
#: presidio-anonymizer's ``replace`` operator does by default. Order matters: cards and
#: SSNs before phone numbers, which would otherwise swallow them.
SCRUB_PATTERNS: dict[str, str] = {
    "EMAIL_ADDRESS": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "CREDIT_CARD": r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,7}",
    "US_SSN": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
    "PHONE_NUMBER": r"\+?[0-9][0-9() .-]{7,}[0-9]",
    "IP_ADDRESS": r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
}
DEFAULT_SCRUB = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "PHONE_NUMBER")

#: Partial masks never reveal part of a value shorter than kept characters plus this.
_MIN_HIDDEN = 4
_REDACTED = "****"


@dataclass(frozen=True)
class TableEntry:
    """A catalog table: its schema and its columns with sqlglot data types, in order."""

    schema: str
    name: str
    columns: Mapping[str, exp.DataType]


@dataclass
class MaskedSource:
    """The replacement for one table scan, and what it hides."""

    subquery: exp.Select
    masks: dict[str, MaskSpec] = field(default_factory=dict)  # column -> mask, masked only
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> tags
    filters: tuple[str, ...] = ()  # row filter ids applied


def masking_keys(policy: Policy, environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The bound key parameters masks use; see :mod:`jupyter_gov.keys` for the rules."""
    return keys.derived_keys(keys.resolve(policy.mask_key_env, environ, home))


def masked_source(
    table: TableEntry,
    policy: Policy,
    roles: tuple[str, ...],
    identity: Identity,
    dialect: str,
    unmask: frozenset[str] = frozenset(),
) -> tuple[MaskedSource, dict[str, Any]]:
    """Build ``SELECT <masked cols> FROM schema.table WHERE <filters>`` for these roles.

    Returns the source and the parameters its filters bind. ``unmask`` lists tags an
    approval has unmasked for this one statement.
    """
    source = MaskedSource(subquery=exp.select())
    projections = []
    for column, dtype in table.columns.items():
        spec, tags = policy.column_mask(table.name, column, roles, table.schema)
        if tags and set(tags) <= unmask:
            spec = MaskSpec("none")
        if tags:
            source.tags[column] = tags
        ref = exp.column(column, quoted=True)
        if spec.function != "none":
            source.masks[column] = spec
            masked = mask_expression(spec, ref, dtype, tag=tags[0] if tags else "value")
            projections.append(exp.alias_(masked, column, quoted=True))
        else:
            projections.append(ref)
    select = exp.select(*projections).from_(
        exp.Table(
            this=exp.to_identifier(table.name, quoted=True),
            db=exp.to_identifier(table.schema, quoted=True),
        )
    )
    params: dict[str, Any] = {}
    applied = []
    for row_filter in policy.row_filters_for(table.name, roles, identity):
        condition, bound = _filter_condition(row_filter.where, row_filter.id, identity, dialect)
        select = select.where(condition, copy=False)
        params.update(bound)
        applied.append(row_filter.id)
    source.subquery = select
    source.filters = tuple(applied)
    return source, params


def _filter_condition(
    where: str, rule_id: str, identity: Identity, dialect: str
) -> tuple[exp.Expr, dict[str, Any]]:
    import sqlglot

    text, _ = template_to_placeholders(where, dialect)
    try:
        condition = sqlglot.parse_one(text, read=dialect)
    except sqlglot.errors.ParseError as error:
        raise PolicyError(f"Row filter {rule_id!r} does not parse: {error}") from error
    params: dict[str, Any] = {}
    for placeholder in condition.find_all(exp.Placeholder):
        dotted = str(placeholder.name).replace("__", ".")
        if not dotted.startswith("user."):
            raise PolicyError(
                f"Row filter {rule_id!r} uses {{{{ {dotted} }}}}; only {{{{ user.ATTRIBUTE }}}} "
                "templates are allowed."
            )
        attribute = dotted.split(".", 1)[1]
        name = f"g_user_{attribute}"
        placeholder.set("this", name)
        # A missing attribute binds NULL: the filter then matches no row (fail closed).
        value = identity.attributes.get(attribute)
        if attribute == "subject":
            value = identity.subject
        params[name] = value
    return condition, params


# -- mask functions -----------------------------------------------------------------------


def _is_text(dtype: exp.DataType) -> bool:
    return dtype.is_type(*exp.DataType.TEXT_TYPES) or dtype.this == exp.DataType.Type.UNKNOWN


def _is_temporal(dtype: exp.DataType) -> bool:
    return dtype.is_type(*exp.DataType.TEMPORAL_TYPES)


def _as_text(ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    return ref if _is_text(dtype) else exp.cast(ref, exp.DataType.build("VARCHAR"))


def _null_of(dtype: exp.DataType) -> exp.Expr:
    return exp.cast(exp.null(), dtype.copy())


def _keyed_hash(text: exp.Expr) -> exp.Expr:
    """Keyed SHA-256, ``sha256(k || value)``, with a 256-bit secret key bound as a parameter.

    A secret prefix makes the digest a keyed pseudonym: without the key, short values
    (SSNs, phones) cannot be brute-forced from the output. Length extension lets nobody
    learn the key or a value, so the cheaper single hash is enough for masking (HMAC's
    nested form costs twice as much on every row of every masked scan).
    """
    return exp.SHA2(
        this=exp.DPipe(this=exp.Placeholder(this="g_k1"), expression=text),
        length=exp.Literal.number(256),
    )


def _when_not_null(ref: exp.Expr, masked: exp.Expr) -> exp.Expr:
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=ref.copy(), expression=exp.null()), true=exp.null())],
        default=masked,
    )


def mask_expression(spec: MaskSpec, ref: exp.Expr, dtype: exp.DataType, tag: str) -> exp.Expr:
    """The sqlglot expression that masks ``ref`` (a column of type ``dtype``) per ``spec``.

    Masks keep the column's type where the type allows: ``null``, ``redact`` and ``year``
    do for every type; ``hash``, ``token``, ``partial``, ``email`` and ``scrub`` produce text.
    """
    function = spec.function
    if function == "none":
        return ref
    if function in ("null", "deny"):
        return _null_of(dtype)
    if function == "redact":
        if _is_text(dtype):
            return _when_not_null(ref, exp.Literal.string(spec.value or _REDACTED))
        return _null_of(dtype)
    if function == "hash":
        return _when_not_null(ref, _keyed_hash(_as_text(ref, dtype)))
    if function == "token":
        prefix = (spec.value or tag).replace(" ", "_")
        digest = exp.Substring(
            this=_keyed_hash(_as_text(ref, dtype)),
            start=exp.Literal.number(1),
            length=exp.Literal.number(12),
        )
        return _when_not_null(
            ref, exp.DPipe(this=exp.Literal.string(f"{prefix}_"), expression=digest)
        )
    if function == "year":
        if _is_temporal(dtype):
            return exp.cast(exp.DateTrunc(this=ref, unit=exp.var("YEAR")), dtype.copy())
        return _null_of(dtype)
    text = _as_text(ref, dtype)
    if function == "partial":
        return _partial(text, spec.keep_first, spec.keep_last)
    if function == "email":
        at = exp.StrPosition(this=text.copy(), substr=exp.Literal.string("@"))
        domain = exp.Substring(this=text.copy(), start=at)
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=text.copy(), expression=exp.null()), true=exp.null()),
                exp.If(
                    this=exp.GT(this=at.copy(), expression=exp.Literal.number(0)),
                    true=exp.DPipe(this=exp.Literal.string("***"), expression=domain),
                ),
            ],
            default=exp.Literal.string(_REDACTED),
        )
    if function == "scrub":
        return scrub_expression(text, spec.entities or DEFAULT_SCRUB)
    raise PolicyError(f"Unknown mask function {function!r}.")


def _partial(text: exp.Expr, keep_first: int, keep_last: int) -> exp.Expr:
    length = exp.Length(this=text.copy())
    hidden = exp.Sub(this=length.copy(), expression=exp.Literal.number(keep_first + keep_last))
    pieces: list[exp.Expr] = []
    if keep_first:
        pieces.append(exp.Left(this=text.copy(), expression=exp.Literal.number(keep_first)))
    pieces.append(exp.Repeat(this=exp.Literal.string("*"), times=hidden))
    if keep_last:
        pieces.append(exp.Right(this=text.copy(), expression=exp.Literal.number(keep_last)))
    joined = pieces[0]
    for piece in pieces[1:]:
        joined = exp.DPipe(this=joined, expression=piece)
    return exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=text.copy(), expression=exp.null()), true=exp.null()),
            exp.If(
                this=exp.LT(
                    this=length, expression=exp.Literal.number(keep_first + keep_last + _MIN_HIDDEN)
                ),
                true=exp.Literal.string(_REDACTED),
            ),
        ],
        default=joined,
    )


def scrub_expression(text: exp.Expr, entities: tuple[str, ...]) -> exp.Expr:
    """Nested ``regexp_replace`` calls that replace each entity with ``<ENTITY>``, in SQL."""
    out = text
    for entity in entities:
        out = exp.RegexpReplace(
            this=out,
            expression=exp.Literal.string(SCRUB_PATTERNS[entity]),
            replacement=exp.Literal.string(f"<{entity}>"),
            modifiers=exp.Literal.string("g"),
        )
    return out
