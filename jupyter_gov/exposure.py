"""How many raw classified values a statement can put in front of the caller.

The bulk-export approval rule is decided on what a statement can *output*, not on which
column names it mentions: ``COLUMNS(*)``, ``#2``, a row as a struct (``SELECT c FROM
customers c``), alias lists, ``LATERAL``, ``PIVOT`` and collecting aggregates
(``list(ssn)``, ``string_agg``, ``histogram``) all output raw values without naming them.

The analysis follows the lineage of every output column through scopes (sqlglot's
``qualify`` expands stars and ``scope`` resolves sources) down to catalog columns the
caller sees unmasked and classified ("raw"), and counts *values*: for each raw column,
how many times it can appear in one output row. A bound is rows × values per row, and
only a literal ``LIMIT`` at the top (or the engine's own limit, which wraps the statement)
or an aggregate without ``GROUP BY`` (one row) bounds the rows. Anything it cannot prove
bounded fails closed: the raw columns involved count as *unbounded* (collecting
aggregates, pivots, table functions, recursive CTEs, unknown names and functions), and a
statement it cannot analyse at all exposes every raw column of every table it names.

Session results (``-o NAME``) are not catalog tables: a statement reading one lists each
reference to it in :attr:`Exposure.results`, and the engine, which recorded what each saved
result holds, folds that in with :meth:`Exposure.with_results`, once per reference
(``x UNION ALL x`` outputs what ``x`` holds twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from jupyter_gov.functions import DIALECT_FUNCTIONS, SAFE_FUNCTIONS

if TYPE_CHECKING:  # annotations only: keeps this module free of import cycles
    from jupyter_gov.masking import TableEntry
    from jupyter_gov.policy import Policy

#: ``raw(entry, column)``: the tags of a column the caller sees unmasked, else empty.
RawTags = Callable[["TableEntry", str], frozenset[str]]

#: Aggregates and window functions whose result is at most one input value per group.
_ONE_VALUE = frozenset(
    """
    min max avg sum first last any_value arg_max arg_min median mode quantile
    percentile_cont percentile_disc approx_quantile stddev stddev_pop stddev_samp variance
    variance_pop corr covar_pop covar_samp kurtosis skewness regr_slope regr_intercept regr_r2
    logical_and logical_or bitwise_and_agg bitwise_or_agg bitwise_xor_agg lag lead
    first_value last_value nth_value ignore_nulls respect_nulls
    arbitrary arg_max_null arg_max_nulls_last arg_min_null arg_min_nulls_last mean mad
    product sem fsum favg kahan_sum sumkahan sum_no_overflow entropy kurtosis_pop
    reservoir_quantile fill bool_and bool_or
    """.split()
)

#: Aggregates and window functions whose result holds no input value, only a count or rank.
_NO_VALUE = frozenset(
    """
    count count_if approx_distinct approx_count_distinct regr_count count_star row_number
    rank dense_rank rank_dense percent_rank cume_dist ntile
    """.split()
)

#: Functions sqlglot does not model that collect many rows into one value.
_COLLECTING = frozenset(
    """
    histogram histogram_exact bitstring_agg json_agg jsonb_agg json_arrayagg json_objectagg
    json_group_array json_group_object json_group_structure array_agg string_agg list
    group_concat listagg approx_top_k map_agg
    """.split()
)


@dataclass(frozen=True)
class Exposure:
    """Raw classified values a statement can output, keyed by ``table.column``.

    ``per_row`` counts how often a raw column can appear in one output row; ``rows``
    bounds the rows (None: unbounded); ``unbounded`` holds raw columns with no bound at
    all; ``fixed`` holds values that do not grow with rows (read from session results);
    ``results`` are the references to session results not folded in yet, as
    ``(name, reference)``: a result read twice in one statement counts twice.
    """

    rows: int | None = None
    per_row: Mapping[str, int] = field(default_factory=dict)
    unbounded: frozenset[str] = frozenset()
    fixed: Mapping[str, int] = field(default_factory=dict)
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    results: frozenset[tuple[str, int]] = frozenset()

    def columns(self, wanted: Iterable[str] | None = None) -> list[str]:
        """Raw columns that can reach the output, restricted to those with a wanted tag."""
        keys = {k for k, n in self.per_row.items() if n} | set(self.unbounded)
        keys |= {k for k, n in self.fixed.items() if n}
        if wanted is not None:
            wanted = set(wanted)
            keys = {k for k in keys if matches(self.tags.get(k, frozenset()), wanted)}
        return sorted(keys)

    def exposed_tags(self, wanted: Iterable[str] | None = None) -> set[str]:
        found = {t for k in self.columns() for t in self.tags.get(k, ())}
        if wanted is None:
            return found
        return set(wanted) if "*" in found else found & set(wanted)

    def values(self, wanted: Iterable[str] | None = None, rows: int | None = None) -> int | None:
        """At most how many raw values with a wanted tag the output holds; None: unbounded.

        ``rows`` (the rows actually returned) tightens the bound after the statement ran.
        """
        keys = set(self.columns(wanted))
        if keys & self.unbounded:
            return None
        bound = self.rows if rows is None else (rows if self.rows is None else min(rows, self.rows))
        per_row = sum(n for k, n in self.per_row.items() if k in keys)
        if per_row and bound is None:
            return None
        return (bound or 0) * per_row + sum(n for k, n in self.fixed.items() if k in keys)

    def with_results(self, records: Mapping[str, Exposure | None]) -> Exposure:
        """Fold in what each session result read holds (None: unknown, so unbounded)."""
        fixed = Counter(self.fixed)
        unbounded = set(self.unbounded)
        tags = dict(self.tags)
        for name, _ in sorted(self.results):
            record = records.get(name)
            if record is None:
                key = f"result {name}"
                unbounded.add(key)
                tags[key] = frozenset({"*"})
                continue
            tags.update(record.tags)
            unbounded |= record.unbounded
            fixed.update(record.fixed)  # Counter.update adds
        return Exposure(
            self.rows, dict(self.per_row), frozenset(unbounded), dict(fixed), tags, frozenset()
        )

    def delivered(self, rows: int) -> Exposure:
        """What a run that returned ``rows`` rows holds, as a record for a saved result."""
        fixed = Counter(self.fixed)
        for key, n in self.per_row.items():
            if n and key not in self.unbounded:
                bound = rows if self.rows is None else min(rows, self.rows)
                fixed[key] += bound * n
        return Exposure(0, {}, self.unbounded, dict(fixed), dict(self.tags), self.results)


def raw_columns(policy: Policy, roles: tuple[str, ...], unmask: frozenset[str]) -> RawTags:
    """The caller's raw classified columns: tagged, and masked with ``none`` (or unmasked)."""
    cache: dict[tuple[int, str], frozenset[str]] = {}

    def raw(entry: TableEntry, column: str) -> frozenset[str]:
        key = (id(entry), column)
        if key not in cache:
            spec, tags = policy.column_mask(entry.name, column, roles, entry.schema)
            visible = spec.function == "none" or (bool(tags) and set(tags) <= unmask)
            found = frozenset(tags) if tags and visible else frozenset()
            if found and _holds_free_text(policy, tags):
                found |= {"*"}
            cache[key] = found
        return cache[key]

    return raw


