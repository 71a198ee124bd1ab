"""Sign-in with msal against Microsoft Entra or any OIDC issuer, for people and pipelines.

People sign in once (device code, or the authorization-code flow through a browser) and are
refreshed silently from a persistent token cache; pipelines authenticate as a service
principal with a client secret or certificate taken from the environment. Whatever the flow,
``current()`` only returns an :class:`Identity` built from a token that
:class:`~jupyter_gov.identity.oidc.TokenValidator` has checked (msal itself no longer
validates ID tokens).

Which token becomes the identity: when the configuration names an API ``scope``, the access
token issued for that scope, validated for the scope's audience (or ``audience``); otherwise
the ID token, validated for ``client_id``. When an issuer answers a refresh without a new ID
token (OIDC Core 12.2 allows it), the claims are re-read from its UserInfo endpoint with the
fresh access token and must name the same ``sub``.

Tokens never appear in a repr, a str, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import os
import re
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msal
import requests

from jupyter_gov.errors import IdentityError
from jupyter_gov.files import private_dir
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.http import isolated_session
from jupyter_gov.identity.oidc import (
    DEFAULT_GROUP_CLAIMS,
    TokenRejected,
    TokenValidator,
    audience_for_scope,
    identity_from_claims,
)
from jupyter_gov.identity.tenants import ENTRA_ISSUER, is_multi_tenant

EXPIRED = "Your sign-in has expired; run %gsql_login (or jupyter-gov login) to sign in again."
NOT_SIGNED_IN = "Nobody is signed in; run %gsql_login (or jupyter-gov login) to sign in."

ENV_CLIENT_ID = "JUPYTER_GOV_CLIENT_ID"
ENV_CLIENT_SECRET = "JUPYTER_GOV_CLIENT_SECRET"
ENV_CLIENT_CERT = "JUPYTER_GOV_CLIENT_CERT"
ENV_CLIENT_CERT_PASSWORD = "JUPYTER_GOV_CLIENT_CERT_PASSWORD"
ENV_AUTH_MODE = "JUPYTER_GOV_AUTH_MODE"
ENV_TOKEN_CACHE = "JUPYTER_GOV_TOKEN_CACHE"

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_AUTH_METHODS = {"authorization_code": "msal-auth-code", DEVICE_GRANT: "msal-device-code"}
_PENDING = ("authorization_pending", "slow_down")


def default_token_cache_path() -> Path:
    """``$JUPYTER_GOV_TOKEN_CACHE``, else ``$XDG_CACHE_HOME/jupyter-gov/msal_token_cache.bin``."""
    if os.environ.get(ENV_TOKEN_CACHE):
        return Path(os.environ[ENV_TOKEN_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jupyter-gov" / "msal_token_cache.bin"


def open_token_cache(
    path: str | os.PathLike[str], *, require_encryption: bool = False
) -> msal.SerializableTokenCache:
    """A token cache persisted at ``path`` and shared safely between processes.

    msal-extensions' encrypted persistence on Linux needs libsecret (PyGObject plus a running
    Secret Service on D-Bus), which a headless server or container lacks; there the cache
    falls back to a plain file readable by its owner only (0600, in a 0700 directory), the
    same protection ``~/.ssh`` keys get. ``require_encryption=True`` refuses the fallback.
    The returned cache has ``is_encrypted`` set accordingly.
    """
    from msal_extensions import FilePersistence, PersistedTokenCache, build_encrypted_persistence

    location = Path(path).expanduser()
    private_dir(location.parent)
    try:
        persistence = build_encrypted_persistence(str(location))
    except Exception as error:  # ImportError (no gi), or no Secret Service when headless
        if require_encryption:
            raise IdentityError(
                "An encrypted token cache needs libsecret and a running Secret Service; "
                "install them or allow the plain 0600 file cache."
            ) from error
        _private_file(location)
        persistence = FilePersistence(str(location))
    return PersistedTokenCache(persistence)


def _private_file(location: Path) -> None:
    if location.exists():
        os.chmod(location, 0o600)
    else:
        os.close(os.open(location, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def credential_from_env(env: Mapping[str, str] | None = None) -> str | dict[str, Any] | None:
    """The confidential-client credential: a certificate (PEM with key and certificate, or
    a .pfx/.p12) named by ``JUPYTER_GOV_CLIENT_CERT``, else ``JUPYTER_GOV_CLIENT_SECRET``.
    Secrets live in the environment, never in the policy file."""
    env = os.environ if env is None else env
    cert_path = env.get(ENV_CLIENT_CERT)
    password = env.get(ENV_CLIENT_CERT_PASSWORD) or None
    if cert_path:
        if cert_path.lower().endswith((".pfx", ".p12")):
            return {"private_key_pfx_path": cert_path, "passphrase": password}
        try:
            text = Path(cert_path).expanduser().read_text()
        except OSError as error:
            raise IdentityError(
                f"Could not read the client certificate named by {ENV_CLIENT_CERT}."
            ) from error
        key = re.search(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", text, re.S
        )
        cert = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        if not key or not cert:
            raise IdentityError(
                f"The PEM file named by {ENV_CLIENT_CERT} must hold a private key and a "
                "certificate."
            )
        return {
            "private_key": key.group(0),
            "public_certificate": cert.group(0),
            "passphrase": password,
        }
    return env.get(ENV_CLIENT_SECRET) or None


@dataclass
class LoginChallenge:
    """What a front end shows while a person signs in: open ``url`` (and type ``user_code``
    for the device flow), then call ``poll()`` from a timer or ``complete()`` to block.

    The msal flow state (nonce, PKCE verifier) stays inside, out of the repr.
    """

    kind: str  # "device" or "auth_code"
    url: str
    message: str
    expires_at: float
    user_code: str | None = None
    _provider: MsalProvider | None = field(default=None, repr=False)
    _flow: dict[str, Any] = field(default_factory=dict, repr=False)

    def poll(self) -> Identity | None:
        """Device flow: one non-blocking check; None while the person has not finished."""
        assert self._provider is not None
        if self.kind != "device":
            raise IdentityError("Only a device-code sign-in can be polled; call complete().")
        return self._provider.poll_device_flow(self._flow)

    def complete(
        self, response: str | Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Identity:
        """Finish: the device flow waits up to ``timeout``; the authorization-code flow takes
        the redirect ``response`` (the URL the browser landed on, or its query parameters)."""
        assert self._provider is not None
        if self.kind == "device":
            return self._provider.complete_device_flow(self._flow, timeout=timeout)
        if response is None:
            raise IdentityError("Paste the address the browser was redirected to.")
        return self._provider.complete_auth_code_flow(self._flow, response)


class MsalProvider:
    """Identity from an msal sign-in; see the module docstring for which token is validated.

    ``authority`` is an Entra authority (``https://login.microsoftonline.com/<tenant>``);
    ``oidc_authority`` is any other OIDC issuer (https, with at least one path segment, as
    msal requires). ``mode="service"`` authenticates the application itself with the client
    credential (pipelines); ``mode="user"`` signs in people. With a client credential, user
    flows run as a confidential client (no device flow); without one, as a public client.
    ``tenants`` lists the ``tid`` values trusted; it is required for a multi-tenant
    authority (``common``, ``organizations``, a ``{tenantid}`` issuer), whose issuer is then
    checked per tenant. Every request (msal's, discovery, keys, UserInfo) goes through one
    session that ignores proxy and CA settings in the environment; ``ca_bundle`` is the CA
    file to trust instead of certifi's roots. ``clock`` is injectable so that expiry can be
    tested without waiting.
    """

    name = "msal"

    def __init__(
        self,
        client_id: str,
        *,
        authority: str | None = None,
        oidc_authority: str | None = None,
        scope: str | None = None,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        tenants: Sequence[str] = (),
        group_claims: str | Sequence[str] = DEFAULT_GROUP_CLAIMS,
        attributes: Mapping[str, str] | None = None,
        client_credential: str | dict[str, Any] | None = None,
        mode: str = "user",
        token_cache: str | os.PathLike[str] | msal.TokenCache | None = None,
        require_encrypted_cache: bool = False,
        redirect_uri: str | None = None,
        leeway: float = 60.0,
        refresh_margin: float = 300.0,
        ca_bundle: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id:
            raise IdentityError(
                f"The msal identity provider needs a client_id (or {ENV_CLIENT_ID})."
            )
        if bool(authority) == bool(oidc_authority):
            raise IdentityError(
                "The msal identity provider needs exactly one of authority or oidc_authority."
            )
        url = str(authority or oidc_authority).rstrip("/")
        parsed = urlparse(url)
        if parsed.scheme != "https" or not parsed.netloc or parsed.path.strip("/") == "":
            raise IdentityError(
                f"The identity authority {url!r} must be an https URL with a path, like "
                "https://login.microsoftonline.com/<tenant>."
            )
        issuers = [issuer] if isinstance(issuer, str) else list(issuer or ())
        if is_multi_tenant(authority, issuers) and not tenants:
            raise IdentityError(
                f"The authority {url!r} accepts sign-ins from any tenant; list the tenant ids "
                "you trust in identity.tenants."
            )
        if authority and is_multi_tenant(authority) and not issuers:
            issuer = ENTRA_ISSUER  # pinned, not taken from the discovery document
        if mode not in ("user", "service"):
            raise IdentityError(f"Unknown msal mode {mode!r}; use 'user' or 'service'.")
        if mode == "service" and not client_credential:
            raise IdentityError(
                f"Service sign-in needs {ENV_CLIENT_SECRET} or {ENV_CLIENT_CERT} to be set."
            )
        self.client_id = client_id
        self.authority = authority.rstrip("/") if authority else None
        self.oidc_authority = oidc_authority.rstrip("/") if oidc_authority else None
        self.scope = scope
        self.group_claims = group_claims
        self.attributes = dict(attributes or {})
        self.mode = mode
        self.redirect_uri = redirect_uri
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._credential = client_credential
        if scope:
            self.audience: str | Sequence[str] = audience or audience_for_scope(scope)
        else:
            self.audience = audience or client_id
        entra = self.authority is not None
        self._http = isolated_session(ca_bundle)  # msal's, the validator's and UserInfo's
        self.validator = TokenValidator(
            f"{url}/v2.0" if entra else url,
            session=self._http,
            issuer=issuer,
            tenants=tuple(tenants),
            leeway=leeway,
            clock=clock,
        )
        if mode == "service":
            self._cache: msal.TokenCache = msal.TokenCache()  # app tokens stay in memory
        elif isinstance(token_cache, msal.TokenCache):
            self._cache = token_cache
        else:
            self._cache = open_token_cache(
                token_cache or default_token_cache_path(),
                require_encryption=require_encrypted_cache,
            )
        self._app: msal.ClientApplication | None = None
        self._identity_cache: Identity | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        where = self.authority or self.oidc_authority
        return (
            f"MsalProvider(client_id={self.client_id!r}, authority={where!r}, mode={self.mode!r})"
        )

    __str__ = __repr__

    @property
    def cache_encrypted(self) -> bool:
        return bool(getattr(self._cache, "is_encrypted", False))

    # -- msal plumbing --------------------------------------------------------------------

    @property
    def _scopes(self) -> list[str]:
        return [self.scope] if self.scope else []

    def _msal(self) -> msal.ClientApplication:
        """Build the msal application lazily: msal fetches discovery in its constructor."""
        if self._app is None:
            kwargs: dict[str, Any] = {"token_cache": self._cache, "http_client": self._http}
            if self.authority:
                kwargs["authority"] = self.authority
            else:
                kwargs["oidc_authority"] = self.oidc_authority
            try:
                if self._credential:
                    self._app = msal.ConfidentialClientApplication(
                        self.client_id, client_credential=self._credential, **kwargs
                    )
                else:
                    self._app = msal.PublicClientApplication(self.client_id, **kwargs)
            except (ValueError, requests.RequestException) as error:
                where = self.authority or self.oidc_authority
                raise IdentityError(
                    f"Could not reach the identity provider at {where}: {type(error).__name__}."
                ) from error
        return self._app

    def _account(self) -> dict[str, Any] | None:
        accounts = self._msal().get_accounts()
        if len(accounts) > 1:
            raise IdentityError(
                "Several accounts are signed in; run %gsql_logout and sign in again."
            )
        return accounts[0] if accounts else None

    def _due(self, identity: Identity, now: float) -> bool:
        return identity.expires_at is not None and now >= identity.expires_at - self.refresh_margin

    # -- token -> identity ----------------------------------------------------------------

    def _to_identity(
        self,
        result: Mapping[str, Any],
        auth_method: str,
        *,
        nonce: str | None = None,
        previous: Mapping[str, Any] | None = None,
        kind: str = "user",
    ) -> Identity:
        """Validate the token the configuration designates and map its claims."""
        if "error" in result:
            raise IdentityError(_error_sentence(result))
        expires_at: float | None = None
        if self.scope or kind == "service":
            claims = self.validator.validate(
                str(result.get("access_token")), audience=self.audience
            )
        elif result.get("id_token"):
            claims = self.validator.validate(
                str(result["id_token"]), audience=self.audience, nonce=nonce
            )
        elif previous is not None and result.get("access_token"):
            claims = self._userinfo(str(result["access_token"]), previous)
            expires_at = self.clock() + float(result.get("expires_in", 0))
        else:
            raise IdentityError("The identity provider returned no ID token; sign in again.")
        return identity_from_claims(
            claims,
            auth_method=auth_method,
            group_claims=self.group_claims,
            attributes=self.attributes,
            kind=kind,
            expires_at=expires_at,
        )

    def _userinfo(self, access_token: str, previous: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = self.validator.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            raise IdentityError(EXPIRED)
        try:
            response = self._http.get(
                endpoint, timeout=10, headers={"Authorization": f"Bearer {access_token}"}
            )
            response.raise_for_status()
            info = response.json()
        except (requests.RequestException, ValueError) as error:
            raise IdentityError(
                f"Could not read the signed-in user's claims from {endpoint}."
            ) from error
        if not isinstance(info, dict) or info.get("sub") != previous.get("sub"):
            raise TokenRejected("The identity provider refreshed the sign-in of another user.")
        return {**previous, **info, "iss": previous["iss"], "aud": previous["aud"]}

    def _cached_id_claims(self, account: Mapping[str, Any], *, verify_expiry: bool) -> dict:
        for entry in self._cache.search(
            msal.TokenCache.CredentialType.ID_TOKEN,
            query={
                "home_account_id": account["home_account_id"],
                "environment": account["environment"],
                "client_id": self.client_id,
            },
        ):
            return self.validator.validate(
                entry["secret"], audience=self.audience, verify_expiry=verify_expiry
            )
        raise IdentityError(NOT_SIGNED_IN)

    def _after_sign_in(
        self, result: Mapping[str, Any], auth_method: str, nonce: str | None = None
    ) -> Identity:
        identity = self._to_identity(result, auth_method, nonce=nonce)
        app = self._msal()
        keep = result.get("id_token_claims") or {}
        mine = {keep.get("oid"), keep.get("sub")} - {None}
        for account in app.get_accounts():  # one person per cache: no silent identity switch
            if mine and account.get("local_account_id") not in mine:
                app.remove_account(account)
        self._identity_cache = identity
        return identity

    # -- the provider protocol ------------------------------------------------------------

    def current(self) -> Identity:
        """The signed-in identity, refreshed silently when it is (about to be) expired."""
        with self._lock:
            now = self.clock()
            cached = self._identity_cache
            if cached is not None and not self._due(cached, now):
                return cached
            if self.mode == "service":
                identity = self._service_identity(force=cached is not None)
            else:
                identity = self._user_identity(now)
            self._identity_cache = identity
            return identity

    def _user_identity(self, now: float) -> Identity:
        account = self._account()
        if account is None:
            raise IdentityError(NOT_SIGNED_IN)
        method = _AUTH_METHODS.get(str(account.get("account_source")), "msal")
        app = self._msal()
        identity: Identity | None = None
        try:
            if self.scope:
                result = app.acquire_token_silent_with_error(self._scopes, account)
                identity = self._to_identity(result or {"error": "no_token"}, method)
            else:
                claims = self._cached_id_claims(account, verify_expiry=True)
                identity = identity_from_claims(
                    claims,
                    auth_method=method,
                    group_claims=self.group_claims,
                    attributes=self.attributes,
                )
        except IdentityError:
            identity = None
        if identity is not None and not self._due(identity, now):
            return identity
        return self._refreshed(account, method)

    def _refreshed(self, account: Mapping[str, Any], method: str) -> Identity:
        try:
            previous = None if self.scope else self._cached_id_claims(account, verify_expiry=False)
            result = self._msal().acquire_token_silent_with_error(
                self._scopes, dict(account), force_refresh=True
            )
            if not result or "error" in result:
                raise IdentityError(EXPIRED)
            return self._to_identity(result, method, previous=previous)
        except requests.RequestException as error:  # not expired: the issuer is unreachable
            raise IdentityError(
                "Could not reach the identity provider to refresh your sign-in; check the "
                "network and try again."
            ) from error
        except TokenRejected as error:
            if "expired" in str(error):
                raise IdentityError(EXPIRED) from error
            raise

    def _service_identity(self, force: bool = False) -> Identity:
        if not self.scope:
            raise IdentityError(
                "Service sign-in needs an API scope; set identity.scope in the policy."
            )
        app = self._msal()
        assert isinstance(app, msal.ConfidentialClientApplication)
        if force:
            app.remove_tokens_for_client()
        scope = (
            self.scope
            if self.scope.endswith("/.default")
            else (audience_for_scope(self.scope) + "/.default")
        )
        try:
            result = app.acquire_token_for_client([scope])
        except requests.RequestException as error:
            raise IdentityError(
                "Could not reach the identity provider to authenticate the service."
            ) from error
        return self._to_identity(
            result or {"error": "no_token"}, "msal-client-credentials", kind="service"
        )

    # -- sign-in flows --------------------------------------------------------------------

    def start_device_flow(self) -> dict[str, Any]:
        """Begin a device-code sign-in; show ``flow["message"]`` (it holds the link and the
        code), then call :meth:`poll_device_flow` or :meth:`complete_device_flow`."""
        app = self._msal()
        if not isinstance(app, msal.PublicClientApplication):
            raise IdentityError(
                "Device-code sign-in needs a public client; unset the client secret or "
                "certificate, or sign in with the browser flow."
            )
        try:
            flow = app.initiate_device_flow(scopes=self._scopes)
        except ValueError as error:  # the issuer has no device_authorization_endpoint
            raise IdentityError(
                "This identity provider does not offer device-code sign-in; use the browser flow."
            ) from error
        if "user_code" not in flow:
            raise IdentityError(_error_sentence(flow))
        flow["expires_at"] = self.clock() + float(flow.get("expires_in", 900))
        return flow

    def poll_device_flow(self, flow: dict[str, Any]) -> Identity | None:
        """Check once, without blocking, whether the person has finished signing in.

        Calls sooner than the issuer's polling ``interval`` return None without a request.
        """
        with self._lock:
            now = self.clock()
            if now >= float(flow.get("expires_at", 0)):
                raise IdentityError("The sign-in code has expired; run %gsql_login again.")
            if now < float(flow.get("_next_poll_at", 0)):
                return None
            with warnings.catch_warnings():  # the interval is enforced above, on self.clock
                warnings.filterwarnings("ignore", message="Attempted too soon")
                result = self._msal().acquire_token_by_device_flow(
                    flow, exit_condition=lambda _flow: True
                )
            if result.get("error") == "slow_down":
                flow["interval"] = int(flow.get("interval", 5)) + 5
            flow["_next_poll_at"] = self.clock() + float(flow.get("interval", 5))
            if result.get("error") in _PENDING:
                return None
            return self._after_sign_in(result, "msal-device-code")

    def complete_device_flow(self, flow: dict[str, Any], timeout: float | None = None) -> Identity:
        """Block until the device-code sign-in finishes, the code expires or ``timeout``."""
        deadline = self.clock() + (timeout if timeout is not None else 900.0)
        while True:
            identity = self.poll_device_flow(flow)
            if identity is not None:
                return identity
            if self.clock() >= deadline:
                raise IdentityError("Timed out waiting for the device-code sign-in.")
            time.sleep(max(0.2, float(flow["_next_poll_at"]) - self.clock()))

    def start_auth_code_flow(self, redirect_uri: str | None = None) -> dict[str, Any]:
        """Begin an authorization-code sign-in (with PKCE and nonce): send the person to
        ``flow["auth_uri"]`` and hand the redirect back to :meth:`complete_auth_code_flow`."""
        redirect_uri = redirect_uri or self.redirect_uri
        if not redirect_uri:
            raise IdentityError(
                "The authorization-code sign-in needs a redirect_uri in the identity settings."
            )
        app = self._msal()
        with warnings.catch_warnings():
            # msal recommends response_mode=form_post; the loopback and paste-the-address
            # flows need the code in the query, which PKCE, state and nonce protect.
            warnings.filterwarnings("ignore", message=".*form_post.*")
            flow = app.initiate_auth_code_flow(self._scopes, redirect_uri=redirect_uri)
        flow["expires_at"] = self.clock() + 600
        return flow

    def complete_auth_code_flow(
        self, flow: dict[str, Any], response: str | Mapping[str, str]
    ) -> Identity:
        """Finish with the redirect: the URL the browser landed on, or its query params."""
        if isinstance(response, str):
            query = parse_qs(urlparse(response.strip()).query)
            params = {k: v[0] for k, v in query.items()}
        else:
            params = dict(response)
        with self._lock:
            try:
                result = self._msal().acquire_token_by_auth_code_flow(flow, params)
            except ValueError as error:  # state mismatch, replayed or foreign response
                raise IdentityError(
                    "The sign-in response does not belong to this sign-in; start again."
                ) from error
            nonce = hashlib.sha256(str(flow.get("nonce", "")).encode()).hexdigest()
            return self._after_sign_in(
                result, "msal-auth-code", nonce=nonce if flow.get("nonce") else None
            )

    def sign_in_with_browser(
        self,
        *,
        timeout: float = 300.0,
        open_browser: Callable[[str], object] = webbrowser.open,
    ) -> Identity:
        """Authorization-code sign-in for a kernel on this machine: a one-shot listener on
        127.0.0.1 receives the redirect (``http://localhost:<port>/``)."""
        with _LoopbackReceiver() as receiver:
            flow = self.start_auth_code_flow(f"http://localhost:{receiver.port}/")
            open_browser(flow["auth_uri"])
            params = receiver.wait(timeout)
        if params is None:
            raise IdentityError("Timed out waiting for the browser sign-in.")
        return self.complete_auth_code_flow(flow, params)

    def sign_in_as_service(self) -> Identity:
        """Client-credentials sign-in of the application itself (pipelines)."""
        if self.mode != "service":
            raise IdentityError(
                f"Set {ENV_AUTH_MODE}=service (or identity.mode: service) to sign in as a service."
            )
        return self.current()

    def begin_login(self, flow: str = "device") -> LoginChallenge:
        """A UI-agnostic challenge for the device or the authorization-code flow."""
        if flow == "device":
            state = self.start_device_flow()
            return LoginChallenge(
                kind="device",
                url=str(state.get("verification_uri", "")),
                message=str(state.get("message", "")),
                user_code=state.get("user_code"),
                expires_at=float(state["expires_at"]),
                _provider=self,
                _flow=state,
            )
        if flow == "auth_code":
            state = self.start_auth_code_flow()
            return LoginChallenge(
                kind="auth_code",
                url=state["auth_uri"],
                message="Open this address, sign in, and paste the address you land on.",
                expires_at=float(state["expires_at"]),
                _provider=self,
                _flow=state,
            )
        raise IdentityError(f"Unknown sign-in flow {flow!r}; use device, browser or auth_code.")

    def sign_out(self) -> bool:
        """Forget every account and token of this client in the cache; True if any."""
        with self._lock:
            self._identity_cache = None
            app = self._msal()
            accounts = app.get_accounts()
            for account in accounts:
                app.remove_account(account)
            if isinstance(app, msal.ConfidentialClientApplication):
                app.remove_tokens_for_client()
            return bool(accounts)


def _error_sentence(result: Mapping[str, Any]) -> str:
    """One sentence from an OAuth error response (its description's first line)."""
    description = str(result.get("error_description") or "").strip().splitlines()
    detail = description[0].rstrip(".") if description else str(result.get("error", "unknown"))
    return f"Sign-in failed: {detail}."


class _LoopbackReceiver:
    """Receives one authorization redirect on 127.0.0.1, in a background thread."""

    def __init__(self) -> None:
        self.result: dict[str, str] | None = None
        self._done = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                if "code" not in params and "error" not in params:
                    self.send_error(404)
                    return
                receiver.result = params
                body = (
                    "<!doctype html><title>jupyter-gov</title><p>"
                    + html.escape("Sign-in finished; you can close this tab.")
                    + "</p>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())
                receiver._done.set()

            def log_message(self, format: str, *args: Any) -> None:  # keep codes out of logs
                return

        self._server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, kwargs={"poll_interval": 0.1}
        )

    def __enter__(self) -> _LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def wait(self, timeout: float) -> dict[str, str] | None:
        self._done.wait(timeout)
        return self.result
