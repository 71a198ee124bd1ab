"""MySQL and MariaDB: the profile (rendering, catalog, lockdown).

``REGEXP_REPLACE(s, p, r)`` replaces every match; a fourth argument would be a *position*,
so no flags are passed. ``DATE_TRUNC`` does not exist: the first day of a year is
``MAKEDATE(YEAR(x), 1)``. Lengths are ``CHAR_LENGTH`` (``LENGTH`` counts bytes).
"""

from __future__ import annotations

from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call

CATALOG_SQL = """
SELECT table_schema, table_name, column_name, column_type
FROM information_schema.columns
WHERE table_schema = DATABASE()
ORDER BY table_schema, table_name, ordinal_position
"""


class MySQLMasks(MaskDialect):
    def year_start(self, ref: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        first_day = call("MAKEDATE", call("YEAR", ref), exp.Literal.number(1))
        return exp.cast(first_day, dtype.copy())


PROFILE = Profile(
    name="mysql",
    title="MySQL/MariaDB",
    schemes=("mysql", "mariadb"),
    dialect="mysql",
    paramstyle="pyformat",
    default_schema="",  # the URL's database: the connector passes it
    catalog_query=CATALOG_SQL,
    masks=MySQLMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=True, result_registration=False, server_timeout=True
    ),
    functions=functions.DIALECT_FUNCTIONS["mysql"],
    dangerous_functions=frozenset(
        "load_file sleep benchmark get_lock release_lock sys_exec sys_eval".split()
    ),
    file_readers=frozenset({"load_file"}),
    # utf8mb4 on the connection: the keyed hash digests the same bytes as other engines.
    lockdown={"transaction_read_only": "ON", "character_set_connection": "utf8mb4"},
)