def _holds_free_text(policy: Policy, tags: Iterable[str]) -> bool:
    """A column others see ``scrub``bed is free text that embeds any kind of PII (a ticket
    quoting its writer's email, phone and card): read raw, it counts as every tag."""
    return any(policy.mask_for_tag(tag, ()).function == "scrub" for tag in tags)


def matches(tags: frozenset[str], wanted: Iterable[str]) -> bool:
    """``*`` stands for "unknown content": it matches every tag (fail closed)."""
    return "*" in tags or bool(tags & set(wanted))


def everything(
    tree: exp.Expr,
    tables: Callable[[exp.Table], TableEntry | None],
    raw: RawTags,
    results: frozenset[str],
) -> Exposure:
    """The fallback when a statement cannot be analysed: every raw column, unbounded."""
    flow = _Flow()
    for table in tree.find_all(exp.Table):
        entry = tables(table)
        if entry is not None:
            flow.add_table(entry, raw, unbounded=True)
        elif table.name.lower() in results:
            flow.results.add((table.name.lower(), id(table)))
    return flow.exposure(None)


def analyse(
    qualified: exp.Expr,
    tables: Callable[[exp.Table], TableEntry | None],
    raw: RawTags,
    results: frozenset[str],
    limit: int | None = None,
    scopes: Sequence[Scope] | None = None,
) -> Exposure:
    """The exposure of a statement already passed through sqlglot's ``qualify``.

    ``tables`` resolves a table node to its catalog entry; ``results`` are the lower-case
    names of this session's results the statement may read; ``limit`` is the engine's;
    ``scopes`` are ``traverse_scope(qualified)`` when the caller has them already.
    """
    try:
        return _Analysis(qualified, tables, raw, results, scopes).run(limit)
    except (SqlglotError, KeyError, ValueError, AttributeError, TypeError, RecursionError):
        return everything(qualified, tables, raw, results)  # fail closed


