"""Signed audit checkpoints: someone holding only the database cannot truncate or rewrite
the log unnoticed, nor forge the checkpoint that would hide it.

Each tampering test first shows that the hash chain alone still verifies (the attacker
recomputed or simply cut it), then that the signed checkpoint catches it.
"""

from __future__ import annotations

import json
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jupyter_gov.audit import AuditStore
from jupyter_gov.audit.chain import FIELDS, row_hash
from jupyter_gov.audit.checkpoints import (
    CheckpointInvalid,
    generate_key,
    load_private_key,
    load_public_key,
    sign_checkpoint,
    verify_against,
)
from jupyter_gov.cli import main
from jupyter_gov.errors import UsageError
from tests.conftest import raw_sql

EVENTS = 6


@pytest.fixture
def store(store_url: str) -> AuditStore:
    store = AuditStore(store_url)
    for n in range(EVENTS):
        store.append("attempt", query_id=f"q{n}", subject="bob", statement="SELECT ?")
    return store


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def rewrite_history(store: AuditStore, event_id: int, subject: str) -> None:
    """What a database holder can do: change one event and recompute every hash after it."""
    columns = ", ".join(("id", *FIELDS, "prev_hash", "hash"))
    rows = raw_sql(store, f"SELECT {columns} FROM events ORDER BY id")
    prev = None
    for values in rows:
        row = dict(zip(("id", *FIELDS, "prev_hash", "hash"), values))
        if row["id"] == event_id:
            row["subject"] = subject
        if row["id"] >= event_id:
            row["prev_hash"] = prev if prev is not None else row["prev_hash"]
            row["hash"] = row_hash(row["prev_hash"], {n: row[n] for n in FIELDS})
            raw_sql(
                store,
                "UPDATE events SET subject = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (row["subject"], row["prev_hash"], row["hash"], row["id"]),
            )
        prev = row["hash"]


def test_a_valid_signed_checkpoint_verifies_after_later_appends(store, key):
    checkpoint = sign_checkpoint(store, key)
    store.append("attempt", query_id="later", subject="carol")
    report = verify_against(store, checkpoint, key.public_key())
    assert report.ok and report.rows == EVENTS + 1


def test_a_truncated_tail_is_detected(store, key):
    checkpoint = sign_checkpoint(store, key)
    raw_sql(store, "DELETE FROM events WHERE id > (SELECT min(id) + 2 FROM events)")
    assert store.verify().ok  # the remaining chain is intact: only the checkpoint knows
    report = verify_against(store, checkpoint, key.public_key())
    assert not report.ok and "truncated" in report.reason


def test_rewritten_history_with_recomputed_hashes_is_detected(store, key):
    checkpoint = sign_checkpoint(store, key)
    first_id = store.events(limit=1, newest_first=False)[0]["id"]
    rewrite_history(store, first_id + 1, subject="mallory")
    assert store.verify().ok  # every link was recomputed: the chain alone is fooled
    report = verify_against(store, checkpoint, key.public_key())
    assert not report.ok and "no longer in the log" in report.reason


def test_a_checkpoint_signed_with_another_key_is_rejected(store, key):
    forged = sign_checkpoint(store, Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointInvalid, match="does not verify"):
        verify_against(store, forged, key.public_key())


@pytest.mark.parametrize(
    "field, value", [("count", 2), ("head", "0" * 64), ("last_id", 1), ("time", 0.0)]
)
def test_an_edited_checkpoint_field_is_rejected(store, key, field, value):
    checkpoint = {**sign_checkpoint(store, key), field: value}
    with pytest.raises(CheckpointInvalid, match="does not verify"):
        verify_against(store, checkpoint, key.public_key())


def test_a_checkpoint_of_another_store_fails_against_this_one(store, key, tmp_path):
    other = AuditStore(f"sqlite:///{tmp_path / 'other.sqlite'}")
    for n in range(EVENTS + 2):
        other.append("attempt", query_id=f"o{n}", subject="dave")
    report = verify_against(store, sign_checkpoint(other, key), key.public_key())
    assert not report.ok


# -- the command line ---------------------------------------------------------------------


def test_cli_keygen_checkpoint_and_verify_round_trip(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    store = AuditStore(url)
    for n in range(3):
        store.append("attempt", query_id=f"q{n}")
    signing = tmp_path / "gateway.key"
    assert main(["audit", "keygen", str(signing)]) == 0
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["audit", "checkpoint", "--store", url, "--sign-key", str(signing)]) == 0
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(capsys.readouterr().out)
    assert json.loads(checkpoint.read_text())["count"] == 3
    verify = ["audit", "verify", "--store", url, "--checkpoint", str(checkpoint)]
    assert main([*verify, "--public-key", f"{signing}.pub"]) == 0
    raw_sql(store, "DELETE FROM events WHERE id = (SELECT max(id) FROM events)")
    assert main([*verify, "--public-key", f"{signing}.pub"]) == 1
    assert "truncated" in capsys.readouterr().out


def test_cli_refuses_a_signed_checkpoint_without_the_public_key(tmp_path, capsys, key):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    store = AuditStore(url)
    store.append("attempt", query_id="q")
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps(sign_checkpoint(store, key)))
    assert main(["audit", "verify", "--store", url, "--checkpoint", str(checkpoint)]) == 2
    assert "give the signer's --public-key" in capsys.readouterr().err


def test_cli_reports_a_forged_checkpoint_in_one_sentence(tmp_path, capsys, key):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    store = AuditStore(url)
    store.append("attempt", query_id="q")
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({**sign_checkpoint(store, key), "count": 0}))
    public = tmp_path / "signer.pub"
    from jupyter_gov.audit.checkpoints import public_pem

    public.write_bytes(public_pem(key.public_key()))
    verify = ["audit", "verify", "--store", url, "--checkpoint", str(checkpoint)]
    assert main([*verify, "--public-key", str(public)]) == 1
    err = capsys.readouterr().err
    assert "signature does not verify" in err and "Traceback" not in err


def test_keygen_refuses_to_overwrite_a_key_and_keys_load_back(tmp_path):
    private, public = generate_key(tmp_path / "k")
    with pytest.raises(UsageError, match="refusing to overwrite"):
        generate_key(tmp_path / "k")
    assert load_private_key(private).public_key() == load_public_key(public)
    with pytest.raises(UsageError, match="not a PEM public key"):
        load_public_key(private)


def test_a_publisher_writes_signed_checkpoints_and_the_public_key(store, key, tmp_path):
    from jupyter_gov.audit.checkpoints import CheckpointPublisher

    publisher = CheckpointPublisher(store, key, tmp_path / "published", every=3600)
    first = publisher.publish()
    store.append("attempt", query_id="between")
    second = publisher.publish()
    latest = json.loads((tmp_path / "published" / "latest.json").read_text())
    assert latest == json.loads(second.read_text()) and first != second
    public = load_public_key(tmp_path / "published" / "public-key.pem")
    for path in (first, second):
        assert verify_against(store, json.loads(path.read_text()), public).ok
