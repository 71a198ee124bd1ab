"""A backend profile: everything jupyter-gov must know about one kind of database, in one place.

A profile declares the URL schemes it answers, the sqlglot dialect it speaks, how it binds
parameters, what it can do on the server (cancel, read-only transactions, timeouts), the
functions and file readers that are dangerous on it, the settings that lock it down, how
its catalog is read and how each mask is spelled in its SQL. Adding a database is adding
one profile (and, to run statements, its connector); nothing else branches on the engine.

Masks are built once, in :mod:`jupyter_gov.masking`, from a few building blocks (a keyed
SHA-256 in hex, a global regex replace, repeat, left/right, the first day of a year...).
A profile's :class:`MaskDialect` spells those blocks for its engine so that every engine
returns the *same value* for the same input and key; a block an engine lacks raises
:class:`MaskUnsupported`, and the plan that needs it is denied when it is built.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sqlglot import exp

from jupyter_gov.errors import MaskUnsupported as MaskUnsupported  # importable from here

if TYPE_CHECKING:
    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.policy import Connection

#: PEP 249's styles, plus ``dollar`` (``$name``, DuckDB) and ``dollar_numeric`` (``$1``,
#: PostgreSQL's wire protocol as ADBC speaks it) and ``at`` (``@name``, BigQuery).
ParamStyle = Literal[
    "qmark", "numeric", "named", "format", "pyformat", "dollar", "dollar_numeric", "at"
]


@dataclass(frozen=True)
class Capabilities:
    """What the engine can enforce on its own side, as defence in depth."""

    cancel: bool = False  # interrupting the cell cancels the statement on the server
    read_only_transactions: bool = False  # read-only roles run in a read-only transaction
    result_registration: bool = False  # ``NAME <<`` results can be registered on the engine
    server_timeout: bool = False  # a per-statement timeout is enforced by the server


def call(name: str, *args: exp.Expr) -> exp.Expr:
    """A function call rendered exactly as named, in every dialect (sqlglot's ``Anonymous``)."""
    return exp.Anonymous(this=name, expressions=list(args))


def is_text(dtype: exp.DataType) -> bool:
    """Text, or a type the catalog could not name (treated as text, so it is masked as such)."""
    return dtype.is_type(*exp.DataType.TEXT_TYPES) or dtype.this == exp.DataType.Type.UNKNOWN


class MaskDialect:
    """How one engine spells the blocks masks are built from.

    The defaults are sqlglot's own expression nodes, which sqlglot transpiles to each
    dialect; an engine overrides a block where the transpiled SQL is wrong, missing or
    would return a different value. Every block must return the same value on every
    engine for the same input: that is what makes ``hash`` join across databases.
    """

    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        """The lower-case hex SHA-256 digest of the UTF-8 bytes of ``text``."""
        return exp.SHA2(this=text, length=exp.Literal.number(256))

    def md5_hex(self, text: exp.Expr) -> exp.Expr:
        """The lower-case hex MD5 digest of the UTF-8 bytes of ``text`` (``masking.digest:
        md5``). Only engines whose spelling is checked against DuckDB's value override it."""
        raise MaskUnsupported("no MD5 digest is known to match DuckDB's on this engine")

    def concat(self, left: exp.Expr, right: exp.Expr) -> exp.Expr:
        """Text concatenation that is NULL when either side is."""
        return exp.DPipe(this=left, expression=right)

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        """Replace *every* match of ``pattern`` by the literal ``replacement``."""
        return call("REGEXP_REPLACE", text, exp.Literal.string(pattern), _lit(replacement))

    def length(self, text: exp.Expr) -> exp.Expr:
        """Length in characters, not bytes."""
        return exp.Length(this=text)

    def repeat(self, text: str, times: exp.Expr) -> exp.Expr:
        return exp.Repeat(this=exp.Literal.string(text), times=times)

    def left(self, text: exp.Expr, count: int) -> exp.Expr:
        return exp.Left(this=text, expression=exp.Literal.number(count))

    def right(self, text: exp.Expr, count: int) -> exp.Expr:
        return exp.Right(this=text, expression=exp.Literal.number(count))

    def position(self, text: exp.Expr, needle: str) -> exp.Expr:
        """1-based character position of the first ``needle`` in ``text``; 0 when absent.

        A control character is spelt ``CHR(n)``: a raw newline or tab inside the rewritten
        SQL would reach the audit and the golden fixtures as a broken line.
        """
        if len(needle) == 1 and not needle.isprintable():
            literal: exp.Expr = exp.Chr(expressions=[exp.Literal.number(ord(needle))])
        else:
            literal = exp.Literal.string(needle)
        return exp.StrPosition(this=text, substr=literal)

    def substring(self, text: exp.Expr, start: exp.Expr, length: int | None = None) -> exp.Expr:
        """Characters from 1-based ``start``, to the end or ``length`` of them."""
        return exp.Substring(
            this=text,
            start=start,
            length=exp.Literal.number(length) if length is not None else None,
        )

    def year_start(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        """The first instant of the value's year, in the value's own type."""
        return exp.cast(exp.DateTrunc(this=ref, unit=exp.var("YEAR")), dtype.copy())

    def as_text(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        return ref if is_text(dtype) else exp.cast(ref, exp.DataType.build("VARCHAR"))

    def typed_null(self, dtype: exp.DataType) -> exp.Expr:
        return exp.cast(exp.null(), dtype.copy())


def _lit(text: str) -> exp.Expr:
    return exp.Literal.string(text)


class RenderedSQL(NamedTuple):
    """SQL in a profile's parameter style, and the bound names in the order the driver wants."""

    sql: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """One kind of database, declared. Frozen: a profile is data, looked up by the registry."""

    name: str  # registry key and the word users see in errors: "postgres"
    title: str  # "PostgreSQL"
    schemes: tuple[str, ...]  # URL schemes, without "://" and without a "+driver" suffix
    dialect: str  # sqlglot dialect name
    paramstyle: ParamStyle
    default_schema: str  # where an unqualified table name resolves
    catalog_query: str  # (schema, table, column, type) rows in ordinal order
    masks: MaskDialect = field(default_factory=MaskDialect)
    capabilities: Capabilities = field(default_factory=Capabilities)
    #: Functions beyond ``functions.SAFE_FUNCTIONS`` that are safe on this engine.
    functions: frozenset[str] = frozenset()
    #: Functions that reach files, settings, processes or other servers: never allowed,
    #: not even through a policy's ``guardrails.allow_functions``.
    dangerous_functions: frozenset[str] = frozenset()
    #: Functions and table functions that read files or URLs.
    file_readers: frozenset[str] = frozenset()
    #: Settings the connector applies before the first governed statement.
    lockdown: Mapping[str, Any] = field(default_factory=dict)
    #: Functions the connector registers on every connection (name -> (arguments, callable)),
    #: for engines that lack a mask's building block but accept application functions.
    udfs: Mapping[str, tuple[int, Callable[..., Any]]] = field(default_factory=dict)
    #: Opens a connector for a policy connection; ``None`` while only rendering is supported.
    connect: Callable[[Connection], Connector] | None = None
    #: What to install to get the connector, said when it is missing.
    install_hint: str = ""

    def open(self, connection: Connection) -> Connector:
        """Open the connector, or say in one sentence why it cannot be opened here."""
        if self.connect is None:  # the general path: the URL's SQLAlchemy driver
            from jupyter_gov.connectors.sqlalchemy import open_sqlalchemy

            return open_sqlalchemy(connection, self)
        return self.connect(connection)

    def render(self, expression: exp.Expr) -> RenderedSQL:
        """Render ``expression`` in this dialect with its placeholders in this paramstyle.

        For ``format``/``pyformat`` every other ``%`` is doubled, so the driver must always
        be given a parameter sequence (empty when there is none).
        """
        tree = expression.copy()
        nonce = uuid.uuid4().hex
        found: dict[str, str] = {}  # sentinel -> bound name
        for index, placeholder in enumerate(list(tree.find_all(exp.Placeholder))):
            sentinel = f"gov{nonce}p{index}e"
            found[sentinel] = str(placeholder.name)
            placeholder.replace(exp.var(sentinel))
        sql = tree.sql(dialect=self.dialect)
        if self.paramstyle in ("format", "pyformat"):
            sql = sql.replace("%", "%%")
        # Positional styles bind in the order of the text, which is not the tree's order
        # (``POSITION(x IN y)`` prints its second argument first).
        names = [found[s] for s in sorted(found, key=sql.index)]
        for position, sentinel in enumerate(sorted(found, key=sql.index)):
            sql = sql.replace(sentinel, self._marker(found[sentinel], position), 1)
        positional = self.paramstyle in ("qmark", "format", "numeric", "dollar_numeric")
        return RenderedSQL(sql, tuple(names) if positional else tuple(dict.fromkeys(names)))

    def _marker(self, name: str, index: int) -> str:
        return {
            "qmark": "?",
            "format": "%s",
            "numeric": f":{index + 1}",
            "dollar_numeric": f"${index + 1}",
            "named": f":{name}",
            "pyformat": f"%({name})s",
            "dollar": f"${name}",
            "at": f"@{name}",
        }[self.paramstyle]