class _Flow:
    """Raw columns flowing into one expression: per row counts and unbounded ones."""

    def __init__(self) -> None:
        self.per_row: Counter[str] = Counter()
        self.unbounded: set[str] = set()
        self.tags: dict[str, frozenset[str]] = {}
        self.results: set[tuple[str, int]] = set()  # (name, id of the table node)

    def add(self, other: _Flow) -> _Flow:
        for key, n in other.per_row.items():
            self.per_row[key] += n
        self.unbounded |= other.unbounded
        self.tags.update(other.tags)
        self.results |= other.results
        return self

    def collect(self) -> _Flow:
        """Many rows into one value: every bounded column becomes unbounded."""
        self.unbounded |= {k for k, n in self.per_row.items() if n}
        self.per_row.clear()
        return self

    def add_table(self, entry: TableEntry, raw: RawTags, unbounded: bool = False) -> None:
        for column in entry.columns:
            self.add_column(entry, column, raw, unbounded)

    def add_column(self, entry: TableEntry, column: str, raw: RawTags, unbounded: bool) -> None:
        tags = raw(entry, column)
        if not tags:
            return
        key = f"{entry.name}.{column}"
        self.tags[key] = tags
        if unbounded:
            self.unbounded.add(key)
        else:
            self.per_row[key] += 1

    def exposure(self, rows: int | None) -> Exposure:
        return Exposure(
            rows=rows,
            per_row={k: n for k, n in self.per_row.items() if n},
            unbounded=frozenset(self.unbounded),
            tags=dict(self.tags),
            results=frozenset(self.results),
        )


