"""Spark-only governed behaviours on the live Spark Connect server.

What every engine must do (masks value by value against DuckDB, row filters, ``SELECT *``,
a second schema, bound parameters, read-only roles, catalog refresh) runs in the engine
matrix, ``tests/connectors/test_live_governance.py``, where Spark is one of the engines.
What is left here is Spark's own: its SQL shapes and its catalog's types.
"""

from __future__ import annotations

import pytest

from jupyter_gov.result import QueryDenied
from tests.connectors.conftest import Engine

pytestmark = pytest.mark.server


def test_insert_overwrite_is_denied_to_a_read_only_role(spark: Engine) -> None:
    with pytest.raises(QueryDenied):
        spark.session("bob").sql("INSERT OVERWRITE TABLE orders SELECT * FROM orders")


def test_catalog_lists_both_schemas_with_spark_types(spark: Engine) -> None:
    catalog = spark.connector.catalog()
    assert catalog.default_schema == "default"
    assert catalog.get("customers") is catalog.get("customers", "default")
    assert catalog.get("customers", spark.other_schema) is not None
    created = catalog.get("support_tickets").columns["opened_at"]
    assert created.sql("spark") in ("TIMESTAMP_NTZ", "TIMESTAMP_LTZ")
