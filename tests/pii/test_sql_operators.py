"""presidio's operators as column masks, rendered in SQL so raw values never leave the source.

``replace`` is the entity's label, ``mask`` one star per character (``partial`` options
apply), ``hash`` the keyed hash every engine computes alike. ``encrypt`` has no sound SQL
spelling on every engine: a role whose ``pii.operator`` is ``encrypt`` gets the label in
SQL, and encrypt tokens only where ``scan_results`` finds PII in text the policy let through.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
import sqlglot
import yaml
from sqlglot import exp

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.masking import mask_expression
from jupyter_gov.policy import MaskSpec, Policy
from tests.connectors.test_live_governance import rows
from tests.pii.test_pushdown import DIALECTS

IBANS = ("DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606")

POLICY = {
    "name": "operators",
    "version": 1,
    "identity": {
        "provider": "local",
        "users": {
            "bob": {"groups": ["analysts"]},
            "carol": {"groups": ["support"]},
            "dave": {"groups": ["auditors"]},
            "erin": {"groups": ["contact"]},
            "alice": {"groups": ["admins"]},
            "frank": {"groups": ["support", "auditors"]},
        },
    },
    "connections": {"db": {"url": "duckdb:memory"}},
    "roles": {
        "analyst": {"groups": ["analysts"], "connections": ["db"]},
        "support": {"groups": ["support"], "connections": ["db"]},
        "auditor": {"groups": ["auditors"], "connections": ["db"]},
        "contact": {"groups": ["contact"], "connections": ["db"]},
        "admin": {"groups": ["admins"], "connections": ["db"]},
    },
    "unclassified": "auto",
    "pii": {
        "operator": {
            "default": "replace",
            "support": "mask",
            "auditor": "hash",
            "contact": "encrypt",
        },
        "raw_roles": ["admin"],
    },
}


@pytest.mark.parametrize("function", ["replace", "mask", "hash"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_replace_mask_and_hash_render_in_every_dialect(dialect, function):
    masked = mask_expression(
        MaskSpec(function), exp.column("iban"), exp.DataType.build("text"), "iban", dialect
    )
    sql = masked.sql(dialect=dialect)
    assert "iban" in sql and sqlglot.parse_one(sql, read=dialect)
    if function == "replace":
        assert "<IBAN_CODE>" in sql


@pytest.fixture
def ibans() -> Iterator[DuckDBConnector]:
    connector = DuckDBConnector("db", "duckdb:memory")
    values = ", ".join(f"({i}, '{v}')" for i, v in enumerate(IBANS * 20))
    connector.con.execute(
        f"CREATE TABLE payments (id INTEGER, account VARCHAR); INSERT INTO payments VALUES {values}"
    )
    yield connector
    connector.close()


def _accounts(connector: DuckDBConnector, user: str, where: str = "") -> list[str]:
    session = GovernedSession(Policy(POLICY), user)
    session.use_connector("db", connector)
    sql = f"SELECT account FROM payments {where} ORDER BY id LIMIT 3"
    return session.sql(sql).arrow().column(0).to_pylist()


def test_an_auto_found_tag_without_a_mask_rule_gets_each_roles_operator(ibans):
    assert _accounts(ibans, "bob") == ["<IBAN_CODE>"] * 3
    assert _accounts(ibans, "carol") == ["*" * len(v) for v in IBANS]
    hashed = _accounts(ibans, "dave")
    assert all(re.fullmatch("[0-9a-f]{64}", h) for h in hashed) and len(set(hashed)) == 3
    assert _accounts(ibans, "alice") == list(IBANS)


def test_the_operator_runs_in_the_database_so_predicates_never_see_raw_values(ibans):
    for user in ("bob", "carol", "dave", "erin"):
        assert _accounts(ibans, user, "WHERE account LIKE 'DE%'") == []


def test_a_caller_with_several_roles_gets_the_strictest_operator_in_sql_and_on_the_scan(ibans):
    policy = Policy(POLICY)
    assert policy.pii_operator_for(("support", "auditor")) == "hash"
    assert all(re.fullmatch("[0-9a-f]{64}", h) for h in _accounts(ibans, "frank"))


def test_a_role_whose_operator_is_encrypt_gets_the_label_in_sql(ibans):
    assert _accounts(ibans, "erin") == ["<IBAN_CODE>"] * 3


def test_encrypt_tokens_come_from_scan_results_and_never_show_the_value(
    ibans, monkeypatch: pytest.MonkeyPatch
):
    from jupyter_gov.pii.operators import KEYS_ENV

    monkeypatch.setenv(KEYS_ENV, f"hex:{secrets.token_hex(32)}")
    session = GovernedSession(Policy({**POLICY, "scan_results": True}), "erin")
    session.use_connector("db", ibans)
    [note] = session.sql(f"SELECT 'refund to {IBANS[0]}' AS note").arrow().column(0).to_pylist()
    assert note.startswith("refund to <IBAN_CODE:enc:") and IBANS[0] not in note


def test_operator_masks_can_be_written_per_tag_and_role_in_the_policy(ibans):
    data = {
        **POLICY,
        "classifications": {"iban": ["payments.account"]},
        "masks": {"iban": {"default": "replace", "support": {"function": "mask", "keep_last": 4}}},
    }
    session = GovernedSession(Policy(data), "carol")
    session.use_connector("db", ibans)
    got = session.sql("SELECT account FROM payments ORDER BY id LIMIT 1").arrow()
    assert got.column(0).to_pylist() == ["*" * (len(IBANS[0]) - 4) + IBANS[0][-4:]]


def test_operator_masks_give_the_same_values_on_every_live_engine(engine, reference):
    def policy(of):
        data = dict(of.policy().data)
        data["masks"] = {
            **data["masks"],
            "email": {"default": "replace"},
            "phone": {"default": "mask"},
            "ssn": {"default": "hash"},
        }
        return Policy(data)

    sql = "SELECT customer_id, email, phone, ssn FROM customers WHERE customer_id <= 20 ORDER BY 1"
    got = rows(engine.session("bob", policy(engine)).sql(sql))
    assert got == rows(reference.session("bob", policy(reference)).sql(sql))
    _, email, phone, ssn = got[0]
    assert email == "<EMAIL_ADDRESS>" and set(phone) == {"*"} and re.fullmatch("[0-9a-f]{64}", ssn)


def test_encrypt_is_refused_as_a_column_mask():
    from jupyter_gov.errors import PolicyError

    data = {**POLICY, "classifications": {"iban": ["payments.account"]}}
    with pytest.raises(PolicyError):
        Policy.from_text(yaml.safe_dump({**data, "masks": {"iban": {"default": "encrypt"}}}))
