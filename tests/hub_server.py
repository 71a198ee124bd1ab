"""One real JupyterHub for the pytest session, on loopback, for the Hub identity tests.

``jupyterhub`` (PyPI) with ``configurable-http-proxy`` (npm) runs from a temporary folder
with its sqlite database and log there, on free loopback ports, with the dummy authenticator
and no spawner use: nobody logs in and no server starts. The Hub is provisioned from its
config as a deployment would be: the users ``alice`` (group ``analysts``) and ``root``
(group ``admins``, Hub admin), a service ``gov-admin`` with the ``admin`` role whose token
the fixture uses to issue and revoke user tokens through the Hub's REST API, and a service
``announcer`` with a token of its own. Skipped with the reason when jupyterhub or
configurable-http-proxy is missing (a failure when ``CI=true``).

It is registered once, in ``tests/conftest.py``: a session fixture imported into several
modules would start one Hub per module. Tests import :class:`RealHub` from here, and
:func:`hub_stand_in` for the replies a real Hub never gives.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: user -> (Hub groups, Hub admin)
HUB_USERS: dict[str, tuple[list[str], bool]] = {
    "alice": (["analysts"], False),
    "root": (["admins"], True),
}
START_TIMEOUT = 60.0  # a bound on waiting for the Hub to answer, not a timing assertion


@contextlib.contextmanager
def hub_stand_in(reply: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering each GET path with ``reply(path)`` (status, JSON
    body): what a proxy or a broken Hub might say, which a real JupyterHub never does.
    Yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = reply(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
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
        thread.join(5)


@dataclass
class RealHub:
    """Handle on the running Hub: its API URL, and tokens issued through its REST API."""

    api_url: str
    admin_token: str
    service_token: str  # the ``announcer`` service's own token
    log_file: Path
    _issued: dict[str, tuple[str, str]] = field(default_factory=dict)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        response = requests.request(
            method,
            f"{self.api_url}{path}",
            json=body,
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=10,
            proxies={"http": "", "https": ""},
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def issue_token(self, user: str, scopes: list[str] | None = None) -> str:
        """A new API token of ``user``, as the Hub issues for a single-user server;
        ``scopes`` None means the owner's own permissions (the Hub's default)."""
        body: dict[str, Any] = {"note": "jupyter-gov test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        model = self._call("POST", f"/users/{user}/tokens", body)
        self._issued[model["token"]] = (user, model["id"])
        return str(model["token"])

    def revoke_token(self, token: str) -> None:
        """Revoke a token issued by :meth:`issue_token` (``DELETE /users/{name}/tokens/{id}``)."""
        user, token_id = self._issued.pop(token)
        self._call("DELETE", f"/users/{user}/tokens/{token_id}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(tmp: Path, hub_port: int, admin_token: str, service_token: str) -> str:
    proxy_port, proxy_api_port = _free_port(), _free_port()
    groups: dict[str, dict[str, list[str]]] = {}
    for user, (names, _admin) in HUB_USERS.items():
        for name in names:
            groups.setdefault(name, {"users": []})["users"].append(user)
    settings: dict[str, Any] = {
        "JupyterHub.ip": "127.0.0.1",
        "JupyterHub.port": proxy_port,
        "JupyterHub.hub_ip": "127.0.0.1",
        "JupyterHub.hub_port": hub_port,
        "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{proxy_api_port}",
        "ConfigurableHTTPProxy.pid_file": str(tmp / "proxy.pid"),
        "JupyterHub.db_url": f"sqlite:///{tmp / 'jupyterhub.sqlite'}",
        "JupyterHub.cookie_secret_file": str(tmp / "cookie_secret"),
        "JupyterHub.pid_file": str(tmp / "hub.pid"),
        "JupyterHub.authenticator_class": "dummy",
        "Authenticator.allowed_users": set(HUB_USERS),
        "Authenticator.admin_users": {u for u, (_g, admin) in HUB_USERS.items() if admin},
        "JupyterHub.load_groups": groups,
        "JupyterHub.services": [
            {"name": "gov-admin", "api_token": admin_token},
            {"name": "announcer", "api_token": service_token},
        ],
        "JupyterHub.load_roles": [{"name": "admin", "services": ["gov-admin"]}],
        "JupyterHub.log_level": "WARN",
    }
    lines = [f"c.{name} = {value!r}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def _missing() -> str | None:
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "jupyterhub is not installed (pip install jupyterhub)"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is not on PATH (npm install -g configurable-http-proxy)"
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _wait_for(process: subprocess.Popen[bytes], hub: RealHub) -> str | None:
    """Poll the Hub's API until it answers for the admin service; None, or why not."""
    import requests

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"jupyterhub exited with code {process.returncode}"
        with contextlib.suppress(requests.RequestException):
            response = requests.get(
                f"{hub.api_url}/user",
                headers={"Authorization": f"token {hub.admin_token}"},
                timeout=2,
                proxies={"http": "", "https": ""},
            )
            if response.status_code == 200:
                return None
        time.sleep(0.2)
    return f"jupyterhub did not answer within {START_TIMEOUT:.0f} s"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the Hub stop its proxy; its process group is killed if it does not."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


@pytest.fixture(scope="session")
def jupyterhub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHub]:
    """A running JupyterHub; skipped with the reason (failed when CI=true) without it."""
    missing = _missing()
    if missing:
        _unavailable(missing)
    tmp = tmp_path_factory.mktemp("jupyterhub")
    admin_token, service_token = secrets.token_hex(32), secrets.token_hex(32)
    hub_port = _free_port()
    (tmp / "jupyterhub_config.py").write_text(_config(tmp, hub_port, admin_token, service_token))
    hub = RealHub(
        api_url=f"http://127.0.0.1:{hub_port}/hub/api",
        admin_token=admin_token,
        service_token=service_token,
        log_file=tmp / "jupyterhub.log",
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    with open(hub.log_file, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        problem = _wait_for(process, hub)
        if problem:
            tail = hub.log_file.read_text(errors="replace")[-2000:]
            _unavailable(f"{problem}; its log ends:\n{tail}")
        yield hub
    finally:
        _stop(process)
