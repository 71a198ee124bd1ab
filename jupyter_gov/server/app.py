"""The server extension as a jupyter_server ``ExtensionApp`` holding one :class:`GovCore`.

At start-up :meth:`GovServer.initialize_settings` resolves the configuration once, as the
kernels and the CLI do (:func:`jupyter_gov.config.resolve`), and puts one core object in the
tornado settings: the loaded policy, one audit store, one approvals store and the server's
identity provider. Handlers reach it as ``self.core``; nothing is reloaded per request
except the policy file, when it has changed on disk.

A configuration that cannot be resolved (a missing policy file, an unsupported store) does
not stop the server: the core keeps the one-sentence error and the routes that need the
missing piece answer with it (the audit routes with a JSON 503).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from jupyter_gov.approvals import ApprovalStore
from jupyter_gov.audit import AuditReader, AuditStore
from jupyter_gov.audit import sinks as audit_sinks
from jupyter_gov.config import (
    ENV_AUDIT_STORE,
    Settings,
    resolve,
    resolve_policy_source,
    resolve_store,
)
from jupyter_gov.errors import AuditError, GovError, PolicyError
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy

#: The tornado setting that holds the :class:`GovCore`.
CORE_SETTING = "jupyter_gov_core"


class GovCore:
    """The resolved configuration and the objects every request shares."""

    def __init__(
        self,
        *,
        policy: str | None = None,
        audit_store: str | None = None,
        user: str | None = None,
        gateway: str | None = None,
    ) -> None:
        self.requested = {"policy": policy or None, "audit_store": audit_store or None}
        self.user = user or None
        self.gateway = gateway or None
        self._remote: Any = None
        self._lock = threading.Lock()
        self._audit: AuditStore | None = None
        self._sinks: audit_sinks.SinkDispatcher | None = None
        self._approvals: ApprovalStore | None = None
        self._provider: Any = None
        self.settings: Settings | None = None
        self.error: GovError | None = None
        self.store_url: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._resolve()

    # -- resolution ----------------------------------------------------------------------

    def _resolve(self) -> None:
        policy, store = self.requested["policy"], self.requested["audit_store"]
        try:
            self.settings = resolve(policy=policy, audit_store=store)
        except GovError as error:
            self.settings, self.error = None, error
            # A store named outright does not depend on the policy: keep serving the log.
            named = store or os.environ.get(ENV_AUDIT_STORE)
            self.store_url = resolve_store(audit_store=store) if named else None
        else:
            self.error = None
            self.store_url = self.settings.audit_store
        self._stamp = self._policy_stamp()
        self._provider = None
        self._approvals = None  # bound to the policy just read

    def _policy_stamp(self) -> tuple[int, int] | None:
        """The policy file's modification time and size; None for the demo or no file."""
        if self.settings is not None:
            source = self.settings.policy_source
        else:
            source = resolve_policy_source(self.requested["policy"], os.environ)
        try:
            stat = os.stat(source) if source else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    def refresh(self) -> None:
        """Resolve again if the policy file changed since it was read (a cheap ``stat``)."""
        if self._policy_stamp() != self._stamp:
            with self._lock:
                self._resolve()

    # -- what requests use ---------------------------------------------------------------

    @property
    def policy(self) -> Policy | None:
        return self.settings.policy if self.settings else None

    def require_policy(self) -> Policy:
        if self.settings is None:
            raise self.error or PolicyError("The policy could not be loaded.")
        return self.settings.policy

    def audit(self) -> AuditStore:
        """The one audit store, opened on first use; :class:`AuditError` if it cannot be."""
        with self._lock:
            if self.store_url is None:
                raise AuditError(
                    f"The audit store is not known because the policy did not load: {self.error}"
                )
            if self._audit is None or self._audit.url != self.store_url:
                if self._sinks is not None:  # hook (notify): the old store's export ends
                    self._sinks.close()
                    self._sinks = None
                self._audit = AuditStore(self.store_url)
                self._approvals = None
                if self.policy is not None:  # hook (notify): decisions made here are exported
                    self._sinks = audit_sinks.attach(self._audit, self.policy)
            return self._audit

    def reader(self) -> AuditReader:
        """What the audit views read: the gateway's audit when a gateway is configured
        (never a local store the kernel could write), else :meth:`audit`."""
        remote = self.remote()
        return remote.audit_reader if remote is not None else self.audit()

    def approvals(self) -> ApprovalStore:
        audit = self.audit()
        with self._lock:
            if self._approvals is None:
                self._approvals = ApprovalStore(audit, self.policy)
            return self._approvals

    def identity(self) -> Identity:
        """Who this server acts as when approving: the policy's provider, as ``user``."""
        policy = self.require_policy()
        if self._provider is None:
            from jupyter_gov.identity.factory import provider_from_config

            self._provider = provider_from_config(policy.identity_config, self.user)
        return self._provider.current()

    def remote(self) -> Any:
        """The gateway session when a gateway is configured (``c.GovServer.gateway`` or
        ``$JUPYTER_GOV_GATEWAY``): the Audit views read the gateway's audit, the Policy
        tab its policy, and the Approvals tab lists and decides the requests in its store,
        as the token's owner (the Hub server's own token by default)."""
        from jupyter_gov.config import resolve_gateway

        found = resolve_gateway(self.gateway)
        if found is None:
            return None
        with self._lock:
            if self._remote is None or self._remote.address != found.address:
                from jupyter_gov.connectors.gateway import GatewaySession

                self._remote = GatewaySession(found)
            return self._remote

    def describe(self) -> dict[str, str]:
        if self.settings is not None:
            return self.settings.describe()
        return {"error": str(self.error), "audit_store": str(self.store_url)}


