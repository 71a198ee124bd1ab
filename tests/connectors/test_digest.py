"""``masking: {digest: md5}``: an opt-in keyed MD5 for ``hash`` and ``token`` masks.

The default stays keyed SHA-256, so pseudonyms saved before stay valid. With ``md5`` every
live engine returns DuckDB's value for the same key and value (value by value, as the
SHA-256 masks are checked in ``test_live_governance``), the digest is ``md5(key || value)``
with the session's 256-bit key in front, and an engine whose MD5 spelling is not checked
refuses the statement instead of guessing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlglot import exp

from jupyter_gov.connectors.profile import MaskUnsupported
from jupyter_gov.demo import demo_tables
from jupyter_gov.errors import PolicyError
from jupyter_gov.masking import mask_expression
from jupyter_gov.policy import MaskSpec, Policy
from tests.connectors.conftest import Engine
from tests.test_policy import MINIMAL  # the smallest valid policy

SQL = (
    "SELECT customer_id, full_name, city FROM customers "
    "WHERE customer_id <= 200 ORDER BY customer_id"
)


def rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in result.fetchall()]


def with_digest(policy: Policy, digest: str) -> Policy:
    data = dict(policy.data)
    data["masking"] = {**(data.get("masking") or {}), "digest": digest}
    return Policy(data)


def test_md5_tokens_and_hashes_are_duckdbs_on_every_engine(
    engine: Engine, reference: Engine
) -> None:
    got = rows(engine.session("bob", with_digest(engine.policy(), "md5")).sql(SQL))
    assert len(got) == 200
    assert got == rows(reference.session("bob", with_digest(reference.policy(), "md5")).sql(SQL))


def test_md5_token_is_md5_of_the_key_then_the_value(reference: Engine) -> None:
    session = reference.session("bob", with_digest(reference.policy(), "md5"))
    key = session.keys.params()["g_k1"]
    customers = demo_tables()["customers"].slice(0, 5)
    raw = dict(zip(customers["customer_id"].to_pylist(), customers["full_name"].to_pylist()))
    sql = f"SELECT customer_id, full_name FROM customers WHERE customer_id IN {tuple(raw)}"
    assert dict(rows(session.sql(sql))) == {
        i: f"person_name_{hashlib.md5((key + name).encode()).hexdigest()[:12]}"
        for i, name in raw.items()
    }


def test_the_default_digest_is_still_sha256(reference: Engine) -> None:
    """Saved pseudonyms keep joining: no policy change, no token change."""
    default = dict(rows(reference.session("bob").sql(SQL.replace(", city", ""))))
    sha256 = dict(
        rows(
            reference.session("bob", with_digest(reference.policy(), "sha256")).sql(
                SQL.replace(", city", "")
            )
        )
    )
    md5 = dict(
        rows(
            reference.session("bob", with_digest(reference.policy(), "md5")).sql(
                SQL.replace(", city", "")
            )
        )
    )
    assert default == sha256
    assert not set(default.values()) & set(md5.values())


def test_an_engine_without_a_checked_md5_refuses_it_in_one_sentence() -> None:
    with pytest.raises(MaskUnsupported, match="The token mask cannot be rendered for Trino"):
        mask_expression(
            MaskSpec("token"), exp.column("c"), exp.DataType.build("TEXT"), "t", "trino", "md5"
        )


def test_a_digest_other_than_sha256_or_md5_is_refused_by_the_schema() -> None:
    text = MINIMAL + "masking: {digest: sha1}\n"
    with pytest.raises(PolicyError, match=r"masking\.digest"):
        Policy.from_text(text, "p.yaml")
