"""OIDC token validation: a token is trusted only after its issuer, audience, lifetime and
signature have been checked against the issuer's published keys.

msal (since 1.38) no longer validates ID tokens, and access tokens are opaque to it, so every
token that becomes an :class:`Identity` goes through :class:`TokenValidator` first. Keys and
discovery metadata are fetched with a session that ignores the environment's proxies and CA
settings (:mod:`jupyter_gov.identity.http`), and cached; an unknown key id triggers one
rate-limited refetch, which is how issuers roll their keys.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jwt
import requests

from jupyter_gov.errors import IdentityError, TokenRejected  # TokenRejected: importable here
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.http import isolated_session

#: Asymmetric algorithms only: ``none`` and the HMAC family would let anyone who knows the
#: client id (or nothing at all) mint tokens.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")

DEFAULT_GROUP_CLAIMS = ("groups", "roles")


class TokenValidator:
    """Validates JWTs issued by one OIDC authority.

    ``authority`` is the URL whose ``/.well-known/openid-configuration`` describes the issuer.
    ``issuer`` overrides the expected ``iss`` (several allowed, e.g. Entra v1 and v2 issuers);
    by default it is the discovery document's ``issuer``, with Entra's ``{tenantid}``
    placeholder filled from the token's ``tid``. ``tenants`` is the allow-list of ``tid``
    values: a token from any other tenant is rejected, and so is every token when the
    issuer is a ``{tenantid}`` template and no tenants are listed. ``clock`` is injectable
    so tests need no sleeps; ``leeway`` absorbs clock skew between the issuer and this
    machine.
    """

    def __init__(
        self,
        authority: str,
        *,
        issuer: str | Sequence[str] | None = None,
        tenants: Sequence[str] = (),
        leeway: float = 60.0,
        cache_ttl: float = 3600.0,
        min_refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        ca_bundle: str | None = None,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.issuers = (issuer,) if isinstance(issuer, str) else tuple(issuer or ())
        self.tenants = frozenset(tenants)
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self.min_refetch_interval = min_refetch_interval
        self.clock = clock
        self.timeout = timeout
        self._session = session or isolated_session(ca_bundle, timeout)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: jwt.PyJWKSet | None = None
        self._keys_at = 0.0

    def __repr__(self) -> str:
        return f"TokenValidator(authority={self.authority!r})"

    # -- discovery and keys -------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document, cached for ``cache_ttl`` seconds."""
        with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > self.cache_ttl:
                url = self.authority + "/.well-known/openid-configuration"
                document = self._get_json(url, "discovery document")
                if not isinstance(document.get("jwks_uri"), str):
                    raise IdentityError(
                        f"The identity provider's discovery document at {url} has no jwks_uri."
                    )
                self._metadata = document
                self._metadata_at = time.monotonic()
            return self._metadata

    def _key_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        metadata = self.metadata()
        with self._lock:
            age = time.monotonic() - self._keys_at
            stale = self._keys is None or age > self.cache_ttl
            if stale or (refresh and age > self.min_refetch_interval):
                document = self._get_json(metadata["jwks_uri"], "signing keys")
                try:
                    self._keys = jwt.PyJWKSet.from_dict(document)
                except jwt.PyJWTError as error:
                    raise IdentityError(
                        "The identity provider published no usable signing keys."
                    ) from error
                self._keys_at = time.monotonic()
            assert self._keys is not None
            return self._keys

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._session.get(url, timeout=self.timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise IdentityError(
                f"Could not fetch the identity provider's {what} from {url}: "
                f"{type(error).__name__}."
            ) from error
        if not isinstance(document, dict):
            raise IdentityError(f"The identity provider's {what} at {url} is not a JSON object.")
        return document

    # -- validation -----------------------------------------------------------------------

    def validate(
        self,
        token: str,
        *,
        audience: str | Sequence[str],
        nonce: str | None = None,
        verify_expiry: bool = True,
    ) -> dict[str, Any]:
        """Return the claims of ``token`` if it is valid for ``audience``, else raise
        :class:`TokenRejected`; messages never include the token.

        ``verify_expiry=False`` is only for comparing a refreshed sign-in with the original
        one: signature, issuer and audience are still checked.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise TokenRejected("The sign-in token was rejected: it is not a JWT.") from error
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected(
                f"The sign-in token was rejected: algorithm {algorithm!r} is not accepted."
            )
        kid = header.get("kid")
        claims = self._verify_signature(token, algorithm, kid if isinstance(kid, str) else None)
        self._check_issuer(claims)
        self._check_audience(claims, audience)
        if verify_expiry:
            self._check_times(claims)
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRejected("The sign-in token was rejected: its nonce does not match.")
        return claims

    def _verify_signature(self, token: str, algorithm: str, kid: str | None) -> dict[str, Any]:
        """Try the key named by ``kid`` (or every signing key when the issuer leaves ``kid``
        out, as some do with a single key); refetch the key set once if none fits."""
        options = {
            "verify_signature": True,
            "verify_exp": False,  # checked against the injectable clock in _check_times
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
        }
        known_kid = False
        for refresh in (False, True):
            keys = [k for k in self._key_set(refresh).keys if k.public_key_use in (None, "sig")]
            if kid is not None:
                keys = [k for k in keys if k.key_id == kid]
            known_kid = known_kid or bool(keys)
            for key in keys:
                try:
                    claims = jwt.decode(token, key=key.key, algorithms=[algorithm], options=options)
                except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                    continue
                except jwt.PyJWTError as error:
                    raise TokenRejected(
                        f"The sign-in token was rejected: {_describe(error)}."
                    ) from error
                if isinstance(claims, dict):
                    return claims
        if kid is not None and not known_kid:
            raise TokenRejected(
                "The sign-in token was rejected: it is signed with a key the identity provider "
                "does not publish."
            )
        raise TokenRejected("The sign-in token was rejected: its signature does not verify.")

    def _check_issuer(self, claims: Mapping[str, Any]) -> None:
        """The token's tenant must be on the allow-list (when there is one), and its issuer
        the expected one *for that tenant*: a multi-tenant authority's ``{tenantid}``
        issuer template is only ever filled with an allowed tenant."""
        issuer = claims.get("iss")
        expected = self.issuers or (str(self.metadata().get("issuer", "")),)
        tid = claims.get("tid")
        if self.tenants and tid not in self.tenants:
            raise TokenRejected(
                "The sign-in token was rejected: it comes from "
                + (f"tenant {tid!r}" if isinstance(tid, str) else "no tenant")
                + ", which the policy's identity.tenants does not list."
            )
        templated = any("{tenantid}" in e for e in expected)
        if templated and not self.tenants:
            raise TokenRejected(
                "The sign-in token was rejected: the authority accepts any tenant and the "
                "policy lists none; add the allowed tenant ids to identity.tenants."
            )
        allowed = {e.replace("{tenantid}", tid) if isinstance(tid, str) else e for e in expected}
        if not isinstance(issuer, str) or issuer not in allowed:
            raise TokenRejected(
                "The sign-in token was rejected: it was issued by "
                f"{issuer!r}, not by {sorted(allowed)[0]!r}."
            )

    @staticmethod
    def _check_audience(claims: Mapping[str, Any], audience: str | Sequence[str]) -> None:
        wanted = {audience} if isinstance(audience, str) else set(audience)
        aud = claims.get("aud")
        present = {aud} if isinstance(aud, str) else set(aud or ())
        if not wanted & present:
            raise TokenRejected(
                "The sign-in token was rejected: it is meant for another application "
                f"(audience {sorted(present)!r}, expected {sorted(wanted)!r})."
            )

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)):
            raise TokenRejected("The sign-in token was rejected: it has no expiry.")
        if now > exp + self.leeway:
            raise TokenRejected("The sign-in token was rejected: it has expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and now + self.leeway < nbf:
            raise TokenRejected("The sign-in token was rejected: it is not valid yet.")


def _describe(error: Exception) -> str:
    text = str(error).rstrip(".") or type(error).__name__
    return text[0].lower() + text[1:]


def audience_for_scope(scope: str) -> str:
    """The resource an API scope belongs to: ``api://app/query`` -> ``api://app``.

    Entra v2 access tokens carry the application's client id as ``aud`` instead; configure
    ``audience`` explicitly for those.
    """
    scope = scope.strip()
    if "/" not in scope.removeprefix("api://").removeprefix("https://"):
        return scope
    return scope.rsplit("/", 1)[0]


def group_names(claims: Mapping[str, Any], group_claims: Iterable[str]) -> tuple[str, ...]:
    """Group and role names from the configured claims, deduplicated, in claim order."""
    names: list[str] = []
    for claim in group_claims:
        value = claims.get(claim)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        names.extend(str(v) for v in values if str(v) not in names)
    return tuple(names)


def identity_from_claims(
    claims: Mapping[str, Any],
    *,
    auth_method: str,
    group_claims: str | Sequence[str] = DEFAULT_GROUP_CLAIMS,
    attributes: Mapping[str, str] | None = None,
    kind: str = "user",
    expires_at: float | None = None,
) -> Identity:
    """Map validated claims to an :class:`Identity`.

    The subject is ``oid`` (Entra's immutable object id) or else ``sub``; the issuer is the
    tenant id ``tid`` or else ``iss``. ``preferred_username``, ``email`` and ``name`` are
    mutable and reassignable, so they only ever become the display name. ``attributes``
    maps claim names to identity attribute names, e.g. ``{"region": "region"}``.
    """
    subject = claims.get("oid") or claims.get("sub")
    issuer = claims.get("tid") or claims.get("iss")
    if not isinstance(subject, str) or not subject or not isinstance(issuer, str) or not issuer:
        raise TokenRejected("The sign-in token was rejected: it names no subject or issuer.")
    claim_names = (group_claims,) if isinstance(group_claims, str) else tuple(group_claims)
    display = next(
        (
            claims[c]
            for c in ("name", "preferred_username", "email", "azp", "appid", "client_id")
            if isinstance(claims.get(c), str) and claims[c]
        ),
        subject,
    )
    mapped = {
        attr: _plain(claims[claim]) for claim, attr in (attributes or {}).items() if claim in claims
    }
    exp = claims.get("exp")
    return Identity(
        subject=subject,
        display_name=display,
        auth_method=auth_method,
        issuer=issuer,
        verified=True,
        groups=group_names(claims, claim_names),
        attributes=mapped,
        expires_at=expires_at
        if expires_at is not None
        else (float(exp) if isinstance(exp, (int, float)) else None),
        kind=kind,
    )


def _plain(value: Any) -> Any:
    """Attributes are bound as SQL literals later: keep them JSON-plain."""
    return json.loads(json.dumps(value, default=str))
