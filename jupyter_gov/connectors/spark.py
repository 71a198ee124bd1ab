"""Spark SQL through Spark Connect: the profile (rendering, catalog).

``regexp_replace`` replaces every match (Java regular expressions); ``sha2(x, 256)`` returns
lower-case hex. The catalog is read through the session's catalog API, not SQL.
"""

from __future__ import annotations

from jupyter_gov.connectors.profile import Capabilities, Profile

CATALOG_SQL = ""  # spark.catalog.listTables / listColumns

#: Format prefixes that make a file path a table (``SELECT * FROM parquet.`/tmp/x```).
FILE_FORMATS = frozenset("csv json parquet orc text avro binaryfile delta jdbc".split())


PROFILE = Profile(
    name="spark",
    title="Spark SQL",
    schemes=("sc", "spark"),
    dialect="spark",
    paramstyle="named",
    default_schema="default",
    catalog_query=CATALOG_SQL,
    capabilities=Capabilities(cancel=True),
    dangerous_functions=frozenset({"reflect", "java_method", "try_reflect", "input_file_name"}),
    file_readers=FILE_FORMATS | {"read_files"},
)
