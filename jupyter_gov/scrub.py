"""Scrub PII out of free text in Python, with presidio-anonymizer's operators.

The ``scrub`` mask runs *in the database* (``masking.scrub_expression``), so predicates
never see raw text. This module is the Python side of the same contract, for text that
never went through a database: database error messages before they reach the audit or the
user, and any text a front end wants to show. Spans are found with the same patterns as
the SQL mask (credit cards also pass a Luhn check here), and replaced by presidio's
``AnonymizerEngine`` with its operators (``replace`` by default, giving ``<ENTITY>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

#: presidio's entity names; the ``scrub`` mask replaces each match by ``<ENTITY>``, as
#: presidio-anonymizer's ``replace`` operator does by default. Order matters: cards and
#: SSNs before phone numbers, which would otherwise swallow them. No backslashes (``[.]``
#: for ``\.``): string-literal escaping differs between engines, bracket classes do not.
SCRUB_PATTERNS: dict[str, str] = {
    "EMAIL_ADDRESS": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+[.][A-Za-z]{2,}",
    "CREDIT_CARD": r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,7}",
    "US_SSN": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
    "PHONE_NUMBER": r"[+]?[0-9][0-9() .-]{7,}[0-9]",
    "IP_ADDRESS": r"[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}",
    # Shapes only: IBAN checksums and secret entropy are checked where the text is in
    # Python or Arrow (jupyter_gov.pii); in SQL a broader shape can only mask more.
    "IBAN_CODE": r"[A-Z]{2}[0-9]{2}( ?[A-Z0-9]{4}){2,7}( ?[A-Z0-9]{1,4})?",
    "URL_CREDENTIALS": r"//[^ :/@]+:[^ /@]+@",
    "SECRET": (
        r"(sk|pk|rk)_(live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36}"
        r"|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|glpat-[A-Za-z0-9_-]{20}|AIza[0-9A-Za-z_-]{35}"
    ),
}
DEFAULT_SCRUB = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "PHONE_NUMBER")
#: Every entity the ``scrub`` mask can push into SQL, in a safe order (credentials before
#: e-mail addresses, IBANs and cards before phone numbers, IP addresses before phones).
#: ``unclassified: auto`` scrubs the free text it finds with all of them.
FULL_SCRUB = (
    "URL_CREDENTIALS",
    "SECRET",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PHONE_NUMBER",
)

_COMPILED = {entity: re.compile(pattern) for entity, pattern in SCRUB_PATTERNS.items()}


def luhn_ok(digits: str) -> bool:
    numbers = [int(c) for c in digits if c.isdigit()]
    if len(numbers) < 13:
        return False
    total = 0
    for i, n in enumerate(reversed(numbers)):
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def find_spans(text: str, entities: Iterable[str] = DEFAULT_SCRUB) -> list[Any]:
    """presidio ``RecognizerResult`` spans for the entities found, longest match first."""
    from presidio_anonymizer.entities import RecognizerResult

    spans: list[RecognizerResult] = []
    taken: list[tuple[int, int]] = []
    for entity in entities:
        for match in _COMPILED[entity].finditer(text):
            start, end = match.span()
            if entity == "CREDIT_CARD" and not luhn_ok(match.group()):
                continue
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            spans.append(RecognizerResult(entity_type=entity, start=start, end=end, score=1.0))
    return spans


@cache
def _engine() -> Any:
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


def scrub_text(
    text: str,
    entities: Iterable[str] = DEFAULT_SCRUB,
    operators: Mapping[str, Any] | None = None,
) -> str:
    """``text`` with every detected entity replaced through presidio's operators."""
    if not text:
        return text
    spans = find_spans(text, tuple(entities))
    if not spans:
        return text
    from presidio_anonymizer.entities import OperatorConfig

    config = dict(operators or {"DEFAULT": OperatorConfig("replace")})
    return _engine().anonymize(text=text, analyzer_results=spans, operators=config).text


# -- database error messages ---------------------------------------------------------------
#
# Engines quote the values they choke on ("Could not convert string 'Hana Nguyen' to
# INT32"), and some echo them bare ("Invalid Input Error: Hana Nguyen", "Input: ..."). No
# list of PII patterns can catch every name or address, so a message is rebuilt from what
# is known not to be data: its error class, words of the engine's own message vocabulary,
# type names, and names from the catalog. Everything else - every quoted segment, every
# token with a digit, every unknown word in a data error - becomes ``?``.

