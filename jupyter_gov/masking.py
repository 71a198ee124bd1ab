"""Masking by rewrite: every base-table scan becomes a masked, row-filtered subquery.

``FROM customers c`` becomes ``FROM (SELECT <masked columns> FROM main.customers WHERE
<row filters>) AS c``. The alias is kept, so ``c.email`` still resolves, but to the masked
value; projections, predicates, joins, aggregates, window functions, casts and JSON
packing above it can only ever see masked values. Row filters run inside, on raw values,
before the masks. This is how PostgreSQL Anonymizer and Superset's row-level security
substitute tables, and how Snowflake and Databricks apply masks at read.

Mask expressions are sqlglot trees built from the building blocks of the dialect's
profile (:class:`~jupyter_gov.connectors.profile.MaskDialect`), so a mask returns the same
value on every engine; a mask an engine cannot spell is denied when the plan is built.
Keys and identity attributes are bound parameters (``g_*``), never literals in the SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlglot import exp

from jupyter_gov import keys
from jupyter_gov.analysis import template_to_placeholders
from jupyter_gov.connectors.base import TableEntry
from jupyter_gov.connectors.profile import MaskDialect, MaskUnsupported, Profile, is_text
from jupyter_gov.connectors.registry import profile_for_dialect
from jupyter_gov.errors import PolicyError
from jupyter_gov.identity import Identity
from jupyter_gov.pii.recognizers import entity_label
from jupyter_gov.policy import MaskSpec, Policy
from jupyter_gov.scrub import DEFAULT_SCRUB, SCRUB_PATTERNS

#: Partial masks never reveal part of a value shorter than kept characters plus this.
_MIN_HIDDEN = 4
_REDACTED = "****"
#: Characters no email domain holds: the email mask redacts a value containing one after '@'.
_NOT_IN_DOMAIN = (" ", ",", ";", "<", ">", "\n", "\r", "\t", "\v", "\f")


@dataclass
class MaskedSource:
    """The replacement for one table scan, and what it hides."""

    masks: dict[str, MaskSpec] = field(default_factory=dict)  # column -> mask, masked only
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> tags
    filters: tuple[str, ...] = ()  # row filter ids applied
    #: column -> why its mask cannot be rendered for this engine; the column is projected as
    #: NULL and a statement that reads it is denied when the plan is built.
    unrenderable: dict[str, str] = field(default_factory=dict)
    digest: str = "sha256"  # the policy's keyed digest for hash and token masks
    #: The scan's parts: its columns in table order, the projection of each column masked
    #: in the scan (the others are projected raw), the table and the row filters (ANDed in
    #: order). ``masked`` is None once :func:`with_late_columns` has moved it elsewhere.
    columns: tuple[str, ...] = ()
    masked: dict[str, exp.Expr] | None = field(default_factory=dict)
    table: exp.Table | None = None
    conditions: list[exp.Expr] = field(default_factory=list)
    #: Masked columns the plan masks above the scan (:func:`with_late_columns`): the only
    #: masked columns the scan may carry raw.
    late: frozenset[str] = frozenset()

    @cached_property
    def subquery(self) -> exp.Select:
        """``SELECT <projections> FROM schema.table WHERE <filters>``, built on first use:
        a plan leaves the scans of tables with nothing to hide as written, so most sources
        never need it."""
        if self.masked is None or self.table is None:
            raise ValueError("This masked source's projections were moved to another one.")
        masked = self.masked
        raw = [c for c in self.columns if c in self.masks and c not in masked.keys() | self.late]
        if raw:  # never expected: refuse to build a scan that would carry a mask raw
            raise ValueError(f"The masked scan has no mask for {', '.join(raw)}.")
        projections = [
            masked[column] if column in masked else exp.column(column, quoted=True)
            for column in self.columns
        ]
        select = exp.select(*projections).from_(self.table, copy=False)
        for condition in self.conditions:
            select = select.where(condition, copy=False)
        return select


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
    carried: Collection[str] | None = None,
) -> tuple[MaskedSource, dict[str, Any]]:
    """Build ``SELECT <masked cols> FROM schema.table WHERE <filters>`` for these roles.

    Returns the source and the parameters its filters bind. ``unmask`` lists tags an
    approval has unmasked for this one statement. ``carried``: the columns the statement
    reads through this scan (None: all); the scan projects only those (the first column if
    none), and masks only those. ``masks`` and ``tags`` still describe every column. A plan
    that masks some columns above the scan or only their prefix in it makes its variant
    with :func:`with_late_columns`.
    """
    columns = tuple(table.columns)
    if carried is not None:
        columns = tuple(c for c in columns if c in carried) or columns[:1]
    source = MaskedSource(digest=policy.mask_digest, columns=columns, table=_scan_table(table))
    for column, dtype in table.columns.items():
        spec, tags = policy.column_mask(table.name, column, roles, table.schema)
        if tags and set(tags) <= unmask:
            spec = MaskSpec("none")
        if tags:
            source.tags[column] = tags
        if spec.function != "none":
            source.masks[column] = spec
            if column in columns:
                _mask_in_scan(source, column, dtype, spec, dialect, prefix=None)
    params: dict[str, Any] = {}
    applied = []
    for row_filter in policy.row_filters_for(table.name, roles, identity):
        condition, bound = _filter_condition(row_filter.where, row_filter.id, identity, dialect)
        source.conditions.append(condition)
        params.update(bound)
        applied.append(row_filter.id)
    source.filters = tuple(applied)
    return source, params


def with_late_columns(
    source: MaskedSource,
    table: TableEntry,
    dialect: str,
    late: frozenset[str] = frozenset(),
    narrowed: Mapping[str, int] | None = None,
) -> MaskedSource:
    """``source`` with ``late`` (masked columns the plan masks above the scan:
    :func:`jupyter_gov.plan.late_columns` proved the statement reads them only there; the
    scan carries them raw and ``masks`` still lists them) and ``narrowed`` (masked columns
    read only through their first ``N`` characters, :func:`jupyter_gov.plan.narrowed_columns`:
    the scan computes just that prefix, :func:`prefix_mask_expression`).

    Made from ``source`` rather than from the policy again: building every other column's
    mask a second time cost a cold plan more than its parse. The
    masks of the columns neither names move from ``source`` (whose own ``subquery`` can
    then no longer be built); the others are made as :func:`masked_source` makes them.
    """
    if source.masked is None:
        raise ValueError("This masked source's projections were moved to another one.")
    narrowed = narrowed or {}
    variant = MaskedSource(
        masks=dict(source.masks),
        tags=dict(source.tags),
        filters=source.filters,
        digest=source.digest,
        columns=source.columns,
        table=_scan_table(table),
        conditions=[condition.copy() for condition in source.conditions],
        late=late,
    )
    assert variant.masked is not None
    for column, spec in source.masks.items():
        if column in late or column not in source.columns:
            continue  # projected raw and masked above the scan, or not carried at all
        if column in narrowed:
            _mask_in_scan(variant, column, table.columns[column], spec, dialect, narrowed[column])
            continue
        if column in source.unrenderable:
            variant.unrenderable[column] = source.unrenderable[column]
        variant.masked[column] = source.masked[column]
    source.masked = None
    return variant


def _scan_table(table: TableEntry) -> exp.Table:
    return exp.Table(
        this=exp.to_identifier(table.name, quoted=True),
        db=exp.to_identifier(table.schema, quoted=True),
    )


def _mask_in_scan(
    source: MaskedSource,
    column: str,
    dtype: exp.DataType,
    spec: MaskSpec,
    dialect: str,
    prefix: int | None,
) -> None:
    """Add the scan's projection of a column masked there: its mask, or the prefix of its
    mask; a mask the engine cannot spell is projected as a typed NULL and noted in
    ``source.unrenderable``."""
    assert source.masked is not None
    ref = exp.column(column, quoted=True)
    tags = source.tags.get(column)
    try:
        if prefix is not None and 1 <= prefix <= (prefix_bound(spec) or 0):
            masked = prefix_mask_expression(spec, ref, dtype, prefix, dialect)
        else:
            masked = mask_expression(
                spec,
                ref,
                dtype,
                tag=tags[0] if tags else "value",
                dialect=dialect,
                digest=source.digest,
            )
    except MaskUnsupported as error:
        source.unrenderable[column] = str(error)
        masked = exp.cast(exp.null(), dtype.copy())
    # No copy: a mask is a fresh tree sharing no node (tests/test_masking.py checks every
    # profile's masks), and copying each one cost a cold plan a tenth of its time.
    source.masked[column] = exp.alias_(masked, column, quoted=True, copy=False)


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


def _is_temporal(dtype: exp.DataType) -> bool:
    return dtype.is_type(*exp.DataType.TEMPORAL_TYPES)


def mask_dialect(dialect: str) -> MaskDialect:
    """The building blocks of masks for ``dialect``; raises when no profile renders it."""
    profile = profile_for_dialect(dialect)
    if profile is None:
        raise MaskUnsupported(
            f"No jupyter-gov profile renders masks in the {dialect!r} dialect; set the "
            "connection's dialect to a supported one."
        )
    return profile.masks


def _keyed_hash(blocks: MaskDialect, text: exp.Expr, digest: str = "sha256") -> exp.Expr:
    """Keyed SHA-256 (or MD5, ``masking.digest: md5``) in lower-case hex,
    ``digest(k || value)``, with a 256-bit key bound as a parameter: the same digest on every
    engine for the same key and value.

    A secret prefix makes the digest a keyed pseudonym: without the key, short values
    (SSNs, phones) cannot be brute-forced from the output. Length extension lets nobody
    learn the key or a value, so the cheaper single hash is enough for masking (HMAC's
    nested form costs twice as much on every row of every masked scan). MD5's broken
    collision resistance lets someone who knows the key make two values share a pseudonym;
    it does not help anyone without the key invert one or learn the key (no preimage
    attack better than brute force over the 256-bit key is known).
    """
    keyed = blocks.concat(exp.Placeholder(this="g_k1"), text)
    if digest == "md5":
        return blocks.md5_hex(keyed)
    if digest != "sha256":
        raise PolicyError(f"Unknown masking digest {digest!r}; use sha256 or md5.")
    return blocks.sha256_hex(keyed)


def _when_not_null(ref: exp.Expr, masked: exp.Expr) -> exp.Expr:
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=ref.copy(), expression=exp.null()), true=exp.null())],
        default=masked,
    )


def mask_expression(
    spec: MaskSpec,
    ref: exp.Expr,
    dtype: exp.DataType,
    tag: str,
    dialect: str = "duckdb",
    digest: str = "sha256",
) -> exp.Expr:
    """The sqlglot expression that masks ``ref`` (a column of type ``dtype``) per ``spec``.

    Masks keep the column's type where the type allows: ``null``, ``redact`` and ``year``
    do for every type; ``hash``, ``token``, ``partial``, ``mask``, ``replace``, ``email`` and
    ``scrub`` produce text.
    Raises :class:`MaskUnsupported` (one sentence naming mask and engine) when the
    dialect's profile cannot spell a block the mask needs.
    """
    function = spec.function
    if function == "none":
        return ref
    profile = _profile_for_mask(function, dialect)
    try:
        return _mask(spec, ref, dtype, tag, profile.masks, digest)
    except MaskUnsupported as error:
        raise MaskUnsupported(
            f"The {function} mask cannot be rendered for {profile.title} ({error}); "
            "ask an administrator to choose another mask for this column."
        ) from error


def _mask(
    spec: MaskSpec,
    ref: exp.Expr,
    dtype: exp.DataType,
    tag: str,
    blocks: MaskDialect,
    digest: str = "sha256",
) -> exp.Expr:
    function = spec.function
    if function in ("null", "deny"):
        return blocks.typed_null(dtype)
    if function == "redact":
        if is_text(dtype):
            return _when_not_null(ref, exp.Literal.string(spec.value or _REDACTED))
        return blocks.typed_null(dtype)
    if function == "hash":
        return _when_not_null(ref, _keyed_hash(blocks, blocks.as_text(ref, dtype), digest))
    if function == "token":
        prefix = (spec.value or tag).replace(" ", "_")
        digest = blocks.substring(
            _keyed_hash(blocks, blocks.as_text(ref, dtype), digest), exp.Literal.number(1), 12
        )
        return _when_not_null(ref, blocks.concat(exp.Literal.string(f"{prefix}_"), digest))
    if function == "replace":  # presidio's replace operator: <EMAIL_ADDRESS> for a whole value
        return _when_not_null(ref, exp.Literal.string(spec.value or entity_label(tag)))
    if function == "year":
        if _is_temporal(dtype):
            return blocks.year_start(ref, dtype)
        return blocks.typed_null(dtype)
    text = blocks.as_text(ref, dtype)
    if function in ("partial", "mask"):  # presidio's mask operator: one '*' per character
        return _partial(blocks, text, spec.keep_first, spec.keep_last)
    if function == "email":
        at = blocks.position(text.copy(), "@")
        domain = blocks.substring(text.copy(), at)
        # Only one address keeps its domain: on text with more after the address (free text
        # classified as email), "everything after '@'" would be the rest of the text.
        not_one_address = exp.or_(
            *(
                exp.GT(this=blocks.position(domain.copy(), sep), expression=exp.Literal.number(0))
                for sep in _NOT_IN_DOMAIN
            )
        )
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=text.copy(), expression=exp.null()), true=exp.null()),
                exp.If(this=not_one_address, true=exp.Literal.string(_REDACTED)),
                exp.If(
                    this=exp.GT(this=at.copy(), expression=exp.Literal.number(0)),
                    true=blocks.concat(exp.Literal.string("***"), domain),
                ),
            ],
            default=exp.Literal.string(_REDACTED),
        )
    if function == "scrub":
        return _scrub(blocks, text, spec.entities or DEFAULT_SCRUB)
    raise PolicyError(f"Unknown mask function {function!r}.")


def _partial(blocks: MaskDialect, text: exp.Expr, keep_first: int, keep_last: int) -> exp.Expr:
    length = blocks.length(text.copy())
    hidden = exp.Sub(this=length.copy(), expression=exp.Literal.number(keep_first + keep_last))
    pieces: list[exp.Expr] = []
    if keep_first:
        pieces.append(blocks.left(text.copy(), keep_first))
    pieces.append(blocks.repeat("*", hidden))
    if keep_last:
        pieces.append(blocks.right(text.copy(), keep_last))
    joined = pieces[0]
    for piece in pieces[1:]:
        joined = blocks.concat(joined, piece)
    redacted = exp.Literal.string(_REDACTED)
    return _unless_too_short(blocks, text, keep_first, keep_last, redacted, joined, length)


def _unless_too_short(
    blocks: MaskDialect,
    text: exp.Expr,
    keep_first: int,
    keep_last: int,
    short: exp.Expr,
    shown: exp.Expr,
    length: exp.Expr | None = None,
) -> exp.Expr:
    """NULL stays NULL; a value with fewer than ``keep_first + keep_last + _MIN_HIDDEN``
    characters (too short to show any of without revealing most of it) becomes ``short``;
    any other becomes ``shown``. The one place that bound is spelt, for the partial mask and
    for the prefixes of it that rule 7 computes alone: they must agree on it."""
    if length is None:
        length = blocks.length(text.copy())
    return exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=text.copy(), expression=exp.null()), true=exp.null()),
            exp.If(
                this=exp.LT(
                    this=length, expression=exp.Literal.number(keep_first + keep_last + _MIN_HIDDEN)
                ),
                true=short,
            ),
        ],
        default=shown,
    )


def _profile_for_mask(function: str, dialect: str) -> Profile:
    """The profile that renders masks in ``dialect``; a one-sentence refusal naming the mask
    when no profile speaks it."""
    profile = profile_for_dialect(dialect)
    if profile is None:
        raise MaskUnsupported(
            f"The {function} mask cannot be rendered in the {dialect!r} dialect, which no "
            "jupyter-gov profile speaks; set the connection's dialect to a supported one."
        )
    return profile


def prefix_bound(spec: MaskSpec) -> int | None:
    """How many leading characters of ``spec``'s masked value are fixed without reading the
    value's length or tail: ``keep_first + _MIN_HIDDEN`` for ``partial``/``mask`` (the kept
    head, then stars every value long enough to be shown has, and ``_REDACTED`` for the
    others); None for every other mask, whose prefix is never computed on its own."""
    if spec.function not in ("partial", "mask"):
        return None
    return spec.keep_first + _MIN_HIDDEN


def prefix_mask_expression(
    spec: MaskSpec, ref: exp.Expr, dtype: exp.DataType, prefix: int, dialect: str = "duckdb"
) -> exp.Expr:
    """``SUBSTRING(<spec's mask of ref>, 1, prefix)``, computed without the mask.

    Why: a statement that reads a partial mask only through its first ``prefix`` characters
    need not pay for ``REPEAT`` and ``RIGHT`` on every row (TPC-H Q22 reads two). The value
    is the same for every input (docs/security.md, "Late masking", rule 7): NULL for NULL;
    the first ``prefix`` characters of ``_REDACTED`` for a value too short to show; else the
    first ``min(prefix, keep_first)`` characters of the value and then stars. Raises
    ValueError for a mask or a prefix beyond :func:`prefix_bound` (the caller must check).
    """
    bound = prefix_bound(spec)
    if bound is None or not 1 <= prefix <= bound:
        raise ValueError(f"No prefix of {prefix} characters is fixed by the {spec.function} mask.")
    blocks = _profile_for_mask(spec.function, dialect).masks
    text = blocks.as_text(ref, dtype)
    short = exp.Literal.string(_REDACTED[:prefix])
    head = min(prefix, spec.keep_first)
    stars = "*" * (prefix - head)
    shown: exp.Expr = exp.Literal.string(stars)
    if head:
        shown = blocks.left(text.copy(), head)
        if stars:
            shown = blocks.concat(shown, exp.Literal.string(stars))
    elif stars == short.name:  # no kept character in the prefix: one literal, any length
        return _when_not_null(text, shown)
    return _unless_too_short(blocks, text, spec.keep_first, spec.keep_last, short, shown)


def _scrub(blocks: MaskDialect, text: exp.Expr, entities: tuple[str, ...]) -> exp.Expr:
    out = text
    for entity in entities:
        out = blocks.regexp_replace_all(out, SCRUB_PATTERNS[entity], f"<{entity}>")
    return out


def scrub_expression(
    text: exp.Expr, entities: tuple[str, ...], dialect: str = "duckdb"
) -> exp.Expr:
    """Nested global regex replaces that replace each entity with ``<ENTITY>``, in SQL."""
    return _scrub(mask_dialect(dialect), text, entities)
