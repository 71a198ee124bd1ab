"""What a found entity is replaced by: presidio-anonymizer's operators, applied per column.

- ``replace``: ``<EMAIL_ADDRESS>`` (presidio's default label), the same for every value.
- ``mask``: one ``*`` per character.
- ``hash``: a keyed digest ``<EMAIL_ADDRESS:kdpa...>`` (HMAC-SHA256 under the PII key):
  equal values give equal tokens, so tokens still join and count; without the key a short
  value cannot be brute-forced from its token.
- ``encrypt``: ``<EMAIL_ADDRESS:enc:KEYID:...>``, presidio's ``Encrypt`` (AES-CBC, random
  IV) under a key derived from the PII key; reversible only with the key, by
  :func:`detokenize` (``jupyter-gov detokenize``, audited).

Tokens are spelled in the letters ``a``-``p`` (hex shifted), so no later detector (phone
numbers, cards) can mistake part of a token for a number.

Keys: never in the policy. ``$JUPYTER_GOV_PII_KEYS`` holds one or more keys separated by
commas (each as :mod:`jupyter_gov.keys` accepts: 32+ bytes, ``hex:`` or ``base64:``), or
the file ``<home>/pii.keys`` holds one per line; without either, the PII key is derived
from the masking key. The *first* key encrypts and hashes; every listed key decrypts, found
by the key id in the token. Rotation: put the new key first and keep the old ones after
it until no stored token needs them (docs/pii.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from jupyter_gov import keys
from jupyter_gov.errors import MaskKeyError

KEYS_ENV = "JUPYTER_GOV_PII_KEYS"
KEYS_FILE = "pii.keys"
_TO_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_FROM_LETTERS = str.maketrans("abcdefghijklmnop", "0123456789abcdef")
TOKEN = re.compile(r"<([A-Z_]+):enc:([a-p]{8}):([a-p]+)>")


def _letters(raw: bytes) -> str:
    return raw.hex().translate(_TO_LETTERS)


def _unletters(text: str) -> bytes:
    return bytes.fromhex(text.translate(_FROM_LETTERS))


@dataclass(frozen=True)
class PiiKey:
    """One PII key: its id (in tokens), and the hash and AES keys derived from it."""

    secret: bytes

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self.secret, b"jupyter-gov pii " + label, hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        return _letters(self._derive(b"key id")[:4])

    @property
    def hash_key(self) -> bytes:
        return self._derive(b"hash v1")

    @property
    def aes_key(self) -> bytes:
        return self._derive(b"encrypt v1")


@dataclass(frozen=True)
class KeyRing:
    """The current key (first) and the older ones still accepted for detokenizing."""

    keys: tuple[PiiKey, ...]

    @property
    def current(self) -> PiiKey:
        return self.keys[0]

    def by_id(self, key_id: str) -> PiiKey | None:
        return next((k for k in self.keys if hmac.compare_digest(k.key_id, key_id)), None)


def load_keyring(environ: Mapping[str, str], home: Path, mask_key_env: str) -> KeyRing:
    """The PII keys: ``$JUPYTER_GOV_PII_KEYS``, else ``<home>/pii.keys``, else derived."""
    if KEYS_ENV in environ:
        parts = [p for p in environ[KEYS_ENV].split(",") if p.strip()]
        if not parts:
            raise MaskKeyError(f"${KEYS_ENV} is set but names no key.")
        return KeyRing(tuple(PiiKey(keys.key_from_env(KEYS_ENV, p)) for p in parts))
    path = home / KEYS_FILE
    if path.exists():
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("#")]
        if not lines:
            raise MaskKeyError(f"The PII key file {path} holds no key.")
        return KeyRing(tuple(PiiKey(keys.key_from_env(str(path), ln)) for ln in lines))
    master = keys.resolve(mask_key_env, environ, home)
    return KeyRing((PiiKey(hmac.new(master, b"jupyter-gov pii key", hashlib.sha256).digest()),))


class Operator(Protocol):
    """Replaces the matched values of one entity, a whole Arrow array at a time."""

    name: str

    def apply(self, entity: str, values: pa.Array) -> pa.Array: ...


@dataclass(frozen=True)
class ReplaceOperator:
    name: str = "replace"

    def apply(self, entity: str, values: pa.Array) -> pa.Array:
        return pa.array([f"<{entity}>"] * len(values), pa.string()) if len(values) else values

    def presidio(self) -> dict[str, object]:
        return {}


@dataclass(frozen=True)
class MaskOperator:
    name: str = "mask"
    char: str = "*"

    def apply(self, entity: str, values: pa.Array) -> pa.Array:
        return pc.binary_repeat(pa.scalar(self.char), pc.utf8_length(values))


@dataclass(frozen=True)
class HashOperator:
    """Keyed HMAC-SHA256 (16 bytes shown), in letters."""

    key: PiiKey
    name: str = "hash"

    def token(self, entity: str, value: str) -> str:
        digest = hmac.new(self.key.hash_key, value.encode(), hashlib.sha256).digest()[:16]
        return f"<{entity}:{_letters(digest)}>"

    def apply(self, entity: str, values: pa.Array) -> pa.Array:
        return pa.array([self.token(entity, v) for v in values.to_pylist()], pa.string())


@dataclass(frozen=True)
class EncryptOperator:
    """presidio's ``Encrypt`` (AES-CBC, random IV) under the current key; reversible."""

    key: PiiKey
    name: str = "encrypt"

    def token(self, entity: str, value: str) -> str:
        from presidio_anonymizer.operators import Encrypt

        cipher = Encrypt().operate(value, {"key": self.key.aes_key})
        return f"<{entity}:enc:{self.key.key_id}:{_letters(base64.urlsafe_b64decode(cipher))}>"

    def apply(self, entity: str, values: pa.Array) -> pa.Array:
        return pa.array([self.token(entity, v) for v in values.to_pylist()], pa.string())


def replace_operator() -> ReplaceOperator:
    return ReplaceOperator()


def operator_for(name: str, ring: KeyRing | None = None) -> Operator:
    """The operator called ``name``; ``hash`` and ``encrypt`` need a key ring."""
    if name == "replace":
        return ReplaceOperator()
    if name == "mask":
        return MaskOperator()
    if name in ("hash", "encrypt"):
        if ring is None:
            raise MaskKeyError(f"The {name} operator needs a PII key.")
        return HashOperator(ring.current) if name == "hash" else EncryptOperator(ring.current)
    raise ValueError(f"Unknown PII operator {name!r}; use replace, mask, hash or encrypt.")


class TokenError(ValueError):
    """A token that no key of the ring opens (rotated out, or not a token at all)."""


def detokenize(text: str, ring: KeyRing) -> tuple[str, int]:
    """``text`` with every ``encrypt`` token replaced by its value, and how many were.

    Raises :class:`TokenError` (without the token) if a token's key is not in the ring
    or it does not decrypt.
    """
    from presidio_anonymizer.operators import Decrypt

    count = 0

    def reverse(match: re.Match[str]) -> str:
        nonlocal count
        key = ring.by_id(match.group(2))
        if key is None:
            raise TokenError("A token was made with a key that is no longer in the key ring.")
        cipher = base64.urlsafe_b64encode(_unletters(match.group(3))).decode()
        try:
            value = Decrypt().operate(cipher, {"key": key.aes_key})
        except Exception as error:  # any failure means "does not decrypt"
            raise TokenError("A token does not decrypt with its key.") from error
        count += 1
        return value

    return TOKEN.sub(reverse, text), count
