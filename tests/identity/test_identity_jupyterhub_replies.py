"""Replies no real JupyterHub gives, from a stand-in Hub: each is a refusal, never an identity.

A real Hub (``test_identity_jupyterhub.py``) cannot be made to answer with broken JSON, a
model without a name or a server error; a broken or hijacked Hub can, and the provider must
fail closed on each.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from jupyter_gov.errors import IdentityError
from jupyter_gov.identity.jupyterhub import JupyterHubProvider

REPLIES: dict[str, tuple[int, bytes]] = {
    "/broken-json": (200, b"{not json"),
    "/no-name": (200, b'{"kind": "user", "groups": ["admins"]}'),
    "/a-list": (200, b'[{"name": "root"}]'),
    "/server-error": (500, b'{"status": 500, "message": "oops"}'),
}


@pytest.fixture(scope="module")
def odd_hub() -> Iterator[str]:
    """A server whose ``<prefix>/user`` answers with ``REPLIES[prefix]``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = REPLIES[self.path.removesuffix("/user")]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
