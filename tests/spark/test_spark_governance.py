"""The governed behaviours of the DuckDB demo, proven on a live Spark Connect server.

Each test runs through :class:`GovernedSession` with the demo policy pointing at Spark, so
the masks and row filters are rendered in Spark SQL, bound as Spark named parameters and
run on the cluster; only masked rows come back, as Arrow. DuckDB is the reference.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.result import QueryDenied
from tests.connectors.conftest import OTHER_ROWS, Engine
from tests.connectors.test_live_governance import PII, raw_values, rows

pytestmark = pytest.mark.server


def test_masked_columns_are_never_raw_for_an_analyst(spark: Engine) -> None:
    result = spark.session("bob").sql(f"SELECT {', '.join(PII)} FROM customers")
    assert result.arrow().num_rows == 10_000
    for column in PII:
        seen = set(result.arrow().column(column).to_pylist())
        assert seen and not seen & raw_values(column), column


def test_admin_reads_the_same_raw_rows_as_duckdb(spark: Engine, duckdb_reference: Engine) -> None:
    sql = "SELECT customer_id, full_name, email, birth_date FROM customers ORDER BY 1 LIMIT 20"
    assert rows(spark.session("alice").sql(sql)) == rows(duckdb_reference.session("alice").sql(sql))


def test_every_mask_returns_duckdbs_value_for_the_same_rows(
    spark: Engine, duckdb_reference: Engine
) -> None:
    """token, email, partial (x3), redact, year and hash, value by value."""
    sql = (
        "SELECT customer_id, full_name, email, phone, ssn, credit_card, street_address, "
        "birth_date, city FROM customers WHERE customer_id <= 200 ORDER BY customer_id"
    )
    got = rows(spark.session("bob").sql(sql))
    assert len(got) == 200
    assert got == rows(duckdb_reference.session("bob").sql(sql))


def test_scrubbed_free_text_matches_duckdb(spark: Engine, duckdb_reference: Engine) -> None:
    sql = "SELECT ticket_id, body FROM support_tickets WHERE ticket_id <= 50 ORDER BY ticket_id"
    got = rows(spark.session("bob").sql(sql))
    assert got == rows(duckdb_reference.session("bob").sql(sql))
    pii = raw_values("email") | raw_values("phone") | raw_values("credit_card")
    assert not any(value in body for (_, body) in got for value in pii)


def test_row_filter_keeps_only_carols_region(spark: Engine, duckdb_reference: Engine) -> None:
    sql = "SELECT region, count(*) AS n FROM orders GROUP BY region ORDER BY region"
    carol = rows(spark.session("carol").sql(sql))
    everyone = dict(rows(duckdb_reference.session("alice").sql(sql)))
    assert carol == [("EMEA", everyone["EMEA"])]


def test_analyst_without_region_sees_every_region(spark: Engine) -> None:
    regions = spark.session("bob").sql("SELECT DISTINCT region FROM orders ORDER BY 1")
    assert rows(regions) == [("AMER",), ("APAC",), ("EMEA",)]


def test_identity_attribute_and_key_are_bound_not_pasted_into_the_sql(spark: Engine) -> None:
    sql = "SELECT city, region FROM orders JOIN customers USING (customer_id)"
    plan = spark.session("carol").explain(sql)
    assert "EMEA" not in plan.rewritten_sql
    assert "test-masking-key" not in plan.rewritten_sql


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "UPDATE customers SET email = 'x'",
        "INSERT INTO orders (order_id) VALUES (-1)",
        "DROP TABLE customers",
        "INSERT OVERWRITE TABLE orders SELECT * FROM orders",
    ],
)
def test_read_only_role_cannot_write(spark: Engine, sql: str) -> None:
    with pytest.raises(QueryDenied):
        spark.session("bob").sql(sql)


def test_select_star_expands_to_every_column_with_masks(
    spark: Engine, duckdb_reference: Engine
) -> None:
    sql = "SELECT * FROM customers WHERE customer_id IN (1, 2, 3) ORDER BY customer_id"
    result = spark.session("bob").sql(sql)
    expected = duckdb_reference.session("bob").sql(sql)
    assert result.columns == expected.columns
    assert rows(result) == rows(expected)


def test_masked_predicate_sees_masked_values(spark: Engine) -> None:
    count = spark.session("bob").sql("SELECT count(*) FROM customers WHERE ssn LIKE '1%'")
    assert rows(count) == [(0,)]


def test_schema_other_than_the_default_is_governed(spark: Engine, duckdb_reference: Engine) -> None:
    other = f"{spark.other_schema}.customers"
    sql = f"SELECT customer_id, email, ssn, city FROM {other} ORDER BY customer_id"
    got = rows(spark.session("bob").sql(sql))
    assert len(got) == OTHER_ROWS
    main = "SELECT customer_id, email, ssn, city FROM customers ORDER BY customer_id"
    assert got == rows(duckdb_reference.session("bob").sql(main))[:OTHER_ROWS]


def test_parameters_are_bound_as_spark_named_parameters(
    spark: Engine, duckdb_reference: Engine
) -> None:
    sql = (
        "SELECT customer_id, email FROM customers WHERE customer_id BETWEEN :lo AND :hi ORDER BY 1"
    )
    params = {"lo": 10, "hi": 12}
    got = rows(spark.session("bob").sql(sql, params))
    assert got == rows(duckdb_reference.session("bob").sql(sql, params))
    assert [r[0] for r in got] == [10, 11, 12]


def test_injection_through_a_parameter_stays_a_value(spark: Engine) -> None:
    probe = spark.session("bob").sql(
        "SELECT count(*) FROM customers WHERE city = :c", {"c": "x' OR '1'='1"}
    )
    assert rows(probe) == [(0,)]


def test_equality_probe_on_a_masked_column_finds_nothing(spark: Engine) -> None:
    email = sorted(raw_values("email"))[0]
    probe = spark.session("bob").sql(
        "SELECT count(*) FROM customers WHERE email = :e", {"e": email}
    )
    assert rows(probe) == [(0,)]


def test_results_arrive_as_arrow(spark: Engine) -> None:
    table = spark.session("bob").sql("SELECT customer_id, email FROM customers LIMIT 5").arrow()
    assert isinstance(table, pa.Table)
    assert table.num_rows == 5
    assert table.column_names == ["customer_id", "email"]


def test_a_user_error_is_one_sentence_not_a_traceback(spark: Engine) -> None:
    with pytest.raises(GovError) as error:
        spark.session("bob").sql("SELECT no_such_column FROM customers")
    assert "Traceback" not in str(error.value)
    assert "JVM stacktrace" not in str(error.value)


def test_catalog_lists_both_schemas_with_spark_types(spark: Engine) -> None:
    catalog = spark.connector.catalog()
    assert catalog.default_schema == "default"
    assert catalog.get("customers") is catalog.get("customers", "default")
    assert catalog.get("customers", spark.other_schema) is not None
    created = catalog.get("support_tickets").columns["opened_at"]
    assert created.sql("spark") in ("TIMESTAMP_NTZ", "TIMESTAMP_LTZ")


def test_catalog_refresh_sees_a_new_table(spark: Engine, raw_spark) -> None:  # type: ignore[no-untyped-def]
    table = "jupyter_gov_refresh_probe"
    spark.connector.catalog()  # cached before the table exists
    raw_spark.sql(f"CREATE TABLE default.{table} (id INT) USING parquet")
    try:
        assert spark.connector.catalog().get(table) is None
        assert spark.connector.catalog(refresh=True).get(table) is not None
    finally:
        raw_spark.sql(f"DROP TABLE default.{table}")
        spark.connector.catalog(refresh=True)


def test_policy_url_opens_a_spark_connector(spark: Engine) -> None:
    with GovernedSession(spark.policy(), "carol") as session:
        assert rows(session.sql("SELECT DISTINCT region FROM orders")) == [("EMEA",)]
        assert session.connector("demo").dialect == "spark"
