"""User-facing errors: each carries one sentence that says what happened and what to do.

Front ends show ``str(error)`` and nothing else; a traceback is for bugs, not for users.
"""

from __future__ import annotations


class GovError(Exception):
    """Base class of every error jupyter-gov raises on purpose."""


class PolicyError(GovError):
    """The policy file is missing, unreadable or does not validate."""


class IdentityError(GovError):
    """Nobody could be identified, or the identity has expired or been revoked."""


class AuditError(GovError):
    """The audit store cannot be written or read; queries fail closed."""


class ConnectionFailed(GovError):
    """The target database could not be reached or rejected the governed statement."""


class QueryFailed(GovError):
    """The database raised an error while running an allowed statement."""
