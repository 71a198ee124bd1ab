"""The identity record and the provider interface shared by every sign-in method."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: How the policy's own principals (``services:``, ``agents:``) sign in, and their issuer.
SERVICE_AUTH = "service-token"
AGENT_AUTH = "agent"
PRINCIPAL_ISSUER = "jupyter-gov"


@dataclass(frozen=True)
class Identity:
    """A signed-in principal, as the policy and the audit see it.

    ``subject`` and ``issuer`` are the stable ids authorization keys on; ``display_name``
    is for humans only. ``verified`` is False for the local OS user, whose claims nobody
    checked. ``groups`` and ``attributes`` feed role mapping and row filters.
    """

    subject: str
    display_name: str
    auth_method: str
    issuer: str = "local"
    verified: bool = False
    groups: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    kind: str = "user"  # "user", "service" or "agent"
    on_behalf_of: Identity | None = None  # the signed-in user an agent acts for

    @property
    def key(self) -> str:
        """A stable digest of everything that can change a decision, for caches."""
        payload = json.dumps(
            [
                self.issuer,
                self.subject,
                sorted(self.groups),
                self.attributes,
                self.verified,
                self.on_behalf_of.key if self.on_behalf_of else None,
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def audit_fields(self) -> dict[str, Any]:
        """What the audit records about the caller: never a token or a secret."""
        return {
            "subject": self.subject,
            "display_name": self.display_name,
            "auth_method": self.auth_method,
            "issuer": self.issuer,
            "verified": self.verified,
            "groups": list(self.groups),
            "token_expires_at": self.expires_at,
            "identity_kind": self.kind,
        }

    def delegation(self) -> dict[str, Any] | None:
        """Who an agent acts for, as the audit's ``detail.on_behalf_of`` records it."""
        if self.on_behalf_of is None:
            return None
        user = self.on_behalf_of.audit_fields()
        return {k: user[k] for k in _DELEGATE_FIELDS}


#: What the audit keeps about the user an agent acts for (stored in the event's detail).
_DELEGATE_FIELDS = ("subject", "display_name", "auth_method", "issuer", "verified")


@runtime_checkable
class IdentityProvider(Protocol):
    """Something that can say who the current caller is.

    ``current()`` returns a fresh, unexpired identity (refreshing silently if it can) or
    raises :class:`jupyter_gov.errors.IdentityError` with a sentence saying how to sign in.
    """

    name: str

    def current(self) -> Identity: ...
