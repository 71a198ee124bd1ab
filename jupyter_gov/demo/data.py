"""A deterministic, synthetic PII data set for demos, notebooks, tests and benchmarks.

Why it exists: masking, guardrails and audit are only convincing when the data *looks* like
personal data (names, emails, phone numbers, SSNs, card numbers, free text that leaks them), yet
a demo must never contain a real person's details and must look the same on every machine and
every run, so screenshots, docs and assertions stay stable.

How: every value comes from one ``random.Random(seed)`` (never the global generator, never the
clock), using only ``random()`` and exact arithmetic on it, so no platform can change a value.
Names come from fixed lists; email domains are reserved for documentation (RFC 2606 / 6761);
phone numbers use area code 555 with exchanges starting 0 or 1, which the North American plan
never assigns; SSNs have the real layout (area 001-899 except 666) but are random draws tied to
no one; card numbers have Visa/Mastercard prefixes and a valid Luhn digit but are random too.

Three tables: ``customers`` (10,000 rows), ``orders`` (50,000 rows) and ``support_tickets``
(2,000 rows, whose ``body`` embeds that customer's own email, phone and/or card number).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

import duckdb
import pyarrow as pa

__all__ = [
    "CUSTOMERS_SCHEMA",
    "N_CUSTOMERS",
    "N_ORDERS",
    "N_TICKETS",
    "ORDERS_SCHEMA",
    "SEED",
    "SUPPORT_TICKETS_SCHEMA",
    "TABLE_NAMES",
    "demo_tables",
    "load_demo",
    "luhn_valid",
]

SEED = 20261124

T = TypeVar("T")

N_CUSTOMERS = 10_000
N_ORDERS = 50_000
N_TICKETS = 2_000

TABLE_NAMES = ("customers", "orders", "support_tickets")

CUSTOMERS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int32()),
        ("full_name", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("ssn", pa.string()),
        ("credit_card", pa.string()),
        ("birth_date", pa.date32()),
        ("street_address", pa.string()),
        ("city", pa.string()),
        ("country", pa.string()),
        ("segment", pa.string()),
        ("signup_date", pa.date32()),
    ]
)

ORDERS_SCHEMA = pa.schema(
    [
        ("order_id", pa.int32()),
        ("customer_id", pa.int32()),
        ("order_date", pa.date32()),
        ("amount", pa.decimal128(12, 2)),
        ("status", pa.string()),
        ("region", pa.string()),
    ]
)

SUPPORT_TICKETS_SCHEMA = pa.schema(
    [
        ("ticket_id", pa.int32()),
        ("customer_id", pa.int32()),
        ("opened_at", pa.timestamp("us")),
        ("subject", pa.string()),
        ("body", pa.string()),
    ]
)

FIRST_NAMES = (
    "Aaliyah", "Adebayo", "Ahmed", "Aiko", "Alejandro", "Amara", "Ana", "Anders", "Anjali",
    "Arjun", "Astrid", "Ayesha", "Bilal", "Camila", "Carlos", "Chiara", "Chidi", "Daniel",
    "Deepika", "Diego", "Dmitri", "Elena", "Emeka", "Emma", "Fatima", "Felipe", "Freya", "Hana",
    "Hannah", "Hiroshi", "Ibrahim", "Ines", "Isabella", "Jamal", "Javier", "Kaito", "Kemal",
    "Kwame", "Lars", "Leila", "Liam", "Lucia", "Mei", "Mohammed", "Nadia", "Niamh", "Noah",
    "Oluwaseun", "Omar", "Priya", "Rafael", "Ravi", "Rosa", "Sakura", "Santiago", "Sofia",
    "Tariq", "Thabo", "Valentina", "Wei", "Yusuf", "Zanele", "Zara",
)  # fmt: skip

LAST_NAMES = (
    "Abara", "Adeyemi", "Alvarez", "Andersson", "Bakker", "Banerjee", "Becker", "Chen", "Costa",
    "Dubois", "Eriksen", "Fernandez", "Fischer", "Garcia", "Gonzalez", "Gupta", "Haddad",
    "Hansen", "Hernandez", "Ibrahim", "Ito", "Jansen", "Johnson", "Kang", "Kaur", "Khan", "Kim",
    "Kowalski", "Kumar", "Larsen", "Lee", "Lopez", "Martin", "Mensah", "Moreno", "Muller",
    "Nakamura", "Nguyen", "Novak", "Obi", "Okafor", "Olsen", "Patel", "Petrov", "Popescu",
    "Rahman", "Ramirez", "Reyes", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Smith",
    "Suzuki", "Tanaka", "Walker", "Wang", "Williams", "Yamamoto", "Zhang",
)  # fmt: skip

EMAIL_DOMAINS = (
    "example.com", "example.org", "example.net", "mail.example", "corp.example", "inbox.example",
)  # fmt: skip

STREET_NAMES = (
    "Oak", "Maple", "Cedar", "Elm", "Pine", "Birch", "Willow", "Harbour", "Station", "Mill",
    "Park", "Church", "River", "Lake", "Hill", "Market", "King", "Queen", "Garden", "Orchard",
)  # fmt: skip

STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Way", "Drive", "Court", "Place")

# (city, country, home region); orders take the customer's home region.
CITIES = (
    ("New York", "United States", "AMER"),
    ("Chicago", "United States", "AMER"),
    ("Austin", "United States", "AMER"),
    ("Toronto", "Canada", "AMER"),
    ("Mexico City", "Mexico", "AMER"),
    ("Sao Paulo", "Brazil", "AMER"),
    ("London", "United Kingdom", "EMEA"),
    ("Berlin", "Germany", "EMEA"),
    ("Paris", "France", "EMEA"),
    ("Madrid", "Spain", "EMEA"),
    ("Lagos", "Nigeria", "EMEA"),
    ("Nairobi", "Kenya", "EMEA"),
    ("Tokyo", "Japan", "APAC"),
    ("Singapore", "Singapore", "APAC"),
    ("Sydney", "Australia", "APAC"),
    ("Mumbai", "India", "APAC"),
    ("Seoul", "South Korea", "APAC"),
)

REGIONS = ("AMER", "EMEA", "APAC")
SEGMENTS = ("consumer", "smb", "enterprise")
STATUSES = ("placed", "shipped", "delivered", "returned", "cancelled")

# Integer weights, expanded into a list, so a weighted draw is a plain uniform pick.
_SEGMENT_POOL = ("consumer",) * 7 + ("smb",) * 2 + ("enterprise",)
_STATUS_POOL = (
    ("placed",) * 4
    + ("shipped",) * 8
    + ("delivered",) * 70
    + ("returned",) * 9
    + ("cancelled",) * 9
)
_RECENT_STATUS_POOL = ("placed",) * 5 + ("shipped",) * 4 + ("cancelled",)
# Order amount in cents, by segment.
_AMOUNT_CENTS = {
    "consumer": (5_00, 300_00),
    "smb": (50_00, 2_000_00),
    "enterprise": (500_00, 50_000_00),
}

_BIRTH_FIRST = dt.date(1940, 1, 1).toordinal()
_BIRTH_LAST = dt.date(2005, 12, 31).toordinal()
_SIGNUP_FIRST = dt.date(2018, 1, 1).toordinal()
_LAST_DAY = dt.date(2025, 12, 31).toordinal()
_RECENT_DAYS = 14

# Support tickets: (subject, opening sentence). The opening sentence never carries PII.
_TICKET_TOPICS = (
    ("Charged twice", "I was charged twice for the same order."),
    ("Refund request", "I returned my order two weeks ago and have not been refunded yet."),
    ("Payment declined", "My payment was declined although my card is valid."),
    ("Delivery problem", "My parcel has not arrived and the tracking has not moved for days."),
    ("Damaged item", "The item arrived damaged."),
    ("Change of address", "I have moved and need to change my delivery address."),
    ("Invoice question", "The invoice total does not match what I ordered."),
    ("Account access", "I cannot log in to my account since the last update."),
    ("Cancel my order", "Please cancel my most recent order."),
)
_CONTACT_BOTH = (
    "Please call me back on {phone} or write to {email}.",
    "You can reach me on {phone} during the day or at {email} any time.",
)
_CONTACT_EMAIL = (
    "Please reply to {email}.",
    "You can reach me at {email}.",
    "My email on file is {email}, please use that one.",
)
_CONTACT_PHONE = (
    "Please call me back on {phone}.",
    "My number is {phone}, I am available after 5pm.",
    "Text me on {phone} when it is sorted.",
)
_CARD = (
    "My card {card} was charged twice.",
    "The charge on card {card} looks wrong to me.",
    "Please refund the amount to my card {card}.",
    "I paid with card {card}.",
)
_NEUTRAL = (
    "Thanks for your help.",
    "This is the second time I am asking.",
    "I have been a customer for years.",
    "Any update would be appreciated.",
)


class _Draws:
    """Uniform draws from ``random.Random(seed).random()``, which Python keeps reproducible.

    ``lo + floor(random() * n)`` is exact IEEE arithmetic on a 53-bit value, so it gives the same
    numbers on every platform, and is several times faster than ``randrange``/``randint``.
    """

    __slots__ = ("_random",)

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed).random

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        return int(self._random() * n)

    def between(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return lo + int(self._random() * (hi - lo + 1))

    def pick(self, seq: Sequence[T]) -> T:
        """One element of ``seq``."""
        return seq[int(self._random() * len(seq))]


def luhn_valid(number: str) -> bool:
    """True when the digits of ``number`` (spaces ignored) pass the Luhn check."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return bool(digits) and total % 10 == 0


