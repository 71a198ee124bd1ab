"""BigQuery (rendering only): ``SHA256`` returns ``BYTES``, so the hex digest is
``TO_HEX(SHA256(x))``; ``REGEXP_REPLACE`` replaces every match."""

from __future__ import annotations

from sqlglot import exp

from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call


class BigQueryMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        return call("TO_HEX", call("SHA256", text))


PROFILE = Profile(
    name="bigquery",
    title="BigQuery",
    schemes=("bigquery",),
    dialect="bigquery",
    paramstyle="pyformat",
    default_schema="",  # the URL's dataset
    catalog_query="""
SELECT table_schema, table_name, column_name, data_type
FROM INFORMATION_SCHEMA.COLUMNS
ORDER BY table_schema, table_name, ordinal_position
""",
    masks=BigQueryMasks(),
    capabilities=Capabilities(cancel=True, server_timeout=True),
    dangerous_functions=frozenset({"external_query"}),
)
