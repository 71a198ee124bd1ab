"""The governed entry points of the PII step: propose classifications, reverse tokens.

Both check the caller's roles first, write what they did to the audit (counts, tags and
confidences - never a value), and fail closed: an audit that cannot be written stops them.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_gov.errors import PiiForbidden, TokenInvalid
from jupyter_gov.pii.classify import ColumnFinding, profile_catalog


def propose(session: Any, connection: str | None = None) -> list[ColumnFinding]:
    """Profile every column of ``connection`` the policy did not classify; audit findings.

    Only a caller with a role allowed on the connection may, since even "this column looks
    like an SSN" is a fact about its data.
    """
    from jupyter_gov.guardrails import check_identity

    identity = session.identity
    ctx = session._context(identity, connection)
    denied = [f for f in check_identity(ctx) if f.verdict == "deny"]
    if denied:
        raise PiiForbidden(denied[0].reason)
    policy = session.policy
    connector = session.connector(ctx.connection.name)
    catalog = connector.catalog()
    todo = {
        (e.schema, e.name): [c for c in e.columns if not policy.tags_for(e.name, c, e.schema)]
        for e in {id(e): e for e in catalog.tables.values()}.values()
    }
    findings, _ = profile_catalog(connector, catalog, ctx.dialect, todo, policy.pii_sample_rows)
    for finding in findings:
        session.audit.append(
            "classification",
            connection=ctx.connection.name,
            **_who(session, identity),
            detail={**finding.audit_detail(), "proposed": True},
        )
    return findings


def detokenize(session: Any, text: str) -> str:
    """``text`` with its ``encrypt`` tokens reversed, for a role in ``pii.detokenize_roles``.

    Allowed and refused attempts are both audited, with the number of tokens only.
    """
    from jupyter_gov.audit import default_home
    from jupyter_gov.pii.operators import TOKEN, TokenError, load_keyring
    from jupyter_gov.pii.operators import detokenize as reverse

    identity = session.identity
    policy = session.policy
    roles = policy.roles_for(identity)
    tokens = len(TOKEN.findall(text))
    allowed = bool(set(roles) & set(policy.detokenize_roles))
    session.audit.append(
        "detokenize",
        **_who(session, identity),
        decision="allow" if allowed else "deny",
        rules=["pii-detokenize"],
        detail={"tokens": tokens},
    )
    if not allowed:
        raise PiiForbidden(
            f"{identity.display_name} may not reverse PII tokens: no role of yours is in the "
            "policy's pii.detokenize_roles."
        )
    ring = load_keyring(os.environ, default_home(), policy.mask_key_env)
    try:
        return reverse(text, ring)[0]
    except TokenError as error:
        raise TokenInvalid(str(error)) from None


def _who(session: Any, identity: Any) -> dict[str, Any]:
    from jupyter_gov.audit import FIELDS

    policy = session.policy
    return {
        **{k: v for k, v in identity.audit_fields().items() if k in FIELDS},
        "roles": list(policy.roles_for(identity)),
        "policy_name": policy.name,
        "policy_version": policy.short_hash,
        "policy_hash": policy.hash,
        "session_id": getattr(session, "session_id", None),
    }
