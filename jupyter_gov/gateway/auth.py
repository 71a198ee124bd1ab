"""Who is calling the gateway: a bearer token on every call, validated here, never claimed.

The kernel sends ``authorization: Bearer <token>``; the gateway decides what the token is and
checks it with the party that issued it:

* a JWT is an OIDC / Entra ID access token, checked for signature, issuer, audience, expiry
  and tenant by :class:`jupyter_gov.identity.oidc.TokenValidator`, as the ``msal`` provider
  does in a kernel;
* ``service:<name>:<secret>`` is a service principal of the policy's ``services:``, proven by
  the secret whose SHA-256 the policy lists (:class:`jupyter_gov.identity.service.ServiceProvider`);
* anything else is a JupyterHub API token, and the Hub says who owns it (``GET /user``, as
  :class:`jupyter_gov.identity.jupyterhub.JupyterHubProvider` does in a single-user server).

The same token gets the same ``auth_method`` through every door and as the ``msal``
provider labels it in a kernel: a person's OIDC token is ``msal``
(:data:`OIDC_USER_AUTH`), an application's client-credentials token is
``msal-client-credentials`` (:data:`OIDC_APP_AUTH`, ``kind: service``), a service's secret
``service-token``, a Hub token ``jupyterhub``.

Only the kinds the policy's ``gateway.auth`` lists are accepted (an allow-list; by default
the kind the policy's identity provider implies, plus ``service`` when services exist). A
rejected token is one sentence that never includes the token. There is no ``--user`` and no
header naming a user: the identity is whatever the token proves.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow.flight as flight

from jupyter_gov.errors import IdentityError, PolicyError, TokenRejected
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from jupyter_gov.identity.oidc import (
    DEFAULT_GROUP_CLAIMS,
    TokenValidator,
    audience_for_scope,
    identity_from_claims,
)
from jupyter_gov.identity.service import ServiceProvider, _token_matches
from jupyter_gov.policy import Policy

KINDS = ("oidc", "jupyterhub", "service")
SERVICE_PREFIX = "service:"
#: ``auth_method`` of a person proven by an OIDC token (the msal provider's label for a
#: token it validated; its sign-in flows add ``-device-code`` / ``-auth-code``).
OIDC_USER_AUTH = "msal"
#: ``auth_method`` of an application proven by a client-credentials token (as the msal
#: provider's service mode labels its own).
OIDC_APP_AUTH = "msal-client-credentials"
_HUB_CACHE = 256


def default_kinds(policy: Policy) -> tuple[str, ...]:
    """The token kinds a gateway accepts when the policy's ``gateway.auth`` says nothing."""
    provider = policy.identity_config.get("provider", "local")
    kinds = {"msal": ("oidc",), "jupyterhub": ("jupyterhub",)}.get(provider, ())
    return (*kinds, "service") if policy.services else kinds


def is_app_token(claims: Mapping[str, Any]) -> bool:
    """Whether validated claims are an application's own (client credentials), not a person's.

    Entra ID says so in ``idtyp`` (``app`` or ``user``) when configured to; otherwise its
    application tokens carry the service principal's ``oid`` as ``sub`` (a person's ``sub``
    is pairwise, never their ``oid``). Other issuers name the client itself as the subject
    (RFC 9068: ``sub`` is the client id when no person is involved).
    """
    kind = claims.get("idtyp")
    if kind in ("app", "user"):
        return kind == "app"
    subject = claims.get("sub")
    if not subject:
        return False
    if claims.get("oid") == subject:
        return True
    return subject in {claims.get(c) for c in ("azp", "appid", "client_id")} - {None, ""}


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2])


