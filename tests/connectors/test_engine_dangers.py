"""Each engine's own ways out of the policy are denied, even for an administrator.

The guardrails deny these today through the function allow-list and the statement kinds;
the profile's ``dangerous_functions`` (never allowed, not even by ``allow_functions``) are
listed per engine and proven here too where the connector enforces them itself (SQLite's
authorizer; read-only transactions on PostgreSQL and MariaDB).
"""

from __future__ import annotations

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.result import QueryDenied
from tests.connectors.conftest import Engine

DANGERS = {
    "postgres": [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "COPY customers TO PROGRAM 'id'",
        "COPY customers FROM '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/jupyter_gov_copy'",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT current_setting('data_directory')",
        "SELECT * FROM dblink('host=localhost', 'SELECT 1') AS t(a int)",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/jupyter_gov_lo')",
        "SELECT pg_terminate_backend(1)",
        "CREATE EXTENSION dblink",
        "DO $$ BEGIN PERFORM 1; END $$",
        "SELECT query_to_xml('SELECT * FROM customers', true, true, '')",
    ],
    "mysql": [
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT email FROM customers INTO OUTFILE '/tmp/jupyter_gov_out'",
        "SELECT 1 INTO DUMPFILE '/tmp/jupyter_gov_dump'",
        "SET GLOBAL max_connections = 1",
        "SET SESSION transaction_read_only = OFF",
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE customers",
        "HANDLER customers OPEN",
        "SELECT SLEEP(1)",
        "SELECT BENCHMARK(1000000, SHA2('x', 256))",
    ],
    "sqlite": [
        "ATTACH DATABASE '/tmp/jupyter_gov_attached.db' AS other",
        "DETACH DATABASE main",
        "SELECT load_extension('/tmp/jupyter_gov.so')",
        "PRAGMA table_info(customers)",
        "PRAGMA writable_schema = ON",
        "SELECT * FROM pragma_table_info('customers')",
        "SELECT readfile('/etc/passwd')",
    ],
    "spark": [
        "ADD JAR '/tmp/jupyter_gov.jar'",
        "ADD FILE '/etc/passwd'",
        "SELECT reflect('java.lang.Runtime', 'getRuntime')",
        "SELECT java_method('java.lang.System', 'getenv', 'HOME')",
        "SELECT try_reflect('java.lang.System', 'getenv', 'HOME')",
        "SELECT * FROM parquet.`/tmp/jupyter_gov`",
        "SELECT * FROM csv.`file:///etc/passwd`",
        "SELECT * FROM `json`.`/etc/passwd`",
        "SELECT * FROM read_files('/etc/passwd')",
        "SELECT input_file_name() FROM customers",
        "CACHE TABLE customers",
        "CACHE TABLE leak AS SELECT * FROM customers",
        "UNCACHE TABLE customers",
        "CLEAR CACHE",
        "REFRESH TABLE customers",
        "REFRESH '/tmp/jupyter_gov'",
        "INSERT OVERWRITE DIRECTORY '/tmp/jupyter_gov_out' SELECT * FROM customers",
        "INSERT OVERWRITE LOCAL DIRECTORY '/tmp/jupyter_gov_out' SELECT * FROM customers",
        "INSERT OVERWRITE DIRECTORY '/tmp/jupyter_gov_out' USING parquet SELECT * FROM customers",
        "SET spark.sql.runSQLOnFiles = true",
        "SET spark.sql.ansi.enabled = false",
        "RESET",
        "CREATE FUNCTION leak AS 'com.example.Leak' USING JAR '/tmp/jupyter_gov.jar'",
        "CREATE TEMPORARY FUNCTION leak AS 'com.example.Leak'",
        "CREATE TEMPORARY VIEW raw_customers AS SELECT * FROM customers",
    ],
}


def _cases() -> list:  # type: ignore[type-arg]
    return [
        pytest.param(name, sql, id=f"{name}: {sql[:40]}")
        for name, statements in DANGERS.items()
        for sql in statements
    ]


@pytest.mark.parametrize(
    "engine,sql", [(p.values[0], p.values[1]) for p in _cases()], indirect=["engine"]
)
def test_engine_specific_danger_is_denied_even_for_an_admin(engine: Engine, sql: str) -> None:
    policy = engine.policy(environment="development")  # no approval rule in the way
    with pytest.raises(QueryDenied):
        engine.session("alice", policy).sql(sql)


@pytest.mark.parametrize("name", ["postgres", "mysql", "sqlite", "spark"])
def test_profile_declares_the_engines_dangerous_functions(name: str) -> None:
    declared = registry.profiles()[name].dangerous_functions
    expected = {
        "postgres": {"pg_read_file", "pg_ls_dir", "lo_import", "lo_export", "dblink", "set_config"},
        "mysql": {"load_file", "sleep", "benchmark"},
        "sqlite": {"load_extension", "readfile"},
        "spark": {"reflect", "java_method", "try_reflect", "input_file_name"},
    }[name]
    assert expected <= declared