def _luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, c in enumerate(reversed(partial)):
        d = int(c)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _card_number(rng: _Draws) -> str:
    kind = rng.below(3)
    if kind == 0:
        prefix = "4"  # Visa
    elif kind == 1:
        prefix = str(rng.between(51, 55))  # Mastercard, classic range
    else:
        prefix = str(rng.between(2221, 2720))  # Mastercard, 2-series
    width = 15 - len(prefix)
    body = f"{prefix}{rng.below(10**width):0{width}d}"
    digits = body + _luhn_check_digit(body)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def _ssn(rng: _Draws) -> str:
    area = rng.between(1, 898)
    if area >= 666:
        area += 1  # skip 666, keep the draw uniform over 001-899
    return f"{area:03d}-{rng.between(1, 99):02d}-{rng.between(1, 9999):04d}"


def _phone(rng: _Draws) -> str:
    return f"+1-555-{rng.below(200):03d}-{rng.below(10_000):04d}"


def _customers(rng: _Draws) -> tuple[pa.Table, list[tuple[int, int, str]]]:
    """The customers table, plus (signup ordinal, city index, segment) per customer."""
    cols: dict[str, list[object]] = {name: [] for name in CUSTOMERS_SCHEMA.names}
    facts: list[tuple[int, int, str]] = []
    seen_emails: set[str] = set()
    for customer_id in range(1, N_CUSTOMERS + 1):
        first = rng.pick(FIRST_NAMES)
        last = rng.pick(LAST_NAMES)
        domain = rng.pick(EMAIL_DOMAINS)
        local = f"{first.lower()}.{last.lower()}"
        email = f"{local}{rng.between(1, 99)}@{domain}"
        while email in seen_emails:
            email = f"{local}{rng.between(100, 9999)}@{domain}"
        seen_emails.add(email)
        city_index = rng.below(len(CITIES))
        city, country, _region = CITIES[city_index]
        segment = rng.pick(_SEGMENT_POOL)
        signup = rng.between(_SIGNUP_FIRST, _LAST_DAY)
        street = f"{rng.between(1, 2400)} {rng.pick(STREET_NAMES)} {rng.pick(STREET_KINDS)}"
        cols["customer_id"].append(customer_id)
        cols["full_name"].append(f"{first} {last}")
        cols["email"].append(email)
        cols["phone"].append(_phone(rng))
        cols["ssn"].append(_ssn(rng))
        cols["credit_card"].append(_card_number(rng))
        cols["birth_date"].append(dt.date.fromordinal(rng.between(_BIRTH_FIRST, _BIRTH_LAST)))
        cols["street_address"].append(street)
        cols["city"].append(city)
        cols["country"].append(country)
        cols["segment"].append(segment)
        cols["signup_date"].append(dt.date.fromordinal(signup))
        facts.append((signup, city_index, segment))
    return pa.table(cols, schema=CUSTOMERS_SCHEMA), facts


