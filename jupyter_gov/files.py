"""Owner-only files and directories, whatever the umask.

jupyter-gov's state (the audit store, the masking key, the token cache) is private to the
user who runs the kernel. ``mkdir(mode=...)`` and ``open(..., mode)`` are filtered by the
umask, and SQLite creates its files 0644, so modes are set explicitly after creation.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents owner-only (0700), whatever the umask.

    Directories that already exist are left as they are: they may be shared on purpose.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):  # another kernel made it first
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only (0600) if it does not exist, whatever the umask.

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's permissions,
    so making the database private first keeps all three private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
