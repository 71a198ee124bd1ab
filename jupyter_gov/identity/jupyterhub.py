"""JupyterHub identity: the Hub says who owns this server's API token.

Inside a single-user server the Hub sets ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``;
``GET /user`` of the Hub REST API answers with the model of *the token's owner*, with their
groups and roles. ``JUPYTERHUB_USER`` is never read: it is a plain environment variable that
anything starting the kernel can set, and the Hub's answer about a user named in it says
nothing about who holds the token. Groups and roles are included only if the Hub grants the
server's token ``read:users:groups!user`` and ``read:roles:users!user``
(``c.Spawner.server_token_scopes``); without them the identity has no groups. Answers are
cached for ``cache_ttl`` seconds so a burst of queries costs one request, and a revoked group
takes at most that long to stop counting.

The Hub is called without the environment's proxies or CA settings
(:mod:`jupyter_gov.identity.http`); the policy may pin ``api_url`` and ``ca_bundle``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.http import isolated_session


class JupyterHubProvider:
    """Identifies the Hub user that owns this kernel's server, with their groups and roles.

    Groups and role names both become :attr:`Identity.groups` (as group and role claims do
    for OIDC); ``attributes`` records ``hub_admin``. Errors never include the API token.
    """

    name = "jupyterhub"

    def __init__(
        self,
        *,
        cache_ttl: float = 60.0,
        timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        api_url: str | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.api_url = (api_url or env.get("JUPYTERHUB_API_URL", "")).rstrip("/")
        self._token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.clock = clock
        self._session = session or isolated_session(ca_bundle, timeout)
        self._lock = threading.Lock()
        self._cached: Identity | None = None
        self._cached_at = 0.0

    def __repr__(self) -> str:
        return f"JupyterHubProvider(api_url={self.api_url!r})"

    def current(self) -> Identity:
        with self._lock:
            if self._cached is not None and self.clock() - self._cached_at < self.cache_ttl:
                return self._cached
            identity = self._fetch()
            self._cached, self._cached_at = identity, self.clock()
            return identity

    def _fetch(self) -> Identity:
        for name, value in (
            ("JUPYTERHUB_API_URL", self.api_url),
            ("JUPYTERHUB_API_TOKEN", self._token),
        ):
            if not value:
                raise IdentityError(
                    f"{name} is not set; the jupyterhub identity provider only works inside "
                    "a JupyterHub single-user server."
                )
        try:
            response = self._session.get(
                f"{self.api_url}/user",
                headers={"Authorization": f"token {self._token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise IdentityError(
                f"Could not reach the JupyterHub API at {self.api_url}: {type(error).__name__}."
            ) from error
        if response.status_code in (401, 403):
            raise IdentityError(
                "The JupyterHub API refused to say who owns this server's token "
                f"(HTTP {response.status_code}); the token is invalid or lacks its scopes."
            )
        if response.status_code != 200:
            raise IdentityError(
                f"The JupyterHub API answered HTTP {response.status_code} when asked who owns "
                "this server's token."
            )
        try:
            model: Any = response.json()
        except ValueError as error:
            raise IdentityError("The JupyterHub API answered with invalid JSON.") from error
        name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(name, str) or not name:
            raise IdentityError("The JupyterHub API did not name the owner of this server's token.")
        if model.get("kind", "user") != "user":
            raise IdentityError(
                "This server's token belongs to a Hub service, not a user; run jupyter-gov in "
                "a user's server or use another identity provider."
            )
        groups: list[str] = []
        for value in [*(model.get("groups") or []), *(model.get("roles") or [])]:
            if isinstance(value, str) and value not in groups:
                groups.append(value)
        return Identity(
            subject=name,
            display_name=name,
            auth_method="jupyterhub",
            issuer=self.api_url,
            verified=True,
            groups=tuple(groups),
            attributes={"hub_admin": bool(model.get("admin", False))},
        )
