"""The synthetic demo data set: shape, determinism, realistic-looking PII, loading into DuckDB."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

from jupyter_gov.demo import SEED, demo_tables, load_demo

EMAIL_RE = re.compile(r"[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+")
CARD_RE = re.compile(r"^\d{4} \d{4} \d{4} \d{4}$")
PHONE_RE = re.compile(r"^\+1-555-\d{3}-\d{4}$")
SSN_RE = re.compile(r"^(\d{3})-(\d{2})-(\d{4})$")


def _luhn(number: str) -> bool:
    """An independent Luhn check, so the test does not trust the module's own."""
    digits = [int(c) for c in number.replace(" ", "")][::-1]
    odd = sum(digits[0::2])
    even = sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return (odd + even) % 10 == 0


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return demo_tables()


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(config={"python_enable_replacements": False})
    load_demo(connection)
    yield connection
    connection.close()


def _column(tables: dict[str, pa.Table], table: str, column: str) -> list:
    return tables[table].column(column).to_pylist()


def test_demo_tables_returns_the_three_tables(tables: dict[str, pa.Table]) -> None:
    assert list(tables) == ["customers", "orders", "support_tickets"]


def test_customers_has_10000_rows_numbered_1_to_10000(tables: dict[str, pa.Table]) -> None:
    assert _column(tables, "customers", "customer_id") == list(range(1, 10_001))


def test_orders_has_about_50000_rows(tables: dict[str, pa.Table]) -> None:
    assert 45_000 <= tables["orders"].num_rows <= 55_000


def test_support_tickets_has_about_2000_rows(tables: dict[str, pa.Table]) -> None:
    assert 1_800 <= tables["support_tickets"].num_rows <= 2_200


def test_columns_keep_the_documented_names_and_order(tables: dict[str, pa.Table]) -> None:
    assert tables["customers"].column_names == [
        "customer_id", "full_name", "email", "phone", "ssn", "credit_card", "birth_date",
        "street_address", "city", "country", "segment", "signup_date",
    ]  # fmt: skip
    assert tables["orders"].column_names == [
        "order_id", "customer_id", "order_date", "amount", "status", "region",
    ]  # fmt: skip
    assert tables["support_tickets"].column_names == [
        "ticket_id", "customer_id", "opened_at", "subject", "body",
    ]  # fmt: skip


def test_same_seed_builds_identical_tables(tables: dict[str, pa.Table]) -> None:
    again = demo_tables(SEED)
    assert all(again[name].equals(tables[name]) for name in tables)


def test_different_seed_builds_different_data(tables: dict[str, pa.Table]) -> None:
    other = demo_tables(SEED + 1)
    assert not other["customers"].equals(tables["customers"])


def test_default_seed_gives_the_pinned_first_customer(tables: dict[str, pa.Table]) -> None:
    # Guards "same output on every machine": docs and screenshots may quote this row.
    first = tables["customers"].slice(0, 1).to_pylist()[0]
    assert first["full_name"] == "Ravi Olsen"
    assert first["email"] == "ravi.olsen67@example.com"
    assert first["phone"] == "+1-555-155-5685"
    assert first["credit_card"] == "2692 6383 2620 8689"


def test_every_credit_card_passes_luhn(tables: dict[str, pa.Table]) -> None:
    cards = _column(tables, "customers", "credit_card")
    assert all(CARD_RE.match(card) and _luhn(card) for card in cards)


def test_every_credit_card_has_a_visa_or_mastercard_prefix(tables: dict[str, pa.Table]) -> None:
    def branded(card: str) -> bool:
        return card.startswith("4") or 51 <= int(card[:2]) <= 55 or 2221 <= int(card[:4]) <= 2720

    assert all(branded(card) for card in _column(tables, "customers", "credit_card"))


def test_emails_are_unique(tables: dict[str, pa.Table]) -> None:
    emails = _column(tables, "customers", "email")
    assert len(set(emails)) == len(emails)


def test_emails_use_only_reserved_example_domains(tables: dict[str, pa.Table]) -> None:
    domains = {email.split("@")[1] for email in _column(tables, "customers", "email")}
    assert len(domains) > 1
    reserved = (".example", "example.com", "example.org", "example.net")
    assert all(domain.endswith(reserved) for domain in domains)


def test_phones_use_the_fictional_555_format(tables: dict[str, pa.Table]) -> None:
    assert all(PHONE_RE.match(phone) for phone in _column(tables, "customers", "phone"))


def test_ssns_have_valid_layout_and_area(tables: dict[str, pa.Table]) -> None:
    for ssn in _column(tables, "customers", "ssn"):
        match = SSN_RE.match(ssn)
        assert match, ssn
        area, group, serial = (int(part) for part in match.groups())
        assert 1 <= area <= 899 and area != 666 and group >= 1 and serial >= 1, ssn


