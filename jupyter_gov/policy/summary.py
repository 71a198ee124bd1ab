"""The policy as the sidebar's Policy tab shows it, for one identity.

Why here and not in the server extension: the Jupyter server summarises its own policy in
in-kernel mode, and the gateway summarises the policy it enforces for the token's owner in
gateway mode (the ``policy.summary`` Flight action). One implementation means the tab
cannot say one thing locally and another through the gateway. Nothing here imports Jupyter.

What a summary holds is :attr:`Policy.summary` (names, roles, mask labels, classification
patterns, row filter ids, approval rules; never a connection URL, a service's token digest
or the masking key), ``roles`` as a sorted list with ``role_details`` beside it, ``you``
(what applies to the given identity) and, from the audit's ``classification`` events, the
columns the PII detector found (tags and counts, never a value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jupyter_gov.errors import GovError
from jupyter_gov.identity.base import Identity
from jupyter_gov.policy.model import Policy

#: The newest ``classification`` events the Policy tab's PII findings are read from.
PII_FINDING_EVENTS = 200


def policy_summary(policy: Policy, identity: Identity | GovError) -> dict[str, Any]:
    """The policy's public summary, with ``you`` for ``identity`` (or why there is none:
    a provider that could not say who is asking is shown, not raised)."""
    summary = dict(policy.summary)
    # The shape the panel expects: role names in ``roles``, details beside them.
    summary["role_details"] = summary.get("roles") or {}
    summary["roles"] = sorted(summary["role_details"])
    if isinstance(identity, Identity):
        summary["you"] = what_applies_to(policy, identity)
    else:
        summary["you"] = {"error": str(identity)}
    return summary


def what_applies_to(policy: Policy, identity: Identity) -> dict[str, Any]:
    """The identity's roles, the mask it gets for each tag, and the approval rules it may
    trigger or decide (roles derived by the policy, never taken from the caller)."""
    roles = policy.roles_for(identity)
    return {
        "subject": identity.subject,
        "display_name": identity.display_name,
        "verified": identity.verified,
        "roles": list(roles),
        "masks": {tag: policy.mask_for_tag(tag, roles).label for tag in policy.masks}
        if roles
        else {},
        "approve": [r.id for r in policy.approval_rules if set(r.approvers) & set(roles)],
        "need_approval": [
            r.id for r in policy.approval_rules if not r.roles or set(r.roles) & set(roles)
        ],
    }


def pii_findings(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The newest finding per column among ``classification`` events (newest first), as
    tags and counts, never values; events of another shape (a result scan's counts) are
    skipped."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for event in events:
        detail = event.get("detail") or {}
        if not isinstance(detail, Mapping) or not {"table", "tag", "column"} <= set(detail):
            continue
        key = (event.get("connection"), detail.get("schema"), detail["table"], detail["column"])
        latest.setdefault(
            key,
            {
                "connection": event.get("connection"),
                "table": detail["table"],
                "column": detail["column"],
                "tag": detail["tag"],
                "confidence": detail.get("confidence"),
                "sample_size": detail.get("sample_size"),
                "proposed": bool(detail.get("proposed")),
            },
        )
    return sorted(latest.values(), key=lambda f: (str(f["connection"]), f["table"], f["column"]))
