"""Parse a cell into statements and describe what each one touches, with sqlglot.

Nothing here decides anything: ``guardrails`` decides, ``masking`` rewrites. This module
answers "what is this statement?" in the connection's dialect: its kind, the tables it
reads and writes (each resolved to a catalog relation, a CTE or a session result), the
functions and table functions it calls, and its literal-free fingerprint for the audit.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import TokenType

from jupyter_gov.errors import SqlSyntaxError, SqlTooLarge  # importable from here as before

# sqlglot warns when it falls back to exp.Command; we deny those explicitly instead.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

#: Root types a statement may have. Everything else (DDL, SET, PRAGMA, COPY, ATTACH,
#: Command fallbacks, a bare Column such as CHECKPOINT, ...) is denied by guardrails.
READ_ROOTS: tuple[type[exp.Expr], ...] = (exp.Select, exp.SetOperation)
WRITE_ROOTS: tuple[type[exp.Expr], ...] = (exp.Insert, exp.Update, exp.Delete)

#: Which node types name a write target (its ``this``), never a source to mask.
_WRITE_TARGET_PARENTS = (exp.Insert, exp.Update, exp.Delete)


#: What a table name resolves to: a catalog relation, a CTE (``shadowing_cte``: one named
#: like a catalog table), a saved result, a table function, a file path, or nothing known.
TableKind = Literal[
    "catalog",
    "cte",
    "shadowing_cte",
    "result",
    "function",
    "path",
    "unknown",
    "system",
    "ambiguous",
]


@dataclass(frozen=True)
class TableRef:
    """One table name as written, and what it resolves to."""

    node: exp.Table
    name: str
    schema: str | None
    #: "system" is an engine's own catalog (never governed); "ambiguous" has no known scope.
    kind: TableKind

    @property
    def is_write_target(self) -> bool:
        parent = self.node.parent
        if isinstance(parent, exp.Schema):  # INSERT INTO t (a, b)
            parent = parent.parent
        return isinstance(parent, _WRITE_TARGET_PARENTS) and parent.this is (
            self.node if not isinstance(self.node.parent, exp.Schema) else self.node.parent
        )


@dataclass
class StatementInfo:
    """What one statement is and touches."""

    expression: exp.Expr
    kind: str
    tables: list[TableRef] = field(default_factory=list)
    functions: list[tuple[str, exp.Func]] = field(default_factory=list)
    fingerprint: str = ""
    normalized: str = ""

    @property
    def is_write(self) -> bool:
        return isinstance(self.expression, WRITE_ROOTS)

    @property
    def is_read(self) -> bool:
        return isinstance(self.expression, READ_ROOTS)


def statement_kind(expression: exp.Expr) -> str:
    """A short lower-case name for the statement's root: select, insert, drop, command, ..."""
    if isinstance(expression, exp.SetOperation):
        return "select"
    if isinstance(expression, exp.Command):
        return str(expression.this or "command").split()[0].lower()
    if isinstance(expression, _NOT_STATEMENTS):
        # ``LIST JAR`` parses as a column aliased ``JAR``: name the command's first word,
        # never the node type (or any literal: only a plain keyword is taken).
        words = expression.sql().split()
        first = words[0].lower() if words else ""
        return first if re.fullmatch(r"[a-z_]+", first) else "unrecognised"
    return type(expression).__name__.lower()


#: Expression roots that are not statements: sqlglot's reading of a command it does not know.
_NOT_STATEMENTS = (
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Var,
    exp.Literal,
    exp.Paren,
    exp.Tuple,
)


#: Tokens that open a nesting level, the ones that close it, and prefix operators whose
#: runs (``NOT NOT NOT x``, ``- - - 1``) nest without any parenthesis.
_OPENERS = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSERS = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}


def nesting_depth(tokens: list) -> int:
    """How deep a token stream nests, in one linear pass (an upper bound of the tree's)."""
    depth = deepest = run = 0
    for token in tokens:
        kind = token.token_type
        if kind in _PREFIX:
            run += 1
        else:
            run = 0
            if kind in _OPENERS:
                depth += 1
            elif kind in _CLOSERS and depth:
                depth -= 1
        deepest = max(deepest, depth + run)
    return deepest


