"""SQLite files: the profile (rendering, catalog, lockdown).

SQLite has no SHA-256, no regular-expression replace, no ``REPEAT`` and no date types.
The connector registers two deterministic application functions from Python's standard
library on every connection (``gov_sha256``: :mod:`hashlib`; ``gov_regexp_replace``:
:mod:`re`), so ``hash``, ``token`` and ``scrub`` return the same values as on the other
engines; ``REPEAT`` is ``replace(hex(zeroblob(n)), '00', s)``, ``LEFT``/``RIGHT`` are
``substr`` and the first day of a year is ``date(x, 'start of year')``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from sqlglot import exp

from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call

CATALOG_SQL = """
SELECT 'main', m.name, p.name, p.type
FROM sqlite_schema AS m JOIN pragma_table_info(m.name) AS p
WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
ORDER BY m.name, p.cid
"""


def sha256_hex(text: object) -> str | None:
    """``gov_sha256``: lower-case hex SHA-256 of the UTF-8 text, as DuckDB's ``sha256``."""
    return None if text is None else hashlib.sha256(str(text).encode()).hexdigest()


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp_replace(text: object, pattern: str, replacement: str) -> str | None:
    """``gov_regexp_replace``: every match replaced by the *literal* replacement."""
    if text is None:
        return None
    return _compiled(pattern).sub(lambda _match: replacement, str(text))


class SQLiteMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        return call("gov_sha256", text)

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        return call(
            "gov_regexp_replace",
            text,
            exp.Literal.string(pattern),
            exp.Literal.string(replacement),
        )

    def repeat(self, text: str, times: exp.Expr) -> exp.Expr:
        blanks = call("HEX", call("ZEROBLOB", times))
        return call("REPLACE", blanks, exp.Literal.string("00"), exp.Literal.string(text))

    def left(self, text: exp.Expr, count: int) -> exp.Expr:
        return call("SUBSTR", text, exp.Literal.number(1), exp.Literal.number(count))

    def right(self, text: exp.Expr, count: int) -> exp.Expr:
        return call("SUBSTR", text, exp.Literal.number(-count))

    def year_start(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        function = "DATE" if dtype.is_type(exp.DataType.Type.DATE) else "DATETIME"
        return call(function, ref, exp.Literal.string("start of year"))


PROFILE = Profile(
    name="sqlite",
    title="SQLite",
    schemes=("sqlite",),
    dialect="sqlite",
    paramstyle="named",
    default_schema="main",
    catalog_query=CATALOG_SQL,
    masks=SQLiteMasks(),
    capabilities=Capabilities(cancel=True, read_only_transactions=True),
    dangerous_functions=frozenset("load_extension readfile writefile edit fts3_tokenizer".split()),
    file_readers=frozenset({"readfile"}),
    # query_only and no extensions, no ATTACH: a file cannot be reached from SQL.
    lockdown={
        "query_only": True,
        "trusted_schema": False,
        "load_extension": False,
        "limit_attached": 0,
    },
    udfs={"gov_sha256": (1, sha256_hex), "gov_regexp_replace": (3, regexp_replace)},
)
