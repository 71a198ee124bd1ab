"""jupyter-gov: a governed, identity-aware SQL proxy inside the Jupyter kernel.

>>> import jupyter_gov
>>> session = jupyter_gov.connect(identity="bob")      # the embedded demo
>>> session.sql("SELECT email FROM customers LIMIT 3").df()

In a notebook: ``%load_ext jupyter_gov`` then ``%%gsql``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from jupyter_gov.errors import GovError, IdentityError, PolicyError

if TYPE_CHECKING:
    from jupyter_gov.engine import GovernedSession, connect
    from jupyter_gov.identity import Identity
    from jupyter_gov.policy import Policy
    from jupyter_gov.result import ApprovalRequired, GovernedResult, QueryDenied

__version__ = "0.1.0"

# Imported on first use, so that the Jupyter server (which imports this package to find
# its extensions) does not pay for DuckDB, sqlglot and pyarrow at start-up.
_LAZY = {
    "GovernedSession": "jupyter_gov.engine",
    "connect": "jupyter_gov.engine",
    "Identity": "jupyter_gov.identity",
    "Policy": "jupyter_gov.policy",
    "ApprovalRequired": "jupyter_gov.result",
    "GovernedResult": "jupyter_gov.result",
    "QueryDenied": "jupyter_gov.result",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jupyter_gov' has no attribute {name!r}")


__all__ = [
    "ApprovalRequired",
    "GovError",
    "GovernedResult",
    "GovernedSession",
    "Identity",
    "IdentityError",
    "Policy",
    "PolicyError",
    "QueryDenied",
    "__version__",
    "connect",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext jupyter_gov``: register ``%gsql``/``%%gsql`` and friends."""
    from jupyter_gov.magic import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from jupyter_gov.server import _jupyter_server_extension_points as points

    return points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-gov"}]
