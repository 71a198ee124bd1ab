"""The connector interface and the catalog it reports."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from sqlglot import exp

from jupyter_gov.policy.model import env_references
from jupyter_gov.scrub import redact_engine_message


@dataclass(frozen=True)
class TableEntry:
    """A catalog table: its schema and its columns with sqlglot data types, in order."""

    schema: str
    name: str
    columns: Mapping[str, exp.DataType]
    #: Column sets the engine enforces as unique and not null (primary keys), spelt as in
    #: ``columns``: late masking may group by a masked column that one of them determines.
    keys: tuple[tuple[str, ...], ...] = ()


@dataclass
class Catalog:
    """A connection's governed relations, keyed by lower-case ``table`` and ``schema.table``."""

    tables: dict[str, TableEntry] = field(default_factory=dict)
    version: str = ""
    #: where an unqualified name resolves, spelt as in ``tables`` (sqlglot's qualify needs it
    #: once a second schema holds a table of the same name)
    default_schema: str = ""
    _mapping: dict[str, dict[str, dict[str, str]]] | None = field(default=None, repr=False)

    @classmethod
    def from_rows(
        cls,
        rows: list[tuple[str, str, str, str]],
        default_schema: str,
        dialect: str = "duckdb",
        keys: Iterable[tuple[str, str, Iterable[str]]] = (),
    ) -> Catalog:
        """Build from ``(schema, table, column, type)`` rows in ordinal order.

        Types are read in the engine's own dialect (a MySQL ``TINYINT(1)`` is not DuckDB's).
        ``keys`` are ``(schema, table, columns)`` primary keys the engine enforces.
        """
        key_sets: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        for schema, table, key_columns in keys:
            key_sets.setdefault((schema, table), []).append(tuple(key_columns))
        grouped: dict[tuple[str, str], dict[str, exp.DataType]] = {}
        for schema, table, column, data_type in rows:
            grouped.setdefault((schema, table), {})[column] = _parse_type(data_type, dialect)
        catalog = cls()
        catalog.default_schema = next(
            (s for s, _ in grouped if s.lower() == default_schema.lower()), default_schema
        )
        for (schema, table), columns in grouped.items():
            known = [k for k in key_sets.get((schema, table), []) if k and set(k) <= set(columns)]
            entry = TableEntry(schema=schema, name=table, columns=columns, keys=tuple(known))
            catalog.tables[f"{schema}.{table}".lower()] = entry
            if schema.lower() == default_schema.lower():
                catalog.tables.setdefault(table.lower(), entry)
        # Keys are part of the version: a plan that relied on a dropped key is not reused.
        shape = (sorted(rows), sorted((k, sorted(v)) for k, v in key_sets.items()))
        digest = hashlib.sha256(repr(shape if key_sets else sorted(rows)).encode()).hexdigest()[:16]
        catalog.version = digest
        return catalog

    def get(self, name: str, schema: str | None = None) -> TableEntry | None:
        key = f"{schema}.{name}" if schema else name
        return self.tables.get(key.lower())

    def mapping(self) -> dict[str, dict[str, dict[str, str]]]:
        """A sqlglot schema mapping ``{schema: {table: {column: type}}}``, built once."""
        if self._mapping is None:
            self._mapping = self._build_mapping()
        return self._mapping

    def _build_mapping(self) -> dict[str, dict[str, dict[str, str]]]:
        out: dict[str, dict[str, dict[str, str]]] = {}
        for entry in {id(e): e for e in self.tables.values()}.values():
            out.setdefault(entry.schema, {})[entry.name] = {
                column: dtype.sql() for column, dtype in entry.columns.items()
            }
        return out


def _parse_type(data_type: str, dialect: str = "duckdb") -> exp.DataType:
    try:
        return exp.DataType.build(data_type, dialect=dialect)
    except Exception:  # an engine-specific type sqlglot does not know: treat as opaque
        return exp.DataType.build("UNKNOWN")


def safe_error(message: str, policy_url: str, names: Iterable[str] = ()) -> str:
    """A driver's error message fit for a user, the audit and an API response.

    Every value a ``${VAR}`` of the connection's URL expanded to is put back as ``${VAR}``
    (drivers quote the URL or its password in "could not connect" messages), and the rest
    goes through :func:`~jupyter_gov.scrub.redact_engine_message`, which keeps no literal,
    row value or path. Connectors call this on every error they turn into a message.
    """
    for name in env_references(policy_url):
        value = os.environ.get(name, "")
        if len(value) >= 3:  # shorter values would garble the message and hide little
            message = message.replace(value, f"${{{name}}}")
    return redact_engine_message(message, names)


#: Rows per Arrow batch a connector hands over when it chooses the size.
BATCH_ROWS = 122_880


def table_reader(table: pa.Table, max_chunksize: int | None = BATCH_ROWS) -> pa.RecordBatchReader:
    """A reader over a table already in memory (drivers that fetch all rows at once)."""
    return pa.RecordBatchReader.from_batches(
        table.schema, table.to_batches(max_chunksize=max_chunksize)
    )


def no_rows() -> pa.RecordBatchReader:
    """The reader of a statement that returns no result set (a write, DDL)."""
    return pa.RecordBatchReader.from_batches(pa.schema([]), [])


class Connector(Protocol):
    """What the engine needs from a database.

    ``execute`` returns the statement's rows as an Arrow :class:`~pyarrow.RecordBatchReader`
    (ADBC's ``fetch_record_batch`` shape): the engine reads it lazily, so a result larger
    than memory streams. An engine that fetches everything at once hands over
    :func:`table_reader`; a statement without a result set :func:`no_rows`. Errors raised
    while the reader is read are the same one-sentence :class:`QueryFailed` as from
    ``execute`` itself.
    """

    name: str
    dialect: str

    def catalog(self, refresh: bool = False) -> Catalog: ...

    def execute(self, sql: str, params: Mapping[str, Any]) -> pa.RecordBatchReader: ...

    def register_result(self, name: str, table: pa.Table) -> None: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...
