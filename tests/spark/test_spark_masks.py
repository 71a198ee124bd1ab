"""Every mask returns DuckDB's value on Spark, for the same input and key.

The cases are those of ``tests/test_profiles.py`` (text with accents, empty strings, NULLs,
integers, dates, timestamps, free text with several kinds of PII), rendered for Spark by
its profile, bound as Spark named parameters and run on the live Spark Connect server
through the governed connector's own session, with its settings.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.connectors.conftest import Engine
from tests.test_profiles import CASES, KEY, _duckdb_runner, _masked_values

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def duckdb_values() -> dict[str, list[str | None]]:
    run = _duckdb_runner()
    return {case: _masked_values("duckdb", run, case) for case in CASES}


@pytest.fixture(scope="module")
def spark_run(spark: Engine) -> Any:
    session = spark.connector.spark  # type: ignore[attr-defined]

    def run(sql: str, params: list[str]) -> tuple[Any, ...]:
        table = session.sql(sql, args={"g_k1": KEY} if params else None).toArrow()
        return tuple(column[0].as_py() for column in table.columns)

    return run


@pytest.mark.parametrize("case", sorted(CASES))
def test_spark_mask_returns_the_same_values_as_duckdb(
    case: str, spark_run: Any, duckdb_values: dict[str, list[str | None]]
) -> None:
    assert _masked_values("spark", spark_run, case) == duckdb_values[case]


def test_regex_replacement_is_literal_although_java_reads_dollar_and_backslash(
    spark_run: Any,
) -> None:
    from sqlglot import exp

    from jupyter_gov.connectors.spark import PROFILE

    replacement = "<$0 \\ $1>"
    masked = PROFILE.masks.regexp_replace_all(exp.Literal.string("a-b"), "(-)", replacement)
    (value,) = spark_run(exp.select(masked).sql("spark"), [])
    assert value == f"a{replacement}b"
