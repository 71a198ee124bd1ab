"""PostgreSQL: the profile (rendering, catalog, lockdown); the connector runs through ADBC.

``sha256`` takes ``bytea`` in PostgreSQL, so the keyed hash is spelled
``encode(sha256(convert_to(k || v, 'UTF8')), 'hex')``: the digest of the value's UTF-8
bytes, as on every other engine. ``regexp_replace`` needs the ``'g'`` flag to replace
every match.
"""

from __future__ import annotations

from sqlglot import exp

from jupyter_gov import functions
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile, call

CATALOG_SQL = """
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE table_catalog = current_database()
  AND table_schema NOT IN ('information_schema', 'pg_catalog', 'pg_toast')
ORDER BY table_schema, table_name, ordinal_position
"""


class PostgresMasks(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        utf8 = call("CONVERT_TO", text, exp.Literal.string("UTF8"))
        return call("ENCODE", call("SHA256", utf8), exp.Literal.string("hex"))

    def regexp_replace_all(self, text: exp.Expr, pattern: str, replacement: str) -> exp.Expr:
        return call(
            "REGEXP_REPLACE",
            text,
            exp.Literal.string(pattern),
            exp.Literal.string(replacement),
            exp.Literal.string("g"),
        )


PROFILE = Profile(
    name="postgres",
    title="PostgreSQL",
    schemes=("postgresql", "postgres"),
    dialect="postgres",
    paramstyle="dollar_numeric",
    default_schema="public",
    catalog_query=CATALOG_SQL,
    masks=PostgresMasks(),
    capabilities=Capabilities(
        cancel=True, read_only_transactions=True, result_registration=False, server_timeout=True
    ),
    functions=functions.DIALECT_FUNCTIONS["postgres"],
    dangerous_functions=frozenset(
        """
        pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file lo_import lo_export lo_get
        lo_put lo_from_bytea dblink dblink_exec dblink_connect set_config current_setting
        pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_sleep
        query_to_xml table_to_xml cursor_to_xml query_to_xml_and_xmlschema
        """.split()
    ),
    file_readers=frozenset({"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import"}),
    lockdown={"default_transaction_read_only": "on", "client_encoding": "UTF8"},
)
