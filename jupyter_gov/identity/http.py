"""HTTP sessions for the identity provider and the Hub that the kernel's environment cannot
redirect.

``requests`` reads ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE`` and ``~/.netrc`` whenever a session trusts the environment, and all of
them are set by whoever starts (or runs code in) the kernel. A proxy plus an extra CA in
that environment would let code in the notebook answer for the issuer or the Hub, i.e.
decide who the user is. These sessions ignore the environment: no proxies, and TLS verified
against the CA file the policy names (``identity.ca_bundle``) or else certifi's roots.
"""

from __future__ import annotations

import functools
from pathlib import Path

import requests

from jupyter_gov.errors import IdentityError


def isolated_session(ca_bundle: str | None = None, timeout: float = 10.0) -> requests.Session:
    """A session that ignores proxy and CA settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = {}
    if ca_bundle:
        path = Path(ca_bundle).expanduser()
        if not path.is_file():
            raise IdentityError(
                f"The CA bundle {str(path)!r} named by identity.ca_bundle does not exist; fix "
                "the path in the policy."
            )
        session.verify = str(path)
    else:
        session.verify = True  # requests' own default: certifi, never REQUESTS_CA_BUNDLE here
    session.request = functools.partial(session.request, timeout=timeout)  # type: ignore[method-assign]
    return session
