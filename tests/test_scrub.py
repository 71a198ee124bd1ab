"""Free-text scrubbing: presidio operators in Python agree with the in-database mask."""

from __future__ import annotations

import duckdb
import pytest
from presidio_anonymizer.entities import OperatorConfig
from sqlglot import exp

from jupyter_gov.errors import QueryFailed
from jupyter_gov.masking import DEFAULT_SCRUB, scrub_expression
from jupyter_gov.scrub import scrub_text

TEXT = (
    "Call +1-555-013-4567 or mail jane.doe@example.com; card 4111 1111 1111 1111, SSN 123-45-6789."
)


def test_presidio_replace_operator_gives_entity_placeholders():
    assert scrub_text(TEXT) == (
        "Call <PHONE_NUMBER> or mail <EMAIL_ADDRESS>; card <CREDIT_CARD>, SSN <US_SSN>."
    )


def test_other_presidio_operators_apply():
    masked = scrub_text(
        TEXT,
        operators={
            "DEFAULT": OperatorConfig(
                "mask", {"masking_char": "#", "chars_to_mask": 100, "from_end": False}
            )
        },
    )
    assert "jane.doe" not in masked and "#" in masked


def test_numbers_failing_luhn_are_not_called_cards():
    assert "<CREDIT_CARD>" not in scrub_text("order 1234 5678 9012 3456 shipped")


@pytest.mark.parametrize("text", [TEXT, "no pii here", "mail a@b.io and c@d.org", ""])
def test_sql_scrub_and_presidio_scrub_agree(text):
    sql = scrub_expression(exp.Literal.string(text), DEFAULT_SCRUB).sql("duckdb")
    (in_database,) = duckdb.sql(f"SELECT {sql}").fetchone()
    assert in_database == scrub_text(text)


def test_database_error_messages_are_scrubbed(session_for):
    with pytest.raises(QueryFailed) as failed:
        session_for("alice").sql("SELECT CAST(email AS INTEGER) FROM customers LIMIT 1")
    assert "@" not in str(failed.value)
    assert "Could not convert string '?' to INT32" in str(failed.value)
