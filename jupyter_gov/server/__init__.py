"""The jupyter_server side of jupyter-gov: the REST API behind the JupyterLab panel.

Enabled by ``jupyter-config/server-config/jupyter_gov.json`` in an installed wheel, or by
``--ServerApp.jpserver_extensions='{"jupyter_gov": true}'``. Configure it with::

    c.GovServer.audit_store = "sqlite:////srv/gov/audit.sqlite"
    c.GovServer.policy = "/srv/gov/policy.yaml"

Routes live under ``{base_url}/jupyter-gov/api/`` (see :mod:`jupyter_gov.server.handlers`).
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Unicode, default
from traitlets.config import Configurable

#: The ``dest`` of the prebuilt labextension, also its npm package name's folder.
LABEXTENSION_DEST = "jupyter-gov"


class GovServer(Configurable):
    """Where the server extension reads the audit log and the policy from."""

    audit_store = Unicode(
        help="The audit store to read: a sqlite:/// URL or a file path. "
        "Defaults to the store the kernels write ($JUPYTER_GOV_HOME/audit.sqlite).",
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

    @default("audit_store")
    def _default_audit_store(self) -> str:
        from jupyter_gov.audit import default_store_url

        return default_store_url()

    @default("policy")
    def _default_policy(self) -> str | None:
        return os.environ.get("JUPYTER_GOV_POLICY") or None


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_gov.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # ``src`` is relative to the ``jupyter_gov`` package (the lead re-exports this there).
    return [{"src": "labextension", "dest": LABEXTENSION_DEST}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers; called once by jupyter_server at start-up."""
    from jupyter_gov.server.handlers import setup_handlers

    config = GovServer(parent=serverapp)
    setup_handlers(serverapp.web_app, config)
    serverapp.log.info(
        "jupyter-gov: audit API at %sjupyter-gov/api/ reading %s",
        serverapp.web_app.settings.get("base_url", "/"),
        config.audit_store,
    )


# The name older jupyter_server/notebook versions look for.
load_jupyter_server_extension = _load_jupyter_server_extension

__all__ = [
    "GovServer",
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]
