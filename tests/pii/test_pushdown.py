"""Push-down: what the ``scrub`` mask can match in SQL runs in each engine's dialect."""

from __future__ import annotations

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from jupyter_gov.connectors.registry import profile_for_dialect
from jupyter_gov.masking import scrub_expression
from jupyter_gov.pii.detect import scrub_values
from jupyter_gov.scrub import FULL_SCRUB
from tests.connectors.test_live_governance import rows
from tests.pii.conftest import auto_policy

TEXT = (
    "db postgres://app:s3cr3t@db.internal/x key sk_live_4eC39HqLyjWDarjtT1zdp7dc "
    "mail jane@example.com iban DE89370400440532013000 card 4111 1111 1111 1111 "
    "ip 10.1.2.3 call +1 415-555-0132"
)

DIALECTS = ("duckdb", "postgres", "mysql", "sqlite", "spark", "bigquery", "snowflake", "trino")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_pushable_entity_renders_in_the_dialect(dialect):
    if profile_for_dialect(dialect) is None:
        pytest.skip(f"no profile renders {dialect}")  # pragma: no cover - all are registered
    sql = scrub_expression(exp.column("body"), FULL_SCRUB, dialect).sql(dialect=dialect)
    for entity in FULL_SCRUB:
        assert f"<{entity}>" in sql
    sqlglot.parse_one(sql, read=dialect)  # it is SQL the dialect reads back


def test_duckdb_scrubs_the_pushable_entities_inside_the_database():
    expression = scrub_expression(exp.Literal.string(TEXT), FULL_SCRUB, "duckdb")
    [(out,)] = duckdb.sql(f"SELECT {expression.sql(dialect='duckdb')}").fetchall()
    assert out == (
        "db postgres:<URL_CREDENTIALS>db.internal/x key <SECRET> mail <EMAIL_ADDRESS> "
        "iban <IBAN_CODE> card <CREDIT_CARD> ip <IP_ADDRESS> call <PHONE_NUMBER>"
    )


def test_the_arrow_finish_is_precise_where_sql_can_only_match_a_shape():
    # SQL replaces every card-shaped number (it cannot run Luhn inside REGEXP_REPLACE);
    # the vectorized finish on Arrow keeps an order number that fails the checksum.
    text = "order 4111 1111 1111 1112 paid with 4111 1111 1111 1111"
    expression = scrub_expression(exp.Literal.string(text), ("CREDIT_CARD",), "duckdb")
    [(in_sql,)] = duckdb.sql(f"SELECT {expression.sql(dialect='duckdb')}").fetchall()
    assert in_sql == "order <CREDIT_CARD> paid with <CREDIT_CARD>"
    assert scrub_values([text]) == ["order 4111 1111 1111 1112 paid with <CREDIT_CARD>"]


def test_auto_classified_free_text_is_scrubbed_alike_on_every_live_engine(engine, reference):
    sql = "SELECT ticket_id, body FROM support_tickets WHERE ticket_id <= 40 ORDER BY ticket_id"
    got = rows(engine.session("bob", auto_policy(engine.policy())).sql(sql))
    assert got == rows(reference.session("bob", auto_policy(reference.policy())).sql(sql))
    assert any("<EMAIL_ADDRESS>" in body for _, body in got)
