"""Snowflake (rendering only): ``REGEXP_REPLACE(s, p, r)`` replaces every match (a fourth
argument is a position); ``SHA2(x, 256)`` returns lower-case hex."""

from __future__ import annotations

from jupyter_gov.connectors.profile import Capabilities, Profile

PROFILE = Profile(
    name="snowflake",
    title="Snowflake",
    schemes=("snowflake",),
    dialect="snowflake",
    paramstyle="pyformat",
    default_schema="PUBLIC",
    catalog_query="""
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_schema <> 'INFORMATION_SCHEMA'
ORDER BY table_schema, table_name, ordinal_position
""",
    capabilities=Capabilities(cancel=True, read_only_transactions=False, server_timeout=True),
    dangerous_functions=frozenset(
        {"get_presigned_url", "build_scoped_file_url", "build_stage_file_url", "system$wait"}
    ),
)