def parse(
    sql: str,
    dialect: str,
    *,
    max_bytes: int | None = None,
    max_nesting: int | None = None,
) -> list[exp.Expr]:
    """Split and parse a cell into statements; raise :class:`SqlSyntaxError` with a position.

    Size and nesting are checked on the text and tokens before the (recursive) parser
    runs, so a hostile cell costs linear time and never a ``RecursionError``. Messages
    carry a position and a rule id, never text from the statement: a literal may be PII.
    """
    try:
        size = len(sql.encode("utf-8"))
    except UnicodeEncodeError:
        raise SqlSyntaxError(
            "The SQL holds characters that are not valid Unicode (a lone surrogate, often "
            "from bytes that are not UTF-8) (invalid-text); retype or re-encode it.",
            rule="invalid-text",
        ) from None
    if max_bytes is not None and size > max_bytes:
        raise SqlTooLarge(
            f"The cell is {size:,} bytes, more than the {max_bytes:,} that "
            "guardrails.max_sql_bytes allows; split it or raise the limit in the policy.",
            "sql-too-large",
        )
    grammar = dialect_named(dialect)
    try:
        tokens = grammar.tokenize(sql)
    except TokenError as error:
        raise SqlSyntaxError(
            "The SQL does not parse (token-error); check for an unclosed quote or comment."
        ) from error
    if max_nesting is not None and nesting_depth(tokens) > max_nesting:
        raise SqlTooLarge(
            f"The SQL nests more than {max_nesting} levels deep, more than "
            "guardrails.max_nesting allows; flatten it (a CTE per level) or raise the limit.",
            "sql-too-deep",
        )
    try:
        statements = [s for s in grammar.parser().parse(tokens, sql) if s is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        line, column = first.get("line"), first.get("col")
        where = f" at line {line}, column {column}" if line else ""
        hint = "fix the statement and rerun"
        if dialect == "duckdb" and _colon_parameter(tokens):
            hint = (
                "on DuckDB write a parameter as $name (DuckDB reads 'name:' in a SELECT list "
                "as an alias), or fix the statement and rerun"
            )
        raise SqlSyntaxError(
            f"The SQL does not parse{where} (parse-error); {hint}.", line, column
        ) from error
    except TokenError as error:
        raise SqlSyntaxError(
            "The SQL does not parse (token-error); check for an unclosed quote or comment."
        ) from error
    except RecursionError:
        raise SqlTooLarge(
            "The SQL nests too deeply to analyse; flatten it (a CTE per level) and rerun "
            "(guardrails.max_nesting).",
            "sql-too-deep",
        ) from None
    if not statements:
        raise SqlSyntaxError("The cell holds no SQL statement.")
    for statement in statements:
        _forget_positions(statement)
    return statements


def dialect_named(name: str) -> sqlglot.Dialect:
    """The sqlglot dialect ``name`` names, one instance per name (dialects do not change
    once built): sqlglot builds one for every call given a name, about five per plan."""
    if not isinstance(name, str):  # a Dialect already (equal to any of its class: no cache)
        return sqlglot.Dialect.get_or_raise(name)
    return _dialect_named(name)


@functools.lru_cache(maxsize=64)
def _dialect_named(name: str) -> sqlglot.Dialect:
    return sqlglot.Dialect.get_or_raise(name)


def _colon_parameter(tokens: list) -> bool:
    """Whether the cell holds a ``:name`` parameter (a colon then a name, not ``::``)."""
    return any(
        a.token_type == TokenType.COLON and b.token_type == TokenType.VAR
        for a, b in itertools.pairwise(tokens)
    )


#: The token positions the parser records on nodes; parse errors carry their own.
_POSITIONS = frozenset({"line", "col", "start", "end"})


def _forget_positions(tree: exp.Expr) -> None:
    """Drop the parser's token positions from every node: nothing reads them after a
    successful parse, and each tree copy deep-copies them in Python (about a tenth of a
    cold plan, which copies the statement several times). Empty comment lists the parser
    leaves go too, for the same reason (no comment and an empty list render alike)."""
    for node in tree.walk():
        if node.comments == []:
            node.comments = None
        meta = node._meta
        if meta:
            if meta.keys() <= _POSITIONS:
                node._meta = None
            else:
                for key in _POSITIONS & meta.keys():
                    del meta[key]


def describe(
    expression: exp.Expr,
    dialect: str,
    catalog_tables: Mapping[str, object],
    results: Mapping[str, object] | None = None,
) -> StatementInfo:
    """Walk the whole tree once and list what the statement touches.

    ``catalog_tables`` maps lower-case table names (``t`` and ``schema.t``) to catalog
    entries; ``results`` maps names of this session's registered results.
    """
    info = StatementInfo(expression=expression, kind=statement_kind(expression))
    results = results or {}
    scoped = scoped_tables(expression)
    bare: list[tuple[str, exp.Column]] = []  # unqualified columns named like a niladic call
    literals: list[exp.Literal] = []
    for node in expression.walk():
        if isinstance(node, exp.Literal):
            literals.append(node)
        elif isinstance(node, exp.Column):
            if not node.table and (name := node.name.lower()) in NILADIC_FUNCTIONS:
                bare.append((name, node))
        elif isinstance(node, exp.Table):
            info.tables.append(_resolve_table(node, catalog_tables, results, scoped))
        elif isinstance(node, (exp.Unnest, exp.Lateral)) and isinstance(
            node.parent, (exp.From, exp.Join)
        ):
            continue  # a row source over expressions, not a call to check
        elif isinstance(node, exp.Func) and not isinstance(node.parent, exp.Table):
            info.functions.append((function_name(node), node))
    if bare:
        columns = _catalog_column_names(catalog_tables)
        for name, column in bare:
            if name not in columns:
                info.functions.append((name, column))  # SELECT user: a call without parentheses
    info.normalized = parameterize_literals(expression, dialect, literals)
    info.fingerprint = hashlib.sha256(info.normalized.encode()).hexdigest()[:16]
    return info


#: Functions engines call without parentheses; sqlglot parses them as bare columns.
NILADIC_FUNCTIONS = frozenset(
    {
        "user",
        "current_user",
        "session_user",
        "system_user",
        "current_role",
        "current_schema",
        "current_catalog",
        "current_database",
        "current_query",
        "current_setting",
    }
)


def _catalog_column_names(catalog_tables: Mapping[str, object]) -> frozenset[str]:
    names: set[str] = set()
    for entry in catalog_tables.values():
        names.update(c.lower() for c in getattr(entry, "columns", ()) or ())
    return frozenset(names)


def function_name(node: exp.Expr) -> str:
    """sqlglot's canonical name for a known function, the written name for others."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return type(node).__name__.lower()


#: Schemas (and DuckDB catalogs) that hold an engine's own metadata and settings.
SYSTEM_SCHEMAS = frozenset(
    {"pg_catalog", "information_schema", "pg_toast", "pg_temp", "mysql", "sys", "system", "temp"}
    | {"performance_schema"}
)
#: Name prefixes of system relations that resolve without a schema (PostgreSQL searches
#: ``pg_catalog`` before ``public``; DuckDB's ``duckdb_*`` and SQLite's ``sqlite_*``).
SYSTEM_PREFIXES = ("pg_", "duckdb_", "sqlite_")


def is_system_relation(name: str, schema: str | None, catalog: str | None = None) -> bool:
    """True for an engine's own catalog relation, which no governed query may read."""
    parts = {p.lower() for p in (schema, catalog) if p}
    return bool(parts & SYSTEM_SCHEMAS) or name.lower().startswith(SYSTEM_PREFIXES)


def scoped_tables(expression: exp.Expr) -> dict[int, str] | None:
    """What each table name in a query binds to, by the engine's scoping rules.

    Maps ``id(table node)`` to ``"cte"`` (a CTE visible at that point: only later CTEs and
    the main query see one, its own body only under ``RECURSIVE``), ``"table"`` (a real
    relation, whatever an enclosing ``WITH`` defines) or ``"ambiguous"``. sqlglot's scope
    module models exactly this; None when it cannot build the scopes for the statement.
    """
    out: dict[int, str] = {}
    try:
        scopes = traverse_scope(expression)
    except Exception:  # any failure means "unknown": callers fail closed
        return None
    for scope in scopes:
        for table in scope.tables:
            if not isinstance(table, exp.Table):
                continue
            source = scope.sources.get(table.alias_or_name)
            if source is table:
                out[id(table)] = "table"
            elif isinstance(source, Scope) and source.is_cte:
                out[id(table)] = "cte"
            else:
                out[id(table)] = "ambiguous"
    return out


def _resolve_table(
    node: exp.Table,
    catalog_tables: Mapping[str, object],
    results: Mapping[str, object],
    scoped: dict[int, str] | None = None,
) -> TableRef:
    name = node.name.lower()
    schema = node.db.lower() if node.db else None
    if node.this is not None and not isinstance(node.this, exp.Identifier):
        return TableRef(node, name, schema, "function")
    if isinstance(node.this, exp.Identifier) and node.this.quoted and _looks_like_path(node.name):
        return TableRef(node, node.name, schema, "path")
    if not schema and not node.catalog:
        binding = scoped.get(id(node)) if scoped is not None else None
        if binding == "ambiguous" or (binding is None and _is_cte_reference(node, name)):
            # Outside every scope sqlglot builds (an UPDATE's FROM, a write target) or in a
            # shape it cannot scope: the name may be a CTE or a real object. Refuse to guess.
            return TableRef(node, name, schema, "ambiguous")
        if binding == "cte":
            if name in catalog_tables:
                return TableRef(node, name, schema, "shadowing_cte")
            return TableRef(node, name, schema, "cte")
    if not schema and not node.catalog and name in results:
        # The identity's own saved result: registered as a temporary view, which the
        # engine finds before any system relation, so ``pg_people <<`` stays readable.
        return TableRef(node, name, schema, "result")
    if is_system_relation(name, schema, node.catalog or None):
        return TableRef(node, name, schema, "system")
    key = f"{schema}.{name}" if schema else name
    if node.catalog:
        key = f"{node.catalog.lower()}.{key}"
    if key in catalog_tables:
        return TableRef(node, name, schema, "catalog")
    return TableRef(node, name, schema, "unknown")


def _looks_like_path(name: str) -> bool:
    return any(ch in name for ch in "/\\*:") or "." in name


def _is_cte_reference(node: exp.Table, name: str) -> bool:
    """True when some enclosing WITH defines a CTE of this name (visible or not)."""
    for ancestor in _ancestors(node):
        with_ = ancestor.args.get("with_") or ancestor.args.get("with")
        if isinstance(with_, exp.With) and any(
            cte.alias_or_name.lower() == name for cte in with_.expressions
        ):
            return True
    return False


def _ancestors(node: exp.Expr):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def parameterize_literals(
    expression: exp.Expr, dialect: str, literals: Sequence[exp.Literal] | None = None
) -> str:
    """The statement with every literal replaced by ``?``: what the audit stores.

    Swaps the literals out in place and back again rather than copying the tree, which
    would cost more than parsing it did. Linear in the statement's size: each parent's
    argument list is rebuilt once (replacing literals one by one re-indexes the list each
    time, which made a 16k-value ``IN`` list take half a minute). ``literals`` are every
    literal of ``expression`` when the caller has just walked it (one walk fewer); a
    literal left out would stay in the audit's text.
    """
    if isinstance(expression, exp.Literal):
        return "?"
    saved = _swap_all(expression, exp.Literal, lambda _: exp.Placeholder(), literals)
    try:
        return expression.sql(dialect=dialect_named(dialect), comments=False)
    finally:
        for parent, key, old in saved:
            parent.set(key, old)


def _swap_all(
    expression: exp.Expr, kind: type[exp.Expr], make, found: Sequence[exp.Expr] | None = None
) -> list[tuple[exp.Expr, str, object]]:
    """Replace every ``kind`` node below ``expression`` (``found``, when the caller has
    them); return what to set back, in order."""
    slots: dict[tuple[int, str], exp.Expr] = {}
    for node in expression.find_all(kind) if found is None else found:
        parent = node.parent
        if parent is not None and node is not expression:
            slots.setdefault((id(parent), node.arg_key), parent)
    saved: list[tuple[exp.Expr, str, object]] = []
    for (_, key), parent in slots.items():
        old = parent.args[key]
        if isinstance(old, list):
            new: object = [make(item) if isinstance(item, kind) else item for item in old]
        else:
            new = make(old)
        saved.append((parent, key, old))
        parent.set(key, new)
    return saved


def positional_placeholders(
    expression: exp.Expr, dialect: str, placeholders: Sequence[exp.Placeholder] | None = None
) -> list[exp.Placeholder]:
    """The statement's ``?`` placeholders in the order the statement is written.

    A tree walk visits them in the parser's argument order (a WITH after its SELECT, a
    LIMIT before the WHERE), so values would bind to the wrong ``?``. The order of the
    statement rendered in its own dialect is the written order: each ``?`` is swapped
    for a unique marker, the tree rendered once, and the markers sorted by offset.
    ``placeholders`` are the statement's placeholders when the caller has found them.
    """
    if placeholders is None:
        placeholders = list(expression.find_all(exp.Placeholder))
    found = [p for p in placeholders if not p.name or p.name == "?"]
    if len(found) < 2:
        return found
    nonce = hashlib.sha256(repr(id(expression)).encode()).hexdigest()[:12]
    markers = [exp.var(f"gov{nonce}q{index}e") for index in range(len(found))]
    for placeholder, marker in zip(found, markers):
        placeholder.replace(marker)
    try:
        text = expression.sql(dialect=dialect, comments=False)
    finally:
        for placeholder, marker in zip(found, markers):
            marker.replace(placeholder)
    order = sorted(range(len(found)), key=lambda i: text.find(markers[i].name))
    return [found[i] for i in order]


def statement_fingerprint(normalized_statements: list[str]) -> str:
    return hashlib.sha256("\n;\n".join(normalized_statements).encode()).hexdigest()[:16]


# -- templates ----------------------------------------------------------------------------


#: How a named placeholder is spelt where ``:name`` is not one everywhere.
_NAMED_PLACEHOLDER = {"duckdb": "$"}


def template_to_placeholders(sql: str, dialect: str) -> tuple[str, list[str]]:
    """Turn ``{{ name }}`` / ``{{ user.attr }}`` into bound placeholders, using sqlglot's tokenizer.

    Returns the SQL with each template replaced by ``:name`` (dots become ``__``) and the
    names found, in order. Text inside string literals and comments is never touched, and
    values are never pasted into SQL: they are bound when the statement runs. DuckDB gets
    ``$name``: it reads ``name: expr`` in a SELECT list as an alias, so ``SELECT :name``
    would not parse there.
    """
    sigil = _NAMED_PLACEHOLDER.get(dialect, ":")
    tokenizer_class = sqlglot.Dialect.get_or_raise(dialect).tokenizer_class
    try:
        tokens = tokenizer_class().tokenize(sql)
    except TokenError as error:
        raise SqlSyntaxError(
            "The SQL does not parse (token-error); check for an unclosed quote or comment."
        ) from error
    pieces: list[str] = []
    names: list[str] = []
    cursor = 0
    i = 0
    while i < len(tokens):
        match = _match_template(tokens, i)
        if match is None:
            i += 1
            continue
        end_index, dotted = match
        start, end = tokens[i].start, tokens[end_index].end
        pieces.append(sql[cursor:start])
        placeholder = dotted.replace(".", "__")
        pieces.append(f"{sigil}{placeholder}")
        names.append(dotted)
        cursor = end + 1
        i = end_index + 1
    pieces.append(sql[cursor:])
    return "".join(pieces), names


def _match_template(tokens: list, i: int) -> tuple[int, str] | None:
    """Match ``{ { name(.name)* } }`` starting at token i; return (last index, dotted name)."""
    kinds = [t.token_type for t in tokens[i : i + 2]]
    if kinds != [TokenType.L_BRACE, TokenType.L_BRACE]:
        return None
    j = i + 2
    parts: list[str] = []
    expect_name = True
    while j < len(tokens):
        token = tokens[j]
        if (expect_name and token.token_type in (TokenType.VAR,)) or (
            expect_name and token.text.isidentifier()
        ):
            parts.append(token.text)
            expect_name = False
        elif not expect_name and token.token_type == TokenType.DOT:
            expect_name = True
        elif not expect_name and token.token_type == TokenType.R_BRACE:
            if j + 1 < len(tokens) and tokens[j + 1].token_type == TokenType.R_BRACE:
                return j + 1, ".".join(parts)
            return None
        else:
            return None
        j += 1
    return None


#: The former name of :func:`parameterize_literals` (in sqlglot "normalize" means boolean
#: normal form); kept for one release.
normalize = parameterize_literals