#: Error classes about the *data* (a value failed): every word must be known to stay.
#: Others (binder, catalog, parser) are about the statement's names: only quoted segments
#: and digits are replaced there.
DATA_ERROR_CLASSES = frozenset(
    {"Conversion", "Invalid Input", "Out of Range", "Constraint", "Invalid", "Error", "Unknown"}
)

#: Words DuckDB's data-error messages are made of (lower case). A value's word that happens
#: to be one of these ("will", "may") stays, which reveals no more than the word.
MESSAGE_WORDS = frozenset(
    """
    a according addition an and argument arguments array at be because between bit blob bounds
    by byte can't cannot cast casting character check column columns constant constraint
    contains conversion convert could date decimal destination did different division does
    domain duplicate element elements empty encoding encountered entry equal error escape
    exceeds exist expected expression failed field finite for foreign format from function
    given greater has have hex in index infinite input integer interval invalid is it json key
    large length less list lists log malformed map maximum mean minimum mismatch missing modulo
    multiplication must name nan needs negative no non not null number numeric of on only or
    out overflow parse pattern positive power precision primary range regex regular result
    scale sequence size sizes small source specifier sqrt string struct subtraction supported
    than the this time timestamp timezone to too type unexpected unicode unimplemented unique
    unknown unrecognized unterminated utf value values violates when with zero
    already allowed attached been catalog change changed changes commit committed conflict
    configuration current database delete deleted disabled enabled execute executed exists
    external file insert inserted interrupted locked mode modify modified not-null option
    permission read read-only rollback schema set statement table transaction update updated
    which write writes
    as because entry instead its key line near per relation return row tolerate use
    """.split()
)

#: Statement kinds engines quote ("Cannot execute statement of type \"INSERT\""): no data.
STATEMENT_WORDS = frozenset(
    "ALTER ATTACH COPY CREATE DELETE DETACH DROP EXPORT IMPORT INSERT LOAD MERGE PRAGMA SELECT "
    "SET UPDATE VACUUM".split()
)

#: Type names, which carry digits (INT32) but no data.
TYPE_WORDS = frozenset(
    """
    BIGINT BIT BLOB BOOL BOOLEAN DATE DECIMAL DOUBLE ENUM FLOAT FLOAT4 FLOAT8 HUGEINT INT INT1
    INT2 INT4 INT8 INT16 INT32 INT64 INT128 INTEGER INTERVAL JSON LIST MAP NUMERIC REAL
    SMALLINT STRING_LITERAL INTEGER_LITERAL STRUCT TIME TIMESTAMP TIMESTAMP_MS TIMESTAMP_NS
    TIMESTAMP_S TIMESTAMP_TZ TINYINT UBIGINT UHUGEINT UINT8 UINT16 UINT32 UINT64 UINT128
    UINTEGER UNION USMALLINT UTINYINT UUID VARCHAR VARINT ANY T
    """.split()
)

#: Words engine error classes are made of ("Out of Range Error", "Binder Error"); a prefix
#: made of anything else is not trusted to be a class.
CLASS_WORDS = frozenset(
    """
    binder catalog configuration connection constraint conversion dependency execution
    expression extension fatal http implemented index input internal interrupt invalid io
    mathematical mismatch missing not of optimizer out parameter parser permission range
    sequence serialization syntax transaction type unknown
    """.split()
)

_CLASS = re.compile(r"^\s*([A-Z][A-Za-z]*(?: [A-Za-z]+)*) Error:\s*")
# A single quote opens a quoted segment unless it is an apostrophe inside a word (can't).
_QUOTED = r"(?<![A-Za-z])'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`"
_TOKEN = r"(?:[^\s,;:!?()\[\]{}<>=+*/|&^%'\"`]|(?<=[A-Za-z])'(?=[A-Za-z]))+"
_PIECE = re.compile(rf"(?P<quoted>{_QUOTED})|(?P<token>{_TOKEN})")
_STRAY_QUOTE = re.compile(r"['\"`]")
_SIGNATURE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\(([A-Z0-9_\[\], ]*)\)$")
_NEAR = re.compile(r"\bnear '(?:.*(' at line\b)|.*$)")
_SERVER_CODE = re.compile(r"(\bERROR [0-9]{4,5} \([0-9A-Z]{5}\))")
_ECHO = re.compile(r"\b(Input|input|Value|value):\s.*$")


