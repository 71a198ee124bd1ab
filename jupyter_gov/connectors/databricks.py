"""Databricks SQL (rendering only): Spark's masks, Unity Catalog's information schema."""

from __future__ import annotations

from jupyter_gov.connectors.profile import Capabilities, Profile
from jupyter_gov.connectors.spark import FILE_FORMATS

PROFILE = Profile(
    name="databricks",
    title="Databricks SQL",
    schemes=("databricks",),
    dialect="databricks",
    paramstyle="named",
    default_schema="default",
    catalog_query="""
SELECT table_schema, table_name, column_name, full_data_type
FROM information_schema.columns
WHERE table_schema <> 'information_schema'
ORDER BY table_schema, table_name, ordinal_position
""",
    capabilities=Capabilities(cancel=True, server_timeout=True),
    dangerous_functions=frozenset({"reflect", "java_method", "try_reflect", "http_request"}),
    file_readers=FILE_FORMATS | {"read_files", "read_kafka", "cloud_files"},
)