class GovServer(ExtensionApp):
    """The REST API behind the JupyterLab panel; configure it as ``c.GovServer.<trait>``.

    Unset traits fall back as everywhere else: the environment, then the policy, then the
    defaults under ``$JUPYTER_GOV_HOME`` (see :mod:`jupyter_gov.config`).
    """

    name = "jupyter_gov"
    load_other_extensions = True

    audit_store = Unicode(
        None,
        allow_none=True,
        help="The audit store to read: a sqlite:/// URL or a file path. Defaults to "
        "$JUPYTER_GOV_AUDIT_STORE, the policy's audit.store, else "
        "$JUPYTER_GOV_HOME/audit.sqlite, as in the kernels.",
    ).tag(config=True)

    policy = Unicode(
        None,
        allow_none=True,
        help="The policy file: roles, approvers and the Policy tab. Defaults to "
        "$JUPYTER_GOV_POLICY, else the built-in demo policy, as in the kernels.",
    ).tag(config=True)

    user = Unicode(
        None,
        allow_none=True,
        help="Act as this user when approving from the panel (local identity provider "
        "only; recorded as unverified). Other providers say who the server's user is.",
    ).tag(config=True)

    gateway = Unicode(
        None,
        allow_none=True,
        help="A jupyter-gov gateway (grpc+tls://host:port) whose audit the Audit views and the "
        "report read, whose policy the Policy tab shows and whose approval store the Approvals "
        "tab lists and decides in, as the owner of this server's token; defaults to "
        "$JUPYTER_GOV_GATEWAY (see docs/gateway.md).",
    ).tag(config=True)

    core: GovCore | None = None

    def initialize_settings(self) -> None:
        self.core = GovCore(
            policy=self.policy, audit_store=self.audit_store, user=self.user, gateway=self.gateway
        )
        self.settings[CORE_SETTING] = self.core
        for name, value in self.core.describe().items():
            self.log.info("jupyter-gov: %s = %s", name, value)

    def initialize_handlers(self) -> None:
        from jupyter_gov.server.handlers import routes

        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        if self.core is not None and self.core._audit is not None:
            self.core._audit.close()
