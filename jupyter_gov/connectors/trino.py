"""Trino (rendering only): ``sha256`` takes ``varbinary`` and ``to_hex`` is upper case, so
the digest is ``lower(to_hex(sha256(to_utf8(x))))``; ``repeat`` builds an array, so stars
are ``lpad('', n, '*')``."""

from __future__ import annotations

from sqlglot import exp

from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call


class TrinoMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        return call("LOWER", call("TO_HEX", call("SHA256", call("TO_UTF8", text))))

    def repeat(self, text: str, times: exp.Expr) -> exp.Expr:
        return call("LPAD", exp.Literal.string(""), times, exp.Literal.string(text))


PROFILE = Profile(
    name="trino",
    title="Trino",
    schemes=("trino", "presto"),
    dialect="trino",
    paramstyle="qmark",
    default_schema="default",
    catalog_query="""
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_schema <> 'information_schema'
ORDER BY table_schema, table_name, ordinal_position
""",
    masks=TrinoMasks(),
    capabilities=Capabilities(cancel=True, server_timeout=True),
)
