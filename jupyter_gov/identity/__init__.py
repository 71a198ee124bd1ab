"""Who is asking: identity providers turn a sign-in into an :class:`Identity`.

Every provider returns the same immutable record, so the policy, the audit and the
approvals never care how the user signed in. Authorization keys on ``subject`` and
``issuer`` (stable ids), never on a display name.
"""

from __future__ import annotations

from jupyter_gov.identity.base import Identity, IdentityProvider
from jupyter_gov.identity.local import LocalProvider

__all__ = ["Identity", "IdentityProvider", "LocalProvider"]
