"""The masking oracle's attacks through the PostgreSQL wire door, with psycopg.

An analyst's service token (``etl``) is the password; every attack of the oracle's fast
matrix (``tests/adversarial/test_masking_oracle.py``) goes through ``jupyter-gov gateway
pgwire`` as a stock PostgreSQL client sends it. Whatever comes back (every cell, nested
values and column names, or the error's message) must hold no raw value nor an encoding of
one (the oracle's leak detector), and the door must refuse exactly what the engine refuses
an analyst in a kernel (the same statement by the demo analyst bob, in this process).
Attacks on ``orders`` (no classified column) are left out; ``make test`` takes every third
attack on the classified tables, ``make stress`` all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jupyter_gov.errors import GovError
from tests.adversarial.oracle import LeakDetector, cell_texts
from tests.adversarial.test_masking_oracle import FAST, Attack
from tests.gateway.test_suite_masking import HEAVY
from tests.pgwire.conftest import TOKENS, PgWire, pgwire_factory  # noqa: F401  (fixture)

pytestmark = pytest.mark.server

#: Attacks on the classified tables (``orders`` holds no classified column); ``make test``
#: takes every third one, ``make stress`` all of them.
ATTACKS = [a for a in FAST if a.name not in HEAVY and not a.name.startswith("orders-")]
CASES = [
    pytest.param(a, id=a.name, marks=[pytest.mark.stress] if i % 3 else [])
    for i, a in enumerate(ATTACKS)
]


@pytest.fixture(scope="module")
def door(pgwire_factory: Any) -> PgWire:  # noqa: F811
    """A pgwire gateway process of its own (the demo policy and its three services)."""
    return pgwire_factory.start()[0]


@pytest.fixture(scope="module")
def analyst(door: PgWire) -> Iterator[psycopg.Connection]:
    with psycopg.connect(door.dsn(TOKENS["etl"]), autocommit=True) as conn:
        yield conn


def _text(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """Every distinct cell (nested values walked) and column name, one per line."""
    parts: set[str] = set(columns)
    for row in rows:
        for value in row:
            parts.update(cell_texts(value))
    return "\n".join(parts)


@pytest.mark.parametrize("attack", CASES)
def test_no_raw_value_reaches_a_psycopg_client_and_refusals_match_the_kernel(
    analyst: psycopg.Connection, session_for: Any, attack: Attack
) -> None:
    try:
        cursor = analyst.execute(attack.sql)
        columns = [c.name for c in cursor.description or []]
        text, refused = _text(columns, cursor.fetchall()), None
    except psycopg.Error as error:
        text, refused = str(error), error
    leaks = LeakDetector.for_demo().scan(text)
    assert leaks == [], f"{attack.sql}: leaked {', '.join(map(str, leaks[:3]))}"
    try:
        session_for("bob").sql(attack.sql)
        denied_in_kernel = False
    except GovError:
        denied_in_kernel = True
    assert (refused is not None) == denied_in_kernel, f"{attack.sql}: {refused}"