class _Analysis:
    def __init__(
        self,
        root: exp.Expr,
        tables: Callable[[exp.Table], TableEntry | None],
        raw: RawTags,
        results: frozenset[str],
        scopes: Sequence[Scope] | None = None,
    ) -> None:
        self.root = root
        self.tables = tables
        self.raw = raw
        self.results = results
        self.scopes: dict[int, Scope] = {}
        for scope in traverse_scope(root) if scopes is None else scopes:
            self.scopes[id(scope.expression)] = scope
        self.active: set[tuple[int, object]] = set()

    # -- statement level ---------------------------------------------------------------

    def run(self, limit: int | None) -> Exposure:
        root = self.root
        if isinstance(root, exp.Insert):
            query = root.expression
            if not isinstance(query, (exp.Select, exp.SetOperation)):
                return _Flow().exposure(0)  # VALUES: literals only
            return self._query_exposure(query, None)
        if isinstance(root, exp.Update):
            # SET copies values into a table: any column or subquery there fails closed.
            for assignment in root.expressions:
                value = assignment.expression if isinstance(assignment, exp.EQ) else assignment
                if value.find(exp.Column, exp.Subquery) is not None:
                    return everything(root, self.tables, self.raw, self.results)
            return _Flow().exposure(0)
        if isinstance(root, exp.Delete):
            return _Flow().exposure(0)
        return self._query_exposure(root, limit)

    def _query_exposure(self, query: exp.Expr, limit: int | None) -> Exposure:
        scope = self.scopes.get(id(query))
        if scope is None:
            return everything(self.root, self.tables, self.raw, self.results)
        flow = _Flow()
        for index in range(len(self._outputs(scope))):
            flow.add(self._output_at(scope, index))
        rows, parts = self._rows(scope)
        rows = rows if limit is None else (limit if rows is None else min(rows, limit))
        if rows is None and parts is not None:
            # A set operation without a LIMIT: the sum of what each part can output.
            return Exposure(
                None,
                {},
                frozenset(flow.unbounded) | parts.unbounded,
                dict(parts.fixed),
                {**flow.tags, **parts.tags},
                frozenset(flow.results),
            )
        return flow.exposure(rows)

    def _rows(self, scope: Scope) -> tuple[int | None, Exposure | None]:
        """The row bound of a query, and for a union without one, the per-part exposures."""
        query = scope.expression
        bound = _literal_limit(query)
        if bound is not None:
            return bound, None
        if isinstance(query, exp.Select):
            return (1 if _single_row_aggregate(query) else None), None
        if isinstance(query, exp.SetOperation):
            total = _Flow()
            fixed: Counter[str] = Counter()
            for part in scope.set_operation_scopes:
                part_rows, nested = self._rows(part)
                flow = _Flow()
                for index in range(len(self._outputs(part))):
                    flow.add(self._output_at(part, index))
                total.tags.update(flow.tags)
                if part_rows is None and nested is not None:
                    fixed.update(nested.fixed)
                    total.unbounded |= nested.unbounded
                elif part_rows is None:
                    total.unbounded |= {k for k, n in flow.per_row.items() if n}
                else:
                    for key, n in flow.per_row.items():
                        fixed[key] += n * part_rows
                total.unbounded |= flow.unbounded
            exposure = total.exposure(None)
            return None, Exposure(None, {}, exposure.unbounded, dict(fixed), exposure.tags)
        return None, None

    # -- lineage -------------------------------------------------------------------------

    def _outputs(self, scope: Scope) -> list[exp.Expr]:
        query = scope.expression
        if isinstance(query, exp.Select):
            return list(query.expressions)
        if isinstance(query, exp.SetOperation) and scope.set_operation_scopes:
            return self._outputs(scope.set_operation_scopes[0])
        return []

    def _output_at(self, scope: Scope, index: int) -> _Flow:
        """The flow of one output column (by position, as set operations match them)."""
        key = (id(scope), index)
        if key in self.active:  # a recursive CTE: fail closed
            return self._all()
        self.active.add(key)
        try:
            query = scope.expression
            if isinstance(query, exp.SetOperation):
                flow = _Flow()
                for part in scope.set_operation_scopes:
                    flow.add(self._output_at(part, index))
                if _is_recursive_cte(scope):
                    flow.collect()
                return flow
            outputs = self._outputs(scope)
            if index >= len(outputs):
                return self._all()
            return self._flow(outputs[index], scope)
        finally:
            self.active.discard(key)

    def _named_output(self, scope: Scope, name: str) -> _Flow:
        names = [o.alias_or_name.lower() for o in self._outputs(scope)]
        if not isinstance(scope.expression, (exp.Select, exp.SetOperation)):
            return self._flow(scope.expression, scope.parent or scope).collect()
        if name.lower() not in names:
            return self._whole(scope).collect()
        flow = _Flow()
        for index, found in enumerate(names):
            if found == name.lower():
                flow.add(self._output_at(scope, index))
        if _is_recursive_cte(scope):
            flow.collect()
        return flow

    def _whole(self, scope: Scope) -> _Flow:
        """Every column of a derived source, as when the row itself is selected."""
        flow = _Flow()
        if not isinstance(scope.expression, (exp.Select, exp.SetOperation)):
            return self._flow(scope.expression, scope.parent or scope).collect()
        for index in range(len(self._outputs(scope))):
            flow.add(self._output_at(scope, index))
        return flow

    def _all(self) -> _Flow:
        flow = _Flow()
        flow.add(_flow_of(everything(self.root, self.tables, self.raw, self.results)))
        return flow.collect()

    def _source(self, scope: Scope | None, name: str) -> object:
        """The source a name refers to in this scope or an enclosing one (correlation)."""
        while scope is not None:
            if name in scope.sources:
                return scope.sources[name]
            scope = scope.parent
        return None

    def _source_flow(self, source: object, column: str | None) -> _Flow:
        """A column of a source (``None``: the whole row of it)."""
        flow = _Flow()
        if isinstance(source, Scope):
            return self._whole(source) if column is None else self._named_output(source, column)
        if not isinstance(source, exp.Table):
            return self._all()
        if not isinstance(source.this, exp.Identifier):  # a table function: opaque
            return self._flow(source.this, None).collect()
        entry = self.tables(source)
        if entry is None:
            if source.name.lower() in self.results:
                flow.results.add((source.name.lower(), id(source)))
                return flow
            return self._all()  # a name we cannot place (a recursive CTE's self-reference)
        if source.args.get("pivots"):
            flow.add_table(entry, self.raw, unbounded=True)
            return flow
        if column is None:
            flow.add_table(entry, self.raw)
            return flow
        name = _catalog_column(entry, source, column)
        if name is None:
            flow.add_table(entry, self.raw, unbounded=True)
        else:
            flow.add_column(entry, name, self.raw, unbounded=False)
        return flow

    def _flow(
        self, node: exp.Expr, scope: Scope | None, bound: frozenset[str] = frozenset()
    ) -> _Flow:
        """Raw values that one expression, evaluated in ``scope``, can carry per row."""
        if isinstance(node, (exp.Predicate, exp.Connector, exp.Not, exp.Exists, exp.Boolean)):
            return _Flow()  # a truth value
        if isinstance(node, exp.Literal | exp.Null | exp.DataType | exp.Placeholder):
            return _Flow()
        if isinstance(node, exp.Lambda):
            params = frozenset(p.name.lower() for p in node.expressions)
            return self._flow(node.this, scope, bound | params)
        if isinstance(node, exp.Window):
            return self._flow(node.this, scope, bound)  # PARTITION BY / ORDER BY output nothing
        if isinstance(node, exp.Filter):
            return self._flow(node.this, scope, bound)
        if isinstance(node, (exp.Subquery, exp.Select, exp.SetOperation)):
            return self._subquery(node, scope)
        if isinstance(node, exp.Column):
            return self._column(node, scope, bound)
        if isinstance(node, exp.TableColumn):  # the row of a source, as a struct
            source = self._source(scope, node.name)
            return self._all() if source is None else self._source_flow(source, None)
        if isinstance(node, exp.Star):
            return self._star(None, scope)
        if isinstance(node, exp.Columns):
            qualifier = node.this.table if isinstance(node.this, exp.Column) else None
            return self._star(qualifier or None, scope)
        if isinstance(node, exp.PositionalColumn):
            return self._star(None, scope)
        if isinstance(node, exp.Func):
            return self._function(node, scope, bound)
        flow = _Flow()
        for child in node.iter_expressions():
            flow.add(self._flow(child, scope, bound))
        return flow

    def _function(self, node: exp.Func, scope: Scope | None, bound: frozenset[str]) -> _Flow:
        name = (
            str(node.name).lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        )
        if name in _NO_VALUE:
            return _Flow()
        flow = _Flow()
        for child in node.iter_expressions():
            flow.add(self._flow(child, scope, bound))
        if node.args.get("count") is not None or any(
            isinstance(arg, exp.Array) for arg in node.iter_expressions()
        ):
            return flow.collect()  # min(x, n), arg_max(x, y, n), quantile(x, [...]): lists
        if name in _ONE_VALUE or isinstance(node, exp.Unnest | exp.Explode):
            return flow
        if isinstance(node, exp.AggFunc) or name in _COLLECTING:
            return flow.collect()
        if isinstance(node, exp.Anonymous) and name not in _KNOWN_SCALARS:
            return flow.collect()  # an unreviewed function: it might aggregate
        return flow

    def _subquery(self, node: exp.Expr, scope: Scope | None) -> _Flow:
        query = node.this if isinstance(node, exp.Subquery) else node
        child = self.scopes.get(id(query))
        if child is None:
            return self._all()
        flow = self._whole(child)
        if isinstance(node.parent, (exp.Array, exp.ArrayAgg, exp.Anonymous)):
            flow.collect()  # ARRAY(SELECT ...) collects every row
        return flow

    def _column(self, node: exp.Column, scope: Scope | None, bound: frozenset[str]) -> _Flow:
        if isinstance(node.this, exp.Star):
            return self._star(node.table or None, scope)
        if node.table:
            source = self._source(scope, node.table)
            if source is None:
                return self._all()  # e.g. a pivot's output or a struct field: fail closed
            return self._source_flow(source, node.name)
        name = node.name
        if name.lower() in bound:
            return _Flow()  # a lambda parameter: its values were counted with the list
        source = self._source(scope, name)
        if source is not None:
            return self._source_flow(source, None)  # the row as a struct
        return self._all()

    def _star(self, qualifier: str | None, scope: Scope | None) -> _Flow:
        flow = _Flow()
        if qualifier:
            source = self._source(scope, qualifier)
            return self._all() if source is None else self._source_flow(source, None)
        sources = scope.sources.values() if scope is not None else []
        for source in sources:
            flow.add(self._source_flow(source, None))
        return flow