class Authenticator:
    """Turns a bearer token into a verified :class:`Identity`, or raises one sentence."""

    def __init__(self, policy: Policy, *, clock: Callable[[], float] = time.time) -> None:
        config: Mapping[str, Any] = policy.gateway_config
        self.policy = policy
        self.kinds = tuple(config.get("auth") or default_kinds(policy))
        identity = policy.identity_config
        oidc = {
            **(identity if identity.get("provider") == "msal" else {}),
            **config.get("oidc", {}),
        }
        self._validator: TokenValidator | None = None
        self._audience: Any = None
        if "oidc" in self.kinds:
            authority = oidc.get("oidc_authority") or oidc.get("authority")
            audience = oidc.get("audience") or (
                audience_for_scope(oidc["scope"]) if oidc.get("scope") else oidc.get("client_id")
            )
            if not authority or not audience:
                raise PolicyError(
                    "The gateway accepts OIDC tokens but the policy names no authority or "
                    "audience; set gateway.oidc.authority and gateway.oidc.audience."
                )
            self._validator = TokenValidator(
                str(authority),
                issuer=oidc.get("issuer"),
                tenants=tuple(oidc.get("tenants") or ()),
                leeway=float(oidc.get("leeway", 60)),
                clock=clock,
                ca_bundle=oidc.get("ca_bundle"),
            )
            self._audience = audience
        groups = oidc.get("groups_claim", DEFAULT_GROUP_CLAIMS)
        self._group_claims = (groups, "roles") if isinstance(groups, str) else tuple(groups)
        self._attributes = oidc.get("attributes")
        hub_inherited = identity if identity.get("provider") == "jupyterhub" else {}
        hub = {**hub_inherited, **config.get("jupyterhub", {})}
        self._hub_url = str(hub.get("api_url") or "")
        self._hub_ca = hub.get("ca_bundle")
        self._hub_ttl = float(hub.get("cache_ttl", 60))
        if "jupyterhub" in self.kinds and not self._hub_url:
            raise PolicyError(
                "The gateway accepts JupyterHub tokens but the policy names no Hub; set "
                "gateway.jupyterhub.api_url (the Hub's /hub/api URL)."
            )
        self._hub_cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()
        self.clock = clock

    def identify(self, authorization: str | None) -> Identity:
        """The identity the ``authorization`` header's bearer token proves."""
        if not authorization:
            raise IdentityError("The gateway needs a bearer token on every call; none was sent.")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise IdentityError("The gateway accepts only 'Bearer <token>' authorization.")
        if token.startswith(SERVICE_PREFIX):
            return self._service(token)
        if _is_jwt(token):
            return self._oidc(token)
        return self._hub(token)

    def authenticate(self, password: str) -> Identity:
        """The identity a password that is a bearer token proves (the PostgreSQL door).

        The same kinds, checked the same way as a Flight call's header; a service's secret
        alone (without ``service:<name>:``) is accepted too, as ``jupyter-gov gateway
        pgwire`` accepts it. Any failure is an :class:`IdentityError` without the token.
        """
        token = password.strip()
        if not token:
            raise TokenRejected("Send a bearer token as the password; none was given.")
        if not token.startswith(SERVICE_PREFIX) and "service" in self.kinds:
            for service in self.policy.services.values():
                if _token_matches(token, service.token_sha256):
                    return self._service(f"{SERVICE_PREFIX}{service.name}:{token}")
        try:
            return self.identify(f"Bearer {token}")
        except IdentityError:
            raise
        except Exception as error:  # an issuer or Hub that cannot be reached, a bad answer
            raise IdentityError(
                f"The gateway could not validate the token ({type(error).__name__})."
            ) from None

    def _refuse(self, kind: str) -> IdentityError:
        accepted = ", ".join(self.kinds) or "none"
        return IdentityError(
            f"This gateway does not accept {kind} tokens (it accepts: {accepted})."
        )

    def _oidc(self, token: str) -> Identity:
        if self._validator is None:
            raise self._refuse("OIDC")
        claims = self._validator.validate(token, audience=self._audience)
        app = is_app_token(claims)
        return identity_from_claims(
            claims,
            auth_method=OIDC_APP_AUTH if app else OIDC_USER_AUTH,
            group_claims=self._group_claims,
            attributes=self._attributes,
            kind="service" if app else "user",
        )

    def _service(self, token: str) -> Identity:
        if "service" not in self.kinds:
            raise self._refuse("service")
        name, _, secret = token.removeprefix(SERVICE_PREFIX).partition(":")
        env = {"JUPYTER_GOV_SERVICE": name, "JUPYTER_GOV_SERVICE_TOKEN": secret}
        try:
            return ServiceProvider(self.policy.services, env).current()
        except IdentityError:
            raise IdentityError(
                f"Service {name!r} could not sign in to the gateway: the policy lists no such "
                "service or its secret does not match."
            ) from None

    def _hub(self, token: str) -> Identity:
        if "jupyterhub" not in self.kinds:
            raise self._refuse("JupyterHub")
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            cached = self._hub_cache.get(digest)
            if cached is not None and now - cached[0] < self._hub_ttl:
                return cached[1]
        env = {"JUPYTERHUB_API_URL": self._hub_url, "JUPYTERHUB_API_TOKEN": token}
        identity = JupyterHubProvider(env=env, ca_bundle=self._hub_ca, cache_ttl=0).current()
        with self._lock:
            self._hub_cache[digest] = (now, identity)
            while len(self._hub_cache) > _HUB_CACHE:
                self._hub_cache.popitem(last=False)
        return identity


class BearerMiddleware(flight.ServerMiddleware):
    """Carries the identity a call's token proved to the handler."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity


class BearerMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Validates the bearer token of every call before any handler runs; fails closed."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def start_call(self, info: Any, headers: Mapping[str, list[Any]]) -> BearerMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        value = values[0] if values else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        try:
            identity = self.authenticator.identify(value)
        except IdentityError as error:
            raise flight.FlightUnauthenticatedError(str(error)) from None
        except Exception as error:  # an issuer or Hub that cannot be reached, a bad answer
            raise flight.FlightUnauthenticatedError(
                f"The gateway could not validate the token ({type(error).__name__})."
            ) from None
        return BearerMiddleware(identity)