def test_birth_and_signup_dates_stay_in_range(tables: dict[str, pa.Table]) -> None:
    births = _column(tables, "customers", "birth_date")
    signups = _column(tables, "customers", "signup_date")
    assert min(births) >= dt.date(1940, 1, 1) and max(births) <= dt.date(2005, 12, 31)
    assert min(signups) >= dt.date(2018, 1, 1) and max(signups) <= dt.date(2025, 12, 31)


def test_segments_are_the_three_documented_values(tables: dict[str, pa.Table]) -> None:
    assert set(_column(tables, "customers", "segment")) == {"consumer", "smb", "enterprise"}


def test_every_order_region_is_amer_emea_or_apac(tables: dict[str, pa.Table]) -> None:
    assert set(_column(tables, "orders", "region")) == {"AMER", "EMEA", "APAC"}


def test_order_statuses_are_the_five_documented_values(tables: dict[str, pa.Table]) -> None:
    assert set(_column(tables, "orders", "status")) == {
        "placed", "shipped", "delivered", "returned", "cancelled",
    }  # fmt: skip


def test_order_amounts_are_positive_with_two_decimals(tables: dict[str, pa.Table]) -> None:
    assert tables["orders"].schema.field("amount").type == pa.decimal128(12, 2)
    amounts = _column(tables, "orders", "amount")
    assert all(a > 0 and a.as_tuple().exponent == -2 for a in amounts)
    assert isinstance(amounts[0], Decimal)


def test_orders_reference_existing_customers(tables: dict[str, pa.Table]) -> None:
    ids = set(_column(tables, "customers", "customer_id"))
    assert set(_column(tables, "orders", "customer_id")) <= ids
    assert set(_column(tables, "support_tickets", "customer_id")) <= ids


def test_every_ticket_email_belongs_to_its_own_customer(tables: dict[str, pa.Table]) -> None:
    emails = _column(tables, "customers", "email")
    tickets = tables["support_tickets"].to_pylist()
    with_email = [t for t in tickets if EMAIL_RE.search(t["body"])]
    assert with_email
    for ticket in with_email:
        found = set(EMAIL_RE.findall(ticket["body"]))
        assert found == {emails[ticket["customer_id"] - 1]}, ticket


def test_most_ticket_bodies_leak_pii_and_some_do_not(tables: dict[str, pa.Table]) -> None:
    customers = tables["customers"].to_pylist()

    def leaks(ticket: dict) -> bool:
        owner = customers[ticket["customer_id"] - 1]
        return any(owner[key] in ticket["body"] for key in ("email", "phone", "credit_card"))

    tickets = tables["support_tickets"].to_pylist()
    leaking = sum(leaks(t) for t in tickets)
    assert 0.7 * len(tickets) <= leaking < len(tickets)


def test_load_demo_creates_queryable_tables_without_replacement_scans(
    con: duckdb.DuckDBPyConnection,
) -> None:
    counts = con.execute(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders),"
        " (SELECT count(*) FROM support_tickets)"
    ).fetchone()
    assert counts[0] == 10_000 and counts[1] > 0 and counts[2] > 0
    orphans = con.execute(
        "SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id)"
        " WHERE c.customer_id IS NULL"
    ).fetchone()
    assert orphans == (0,)


def test_load_demo_gives_the_documented_column_types(con: duckdb.DuckDBPyConnection) -> None:
    def types(table: str) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {table}").fetchall()]

    assert types("customers") == [
        ("customer_id", "INTEGER"), ("full_name", "VARCHAR"), ("email", "VARCHAR"),
        ("phone", "VARCHAR"), ("ssn", "VARCHAR"), ("credit_card", "VARCHAR"),
        ("birth_date", "DATE"), ("street_address", "VARCHAR"), ("city", "VARCHAR"),
        ("country", "VARCHAR"), ("segment", "VARCHAR"), ("signup_date", "DATE"),
    ]  # fmt: skip
    assert types("orders") == [
        ("order_id", "INTEGER"), ("customer_id", "INTEGER"), ("order_date", "DATE"),
        ("amount", "DECIMAL(12,2)"), ("status", "VARCHAR"), ("region", "VARCHAR"),
    ]  # fmt: skip
    assert types("support_tickets") == [
        ("ticket_id", "INTEGER"), ("customer_id", "INTEGER"), ("opened_at", "TIMESTAMP"),
        ("subject", "VARCHAR"), ("body", "VARCHAR"),
    ]  # fmt: skip


def test_load_demo_leaves_only_the_three_tables(con: duckdb.DuckDBPyConnection) -> None:
    names = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert names == {"customers", "orders", "support_tickets"}


def test_load_demo_can_run_twice_on_one_connection() -> None:
    connection = duckdb.connect(config={"python_enable_replacements": False})
    load_demo(connection)
    load_demo(connection)
    assert connection.execute("SELECT count(*) FROM customers").fetchone() == (10_000,)