_KNOWN_SCALARS = (SAFE_FUNCTIONS | frozenset().union(*DIALECT_FUNCTIONS.values())) - _COLLECTING


def _flow_of(exposure: Exposure) -> _Flow:
    flow = _Flow()
    flow.per_row.update(exposure.per_row)
    flow.unbounded |= exposure.unbounded
    flow.tags.update(exposure.tags)
    flow.results |= exposure.results
    return flow


def _catalog_column(entry: TableEntry, table: exp.Table, column: str) -> str | None:
    """The catalog column a reference names, through an alias list ``t(a, b, ...)``."""
    alias = table.args.get("alias")
    names = list(entry.columns)
    if isinstance(alias, exp.TableAlias) and alias.columns:
        renamed = [c.name.lower() for c in alias.columns]
        if len(renamed) > len(names):
            return None
        if column.lower() in renamed:
            return names[renamed.index(column.lower())]
        names = names[len(renamed) :]  # an alias list renames a prefix of the columns
    for name in names:
        if name.lower() == column.lower():
            return name
    return None


def _literal_limit(query: exp.Expr) -> int | None:
    limit = query.args.get("limit")
    if not isinstance(limit, exp.Limit):
        return None
    if any(v for k, v in limit.args.items() if k != "expression"):
        return None  # LIMIT ... PERCENT, WITH TIES, ...
    value = limit.expression
    if isinstance(value, exp.Literal) and value.is_int:
        return int(value.this)
    return None


def _single_row_aggregate(select: exp.Select) -> bool:
    """An aggregate query without GROUP BY returns exactly one row."""
    if select.args.get("group"):
        return False
    has_aggregate = False
    for projection in select.expressions:
        for node in projection.walk(prune=lambda n: isinstance(n, (exp.Subquery, exp.Select))):
            if isinstance(node, (exp.Subquery, exp.Select)):
                continue
            if isinstance(node, (exp.Window, exp.Unnest, exp.Explode)) or (
                isinstance(node, exp.Func) and _returns_rows(node)
            ):
                return False
            if isinstance(node, exp.AggFunc) and node.find_ancestor(exp.Window) is None:
                has_aggregate = True
    return has_aggregate


def _returns_rows(node: exp.Func) -> bool:
    name = str(node.name).lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
    return name in {"unnest", "generate_series", "range", "explode", "generate_subscripts"}


def _is_recursive_cte(scope: Scope) -> bool:
    parent = scope.expression.parent
    if not isinstance(parent, exp.CTE):
        return False
    with_ = parent.parent
    return isinstance(with_, exp.With) and bool(with_.args.get("recursive"))
