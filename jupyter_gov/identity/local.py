"""The local provider: the OS user, unverified, for the embedded demo and single-user work."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.base import Identity


class LocalProvider:
    """Identifies the caller as the OS user, or as a named user when the policy allows it.

    Groups and attributes come from the policy's ``identity.users`` table; users it does
    not list get ``identity.default_groups``. Impersonation (``user=``) exists only here,
    and the audit always records the result as unverified.
    """

    name = "local"

    def __init__(
        self,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        default_groups: Sequence[str] = (),
        user: str | None = None,
    ) -> None:
        self.users = dict(users or {})
        self.default_groups = tuple(default_groups)
        self.user = user

    def current(self) -> Identity:
        name = self.user or _os_user()
        entry = self.users.get(name)
        groups = tuple(entry.get("groups", ())) if entry is not None else self.default_groups
        attributes = dict(entry.get("attributes", {})) if entry is not None else {}
        return Identity(
            subject=name,
            display_name=(entry or {}).get("display_name", name),
            auth_method="local",
            issuer="local",
            verified=False,
            groups=groups,
            attributes=attributes,
        )


def _os_user() -> str:
    """The name of the process's effective uid, from the password database.

    ``getpass.getuser()`` reads ``LOGNAME``/``USER`` first, so the environment would name
    the user; it is only the fallback when the uid has no passwd entry (some containers).
    """
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, OSError):
        pass
    try:
        return getpass.getuser()
    except (KeyError, OSError) as error:  # no passwd entry, as in some containers
        raise IdentityError(
            "Could not read the OS user name; set the USER environment variable or sign in "
            "with a configured identity provider."
        ) from error