def redact_engine_message(message: str, names: Iterable[str] = ()) -> str:
    """A database error message with nothing from a literal, a row or a path left in it.

    Keeps the first line's error class and the words that explain it; ``names`` (catalog
    tables and columns) may stay when quoted. ``Could not convert string 'Hana Nguyen' to
    INT32`` becomes ``Conversion Error: Could not convert string '?' to INT32``. A quote
    left open (a value with a line break cut the line) hides everything after it.
    """
    known = {n.lower() for n in names}
    line = (message.strip().splitlines() or [""])[0].strip()
    match = _CLASS.match(line)
    if match and not set(match.group(1).lower().split()) <= CLASS_WORDS:
        match = None
    kind = match.group(1) if match else "Unknown"
    body = line[match.end() :] if match else line
    body = _ECHO.sub(lambda m: f"{m.group(1)}: ?", body)
    text = _rebuild(body, known, strict=kind in DATA_ERROR_CLASSES or not match)
    return f"{kind} Error: {text}" if match else text


def redact_server_message(message: str, names: Iterable[str] = ()) -> str:
    """A database server's error sentence with no value of a row or a statement left in it.

    PostgreSQL, MariaDB and Spark quote what they choke on (``invalid input syntax for type
    integer: "Hana400000"``, ``Duplicate entry 'Hana' for key 'email'``) in a vocabulary
    of their own, so their words stay, unlike in :func:`redact_engine_message`'s data
    errors: every quoted segment that is not a catalog name (``names``), a type or a
    statement kind becomes ``?``, so does every token with a digit and everything after a
    quote left open, and presidio's patterns then replace what is left bare (an e-mail).
    """
    line = (message.strip().splitlines() or [""])[0].strip()
    known = {n.lower() for n in names}
    # MySQL/MariaDB quote the statement from the error on, quotes and all: one value
    line = _NEAR.sub(lambda m: "near '' at line" if m.group(1) else "near '?", line)
    # MariaDB's error number and SQLSTATE ("ERROR 1054 (42S22): ") say what failed: kept
    parts = _SERVER_CODE.split(line)
    return "".join(
        part if index % 2 else scrub_text(_rebuild(part, known, strict=False, cut=True))
        for index, part in enumerate(parts)
    )


def _rebuild(body: str, known: set[str], strict: bool, cut: bool = False) -> str:
    """``body`` with its quoted segments and its tokens kept or replaced one by one.

    ``cut``: a token glued to a closing quote means a value held the quote character, so
    where the quoting ends is unknown: everything after it is hidden.
    """
    out: list[str] = []
    position, quoted_end = 0, -1
    for piece in [*_PIECE.finditer(body), None]:
        between = body[position : piece.start() if piece else len(body)]
        stray = _STRAY_QUOTE.search(between)
        if stray:  # an unterminated quote: everything after it is a value
            out.append(between[: stray.start()] + "?")
            break
        out.append(between)
        if piece is None:
            break
        if piece.group("quoted"):
            shown = _quoted(piece.group("quoted"), known)
            out.append(shown)
            quoted_end = piece.end()
            # cut: a value seen, so a word after it may be the rest of one (a value with the
            # quote character and a line break inside): only known words stay from here on
            strict = strict or (cut and shown != piece.group("quoted"))
        elif piece.start() == quoted_end and (
            piece.group("token").strip(".-") if cut else _alnum(piece.group("token"))
        ):
            # glued to a quote: the rest of a value that had the quote character inside
            out.append("?")
            if cut:
                break
        else:
            out.append(_token(piece.group("token"), known, strict))
        position = piece.end()
    return "".join(out)


def _alnum(token: str) -> bool:
    return any(c.isalnum() for c in token)


def _quoted(segment: str, known: set[str]) -> str:
    quote, inner = segment[0], segment[1:-1]
    signature = _SIGNATURE.match(inner)
    if (
        inner.lower() in known
        or (inner and all(part.lower() in known for part in inner.split(".")))
        or inner in STATEMENT_WORDS
        or _is_type(inner)
        or (signature and all(_is_type(t) for t in _types(signature)))
    ):
        return segment
    return f"{quote}?{quote}"


def _types(signature: re.Match[str]) -> list[str]:
    return [t.strip().removesuffix("[]") for t in signature.group(1).split(",") if t.strip()]


def _is_type(word: str) -> bool:
    return word in TYPE_WORDS


def _token(token: str, known: set[str], strict: bool) -> str:
    core = token.strip(".-")
    if not core or _is_type(core) or core.lower() in known:
        return token
    if any(c.isdigit() for c in core):
        return "?"
    if strict and core.lower() not in MESSAGE_WORDS:
        return "?"
    return token