def _orders(rng: _Draws, facts: list[tuple[int, int, str]]) -> pa.Table:
    """Orders fall between the customer's signup and 2025-12-31; ids follow order date."""
    between = rng.between
    drafts: list[tuple[int, int, int, int]] = []  # (day, draw index, customer_id, cents)
    for i in range(N_ORDERS):
        customer_id = between(1, N_CUSTOMERS)
        signup, _city, segment = facts[customer_id - 1]
        day = between(signup, _LAST_DAY)
        lo, hi = _AMOUNT_CENTS[segment]
        cents = between(lo, between(lo, hi))  # skewed towards small orders
        drafts.append((day, i, customer_id, cents))
    drafts.sort()
    regions = [CITIES[city][2] for _signup, city, _segment in facts]
    recent_from = _LAST_DAY - _RECENT_DAYS
    customer_ids: list[int] = []
    dates: list[dt.date] = []
    amounts: list[Decimal] = []
    statuses: list[str] = []
    order_regions: list[str] = []
    for day, _i, customer_id, cents in drafts:
        customer_ids.append(customer_id)
        dates.append(dt.date.fromordinal(day))
        amounts.append(Decimal(cents).scaleb(-2))
        statuses.append(rng.pick(_RECENT_STATUS_POOL if day > recent_from else _STATUS_POOL))
        order_regions.append(regions[customer_id - 1])
    columns = [
        list(range(1, len(drafts) + 1)),
        customer_ids,
        dates,
        amounts,
        statuses,
        order_regions,
    ]
    return pa.table(columns, schema=ORDERS_SCHEMA)


