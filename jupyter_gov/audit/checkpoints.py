"""Signed audit checkpoints: proof that a store was not truncated or rewritten.

The hash chain finds an edited, inserted or deleted event, but someone who holds the
database can truncate the tail, or rewrite history and recompute every hash after it, and
the chain still verifies. A checkpoint (event count, id and hash of the head) kept
elsewhere catches both, but only if the checkpoint itself cannot be forged by that same
person. So the gateway (or ``jupyter-gov audit checkpoint --sign-key FILE``) signs it with
an Ed25519 key the database holder does not have, and publishes the public key;
``jupyter-gov audit verify --checkpoint FILE --public-key FILE`` checks the signature
first and then the store against what was signed.

What is signed is the canonical JSON of :data:`SIGNED_FIELDS` behind a domain-separation
prefix, so a signature over anything else (another format, another version) never
verifies as a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jupyter_gov.audit.chain import GENESIS, VerifyReport
from jupyter_gov.audit.store import AuditReader
from jupyter_gov.errors import AuditError, CheckpointInvalid, UsageError

__all__ = ["CheckpointInvalid", "CheckpointPublisher", "sign_checkpoint", "verify_against"]

#: Signed before the payload: a signature is only ever valid as this kind of statement.
DOMAIN = b"jupyter-gov audit checkpoint v1\n"
VERSION = 1
#: The checkpoint fields the signature covers (everything but the signature and key id).
SIGNED_FIELDS = ("version", "store_id", "count", "last_id", "head", "time")


def store_id(store: AuditReader) -> str:
    """The store's identity: the hash of its first event (which fixes its whole history's
    start), or the genesis hash while it is empty."""
    own = getattr(store, "store_id", None)
    if callable(own):  # a gateway's reader: its caller may read only their own events
        return str(own())
    first = store.events(limit=1, newest_first=False)
    return str(first[0]["hash"]) if first else GENESIS


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, recorded so a reader knows which key to use."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(fields: Mapping[str, Any]) -> bytes:
    body = {name: fields[name] for name in SIGNED_FIELDS}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_checkpoint(
    store: AuditReader, private_key: Ed25519PrivateKey, *, now: float | None = None
) -> dict[str, Any]:
    """The store's current head, count and identity, signed with ``private_key``.

    The count is read before the head, so an append in between can only make the signed
    count smaller than the head's position, never larger: verification then never
    reports a truncation that did not happen.
    """
    count = int(store.count())
    last_id, head = store.head()
    fields: dict[str, Any] = {
        "version": VERSION,
        "store_id": store_id(store),
        "count": count,
        "last_id": int(last_id),
        "head": head,
        "time": round(time.time() if now is None else now, 3),
    }
    signature = private_key.sign(_message(fields))
    return {
        **fields,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(signature).decode(),
    }


def check_signature(checkpoint: Mapping[str, Any], public_key: Ed25519PublicKey) -> None:
    """Raise :class:`CheckpointInvalid` unless ``checkpoint`` was signed by ``public_key``
    exactly as it reads now."""
    try:
        if int(checkpoint["version"]) != VERSION:
            raise CheckpointInvalid(
                f"The checkpoint is of version {checkpoint['version']!r}; this jupyter-gov "
                f"reads version {VERSION}."
            )
        signature = base64.b64decode(str(checkpoint["signature"]), validate=True)
        message = _message(checkpoint)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointInvalid(
            "The checkpoint is not a signed checkpoint: a field is missing or malformed."
        ) from error
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise CheckpointInvalid(
            "The checkpoint's signature does not verify with this public key: it was edited "
            "or signed with another key."
        ) from None


def verify_against(
    store: AuditReader, checkpoint: Mapping[str, Any], public_key: Ed25519PublicKey
) -> VerifyReport:
    """Check the signature, then that the store still holds what was signed.

    A store with fewer events than signed was truncated; one whose event ``last_id`` no
    longer carries the signed hash, or whose first event changed, was rewritten.
    """
    check_signature(checkpoint, public_key)
    report = store.verify(checkpoint)
    if not report.ok:
        return report
    if int(checkpoint["count"]) and store_id(store) != checkpoint["store_id"]:
        return VerifyReport(
            False,
            report.rows,
            report.head,
            None,
            "the store's first event is not the one the checkpoint signed (another store, or "
            "its history was rewritten)",
        )
    return report


# -- keys ---------------------------------------------------------------------------------


def generate_key(path: str | Path) -> tuple[Path, Path]:
    """Write a new private key (PEM, owner-only) at ``path`` and its public key at
    ``path.pub``; refuse to overwrite an existing key."""
    private_path = Path(path).expanduser()
    public_path = private_path.with_name(private_path.name + ".pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{private_path} exists; refusing to overwrite a signing key.") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = _load(path, serialization.load_pem_private_key, "private", password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 private key.")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = _load(path, serialization.load_pem_public_key, "public")
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key.")
    return key


def _load(path: str | Path, loader: Any, what: str, **kwargs: Any) -> Any:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise UsageError(f"The {what} key file {path} cannot be read ({error.strerror}).") from None
    try:
        return loader(data, **kwargs)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not a PEM {what} key.") from None


# -- publishing -----------------------------------------------------------------------------


class CheckpointPublisher:
    """Signs the store's checkpoint into a folder, now and then every ``every`` seconds.

    The folder gets ``checkpoint-<head id>-<time>.json`` per checkpoint, ``latest.json`` and the
    public key (``public-key.pem``); point it at storage the database's holders cannot
    rewrite. A gateway runs one beside its front doors (``--checkpoint-key``); a failed
    signing is reported to ``on_error`` and retried at the next tick, never silently
    skipped.
    """

    def __init__(
        self,
        store: AuditReader,
        private_key: Ed25519PrivateKey,
        folder: str | Path,
        *,
        every: float = 300.0,
        on_error: Any = None,
    ) -> None:
        import threading

        self.store, self.key, self.every = store, private_key, every
        self.folder = Path(folder).expanduser()
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> Path:
        """Sign one checkpoint now and write it; return its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "public-key.pem").write_bytes(public_pem(self.key.public_key()))
        checkpoint = sign_checkpoint(self.store, self.key)
        text = json.dumps(checkpoint, indent=1)
        path = self.folder / f"checkpoint-{checkpoint['last_id']}-{checkpoint['time']:.3f}.json"
        path.write_text(text)
        latest = self.folder / "latest.json.tmp"
        latest.write_text(text)
        latest.replace(self.folder / "latest.json")
        return path

    def start(self) -> None:
        import threading

        self.publish()  # the first one at start-up, so a key or folder problem shows at once
        self._thread = threading.Thread(target=self._run, name="audit-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.publish()
            except (OSError, AuditError) as error:
                if self.on_error is not None:
                    self.on_error(error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
