"""Build the identity provider a policy's ``identity:`` block names, and the small sign-in
API (``login``, ``whoami``, ``logout``) that the magics and the CLI call.

Secrets never come from the policy file: the msal client secret or certificate is read from
``JUPYTER_GOV_CLIENT_SECRET`` / ``JUPYTER_GOV_CLIENT_CERT``, and the client id may come from
``JUPYTER_GOV_CLIENT_ID``. ``JUPYTER_GOV_AUTH_MODE=service`` turns a pipeline's run into a
service sign-in without editing the policy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.base import Identity, IdentityProvider
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from jupyter_gov.identity.local import LocalProvider
from jupyter_gov.identity.msal_provider import (
    ENV_AUTH_MODE,
    ENV_CLIENT_ID,
    LoginChallenge,
    MsalProvider,
    credential_from_env,
)
from jupyter_gov.identity.oidc import DEFAULT_GROUP_CLAIMS
from jupyter_gov.identity.service import ServiceProvider

IMPERSONATION_REFUSED = (
    "Impersonation with --user is only allowed with the local identity provider."
)


def provider_from_config(
    config: Mapping[str, Any],
    user: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    services: Mapping[str, Any] | None = None,
) -> IdentityProvider:
    """The provider for a policy's ``identity:`` block.

    ``user=`` impersonation exists only for the local provider, whose identities are
    unverified anyway; every other provider refuses it. ``JUPYTER_GOV_AUTH_MODE=service``
    signs in as one of the policy's ``services`` (msal keeps its own client-credential
    service sign-in).
    """
    env = os.environ if env is None else env
    kind = config.get("provider", "local")
    if env.get(ENV_AUTH_MODE) == "service" and kind != "msal":
        if user is not None:
            raise IdentityError(IMPERSONATION_REFUSED)
        return ServiceProvider(services, env)
    if kind == "local":
        return LocalProvider(config.get("users"), config.get("default_groups", ()), user=user)
    if user is not None:
        raise IdentityError(IMPERSONATION_REFUSED)
    if kind == "jupyterhub":
        return JupyterHubProvider(
            cache_ttl=float(config.get("cache_ttl", 60)),
            env=env,
            api_url=config.get("api_url"),
            ca_bundle=config.get("ca_bundle"),
        )
    if kind == "msal":
        return _msal_from_config(config, env)
    raise IdentityError(f"Unknown identity provider {kind!r}; use local, jupyterhub or msal.")


def _msal_from_config(config: Mapping[str, Any], env: Mapping[str, str]) -> MsalProvider:
    mode = env.get(ENV_AUTH_MODE) or config.get("mode", "user")
    group_claims = config.get("groups_claim", DEFAULT_GROUP_CLAIMS)
    if isinstance(group_claims, str):  # "groups" means groups plus app roles, as documented
        group_claims = tuple(dict.fromkeys([group_claims, "roles"]))
    return MsalProvider(
        str(config.get("client_id") or env.get(ENV_CLIENT_ID) or ""),
        authority=config.get("authority"),
        oidc_authority=config.get("oidc_authority"),
        scope=config.get("scope"),
        audience=config.get("audience"),
        issuer=config.get("issuer"),
        tenants=tuple(config.get("tenants") or ()),
        group_claims=group_claims,
        attributes=config.get("attributes"),
        client_credential=credential_from_env(env),
        mode=str(mode),
        token_cache=config.get("token_cache"),
        require_encrypted_cache=bool(config.get("require_encrypted_cache", False)),
        redirect_uri=config.get("redirect_uri"),
        leeway=float(config.get("leeway", 60)),
        ca_bundle=config.get("ca_bundle"),
    )


def login(
    provider: IdentityProvider,
    *,
    flow: str = "device",
    timeout: float = 300.0,
    open_browser: Callable[[str], object] | None = None,
) -> Identity | LoginChallenge:
    """Start or perform a sign-in, for any front end.

    ``flow="device"`` and ``flow="auth_code"`` return a :class:`LoginChallenge` to show
    (link, code) and then ``poll()`` or ``complete()``; ``flow="browser"`` opens the browser
    on this machine and returns the :class:`Identity` once signed in. Service mode and
    providers without a sign-in step (local, jupyterhub) return the current identity.
    """
    if not isinstance(provider, MsalProvider):
        return provider.current()
    if provider.mode == "service":
        return provider.sign_in_as_service()
    if flow == "browser":
        if open_browser is None:
            return provider.sign_in_with_browser(timeout=timeout)
        return provider.sign_in_with_browser(timeout=timeout, open_browser=open_browser)
    return provider.begin_login(flow)


def whoami(provider: IdentityProvider) -> dict[str, Any]:
    """What a front end may show about the caller (the audit's fields: no token)."""
    return provider.current().audit_fields()


def logout(provider: IdentityProvider) -> bool:
    """Forget the cached sign-in; True if there was one. Local and Hub identities have no
    sign-in to forget."""
    sign_out = getattr(provider, "sign_out", None)
    return bool(sign_out()) if callable(sign_out) else False
