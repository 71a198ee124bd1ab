"""Operators: replace, mask, keyed hash, reversible encrypt; keys, rotation, detokenize."""

from __future__ import annotations

import secrets

import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import MaskKeyError, PiiForbidden, TokenInvalid
from jupyter_gov.pii import service
from jupyter_gov.pii.detect import scrub_values
from jupyter_gov.pii.operators import (
    KEYS_ENV,
    KeyRing,
    PiiKey,
    detokenize,
    load_keyring,
    operator_for,
)

TEXT = "write to jane.doe@example.com or call +1 415-555-0132"


def _ring(*keys: bytes) -> KeyRing:
    return KeyRing(tuple(PiiKey(k) for k in keys))


def test_mask_replaces_each_character_with_a_star():
    assert scrub_values(["mail a@b.co now"], operator=operator_for("mask")) == ["mail ****** now"]


def test_keyed_hash_is_stable_per_key_and_differs_between_keys():
    one, two = _ring(b"k" * 16 + b"1" * 16), _ring(b"q" * 16 + b"2" * 16)
    first = scrub_values([TEXT, TEXT], operator=operator_for("hash", one))
    other = scrub_values([TEXT], operator=operator_for("hash", two))
    assert first[0] == first[1] and first[0] != other[0]
    assert "jane" not in first[0] and "555" not in first[0]


def test_encrypt_tokens_differ_each_time_and_reverse_with_the_key():
    ring = _ring(secrets.token_bytes(32))
    out = scrub_values([TEXT, TEXT], operator=operator_for("encrypt", ring))
    assert out[0] != out[1] and "jane" not in out[0]
    assert detokenize(out[0], ring) == (TEXT, 2)


def test_tokens_hold_no_digit_that_a_later_detector_could_take_for_a_number():
    ring = _ring(secrets.token_bytes(32))
    out = scrub_values([TEXT], operator=operator_for("encrypt", ring))[0]
    assert not any(c.isdigit() for c in out.removeprefix("write to ").split(" or ")[0])


def test_rotation_keeps_old_tokens_readable_while_the_old_key_stays_listed():
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    token = scrub_values([TEXT], operator=operator_for("encrypt", _ring(old)))[0]
    rotated = _ring(new, old)
    assert detokenize(token, rotated)[0] == TEXT
    fresh = scrub_values([TEXT], operator=operator_for("encrypt", rotated))[0]
    assert detokenize(fresh, _ring(new))[0] == TEXT  # new tokens use the new key
    with pytest.raises(ValueError, match="no longer in the key ring"):
        detokenize(token, _ring(new))


def test_weak_pii_keys_are_refused(tmp_path):
    with pytest.raises(MaskKeyError, match="short pattern repeated"):
        load_keyring({KEYS_ENV: "ab" * 32}, tmp_path, "UNUSED")


def test_keys_come_from_the_environment_then_the_key_file(tmp_path):
    env = {KEYS_ENV: f"hex:{secrets.token_hex(32)},hex:{secrets.token_hex(32)}"}
    assert len(load_keyring(env, tmp_path, "UNUSED").keys) == 2
    (tmp_path / "pii.keys").write_text(f"# current first\nhex:{secrets.token_hex(32)}\n")
    assert len(load_keyring({}, tmp_path, "UNUSED").keys) == 1


def test_without_pii_keys_the_key_is_derived_from_the_masking_key(tmp_path):
    env = {"JUPYTER_GOV_MASK_KEY": "test-masking-key-0123456789abcdef"}
    ring = load_keyring(env, tmp_path, "JUPYTER_GOV_MASK_KEY")
    assert ring.current.secret != env["JUPYTER_GOV_MASK_KEY"].encode()


def _policy_with_detokenizers(demo_policy, roles):
    from jupyter_gov.policy import Policy

    return Policy({**demo_policy.data, "pii": {"detokenize_roles": roles}})


def test_detokenize_is_allowed_for_listed_roles_and_audited_without_values(
    demo_policy, monkeypatch, tmp_path
):
    key = f"hex:{secrets.token_hex(32)}"
    monkeypatch.setenv(KEYS_ENV, key)
    ring = load_keyring({KEYS_ENV: key}, tmp_path, "UNUSED")
    token = scrub_values([TEXT], operator=operator_for("encrypt", ring))[0]
    session = GovernedSession(_policy_with_detokenizers(demo_policy, ["admin"]), "alice")
    assert service.detokenize(session, token) == TEXT
    events = session.audit.events(kinds=["detokenize"])
    assert [e["decision"] for e in events] == ["allow"]
    assert events[0]["detail"] == {"tokens": 2}
    assert "jane" not in str(events)


def test_detokenize_is_refused_and_audited_for_other_roles(demo_policy):
    session = GovernedSession(_policy_with_detokenizers(demo_policy, ["admin"]), "bob")
    with pytest.raises(PiiForbidden, match="may not reverse PII tokens"):
        service.detokenize(session, "<EMAIL_ADDRESS:enc:abcdefgh:abcd>")
    assert [e["decision"] for e in session.audit.events(kinds=["detokenize"])] == ["deny"]


def test_a_token_whose_key_was_rotated_out_is_one_sentence(demo_policy, monkeypatch):
    old = _ring(secrets.token_bytes(32))
    token = scrub_values([TEXT], operator=operator_for("encrypt", old))[0]
    monkeypatch.setenv(KEYS_ENV, f"hex:{secrets.token_hex(32)}")
    session = GovernedSession(_policy_with_detokenizers(demo_policy, ["admin"]), "alice")
    with pytest.raises(TokenInvalid, match="no longer in the key ring"):
        service.detokenize(session, token)
