"""The governed DuckDB cannot be used to reach around the proxy."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from jupyter_gov.errors import QueryFailed


def test_replacement_scans_cannot_read_kernel_variables(demo_connector):
    secret_frame = pa.table({"x": [1]})  # noqa: F841 - the point is that it is not visible
    with pytest.raises(QueryFailed, match="does not exist"):
        demo_connector.execute("SELECT * FROM secret_frame", {})


def test_configuration_is_locked(demo_connector):
    with pytest.raises(QueryFailed, match="locked"):
        demo_connector.execute("SET enable_external_access = true", {})


def test_file_access_is_off_even_for_raw_sql(demo_connector):
    with pytest.raises(QueryFailed, match="Permission Error"):
        demo_connector.execute("SELECT * FROM read_text('/etc/hostname')", {})


def test_result_relation_lives_on_a_scratch_connection(session_for):
    result = session_for("bob").sql("SELECT city FROM customers LIMIT 2")
    relation = result.relation
    with pytest.raises(duckdb.Error):
        relation.query("r", "SELECT * FROM customers").fetchall()


def test_results_cannot_shadow_catalog_tables(session_for):
    from jupyter_gov.errors import GovError

    with pytest.raises(GovError, match="choose another output name"):
        session_for("bob").sql("SELECT 1 AS x", name="customers")
