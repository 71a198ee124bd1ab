"""Turn a cell into a decided, rewritten plan: analysis -> guardrails -> masking.

A plan is pure: building it runs nothing and writes nothing, so ``explain`` and ``sql``
share it, and it can be cached by statement text, parameter types, identity, policy hash
and catalog version.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from jupyter_gov import analysis, exposure, guardrails, masking
from jupyter_gov.analysis import SqlSyntaxError, StatementInfo
from jupyter_gov.connectors.base import Catalog
from jupyter_gov.errors import GovError
from jupyter_gov.guardrails import Context, Finding, Verdict
from jupyter_gov.policy import MaskSpec


@dataclass
class PlannedStatement:
    """One statement of a cell, as it will run."""

    info: StatementInfo
    sql: str = ""  # rewritten, in the connection's dialect
    internal_params: dict[str, Any] = field(default_factory=dict)
    user_params: dict[str, str] = field(default_factory=dict)  # user name -> bound name
    positional: list[str] = field(default_factory=list)  # bound names of ? placeholders
    masked_columns: dict[str, str] = field(default_factory=dict)
    unmasked_tags: set[str] = field(default_factory=set)
    exposure: exposure.Exposure = field(default_factory=exposure.Exposure)
    filters: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()  # every bound name the final SQL uses
    audited_sql: str = ""  # ``sql`` with literals replaced by ?, for the audit
    #: The tree ``sql`` is rendered from (a copy: ``info`` keeps the statement as written).
    rewritten: exp.Expr | None = None

    @property
    def returns_rows(self) -> bool:
        return self.info.is_read

    def bind(
        self,
        params: Mapping[str, Any] | Sequence[Any] | None,
        keys: Callable[[], Mapping[str, str]] = dict,
    ) -> dict[str, Any]:
        """The values this statement's placeholders take: its own, the masking keys (asked
        for only when a mask uses them) and the caller's, checked against what it uses.

        Raises :class:`GovError` naming a missing parameter, never a value.
        """
        values: dict[str, Any] = dict(self.internal_params)
        if "g_k1" in self.placeholders:
            values.update(keys())
        if isinstance(params, Mapping):
            for user_name, bound in self.user_params.items():
                if user_name not in params:
                    raise GovError(
                        f"The statement uses parameter :{user_name} but no value was given "
                        "for it; define it or pass params."
                    )
                values[bound] = params[user_name]
        elif self.user_params:
            missing = ", ".join(f":{n}" for n in self.user_params)
            raise GovError(f"The statement uses {missing} but no parameters were given.")
        if self.positional:
            if (
                not isinstance(params, Sequence)
                or isinstance(params, (str, bytes))
                or len(params) != len(self.positional)
            ):
                raise GovError(
                    f"The statement has {len(self.positional)} ? placeholder(s); pass "
                    "exactly that many positional parameters."
                )
            values.update(zip(self.positional, params))
        return {k: v for k, v in values.items() if k in self.placeholders}


@dataclass
class Plan:
    """The decision on a whole cell and, when it may run, the SQL that will run."""

    decision: Verdict
    findings: list[Finding]
    statements: list[PlannedStatement]
    connection: str
    dialect: str
    roles: tuple[str, ...]
    fingerprint: str = ""
    normalized: str = ""
    error_position: tuple[int | None, int | None] | None = None

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.findings]

    @property
    def reasons(self) -> list[str]:
        return [f.reason for f in self.findings]

    @property
    def masked_columns(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for statement in self.statements:
            out.update(statement.masked_columns)
        return out

    @property
    def row_filters(self) -> list[str]:
        return sorted({f for s in self.statements for f in s.filters})

    @property
    def rewritten_sql(self) -> str:
        return ";\n".join(s.sql for s in self.statements if s.sql)

    @property
    def audited_sql(self) -> str:
        """The rewritten SQL with literals replaced, so the audit holds no PII from the query."""
        return ";\n".join(s.audited_sql for s in self.statements if s.audited_sql)

    @cached_property
    def rewritten_hash(self) -> str | None:
        sql = self.rewritten_sql
        return hashlib.sha256(sql.encode()).hexdigest() if sql else None

    @property
    def statement_kind(self) -> str:
        kinds = [s.info.kind for s in self.statements]
        return ",".join(dict.fromkeys(kinds)) if kinds else "unparsed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "rules": self.rules,
            "reasons": self.reasons,
            "masked_columns": self.masked_columns,
            "row_filters": self.row_filters,
            "roles": list(self.roles),
            "connection": self.connection,
            "fingerprint": self.fingerprint,
            "rewritten_sql": self.rewritten_sql,
        }


def build_plan(
    text: str,
    ctx: Context,
    catalog: Catalog,
    results: Mapping[str, object],
    unmask: frozenset[str] = frozenset(),
    limit: int | None = None,
) -> Plan:
    """Parse, decide and rewrite a cell. Never raises for bad SQL: that is a deny."""
    plan = Plan("deny", [], [], ctx.connection.name, ctx.dialect, ctx.roles)
    plan.findings.extend(guardrails.check_identity(ctx))
    if plan.findings:
        return plan
    try:
        expressions = analysis.parse(
            text,
            ctx.dialect,
            max_bytes=ctx.policy.max_sql_bytes,
            max_nesting=ctx.policy.max_nesting,
        )
    except SqlSyntaxError as error:
        plan.findings.append(Finding("deny", error.rule, str(error)))
        plan.error_position = (error.line, error.column)
        return plan
    try:
        return _decide(plan, expressions, ctx, catalog, results, unmask, limit)
    except RecursionError:
        # A long operator chain (a + a + ... five thousand times) is deep without nesting.
        return Plan(
            "deny",
            [
                Finding(
                    "deny",
                    "sql-too-deep",
                    "The SQL is too deeply nested to analyse; split long chains of "
                    "operators or levels into CTEs (guardrails.max_nesting).",
                )
            ],
            [],
            ctx.connection.name,
            ctx.dialect,
            ctx.roles,
        )


def _decide(
    plan: Plan,
    expressions: list[exp.Expr],
    ctx: Context,
    catalog: Catalog,
    results: Mapping[str, object],
    unmask: frozenset[str],
    limit: int | None,
) -> Plan:
    """Decide and rewrite each parsed statement of a cell (see :func:`build_plan`)."""
    if len(expressions) > ctx.policy.max_statements:
        plan.findings.append(
            Finding(
                "deny",
                "too-many-statements",
                f"A cell may hold at most {ctx.policy.max_statements} statements; split it.",
            )
        )
        return plan

    for index, expression in enumerate(expressions):
        info = analysis.describe(expression, ctx.dialect, catalog.tables, results)
        statement = PlannedStatement(info=info)
        plan.statements.append(statement)
        findings = guardrails.check_statement(info, ctx, index)
        plan.findings.extend(findings)
        if any(f.verdict == "deny" for f in findings):
            continue
        rewrite_findings = _rewrite(statement, ctx, catalog, unmask, limit, index)
        plan.findings.extend(rewrite_findings)
        if not any(f.verdict == "deny" for f in rewrite_findings):
            plan.findings.extend(guardrails.check_approvals(info, ctx, statement.exposure, index))
    plan.normalized = ";\n".join(s.info.normalized for s in plan.statements)
    plan.fingerprint = analysis.statement_fingerprint([s.info.normalized for s in plan.statements])
    plan.decision = guardrails.verdict_of(plan.findings)
    if unmask:
        allowed = {t for r in ctx.roles for t in ctx.policy.roles[r].unmask_with_approval}
        if unmask - allowed:
            plan.findings.append(
                Finding(
                    "deny",
                    "unmask-not-allowed",
                    f"Your roles may not ask to unmask {', '.join(sorted(unmask - allowed))}"
                    + (f"; they may ask for {', '.join(sorted(allowed))}." if allowed else "."),
                )
            )
            plan.decision = "deny"
    if unmask and plan.decision == "allow":
        plan.findings.append(
            Finding(
                "approval_required",
                "approval:unmask",
                f"Unmasking {', '.join(sorted(unmask))} needs an approval for this statement.",
            )
        )
        plan.decision = "approval_required"
    return plan


def _rewrite(
    statement: PlannedStatement,
    ctx: Context,
    catalog: Catalog,
    unmask: frozenset[str],
    limit: int | None,
    index: int,
) -> list[Finding]:
    """Substitute every catalog table scan with its masked source; bind parameters."""
    findings: list[Finding] = []
    info = _own_copy(statement.info)  # the plan keeps the statement as written
    tree = info.expression
    results = frozenset(r.name for r in info.tables if r.kind == "result")
    raw = exposure.raw_columns(ctx.policy, ctx.roles, unmask)
    references = _referenced_columns(tree, catalog, ctx.dialect, raw, results, limit)
    statement.exposure = (
        references.exposure
        if references is not None
        else exposure.everything(tree, _table_entry(catalog), raw, results)
    )
    filters: list[str] = []
    replaced = False  # whether a scan was replaced or a write target's filter added
    # The masked scans carry only the columns the statement reads (fewer masks for the
    # engine to bind and plan) when the analysis saw every column it reads.
    prunable = (
        references is not None and references.complete and not _names_columns_implicitly(tree)
    )
    scan_columns = _columns_per_scan(info, references) if prunable and references else {}
    sources: dict[int, tuple[masking.MaskedSource, dict[str, Any]]] = {}
    for ref in info.tables:
        if ref.kind == "catalog":
            entry = catalog.get(ref.name, ref.schema)
            assert entry is not None
            carried = None
            if prunable and references is not None:
                carried = scan_columns.get(id(ref), references.read.get(id(entry), set()))
            sources[id(ref)] = masking.masked_source(
                entry, ctx.policy, ctx.roles, ctx.identity, ctx.dialect, unmask, carried=carried
            )
    late: dict[int, set[str]] = {}
    narrowed: dict[int, dict[str, int]] = {}
    if ctx.policy.late_masking and references is not None and references.qualified is not None:
        narrowed = narrowed_columns(tree, references.qualified, info, sources)
        late = late_columns(tree, references.qualified, info, catalog, sources, ctx.dialect)
    for ref in info.tables:
        if ref.kind != "catalog":
            continue
        entry = catalog.get(ref.name, ref.schema)
        assert entry is not None
        source, params = sources[id(ref)]
        if id(ref) in late or id(ref) in narrowed:
            source = masking.with_late_columns(
                source,
                entry,
                ctx.dialect,
                late=frozenset(late.get(id(ref), ())),
                narrowed=narrowed.get(id(ref)),
            )
        everything = set(entry.columns)
        used = references.read.get(id(entry), set()) if references is not None else everything
        projected = (
            references.projected.get(id(entry), set()) if references is not None else everything
        )
        for column in sorted(used):
            spec = source.masks.get(column)
            if column in source.unrenderable:  # the engine cannot spell this mask: never sent
                findings.append(
                    Finding("deny", "mask-unsupported", source.unrenderable[column], index)
                )
            elif spec is not None and spec.function == "deny":
                findings.append(
                    Finding(
                        "deny",
                        "column-denied",
                        f"Column {entry.name}.{column} "
                        "is denied to your roles; remove it from the query.",
                        index,
                    )
                )
            elif spec is not None:
                statement.masked_columns[_column_key(statement, entry.name, column, spec)] = (
                    spec.label
                )
            elif source.tags.get(column) and column in projected:
                statement.unmasked_tags.update(source.tags[column])
        if ref.is_write_target:
            findings.extend(_check_write_target(ref.node, tree, entry.name, source, ctx, index))
            filters.extend(source.filters)
            if source.filters and isinstance(tree, (exp.Update, exp.Delete)):
                condition = source.subquery.args["where"].this.copy()
                tree.where(condition, copy=False)
                replaced = True
            statement.internal_params.update(params)
            continue
        if not source.masks and not source.filters:
            continue  # nothing to hide from this caller: the scan stays as written
        subquery = exp.Subquery(this=source.subquery, alias=_alias_for(ref.node))
        for carried in ("pivots", "sample"):
            if ref.node.args.get(carried):
                subquery.set(carried, ref.node.args[carried])
        unsupported = [
            k
            for k, v in ref.node.args.items()
            if v and k not in ("this", "db", "catalog", "alias", "pivots", "sample")
        ]
        if unsupported:
            findings.append(
                Finding(
                    "deny",
                    "table-modifier",
                    f"Table modifiers "
                    f"({', '.join(unsupported)}) on {entry.name} are not supported "
                    "on governed tables.",
                    index,
                )
            )
            continue
        ref.node.replace(subquery)
        replaced = True
        statement.internal_params.update(params)
        filters.extend(source.filters)
    statement.filters = tuple(dict.fromkeys(filters))
    if any(f.verdict == "deny" for f in findings):
        return findings
    placeholders, literals = _bind_user_placeholders(statement, tree, ctx.dialect)
    final = tree
    if limit is not None and info.is_read:
        limited = exp.select("*").from_(tree.subquery("_gov_limited", copy=False), copy=False)
        final = limited.limit(limit, copy=False)  # no copy of the statement: it is ours
    # The limit's is a literal: every placeholder of ``final`` is one of ``tree``'s, in the
    # same order (a walk from ``final`` meets ``tree``'s nodes in the order a walk of it does).
    statement.placeholders = tuple(dict.fromkeys(str(p.name) for p in placeholders if p.name))
    statement.rewritten = final
    statement.sql = final.sql(dialect=analysis.dialect_named(ctx.dialect))
    changed = replaced or late or statement.positional or statement.user_params
    if final is tree and not changed:
        # Nothing above changed the copy of the statement as written (every change to it
        # is one of those listed), so its literal-free text is the one describe made.
        statement.audited_sql = statement.info.normalized
    else:
        # The literals of ``tree`` are all of ``final``'s unless the row cap wrapped it.
        statement.audited_sql = analysis.parameterize_literals(
            final, ctx.dialect, literals if final is tree else None
        )
    return findings


def _names_columns_implicitly(tree: exp.Expr) -> bool:
    """Whether the statement as written names columns the analysis does not see as read:
    a NATURAL join or USING compares every same-named column, and a star's EXCLUDE,
    REPLACE or RENAME names columns it then leaves out."""
    for node in tree.walk():
        if isinstance(node, exp.Join) and (
            node.args.get("method") == "NATURAL" or node.args.get("using")
        ):
            return True
        if isinstance(node, exp.Star) and any(node.args.values()):
            return True
    return False


def _columns_per_scan(info: StatementInfo, references: ColumnUse) -> dict[int, set[str]]:
    """The columns each catalog scan of the statement reads, by ``id(ref)``.

    A scan is found in the qualified copy at the same place; one qualify moved is left
    out, and carries every column the statement reads of its table.
    """
    qualified = references.qualified
    assert qualified is not None
    carried: dict[int, set[str]] = {}
    for ref in info.tables:
        if ref.kind != "catalog":
            continue
        try:
            node = _same_node(ref.node, info.expression, qualified)
        except (KeyError, IndexError, TypeError, ValueError):
            node = None
        if isinstance(node, exp.Table) and node.name == ref.node.name:
            carried[id(ref)] = references.read_by_node.get(id(node), set())
    return carried


def _own_copy(info: StatementInfo) -> StatementInfo:
    """``info`` over a copy of its tree, each table reference pointing at its copy.

    Why: the rewrite replaces scans and renames placeholders in place, and the cached plan's
    ``info`` must stay the statement as written (lineage and a re-plan read it). One copy,
    and each reference is found in it by its path from the root (a few steps, not a walk).
    """
    root = info.expression
    tree = root.copy()
    return replace(
        info,
        expression=tree,
        tables=[replace(ref, node=_same_node(ref.node, root, tree)) for ref in info.tables],
    )


def _same_node(node: exp.Expr, root: exp.Expr, copy: exp.Expr) -> Any:
    """The node of ``copy`` at the place ``node`` has in ``root`` (``copy`` is a copy)."""
    steps: list[tuple[str, int | None]] = []
    while node is not root:
        parent = node.parent
        if parent is None:
            raise ValueError("a table reference outside its statement")
        steps.append((node.arg_key, node.index))
        node = parent
    for key, index in reversed(steps):
        child = copy.args[key]
        copy = child[index] if index is not None else child
    return copy


def _column_key(statement: PlannedStatement, table: str, column: str, spec: MaskSpec) -> str:
    existing = statement.masked_columns.get(column)
    return column if existing in (None, spec.label) else f"{table}.{column}"


def _alias_for(table: exp.Table) -> exp.TableAlias:
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return alias.copy()
    return exp.TableAlias(this=exp.to_identifier(table.name))


def _check_write_target(
    node: exp.Table,
    tree: exp.Expr,
    table: str,
    source: masking.MaskedSource,
    ctx: Context,
    index: int,
) -> list[Finding]:
    """A write may not read masked columns of its target: WHERE ssn = ... would be an oracle."""
    masked = {c.lower() for c in source.masks}
    if not masked:
        return []
    touched = sorted({c.name for c in tree.find_all(exp.Column) if c.name.lower() in masked})
    if isinstance(tree, exp.Insert):
        touched = []  # INSERT supplies values; its SELECT part reads masked sources
    if touched:
        return [
            Finding(
                "deny",
                "write-reads-masked",
                f"This write reads masked column(s) "
                f"{', '.join(touched)} of {table}, which would reveal raw values; "
                "ask an administrator.",
                index,
            )
        ]
    return []


def _bind_user_placeholders(
    statement: PlannedStatement, tree: exp.Expr, dialect: str
) -> tuple[list[exp.Placeholder], list[exp.Literal]]:
    """Rename user parameters to ``u_*`` so they can never collide with internal ``g_*`` ones;
    return every placeholder of ``tree`` (the internal ones too), in walk order, and every
    literal (what the audit's text swaps out), from the one walk this takes.

    ``?`` placeholders are numbered in the order they are written, which is the order the
    caller's values come in (see :func:`analysis.positional_placeholders`).
    """
    found: list[exp.Placeholder] = []
    literals: list[exp.Literal] = []
    for node in tree.walk():
        if isinstance(node, exp.Placeholder):
            found.append(node)
        elif isinstance(node, exp.Literal):
            literals.append(node)
    positional = analysis.positional_placeholders(tree, dialect, found)
    named = [p for p in found if p.name and p.name != "?"]
    for position, placeholder in enumerate(positional, 1):
        bound = f"u_{position}"
        statement.positional.append(bound)
        placeholder.set("this", bound)
    for placeholder in named:
        name = str(placeholder.name)
        if name.startswith("g_"):
            continue
        bound = f"u_{name}"
        statement.user_params[name.replace("__", ".")] = bound
        placeholder.set("this", bound)
    return found, literals


@dataclass
class ColumnUse:
    """Catalog columns a statement reads, keyed by ``id(TableEntry)``.

    ``projected`` holds those that appear in a SELECT list (outside ``count``), so they may
    reach the output; a column used only in a predicate or a join is in ``read`` alone.
    ``exposure`` is what the bulk-export rule decides on: the raw classified values the
    statement can output, through every construct (see :mod:`jupyter_gov.exposure`).
    """

    read: dict[int, set[str]] = field(default_factory=dict)
    projected: dict[int, set[str]] = field(default_factory=dict)
    exposure: exposure.Exposure = field(default_factory=exposure.Exposure)
    qualified: exp.Expr | None = None  # the statement qualified (stars expanded), read-only
    #: Every column resolved to a source and no construct reads columns it does not name
    #: (a star left unexpanded, COLUMNS(...), PIVOT): ``read`` is then all a scan must carry.
    complete: bool = False
    #: ``read`` per table node of ``qualified`` (a table scanned twice reads its own set).
    read_by_node: dict[int, set[str]] = field(default_factory=dict)


def _referenced_columns(
    tree: exp.Expr,
    catalog: Catalog,
    dialect: str,
    raw: exposure.RawTags | None = None,
    results: frozenset[str] = frozenset(),
    limit: int | None = None,
) -> ColumnUse | None:
    """Which catalog columns the statement reads, projects and can output; None when unknown.

    Uses sqlglot's qualify (stars expanded against the catalog) and scopes. When qualify
    cannot handle a shape, the caller falls back to "every column of every table read",
    which is conservative for reporting and approvals; masking itself does not depend on it.
    """
    try:
        qualified = qualify(
            tree.copy(),
            schema=_schema(catalog, dialect),
            db=catalog.default_schema or None,
            dialect=analysis.dialect_named(dialect),
            expand_stars=True,
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
        use = ColumnUse(qualified=qualified, complete=_names_every_column(qualified))
        scopes = traverse_scope(qualified)
        for scope in scopes:
            projections = (
                scope.expression.expressions if isinstance(scope.expression, exp.Select) else []
            )
            projected_ids = {
                id(c)
                for p in projections
                for c in p.find_all(exp.Column)
                if c.find_ancestor(exp.Count) is None
            }
            for column in scope.columns:
                source = _source_of(scope, column.table)
                if source is None:
                    use.complete = False  # a name qualify could not place: read it all
                    continue
                entry = (
                    catalog.get(source.name, source.db or None)
                    if isinstance(source, exp.Table)
                    else None
                )
                if entry is None:
                    continue
                name = _match_case(entry, column.name)
                use.read.setdefault(id(entry), set()).add(name)
                use.read_by_node.setdefault(id(source), set()).add(name)
                if id(column) in projected_ids:
                    use.projected.setdefault(id(entry), set()).add(name)
        if raw is not None:
            use.exposure = exposure.analyse(
                qualified, _table_entry(catalog), raw, results, limit, scopes
            )
        return use
    except (OptimizeError, SqlglotError, KeyError, ValueError, AttributeError, TypeError):
        return None


def _source_of(scope: Scope, name: str) -> exp.Expr | Scope | None:
    """The source ``name`` names in ``scope`` or, for a correlated column, in the nearest
    enclosing scope that has it (None: unresolved)."""
    current: Scope | None = scope
    while current is not None and name:
        source = current.sources.get(name)
        if source is not None:
            return source
        current = current.parent
    return None


def _names_every_column(qualified: exp.Expr) -> bool:
    """Whether every column the statement reads is named in it, after qualify expanded its
    stars: no star left but ``count(*)``'s, no construct that reaches columns by position
    or pattern (``#2``, ``COLUMNS(...)``, PIVOT/UNPIVOT, LATERAL: late masking's list) and
    no whole row read through its alias (``to_json(c)``)."""
    for node in qualified.walk():
        if isinstance(node, (*_BY_POSITION_OR_PATTERN, exp.TableColumn)):
            return False
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            return False
    return True


#: sqlglot schemas built from catalogs, by (catalog, version, dialect): building one
#: normalizes every name of every table, which cost a cold plan more than qualify itself.
_SCHEMAS: OrderedDict[tuple[int, str, str], tuple[Catalog, MappingSchema]] = OrderedDict()


def _schema(catalog: Catalog, dialect: str) -> MappingSchema:
    """The catalog as a sqlglot schema, built once per catalog version and dialect."""
    key = (id(catalog), catalog.version, dialect)
    hit = _SCHEMAS.get(key)
    if hit is not None and hit[0] is catalog:
        _SCHEMAS.move_to_end(key)
        return hit[1]
    schema = MappingSchema(catalog.mapping(), dialect=dialect)
    _SCHEMAS[key] = (catalog, schema)  # holding the catalog keeps its id from being reused
    while len(_SCHEMAS) > 32:
        _SCHEMAS.popitem(last=False)
    return schema


def _table_entry(catalog: Catalog):
    """Resolve a table node to its catalog entry (None: not a catalog relation)."""

    def resolve(table: exp.Table) -> masking.TableEntry | None:
        if not isinstance(table.this, exp.Identifier):
            return None
        return catalog.get(table.name, table.db or None)

    return resolve


def _match_case(entry: masking.TableEntry, name: str) -> str:
    for column in entry.columns:
        if column.lower() == name.lower():
            return column
    return name


# -- late masking ---------------------------------------------------------------------------

#: Masks that may be computed above the scan. Each maps NULL to NULL, so an outer join's
#: NULL-extended rows read the same masked late as masked in the scan.
_LATE_FUNCTIONS = frozenset({"hash", "token", "partial", "email", "redact", "scrub", "year"})
#: Masks under which grouping raw values and grouping masked values give the same groups.
_INJECTIVE = frozenset({"hash", "token"})
#: The clauses a statement masked late may have; anything else keeps every mask in the scan.
_ROOT_ARGS = frozenset(
    {"with_", "expressions", "from_", "joins", "where", "group", "having", "order", "limit",
     "offset"}
)  # fmt: skip
_JOIN_ARGS = frozenset({"this", "on", "side", "kind"})
_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias"})
#: Constructs that reach a relation's columns without naming them: never with a raw column.
_BY_POSITION_OR_PATTERN = (exp.Columns, exp.PositionalColumn, exp.Lateral, exp.Pivot)
#: The nodes :func:`_late_shape` looks at.
_LATE_SHAPE_CHECKED = (*_BY_POSITION_OR_PATTERN, exp.Star, exp.Join)


def late_columns(
    tree: exp.Expr,
    qualified: exp.Expr,
    info: StatementInfo,
    catalog: Catalog,
    sources: Mapping[int, tuple[masking.MaskedSource, dict[str, Any]]],
    dialect: str,
) -> dict[int, set[str]]:
    """Masked columns this statement only carries to its output, masked there instead of in
    the scan; ``tree``'s projections are rewritten to mask them. Keyed by ``id(TableRef)``.

    A column qualifies when every reference to it, anywhere in the statement, is a bare
    projection of the outermost SELECT, a bare ORDER BY key there (rewritten to order by the
    mask), or a bare GROUP BY key there under a hash or token mask (whose groups are those of
    the raw values) or beside its table's primary key (whose groups it does not split). Joins,
    filters and aggregates then never see the column, so masking after them gives each output
    row the value masking first gives it. Anything not proven falls back to masking in the
    scan (docs/security.md, "Late masking").
    """
    if not isinstance(tree, exp.Select) or not isinstance(qualified, exp.Select):
        return {}
    roots = _root_tables(tree)
    qroots = _root_tables(qualified)
    if roots is None or qroots is None or len(roots) != len(qroots):
        return {}
    by_node = {id(ref.node): ref for ref in info.tables if ref.kind == "catalog"}
    candidates: dict[str, tuple[Any, dict[str, MaskSpec]]] = {}  # qualified alias -> ...
    for node, qnode in zip(roots, qroots, strict=True):
        ref = by_node.get(id(node))
        if ref is None or node.name.lower() != qnode.name.lower():
            continue
        alias = node.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            return {}
        source, _ = sources[id(ref)]
        specs = {
            c.lower(): spec
            for c, spec in source.masks.items()
            if spec.function in _LATE_FUNCTIONS and c not in source.unrenderable
        }
        name = qnode.alias_or_name.lower()
        if name in candidates:
            return {}
        candidates[name] = (ref, specs)
    if not any(specs for _, specs in candidates.values()):
        return {}  # checked before the shape, which walks both trees: most plans stop here
    if not _late_shape(tree) or not _late_shape(qualified):
        return {}
    if len(tree.expressions) != len(qualified.expressions):
        return {}
    columns = list(qualified.find_all(exp.Column))
    if any(c.args.get("db") or (not c.table and c.name.lower() in candidates) for c in columns):
        return {}  # a table alias used as a value (its whole row), or a struct path
    group = qualified.args.get("group")
    grouped = {id(c) for c in (group.expressions if group else [])}
    group_keys = {
        (c.table.lower(), c.name.lower())
        for c in (group.expressions if group else [])
        if isinstance(c, exp.Column) and c.table
    }
    projected: dict[tuple[str, str], list[int]] = {}
    allowed: dict[tuple[str, str], set[int]] = {}
    for index, projection in enumerate(qualified.expressions):
        column = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(column, exp.Column) and column.table:
            key = (column.table.lower(), column.name.lower())
            projected.setdefault(key, []).append(index)
            allowed.setdefault(key, set()).add(id(column))
    for column in group.expressions if group else []:
        if isinstance(column, exp.Column) and column.table:
            allowed.setdefault((column.table.lower(), column.name.lower()), set()).add(id(column))
    ordered = _ordered_keys(tree, qualified, allowed)
    late: dict[int, set[str]] = {}
    substitutions: list[tuple[int, Any, str, MaskSpec]] = []
    order_substitutions: list[tuple[int, Any, str, MaskSpec]] = []
    for alias, (ref, specs) in candidates.items():
        entry = catalog.get(ref.name, ref.schema)
        assert entry is not None
        source, _ = sources[id(ref)]
        for column_name, spec in specs.items():
            key = (alias, column_name)
            if key not in projected:
                continue
            # Every column spelled like it or like its output names must be one of its bare
            # uses: another table's column of that name, or an ORDER BY on an expression of
            # it, is not.
            names = {column_name} | {qualified.expressions[i].alias_or_name.lower()
                                     for i in projected[key]}  # fmt: skip
            safe = allowed.get(key, set())
            if any(id(c) not in safe for c in columns if c.name.lower() in names):
                continue
            if (
                safe & grouped
                and spec.function not in _INJECTIVE
                and not _determined_by_a_grouped_key(alias, entry, source, group_keys)
            ):
                continue
            real = _match_case(entry, column_name)
            late.setdefault(id(ref), set()).add(real)
            for index in projected[key]:
                substitutions.append((index, ref, real, spec))
            for index in ordered.get(key, []):
                order_substitutions.append((index, ref, real, spec))
    if (
        substitutions
        and not order_substitutions
        and _mask_above_the_limit(tree, qualified, substitutions, catalog, sources, dialect)
    ):
        return late
    for index, ref, real, spec in substitutions:
        _mask_projection(tree, index, ref, real, spec, catalog, sources, dialect)
    for index, ref, real, spec in order_substitutions:
        ordering = tree.args["order"].expressions[index]
        ordering.set("this", _late_mask(ref, real, spec, catalog, sources, dialect))
    return late


def _mask_above_the_limit(
    tree: exp.Select,
    qualified: exp.Select,
    substitutions: list[tuple[int, Any, str, MaskSpec]],
    catalog: Catalog,
    sources: Mapping[int, tuple[masking.MaskedSource, dict[str, Any]]],
    dialect: str,
) -> bool:
    """With ``ORDER BY ... LIMIT`` on columns that are not masked late, mask the rows the
    limit keeps, not every row (or group) before it: the statement becomes
    ``SELECT <masks of its outputs> FROM (<the statement, outputs raw>) AS _gov_late ORDER
    BY <its keys, by output name>``. The inner statement picks the same rows either way (its
    sort keys are not the late columns); the outer one only masks and re-sorts them.

    Only when every projection has a distinct name and every ORDER BY key is an output;
    otherwise (False) the masks stay on the projections.
    """
    order, qorder = tree.args.get("order"), qualified.args.get("order")
    if tree.args.get("limit") is None or order is None or qorder is None:
        return False
    names: list[exp.Identifier] = []
    for projection in tree.expressions:
        if isinstance(projection, exp.Alias) and isinstance(
            projection.args.get("alias"), exp.Identifier
        ):
            names.append(projection.args["alias"])
        elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Identifier):
            names.append(projection.this)
        else:
            return False
    if len({n.name.lower() for n in names}) != len(names):
        return False
    outputs = [p.alias_or_name.lower() for p in qualified.expressions]
    outer_order = []
    for ordering in qorder.expressions:
        column = ordering.this if isinstance(ordering, exp.Ordered) else None
        if not isinstance(column, exp.Column):
            return False
        if column.table:
            found = [
                i
                for i, p in enumerate(qualified.expressions)
                if isinstance(bare := (p.this if isinstance(p, exp.Alias) else p), exp.Column)
                and bare.table.lower() == column.table.lower()
                and bare.name.lower() == column.name.lower()
            ]
        else:
            found = [i for i, name in enumerate(outputs) if name == column.name.lower()]
        if len(found) != 1:
            return False
        outer = ordering.copy()
        outer.set("this", exp.Column(this=names[found[0]].copy(), table=_LATE_ALIAS.copy()))
        outer_order.append(outer)
    masked = {index: (ref, real, spec) for index, ref, real, spec in substitutions}
    projections: list[exp.Expr] = []
    for index, name in enumerate(names):
        carried = exp.Column(this=name.copy(), table=_LATE_ALIAS.copy())
        if index in masked:
            ref, real, spec = masked[index]
            carried = _late_mask(ref, real, spec, catalog, sources, dialect, carried)
        projections.append(exp.alias_(carried, name.copy()))
    inner = exp.Select()
    with_ = tree.args.get("with_")
    for key, value in list(tree.args.items()):
        if key != "with_" and value:
            inner.set(key, value)
    for key in list(tree.args):
        tree.set(key, None)
    tree.set("expressions", projections)
    tree.set(
        "from_",
        exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=_LATE_ALIAS.copy()))),
    )
    tree.set("order", exp.Order(expressions=outer_order))
    if with_:
        tree.set("with_", with_)
    return True


#: The name of the subquery whose kept rows late masks are computed on.
_LATE_ALIAS = exp.to_identifier("_gov_late")


def _ordered_keys(
    tree: exp.Select, qualified: exp.Select, allowed: dict[tuple[str, str], set[int]]
) -> dict[tuple[str, str], list[int]]:
    """ORDER BY keys of the outermost SELECT that are a bare projected column, by the
    column's ``(alias, name)``: its own reference or the unambiguous output name of a bare
    projection of it. Each is allowed (its id added to ``allowed``) because the plan orders
    by the mask computed at the output, which is the value scan masking orders by.
    """
    order, qorder = tree.args.get("order"), qualified.args.get("order")
    if order is None or qorder is None or len(order.expressions) != len(qorder.expressions):
        return {}
    outputs = [p.alias_or_name.lower() for p in qualified.expressions]
    found: dict[tuple[str, str], list[int]] = {}
    for index, ordering in enumerate(qorder.expressions):
        column = ordering.this if isinstance(ordering, exp.Ordered) else None
        if not isinstance(column, exp.Column) or not isinstance(
            order.expressions[index], exp.Ordered
        ):
            continue
        if column.table:
            key = (column.table.lower(), column.name.lower())
        else:
            if outputs.count(column.name.lower()) != 1:
                continue  # ambiguous, or not an output name: not proven
            projection = qualified.expressions[outputs.index(column.name.lower())]
            bare = projection.this if isinstance(projection, exp.Alias) else projection
            if not isinstance(bare, exp.Column) or not bare.table:
                continue
            key = (bare.table.lower(), bare.name.lower())
        if key not in allowed:
            continue  # not projected bare: the mask stays in the scan
        found.setdefault(key, []).append(index)
        allowed[key].add(id(column))
    return found


def _determined_by_a_grouped_key(
    alias: str, entry: Any, source: masking.MaskedSource, group_keys: set[tuple[str, str]]
) -> bool:
    """Whether the GROUP BY holds every column of a primary key of this same table instance,
    none of them masked: within a group every row then comes from one row of the table, so
    grouping by the raw column or by its mask (any mask) makes the same groups."""
    masked = {c.lower() for c in source.masks}
    return any(
        all((alias, c.lower()) in group_keys and c.lower() not in masked for c in key)
        for key in entry.keys
    )


def _late_shape(tree: exp.Expr) -> bool:
    """A plain SELECT (joins, WHERE, GROUP BY on columns, HAVING, ORDER BY, LIMIT) with no
    construct that reaches columns by position, pattern or star."""
    if not isinstance(tree, exp.Select) or tree.args.get("distinct"):
        return False
    if any(v for k, v in tree.args.items() if v and k not in _ROOT_ARGS):
        return False
    group = tree.args.get("group")
    if group is not None and (
        any(v for k, v in group.args.items() if v and k != "expressions")
        or not all(isinstance(e, exp.Column) for e in group.expressions)
    ):
        return False
    for node in tree.walk():
        if not isinstance(node, _LATE_SHAPE_CHECKED):
            continue  # most nodes: one check instead of three
        if isinstance(node, _BY_POSITION_OR_PATTERN):
            return False
        if (
            isinstance(node, exp.Star)
            and not isinstance(node.parent, exp.Count)
            and not _exists_projection(node)
        ):
            return False
        if isinstance(node, exp.Join) and any(
            v for k, v in node.args.items() if v and k not in _JOIN_ARGS
        ):
            return False
    return True


def _exists_projection(star: exp.Star) -> bool:
    """``EXISTS (SELECT * ...)``: a star EXISTS ignores, which expands to the subquery's own
    sources only (never to an outer, correlated relation), so it reads no column."""
    select = star.parent
    return (
        isinstance(select, exp.Select)
        and select.expressions == [star]
        and isinstance(select.parent, exp.Exists)
    )


def _root_tables(tree: exp.Select) -> list[exp.Table] | None:
    """The relations the outermost SELECT reads, in order; None when one has modifiers."""
    from_ = tree.args.get("from_")
    if from_ is None:
        return None
    nodes = [from_.this, *(j.this for j in tree.args.get("joins") or [])]
    tables = []
    for node in nodes:
        if isinstance(node, exp.Table):
            if any(v for k, v in node.args.items() if v and k not in _TABLE_ARGS):
                return None
            tables.append(node)
    return tables


def _late_mask(
    ref: Any,
    column: str,
    spec: MaskSpec,
    catalog: Catalog,
    sources: Mapping[int, tuple[masking.MaskedSource, dict[str, Any]]],
    dialect: str,
    reference: exp.Expr | None = None,
) -> exp.Expr:
    """The mask of ``alias.column`` (or ``reference``, where the raw value is carried under
    another name) over the raw column the scan carries up."""
    entry = catalog.get(ref.name, ref.schema)
    assert entry is not None
    source, _ = sources[id(ref)]
    tags = source.tags.get(column)
    if reference is None:
        reference = exp.Column(
            this=exp.to_identifier(column, quoted=True), table=_alias_for(ref.node).this.copy()
        )
    return masking.mask_expression(
        spec,
        reference,
        entry.columns[column],
        tag=tags[0] if tags else "value",
        dialect=dialect,
        digest=source.digest,
    )


def _mask_projection(
    tree: exp.Select,
    index: int,
    ref: Any,
    column: str,
    spec: MaskSpec,
    catalog: Catalog,
    sources: Mapping[int, tuple[masking.MaskedSource, dict[str, Any]]],
    dialect: str,
) -> None:
    """Replace projection ``index`` (a bare column) with its mask, keeping its output name."""
    projection = tree.expressions[index]
    masked = _late_mask(ref, column, spec, catalog, sources, dialect)
    if isinstance(projection, exp.Alias):
        projection.set("this", masked)
    else:
        projection.replace(exp.alias_(masked, projection.this.copy()))


# -- narrowed partial masks (late masking, rule 7) ------------------------------------------

#: Constructs that reach a column without naming it as a column: nothing is narrowed beside them.
_UNNAMED_READS = (*_BY_POSITION_OR_PATTERN, exp.Dot)


def narrowed_columns(
    tree: exp.Expr,
    qualified: exp.Expr,
    info: StatementInfo,
    sources: Mapping[int, tuple[masking.MaskedSource, dict[str, Any]]],
) -> dict[int, dict[str, int]]:
    """Masked columns the statement reads only through a prefix short enough that the scan
    may compute just that prefix of the mask: ``{id(TableRef): {column: N}}``.

    A column spelled ``c`` qualifies when every column reference spelled ``c`` anywhere in the
    statement, as written and as qualified (whatever table it names, in every scope), is the
    text of ``SUBSTRING(c, 1, n)`` or ``LEFT(c, n)`` with an integer literal ``n >= 1``, and
    the largest such ``n``, ``N``, is at most :func:`masking.prefix_bound` of the mask (a
    ``partial``/``mask`` one). The scan then projects the first ``N`` characters of the mask
    instead of the whole mask; each use reads the same ``n <= N`` characters of it. Anything
    else (a bare reference, a star qualify left, a row used as a value, USING/NATURAL,
    positional or pattern columns, a table alias column list) keeps the whole mask
    (docs/security.md, "Late masking", rule 7).
    """
    if not isinstance(tree, (exp.Select, exp.SetOperation)) or not any(
        isinstance(call, (exp.Substring, exp.Left)) for _, call in info.functions
    ):
        return {}  # no prefix read at all (the common case), from the calls analysis found
    bounds: dict[int, dict[str, int]] = {}  # id(TableRef) -> column -> bound
    for ref in info.tables:
        if ref.kind != "catalog" or id(ref) not in sources:
            continue
        source, _ = sources[id(ref)]
        for column, spec in source.masks.items():
            bound = masking.prefix_bound(spec)
            if bound is not None and column not in source.unrenderable:
                bounds.setdefault(id(ref), {})[column] = bound
    if not bounds:
        return {}
    columns: list[exp.Column] = []
    for root, as_written in ((tree, True), (qualified, False)):
        found = _named_columns(root, as_written)
        if found is None:
            return {}
        columns.extend(found)
    names = {column.lower() for masked in bounds.values() for column in masked}
    read = _prefix_reads(names, columns)
    narrowed: dict[int, dict[str, int]] = {}
    for ref_id, masked in bounds.items():
        for column, bound in masked.items():
            prefix = read.get(column.lower())
            if prefix is not None and prefix <= bound:
                narrowed.setdefault(ref_id, {})[column] = prefix
    return narrowed


def _named_columns(root: exp.Expr, as_written: bool) -> list[exp.Column] | None:
    """Every column reference of ``root``, in one walk; None when a construct may read a
    column without a reference spelled like it: a star qualify did not expand (other than
    ``count(*)``; stars as written are judged by their expansion), a relation's row as a
    value, a struct path, USING/NATURAL joins, a table alias column list, positional or
    pattern columns."""
    columns: list[exp.Column] = []
    relations: set[str] = set()
    for node in root.walk():
        if isinstance(node, exp.Column):
            if node.args.get("db") or node.args.get("catalog"):
                return None
            columns.append(node)
        elif isinstance(node, exp.Table):
            relations.update(n.lower() for n in (node.name, node.alias) if n)
            alias = node.args.get("alias")
            if isinstance(alias, exp.TableAlias) and alias.columns:
                return None
        elif isinstance(node, exp.Star):
            if not as_written and not (
                isinstance(node.parent, exp.Count) and node.arg_key == "this"
            ):
                return None
        elif isinstance(node, exp.Join):
            if node.args.get("using") or (node.method or "").upper() == "NATURAL":
                return None
        elif isinstance(node, _UNNAMED_READS):
            return None
    if any(column.name.lower() in relations for column in columns):
        return None
    return columns


def _prefix_reads(names: set[str], columns: Sequence[exp.Column]) -> dict[str, int]:
    """For each name in ``names`` whose every reference among ``columns`` is a prefix read:
    the longest prefix read. A name with any other reference (or used as a qualifier, a
    struct column's field) is left out."""
    longest: dict[str, int] = {}
    spoiled: set[str] = set()
    for column in columns:
        name = column.name.lower()
        if column.table.lower() in names:
            spoiled.add(column.table.lower())  # c.field: a path through the column
        if name not in names:
            continue
        length = _prefix_length(column)
        if length is None:
            spoiled.add(name)
        else:
            longest[name] = max(longest.get(name, 0), length)
    return {name: n for name, n in longest.items() if name not in spoiled}


def _prefix_length(column: exp.Column) -> int | None:
    """``n`` when ``column`` is the text of ``SUBSTRING(column, 1, n)`` (also spelled
    ``SUBSTR``, ``FROM 1 FOR n``) or ``LEFT(column, n)`` with an integer literal ``n >= 1``
    and no other argument; None for any other use."""
    parent = column.parent
    if column.arg_key != "this" or parent is None:
        return None
    given = {k for k, v in parent.args.items() if v is not None and v is not False}
    if type(parent) is exp.Substring and given == {"this", "start", "length"}:
        if _integer_literal(parent.args["start"]) != 1:
            return None
        length = _integer_literal(parent.args["length"])
    elif type(parent) is exp.Left and given == {"this", "expression"}:
        length = _integer_literal(parent.expression)
    else:
        return None
    return length if length is not None and length >= 1 else None


def _integer_literal(node: exp.Expr) -> int | None:
    """The value of a plain decimal integer literal (not a string, sign or expression)."""
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    text = str(node.this)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    return int(text)
