"""Replies no real JupyterHub gives, from a stand-in Hub: each is a refusal, never an identity.

A real Hub (``test_identity_jupyterhub.py``) cannot be made to answer with broken JSON, a
model without a name or a server error; a broken or hijacked Hub can, and the provider must
fail closed on each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.jupyterhub import JupyterHubProvider
from tests.hub_server import hub_stand_in

REPLIES: dict[str, tuple[int, bytes]] = {
    "/broken-json": (200, b"{not json"),
    "/no-name": (200, b'{"kind": "user", "groups": ["admins"]}'),
    "/a-list": (200, b'[{"name": "root"}]'),
    "/server-error": (500, b'{"status": 500, "message": "oops"}'),
}


@pytest.fixture(scope="module")
def odd_hub() -> Iterator[str]:
    """A server whose ``<prefix>/user`` answers with ``REPLIES[prefix]``."""

    with hub_stand_in(lambda path: REPLIES[path.removesuffix("/user")]) as url:
        yield url


@pytest.mark.parametrize(
    ("prefix", "sentence"),
    [
        ("/broken-json", "answered with invalid JSON"),
        ("/no-name", "did not name the owner"),
        ("/a-list", "did not name the owner"),
        ("/server-error", "answered HTTP 500"),
    ],
)
def test_a_reply_without_a_named_owner_is_a_refusal(
    odd_hub: str, prefix: str, sentence: str
) -> None:
    env = {"JUPYTERHUB_API_URL": odd_hub + prefix, "JUPYTERHUB_API_TOKEN": "secret-token"}
    with pytest.raises(IdentityError, match=sentence) as error:
        JupyterHubProvider(env=env).current()
    assert "secret-token" not in str(error.value)
