"""The jupyter_server side of jupyter-gov: the REST API behind the JupyterLab panel.

Enabled by ``jupyter-config/server-config/jupyter_gov.json`` in an installed wheel, or by
``--ServerApp.jpserver_extensions='{"jupyter_gov": true}'``. It reads the same policy and
audit store as the kernels (:mod:`jupyter_gov.config`); to name them for the server alone::

    c.GovServer.audit_store = "sqlite:////srv/gov/audit.sqlite"
    c.GovServer.policy = "/srv/gov/policy.yaml"

(prefer ``$JUPYTER_GOV_POLICY`` / ``$JUPYTER_GOV_AUDIT_STORE``, which the kernels this server
starts inherit). Routes live under ``{base_url}/jupyter-gov/api/`` (see
:mod:`jupyter_gov.server.handlers`); the extension is :class:`GovServer`, an ``ExtensionApp``.
"""

from __future__ import annotations

from typing import Any

from jupyter_gov.server.app import CORE_SETTING, GovCore, GovServer

#: The ``dest`` of the prebuilt labextension, also its npm package name's folder.
LABEXTENSION_DEST = "jupyter-gov"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "jupyter_gov.server", "app": GovServer}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # ``src`` is relative to the ``jupyter_gov`` package, which re-exports this.
    return [{"src": "labextension", "dest": LABEXTENSION_DEST}]


def _load_jupyter_server_extension(serverapp: Any) -> GovServer:
    """Link, configure and initialize :class:`GovServer` on a running server."""
    return GovServer._load_jupyter_server_extension(serverapp)


# The name older jupyter_server/notebook versions look for.
load_jupyter_server_extension = _load_jupyter_server_extension

__all__ = [
    "CORE_SETTING",
    "GovCore",
    "GovServer",
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]