def _ticket_body(rng: _Draws, opening: str, email: str, phone: str, card: str) -> str:
    """One to three sentences; about 85% of bodies leak the customer's own contact or card."""
    sentences = [opening]
    kind = rng.below(20)
    if kind < 3:  # no PII at all
        sentences.append(rng.pick(_NEUTRAL))
    else:
        if kind < 10:
            sentences.append(rng.pick(_CARD).format(card=card))
        contact = rng.below(4)
        if contact == 0:
            sentences.append(rng.pick(_CONTACT_BOTH).format(phone=phone, email=email))
        elif contact == 1:
            sentences.append(rng.pick(_CONTACT_EMAIL).format(email=email))
        elif contact == 2:
            sentences.append(rng.pick(_CONTACT_PHONE).format(phone=phone))
        elif kind >= 10:  # neither contact nor card yet: make sure something leaks
            sentences.append(rng.pick(_CARD).format(card=card))
    greeting = rng.pick(("", "Hi, ", "Hello, ", "Good morning, "))
    first = sentences[0]
    if greeting:
        keep_capital = first.startswith("I ")
        first = greeting + (first if keep_capital else first[0].lower() + first[1:])
    return " ".join([first, *sentences[1:]])


def _support_tickets(
    rng: _Draws, customers: pa.Table, facts: list[tuple[int, int, str]]
) -> pa.Table:
    emails = customers.column("email").to_pylist()
    phones = customers.column("phone").to_pylist()
    cards = customers.column("credit_card").to_pylist()
    last_second = (_LAST_DAY + 1) * 86_400 - 1
    drafts: list[tuple[int, int, int, str, str]] = []
    for i in range(N_TICKETS):
        customer_id = rng.between(1, N_CUSTOMERS)
        idx = customer_id - 1
        second = rng.between(facts[idx][0] * 86_400, last_second)
        subject, opening = rng.pick(_TICKET_TOPICS)
        body = _ticket_body(rng, opening, emails[idx], phones[idx], cards[idx])
        drafts.append((second, i, customer_id, subject, body))
    drafts.sort()
    cols: dict[str, list[object]] = {name: [] for name in SUPPORT_TICKETS_SCHEMA.names}
    for ticket_id, (second, _i, customer_id, subject, body) in enumerate(drafts, start=1):
        days, rest = divmod(second, 86_400)
        opened = dt.datetime.combine(dt.date.fromordinal(days), dt.time()) + dt.timedelta(
            seconds=rest
        )
        cols["ticket_id"].append(ticket_id)
        cols["customer_id"].append(customer_id)
        cols["opened_at"].append(opened)
        cols["subject"].append(subject)
        cols["body"].append(body)
    return pa.table(cols, schema=SUPPORT_TICKETS_SCHEMA)


def demo_tables(seed: int = SEED) -> dict[str, pa.Table]:
    """Build the three demo tables; the same ``seed`` always gives identical tables."""
    rng = _Draws(seed)
    customers, facts = _customers(rng)
    orders = _orders(rng, facts)
    tickets = _support_tickets(rng, customers, facts)
    return {"customers": customers, "orders": orders, "support_tickets": tickets}


def load_demo(con: duckdb.DuckDBPyConnection, seed: int = SEED) -> None:
    """Create (or replace) ``customers``, ``orders`` and ``support_tickets`` on ``con``.

    Each Arrow table is registered under a private view name, copied with ``CREATE OR REPLACE
    TABLE ... AS SELECT``, and unregistered again, so it works with
    ``python_enable_replacements=false`` and leaves no view behind.
    """
    for name, table in demo_tables(seed).items():
        view = f"__jupyter_gov_demo_{name}"
        con.register(view, table)
        try:
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM "{view}"')
        finally:
            con.unregister(view)
