"""JupyterHub identity: the Hub already authenticated the person who owns this server.

Inside a single-user server the Hub sets ``JUPYTERHUB_USER``, ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN``; the user's groups and roles come from ``GET /users/{name}`` of the
Hub REST API. The server's token can read them only if the Hub grants it the scopes
``read:users:groups!user`` and ``read:roles:users!user`` (``c.Spawner.server_token_scopes``);
without them the Hub omits the fields and the identity has no groups. Answers are cached for
``cache_ttl`` seconds so a burst of queries costs one request, and a revoked group takes at
most that long to stop counting.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.base import Identity


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
    ) -> None:
        env = os.environ if env is None else env
        self.user = env.get("JUPYTERHUB_USER", "")
        self.api_url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self._token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.clock = clock
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._cached: Identity | None = None
        self._cached_at = 0.0

    def __repr__(self) -> str:
        return f"JupyterHubProvider(user={self.user!r}, api_url={self.api_url!r})"

    def current(self) -> Identity:
        with self._lock:
            if self._cached is not None and self.clock() - self._cached_at < self.cache_ttl:
                return self._cached
            identity = self._fetch()
            self._cached, self._cached_at = identity, self.clock()
            return identity

    def _fetch(self) -> Identity:
        missing = [
            name
            for name, value in (
                ("JUPYTERHUB_USER", self.user),
                ("JUPYTERHUB_API_URL", self.api_url),
                ("JUPYTERHUB_API_TOKEN", self._token),
            )
            if not value
        ]
        if missing:
            raise IdentityError(
                f"{missing[0]} is not set; the jupyterhub identity provider only works inside "
                "a JupyterHub single-user server."
            )
        url = f"{self.api_url}/users/{quote(self.user, safe='')}"
        try:
            response = self._session.get(
                url, headers={"Authorization": f"token {self._token}"}, timeout=self.timeout
            )
        except requests.RequestException as error:
            raise IdentityError(
                f"Could not reach the JupyterHub API at {self.api_url}: {type(error).__name__}."
            ) from error
        if response.status_code in (401, 403):
            raise IdentityError(
                f"The JupyterHub API refused to describe user {self.user!r} "
                f"(HTTP {response.status_code}); the server's token lacks the read:users scope."
            )
        if response.status_code == 404:
            raise IdentityError(f"JupyterHub does not know the user {self.user!r}.")
        if response.status_code != 200:
            raise IdentityError(
                f"The JupyterHub API answered HTTP {response.status_code} for user {self.user!r}."
            )
        try:
            model: Any = response.json()
        except ValueError as error:
            raise IdentityError("The JupyterHub API answered with invalid JSON.") from error
        if not isinstance(model, dict) or model.get("name") != self.user:
            raise IdentityError(f"The JupyterHub API described someone other than {self.user!r}.")
        groups: list[str] = []
        for value in [*(model.get("groups") or []), *(model.get("roles") or [])]:
            if isinstance(value, str) and value not in groups:
                groups.append(value)
        return Identity(
            subject=self.user,
            display_name=self.user,
            auth_method="jupyterhub",
            issuer=self.api_url,
            verified=True,
            groups=tuple(groups),
            attributes={"hub_admin": bool(model.get("admin", False))},
        )
