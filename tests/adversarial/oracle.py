"""An automatic oracle for governed queries: nothing raw out, and the same answer as a plain
database that only ever held the caller's masked view.

Two checks, for one role and one statement:

* **No raw value, nor a transform of one** (:class:`LeakDetector`). Every cell of the output
  (stringified, nested lists, structs and maps flattened, keys included) and every error
  message is searched for the demo data's classified values: names, emails and their local
  parts, phones, SSNs, card numbers (as formatted, and as bare digits), street addresses.
  The search also runs on the text reversed and lower-cased, and on whatever hex or base64
  runs in the output decode to; unsalted SHA-256 and MD5 hex digests of each value are
  looked up directly. It searches by shape (regular expressions extract candidates from one
  joined text, then set look-ups), so a 10,000-row result is checked in milliseconds.
* **Differential** (:class:`Reference`). The same SQL runs on a plain in-memory DuckDB
  database whose tables are exactly what the governed engine returns to that role for
  ``SELECT * FROM t``; the two results must be equal as multisets of rows (or as lists when
  the statement fixes a total order). Any expression that saw a raw value, or a row outside
  the row filter, would make the answers differ.

Birth dates are left to the differential check: as text they collide with order dates.
Ticket bodies are not needles themselves: what makes them personal is the email, phone and
card they embed, which are.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from jupyter_gov.demo import data, demo_tables
from jupyter_gov.errors import GovError

# -- leak detection -----------------------------------------------------------------------

_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9.-]+")
_LOCAL = re.compile(r"[a-z]+[.][a-z]+[0-9]+")
_SSN = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_PHONE = re.compile(r"[+]?1-555-[0-9]{3}-[0-9]{4}")
_CARD = re.compile(r"[0-9]{4} [0-9]{4} [0-9]{4} [0-9]{4}")
_DIGITS = re.compile(r"(?<![0-9])[0-9]{9,16}(?![0-9])")


def _words(words: Iterable[str]) -> str:
    return "|".join(sorted((w.lower() for w in words), key=len, reverse=True))


_FIRSTS = tuple(f"{name.lower()} " for name in data.FIRST_NAMES)
_LAST = re.compile(rf"(?:{_words(data.LAST_NAMES)})(?![a-z])")
_STREET = re.compile(
    rf"(?<![0-9])[0-9]{{1,4}} (?:{_words(data.STREET_NAMES)}) (?:{_words(data.STREET_KINDS)})"
    r"(?![a-z])"
)
_HEX = re.compile(r"[0-9a-f]{18,}")
_B64 = re.compile(r"[a-z0-9+/]{12,}={0,2}", re.IGNORECASE)


@dataclass(frozen=True)
class Leak:
    """One raw value (or digest) found, with the transform under which it was found."""

    kind: str
    value: str
    via: str

    def __str__(self) -> str:
        return f"{self.kind} {self.value!r} via {self.via}"


@dataclass
class LeakDetector:
    """Finds the demo data's classified values, or simple transforms of them, in text."""

    needles: dict[str, set[str]] = field(default_factory=dict)  # kind -> lower-case values
    digests: dict[str, str] = field(default_factory=dict)  # hex digest -> what it hashes

    @classmethod
    def for_demo(cls) -> LeakDetector:
        return _demo_detector()

    def scan(self, text: str) -> list[Leak]:
        """Every leak in ``text``; empty when it holds none."""
        if not text:
            return []
        lowered = text.lower()
        found = self._shapes(lowered, "plain") + self._shapes(lowered[::-1], "reversed")
        found += self._digests(lowered)
        found += self._decoded(text)
        return found

    def _shapes(self, text: str, via: str) -> list[Leak]:
        found: list[Leak] = []
        checks: Sequence[tuple[str, re.Pattern[str]]] = (
            ("email", _EMAIL),
            ("email_local", _LOCAL),
            ("ssn", _SSN),
            ("phone", _PHONE),
            ("credit_card", _CARD),
            ("digits", _DIGITS),
            ("street_address", _STREET),
        )
        for kind, pattern in checks:
            wanted = self.needles.get(kind, set())
            for match in pattern.finditer(text):
                candidate = match.group(1) if pattern.groups else match.group()
                if kind == "email":
                    # The shape also matches "x@domain" inside longer words; check suffixes.
                    hits = [candidate[i:] for i in range(len(candidate)) if candidate[i:] in wanted]
                    if hits:
                        found.append(Leak(kind, hits[0], via))
                elif candidate in wanted:
                    found.append(Leak(kind, candidate, via))
        wanted = self.needles.get("full_name", set())
        for first in _FIRSTS:  # str.find is far cheaper than a regex tried at every position
            at = text.find(first)
            while at >= 0:
                last = _LAST.match(text, at + len(first))
                if last and (at == 0 or not text[at - 1].isalpha()):
                    name = text[at : last.end()]
                    if name in wanted:
                        found.append(Leak("full_name", name, via))
                at = text.find(first, at + 1)
        return found

    def _digests(self, lowered: str) -> list[Leak]:
        found: list[Leak] = []
        for run in _HEX.findall(lowered):
            for width in (32, 64):
                for start in range(len(run) - width + 1):
                    hit = self.digests.get(run[start : start + width])
                    if hit is not None:
                        found.append(Leak("digest", hit, f"{'md5' if width == 32 else 'sha256'}"))
        return found

    def _decoded(self, text: str) -> list[Leak]:
        """Hex and base64 runs, decoded and joined, then searched like plain text."""
        hexes: list[str] = []
        for run in set(_HEX.findall(text.lower())):
            for offset in (0, 1):
                chunk = run[offset:]
                chunk = chunk[: len(chunk) // 2 * 2]
                hexes.append(binascii.unhexlify(chunk).decode("latin-1"))
        b64s: list[str] = []
        for run in set(_B64.findall(text)):
            core = run.rstrip("=")
            for offset in range(4):
                chunk = core[offset:]
                chunk = chunk[: len(chunk) // 4 * 4]
                if len(chunk) < 8:
                    continue
                try:
                    b64s.append(base64.b64decode(chunk, validate=True).decode("latin-1"))
                except (binascii.Error, ValueError):
                    continue
        found: list[Leak] = []
        for via, pieces in (("hex", hexes), ("base64", b64s)):
            if pieces:
                joined = "\n".join(pieces).lower()
                found += self._shapes(joined, via) + self._shapes(joined[::-1], f"{via} reversed")
        return found


@cache
def _demo_detector() -> LeakDetector:
    tables = demo_tables()
    customers = tables["customers"].to_pydict()
    needles: dict[str, set[str]] = {k: set() for k in ("email", "email_local", "ssn", "phone")}
    needles.update({k: set() for k in ("credit_card", "digits", "full_name", "street_address")})
    digests: dict[str, str] = {}
    columns = ("full_name", "email", "phone", "ssn", "credit_card", "street_address")
    for column in columns:
        for value in customers[column]:
            lowered = value.lower()
            needles[column].add(lowered)
            for form in {value, lowered, value.upper()}:
                data = form.encode()
                digests[hashlib.sha256(data).hexdigest()] = value
                digests[hashlib.md5(data).hexdigest()] = value
            if column == "email":
                needles["email_local"].add(lowered.split("@")[0])
            if column in ("ssn", "phone", "credit_card"):
                digits = re.sub(r"[^0-9]", "", value)
                needles["digits"].add(digits)
                if column == "phone":
                    needles["digits"].add(digits[1:])  # without the country code
    return LeakDetector(needles, digests)


def cell_texts(value: Any) -> Iterable[str]:
    """Every piece of text a cell can show: itself, and nested values and keys, stringified."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from cell_texts(key)
            yield from cell_texts(item)
        yield json.dumps(value, default=str)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from cell_texts(item)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
        yield value.hex()
    else:
        yield str(value)


def output_text(table: pa.Table) -> str:
    """Every distinct cell and column name of ``table``, one per line, for
    :meth:`LeakDetector.scan` (flat columns are stringified by Arrow, nested ones walked)."""
    parts: set[str] = set(table.column_names)
    for column in table.columns:
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_dictionary(kind):
            for value in column.to_pylist():
                parts.update(cell_texts(value))
            continue
        try:
            texts = pc.unique(column.cast(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            texts = pa.array([None if v is None else str(v) for v in column.to_pylist()])
        parts.update(t for t in texts.to_pylist() if t is not None)
    return "\n".join(parts)


# -- the differential reference --------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A hashable, engine-independent form of a cell, so results compare as multisets."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        if math.isnan(value):
            return ("float", "nan")
        return ("num", float(f"{value:.9g}"))
    if isinstance(value, int):
        return ("num", value)
    if isinstance(value, decimal.Decimal):
        return ("num", float(f"{float(value):.9g}"))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((repr(canonical(k)), canonical(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            # Arrow renders MAP as a list of (key, value) pairs.
            return ("map", tuple(sorted((repr(canonical(k)), canonical(v)) for k, v in value)))
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, (dt.date, dt.datetime, dt.time, dt.timedelta)):
        return ("time", value.isoformat() if hasattr(value, "isoformat") else str(value))
    return ("text", str(value))


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in table.columns]
    return [tuple(canonical(v) for v in row) for row in zip(*columns)] if columns else []


@dataclass
class Reference:
    """A plain DuckDB database holding one role's masked, row-filtered view of each table."""

    con: duckdb.DuckDBPyConnection
    tables: tuple[str, ...]

    @classmethod
    def materialize(cls, read: Callable[[str], pa.Table], tables: Iterable[str]) -> Reference:
        """``read(sql)`` returns what the governed engine gives the role for ``SELECT *``."""
        con = duckdb.connect(":memory:")
        names = tuple(tables)
        for name in names:
            view = read(f"SELECT * FROM {name}")
            con.register("__reference_source", view)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM __reference_source')
            con.unregister("__reference_source")
        return cls(con, names)

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        cursor = self.con.cursor()
        try:
            return cursor.execute(sql, params or {}).to_arrow_table()
        finally:
            cursor.close()

    def save(self, name: str, table: pa.Table) -> None:
        """A session result (``name=``), as the governed session saw it."""
        self.con.register("__reference_source", table)
        self.con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM __reference_source')
        self.con.unregister("__reference_source")


# -- one attempt ----------------------------------------------------------------------------


def one_sentence(error: BaseException) -> str:
    """The error's text, asserted to be what a user should see: one line, no traceback."""
    text = str(error)
    assert isinstance(error, GovError), f"not a GovError: {type(error).__name__}: {text}"
    assert text.strip(), f"{type(error).__name__} with an empty message"
    assert "\n" not in text.strip(), f"multi-line message: {text!r}"
    assert "Traceback" not in text, text
    return text


@dataclass
class Outcome:
    """What one governed attempt did: its rows, or the sentence that denied it."""

    table: pa.Table | None = None
    error: GovError | None = None
    leaks: list[Leak] = field(default_factory=list)

    @property
    def denied(self) -> bool:
        return self.error is not None


def attempt(
    run: Callable[[], pa.Table],
    *,
    raw_allowed: bool = False,
    detector: LeakDetector | None = None,
) -> Outcome:
    """Run one governed statement; denial must be a one-sentence :class:`GovError`.

    A message is always scanned for raw values (nobody's error may quote a row); the
    output only when the role must not see raw values (``raw_allowed`` is False).
    """
    detector = detector or LeakDetector.for_demo()
    try:
        table = run()
    except GovError as error:
        text = one_sentence(error)
        return Outcome(error=error, leaks=detector.scan(text))
    leaks = [] if raw_allowed else detector.scan(output_text(table))
    return Outcome(table=table, leaks=leaks)


def assert_same_answer(
    governed: pa.Table, reference: pa.Table, *, ordered: bool = False, sql: str = ""
) -> None:
    """Equal as multisets of rows (as sequences when ``ordered``), same column count."""
    assert governed.num_columns == reference.num_columns, (
        f"{sql}: {governed.column_names} vs {reference.column_names}"
    )
    if _same_fast(governed, reference, ordered):
        return
    got, want = rows_of(governed), rows_of(reference)
    if ordered:
        assert got == want, f"{sql}: first difference at row " + str(
            next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        )
        return
    if Counter(got) != Counter(want):
        extra = list((Counter(got) - Counter(want)).elements())[:3]
        missing = list((Counter(want) - Counter(got)).elements())[:3]
        raise AssertionError(
            f"{sql}: {len(got)} rows vs {len(want)} expected; extra {extra}, missing {missing}"
        )


@cache
def _compare_connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _same_fast(governed: pa.Table, reference: pa.Table, ordered: bool) -> bool:
    """Equal by Arrow (ordered) or by DuckDB's ``EXCEPT ALL`` both ways (a multiset
    difference), in C; False means "not proven equal": the canonical comparison decides."""
    names = [f"c{i}" for i in range(governed.num_columns)]
    left, right = governed.rename_columns(names), reference.rename_columns(names)
    if governed.num_rows != reference.num_rows:
        return False
    if ordered or left.schema != right.schema:
        return left.schema == right.schema and left.equals(right)
    if left.equals(right):  # the same order too, as two scans of one table usually are
        return True
    con = _compare_connection().cursor()
    try:
        con.register("g", left)
        con.register("r", right)
        (differ,) = con.execute(
            "SELECT (SELECT count(*) FROM (SELECT * FROM g EXCEPT ALL SELECT * FROM r)) + "
            "(SELECT count(*) FROM (SELECT * FROM r EXCEPT ALL SELECT * FROM g))"
        ).fetchone()
        return differ == 0
    except duckdb.Error:
        return False
    finally:
        con.close()


def check(
    run: Callable[[], pa.Table],
    reference: Reference | None,
    sql: str,
    *,
    raw_allowed: bool = False,
    ordered: bool = False,
    params: Mapping[str, Any] | None = None,
) -> Outcome:
    """The whole oracle: denied in one sentence, or no leak and the reference's answer."""
    outcome = attempt(run, raw_allowed=raw_allowed)
    assert not outcome.leaks, f"{sql}: leaked {', '.join(map(str, outcome.leaks[:3]))}"
    if outcome.table is not None and reference is not None:
        assert_same_answer(outcome.table, reference.run(sql, params), ordered=ordered, sql=sql)
    return outcome
