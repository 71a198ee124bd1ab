"""The masking oracle's attacks, each taken in the kernel and through the gateway.

Every attack of ``tests/adversarial/test_masking_oracle.py`` runs once on each path for the
same identity
(:mod:`tests.adversarial.paths`): both must decide alike (decision, rules, reasons, masks,
filters) and answer alike (column names, Arrow types, every value; in order when the
statement fixes one). The gateway's answer then goes through the whole oracle itself: no
raw value or encoding of one in its rows or its sentence, and the answer of a plain
database that only ever held that user's masked view.

``make test`` takes every attack of the oracle's fast matrix once, by one demo user in
turn (the row-filtered analyst on the attacks that read ``orders``); ``make stress`` takes
the rest of the fast matrix and the full one (every shape on every column, every user).
"""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import RAW_USERS, USERS
from tests.adversarial.oracle import check
from tests.adversarial.test_masking_oracle import (
    ANALYTICS,
    FAST,
    FAST_USERS,
    FULL,
    KNOWN_HOLES,
    Attack,
    _cases,
)
from tests.gateway.conftest import PathFactory

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]


def _both_ways(paths: PathFactory, user: str, attack: Attack) -> None:
    observed = paths(user).both(
        lambda session: session.sql(attack.sql), ordered=attack.ordered, sql=attack.sql
    )
    outcome = check(
        lambda: observed.table if observed.raised is None else _raise(observed.raised),
        paths.reference(user),
        attack.sql,
        raw_allowed=user in RAW_USERS,
        ordered=attack.ordered,
    )
    if user == "eve":
        assert outcome.denied, "a user with no role got rows through the gateway"


def _raise(error: BaseException) -> None:
    raise error


#: Attacks whose statement alone costs tens of CPU seconds per run (a LIKE join of every
#: ticket with every customer): three runs of them (kernel, gateway, reference) are left
#: to ``make stress``; the in-kernel oracle takes them in ``make test``.
HEAVY = {"join_masked_to_free_text"}


def _one_user_each() -> list:
    """Each fast attack once, by bob, alice, carol and eve in turn (bob where carol's
    filter has nothing to say)."""
    cases = []
    for index, attack in enumerate(a for a in FAST if a.name not in HEAVY):
        user = FAST_USERS[index % len(FAST_USERS)]
        if user == "carol" and "orders" not in attack.sql:
            user = "bob"
        cases += _cases((user,), [attack])
    return cases


TURNS = _one_user_each()


@pytest.mark.parametrize(("user", "attack"), TURNS)
def test_attack_decides_and_answers_alike_in_the_kernel_and_through_the_gateway(
    paths, user, attack
):
    _both_ways(paths, user, attack)


@pytest.mark.stress
@pytest.mark.parametrize(
    ("user", "attack"),
    [c for c in _cases(FAST_USERS, FAST, fast=True) if c not in TURNS]
    + _cases(USERS, FULL)
    + _cases(("dave",), FAST)
    + [c for c in _cases(("carol",), FAST) if c not in _cases(("carol",), FAST, fast=True)],
)
def test_every_shape_on_every_column_alike_through_the_gateway(paths, user, attack):
    _both_ways(paths, user, attack)


@pytest.mark.parametrize(
    "name", sorted(n for n in ANALYTICS if f"analytics:{n}" not in KNOWN_HOLES)
)
@pytest.mark.parametrize("user", ["bob", "carol"])
def test_ordinary_analytics_run_alike_through_the_gateway(paths, user, name):
    sql = ANALYTICS[name]
    observed = paths(user).both(lambda session: session.sql(sql), sql=sql)
    assert not observed.denied, f"{name} was denied: {observed.error}"
