"""jupyter-gov: a governed, identity-aware SQL proxy inside the Jupyter kernel.

>>> import jupyter_gov
>>> session = jupyter_gov.connect(identity="bob")      # the embedded demo
>>> session.sql("SELECT email FROM customers LIMIT 3").df()

In a notebook: ``%load_ext jupyter_gov`` then ``%%gsql``.
"""

from __future__ import annotations

from jupyter_gov.engine import GovernedSession, connect
from jupyter_gov.errors import GovError, IdentityError, PolicyError
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy
from jupyter_gov.result import ApprovalRequired, GovernedResult, QueryDenied

__version__ = "0.1.0"

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


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_gov.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-gov"}]
