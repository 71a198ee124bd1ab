"""The masking key: where it comes from, and why a weak or half-written one is refused.

Tokens and hashes are HMACs under this key, so anyone who knows (or can guess) it can
reverse them by dictionary: an empty or short key is as good as none. The key is either
the value of the policy's key variable (``$JUPYTER_GOV_MASK_KEY`` by default) or a
per-installation file ``<home>/mask.key`` of 32 random bytes.

Environment values are used as their UTF-8 bytes and must be at least 32 bytes long and
not one short pattern repeated; ``hex:<hex digits>`` and ``base64:<base64>`` give the
bytes in those encodings instead (at least 32 bytes after decoding). Make one with
``python -c "import secrets; print(secrets.token_hex(32))"``.

The key file is created atomically: 32 random bytes go to a private temporary file in the
same directory, are ``fsync``-ed, then ``link``-ed to ``mask.key``, which fails if another
process won the race, in which case the winner's complete file is read. A reader therefore
never sees a partly written key, and a file that is short anyway (truncated by hand, a
crash of an older version) is an error, never a key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from jupyter_gov.errors import MaskKeyError  # importable from here as before
from jupyter_gov.files import private_dir

#: The shortest key accepted, in bytes after decoding.
MIN_KEY_BYTES = 32
#: Fewer distinct bytes than this is a repeated pattern ("aaaa...", "abab..."), not a key.
MIN_DISTINCT_BYTES = 8
#: The key file holds exactly this many random bytes.
FILE_KEY_BYTES = 32

KEY_FILE = "mask.key"
MAKE_ONE = 'python -c "import secrets; print(secrets.token_hex(32))"'


def derived_keys(secret: bytes) -> dict[str, str]:
    """The bound parameters masks use, derived by HMAC so the key itself is never bound."""
    return {"g_k1": hmac.new(secret, b"jupyter-gov mask key v1", hashlib.sha256).hexdigest()}


class KeyRing:
    """The masking key parameters of one session, resolved on first use and then kept.

    Why lazy: a session whose statements use no keyed mask never reads (or creates) the
    key file, and one that does reads it once, not per statement.
    """

    def __init__(self, env_name: str, environ: Mapping[str, str], home: Callable[[], Path]) -> None:
        self._env_name = env_name
        self._environ = environ
        self._home = home
        self._params: dict[str, str] | None = None

    def params(self) -> dict[str, str]:
        """The bound parameters masks use (see :func:`derived_keys`)."""
        if self._params is None:
            self._params = derived_keys(resolve(self._env_name, self._environ, self._home()))
        return self._params


def resolve(env_name: str, environ: Mapping[str, str], home: Path) -> bytes:
    """The masking key: from ``env_name`` if it is set (even to ""), else the home key file."""
    if env_name in environ:
        return key_from_env(env_name, environ[env_name])
    return home_key(home)


def key_from_env(env_name: str, value: str) -> bytes:
    """Decode and check a key given in the environment; raise :class:`MaskKeyError`."""
    kind, secret = _decode(env_name, value.strip())
    if len(secret) < MIN_KEY_BYTES:
        raise MaskKeyError(
            f"{env_name} is too short ({len(secret)} bytes{kind}, at least {MIN_KEY_BYTES} are "
            f"needed); set it to a random key, e.g. the output of {MAKE_ONE}."
        )
    if len(set(secret)) < MIN_DISTINCT_BYTES:
        raise MaskKeyError(
            f"{env_name} is a short pattern repeated, not a random key; set it to the "
            f"output of {MAKE_ONE}."
        )
    return secret


def _decode(env_name: str, value: str) -> tuple[str, bytes]:
    try:
        if value.startswith("hex:"):
            return " after hex decoding", bytes.fromhex(value[4:])
        if value.startswith("base64:"):
            return " after base64 decoding", base64.b64decode(value[7:], validate=True)
    except (ValueError, binascii.Error) as error:
        raise MaskKeyError(
            f"{env_name} is not valid {value.split(':', 1)[0]}; set it to the output of {MAKE_ONE}."
        ) from error
    return "", value.encode()


def home_key(home: Path) -> bytes:
    """The per-installation key in ``home``, created atomically on first use."""
    path = home / KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _unreadable(path, error) from error
    try:
        private_dir(home)
        _create_key_file(path)
        return _read_key_file(path)
    except OSError as error:
        raise _unreadable(path, error) from error


def _read_key_file(path: Path) -> bytes:
    """Read the key, refusing a symlink, a file of another user and one others can read or
    write: in a shared or pre-created home such a file is a key someone else knows."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise MaskKeyError(
                f"The masking key file {path} belongs to another user or others may read or "
                "write it, so it cannot be trusted; remove it (or chmod 600 your own) and "
                "run again."
            )
        key = b""
        while chunk := os.read(fd, 4096):
            key += chunk
    finally:
        os.close(fd)
    if len(key) != FILE_KEY_BYTES:
        raise MaskKeyError(
            f"The masking key file {path} holds {len(key)} bytes instead of "
            f"{FILE_KEY_BYTES}; restore it from a backup (tokens made with the old key "
            "change otherwise) or delete it to create a new one."
        )
    return key


def _create_key_file(path: Path) -> None:
    """Write a fresh key to a private temporary file and link it into place.

    ``link`` fails if ``path`` exists, so exactly one process's complete file wins; the
    others drop theirs and read the winner's.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask was
        view = memoryview(secrets.token_bytes(FILE_KEY_BYTES))
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync-ed
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unreadable(path: Path, error: OSError) -> MaskKeyError:
    return MaskKeyError(
        f"The masking key at {path} cannot be read or created ({error.strerror}); fix the "
        "file's permissions or set JUPYTER_GOV_MASK_KEY."
    )
