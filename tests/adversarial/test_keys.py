"""The masking key: created once and atomically, never read half-written, never weak."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_gov import keys
from jupyter_gov.errors import GovError
from jupyter_gov.keys import MaskKeyError

PROCESSES = 8
TRIALS = 40


def _race(barrier, homes: list[str], out) -> None:
    """One contender: at each trial, wait for all the others, then ask for the key."""
    for home in homes:
        barrier.wait()
        try:
            out.put((home, keys.home_key(Path(home)).hex()))
        except GovError as error:  # a refusal is a result too: the test then fails on it
            out.put((home, f"error: {error}"))


def test_concurrent_first_use_agrees_on_one_full_key(tmp_path: Path) -> None:
    """8 processes released together at first use, 40 times: one 32-byte key each time."""
    context = multiprocessing.get_context("spawn")
    homes = [str(tmp_path / f"trial-{i}" / "home") for i in range(TRIALS)]
    barrier = context.Barrier(PROCESSES)
    out = context.Queue()
    workers = [context.Process(target=_race, args=(barrier, homes, out)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    seen: dict[str, set[str]] = {}
    for _ in range(PROCESSES * TRIALS):
        home, key = out.get(timeout=120)
        seen.setdefault(home, set()).add(key)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert set(seen) == set(homes)
    for home, found in seen.items():
        assert len(found) == 1, f"{home}: the contenders disagree: {sorted(found)}"
        (key,) = found
        assert not key.startswith("error"), key
        assert len(bytes.fromhex(key)) == keys.FILE_KEY_BYTES
        assert (Path(home) / keys.KEY_FILE).read_bytes().hex() == key
        assert not [p for p in Path(home).iterdir() if p.name != keys.KEY_FILE]  # no temp left


@pytest.mark.parametrize("size", [0, 1, 16, 31, 33])
def test_short_or_long_key_file_is_an_error_not_a_key(tmp_path: Path, size: int) -> None:
    (tmp_path / keys.KEY_FILE).write_bytes(b"k" * size)
    os.chmod(tmp_path / keys.KEY_FILE, 0o600)
    with pytest.raises(MaskKeyError, match=f"holds {size} bytes instead of 32") as error:
        keys.home_key(tmp_path)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_empty_key_file_is_never_replaced_silently(tmp_path: Path) -> None:
    """A truncated file may hide a lost key: refusing keeps old tokens from changing."""
    (tmp_path / keys.KEY_FILE).write_bytes(b"")
    os.chmod(tmp_path / keys.KEY_FILE, 0o600)
    with pytest.raises(MaskKeyError):
        keys.home_key(tmp_path)
    assert (tmp_path / keys.KEY_FILE).read_bytes() == b""


@pytest.mark.parametrize(
    "value",
    ["", "x", "short-key", "a" * 31, "abababababababababababababababab", "hex:" + "ab" * 31],
)
def test_empty_short_or_repetitive_env_key_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(MaskKeyError, match="JUPYTER_GOV_MASK_KEY") as error:
        keys.resolve("JUPYTER_GOV_MASK_KEY", {"JUPYTER_GOV_MASK_KEY": value}, tmp_path)
    message = str(error.value)
    assert "secrets.token_hex(32)" in message
    if len(value) > 3:
        assert value not in message  # the refused key is not echoed back
    assert not (tmp_path / keys.KEY_FILE).exists()  # no silent fallback to the file


def test_malformed_encoded_env_key_is_refused(tmp_path: Path) -> None:
    for value in ("hex:zz" + "0" * 64, "base64:%%%"):
        with pytest.raises(MaskKeyError, match="is not valid"):
            keys.resolve("K", {"K": value}, tmp_path)


def test_32_byte_env_keys_are_accepted_raw_hex_and_base64(tmp_path: Path) -> None:
    raw = "test-masking-key-0123456789abcdef"
    assert keys.resolve("K", {"K": raw}, tmp_path) == raw.encode()
    secret = os.urandom(32)
    assert keys.resolve("K", {"K": "hex:" + secret.hex()}, tmp_path) == secret
    import base64

    encoded = "base64:" + base64.b64encode(secret).decode()
    assert keys.resolve("K", {"K": encoded}, tmp_path) == secret


def test_the_suggested_command_makes_an_accepted_key(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-c", "import secrets; print(secrets.token_hex(32))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert keys.resolve("K", {"K": made}, tmp_path) == made.encode()


def test_unset_env_key_uses_the_private_key_file(tmp_path: Path) -> None:
    first = keys.resolve("K", {}, tmp_path / "home")
    assert first == keys.resolve("K", {}, tmp_path / "home")
    assert len(first) == 32
    assert (tmp_path / "home" / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_key_file_and_home_are_private_under_umask_000(tmp_path: Path) -> None:
    """Run in a child with umask 0, so the test process's umask is never changed."""
    home = tmp_path / "a" / "home"
    code = (
        "import os, sys; from pathlib import Path; os.umask(0); "
        "from jupyter_gov import keys; keys.home_key(Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(home)], check=True, env=_child_env())
    assert home.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    assert (home / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_weak_env_key_stops_a_masked_query_with_one_sentence(session_for, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTER_GOV_MASK_KEY", "k")
    session = session_for("bob")
    with pytest.raises(MaskKeyError, match="too short") as error:
        session.sql("SELECT full_name FROM customers LIMIT 1")
    assert "\n" not in str(error.value)
    results = session.audit.events(kinds=["result"], limit=1)
    assert results and "too short" in results[0]["error"]


def test_unmasked_query_does_not_need_the_key(session_for, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTER_GOV_MASK_KEY", "")
    assert session_for("bob").sql("SELECT count(*) AS n FROM orders").fetchall() == [(50000,)]


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A key file readable by the group or others is a key someone else may know."""
    key_file = tmp_path / keys.KEY_FILE
    key_file.write_bytes(os.urandom(32))
    for mode in (0o644, 0o640, 0o606):
        os.chmod(key_file, mode)
        with pytest.raises(MaskKeyError, match="cannot be trusted"):
            keys.home_key(tmp_path)
    os.chmod(key_file, 0o600)
    assert len(keys.home_key(tmp_path)) == 32


def test_planted_symlink_key_file_is_refused(tmp_path: Path) -> None:
    """A symlink planted at mask.key (pointing at a key the planter knows) is not followed."""
    known = tmp_path / "planted"
    known.write_bytes(b"k" * 32)
    os.chmod(known, 0o600)
    home = tmp_path / "home"
    home.mkdir()
    (home / keys.KEY_FILE).symlink_to(known)
    with pytest.raises(MaskKeyError, match="cannot be read"):
        keys.home_key(home)
