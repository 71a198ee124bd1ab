"""The policy: who holds which role, what is masked for whom, what is denied or needs approval."""

from __future__ import annotations

from jupyter_gov.policy.loader import parse_policy, schema
from jupyter_gov.policy.model import (
    ApprovalRule,
    Connection,
    MaskSpec,
    Policy,
    Role,
    RowFilter,
)

__all__ = [
    "ApprovalRule",
    "Connection",
    "MaskSpec",
    "Policy",
    "Role",
    "RowFilter",
    "parse_policy",
    "schema",
]
