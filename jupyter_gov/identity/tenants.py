"""Multi-tenant authorities: which ones accept tokens from any tenant, and the issuer of one.

Entra's ``common``, ``organizations`` and ``consumers`` authorities (and any issuer written
as a ``{tenantid}`` template) accept sign-ins from every tenant in the world, so a role
named ``admins`` in a stranger's tenant would look like ours. A policy on such an authority
must list the tenant ids it trusts (``identity.tenants``); kept free of network imports so
the policy loader can ask without pulling in an HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

#: Entra authority path segments that stand for "any tenant".
MULTI_TENANT_SEGMENTS = frozenset({"common", "organizations", "consumers"})

ENTRA_ISSUER = "https://login.microsoftonline.com/{tenantid}/v2.0"


def is_multi_tenant(authority: str | None, issuers: Iterable[str] = ()) -> bool:
    """True if ``authority`` (or any expected issuer) accepts tokens from any tenant."""
    if authority:
        segments = [s for s in urlparse(authority).path.split("/") if s]
        if segments and segments[0].lower() in MULTI_TENANT_SEGMENTS:
            return True
    return any("{tenantid}" in issuer for issuer in issuers)


def config_is_multi_tenant(config: Mapping[str, Any]) -> bool:
    """The same question for a policy's ``identity:`` block."""
    issuer = config.get("issuer")
    issuers = [issuer] if isinstance(issuer, str) else list(issuer or ())
    return is_multi_tenant(config.get("authority") or config.get("oidc_authority"), issuers)
