"""Front doors of gateway mode, started as real processes: the pgwire server and its policy.

The policy is the demo's plus three services whose tokens the clients send as passwords:
``etl`` (an analyst: PII masked, read-only), ``ops`` (an approver) and ``writer`` (an
admin, whose writes on production need approval).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import selectors
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from jupyter_gov.audit.checkpoints import generate_key
from jupyter_gov.gateway.pgwire import PgWireServer
from jupyter_gov.policy.loader import demo_policy_text
from tests.conftest import require_server

TOKENS = {"etl": "etl-token-5d0c9a71", "ops": "ops-token-77b2e0c4", "writer": "writer-token-1fa3"}
#: Replicas of one deployment share the masking key (from the environment, as in production),
#: so the same value masks to the same token whichever replica answers.
MASK_KEY = "hex:" + "5e1f0c9a7b3d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b"
STARTUP_DEADLINE = 60  # seconds: a guard against a hung start, never a wait for something


#: The OIDC client id the gateway's tokens must be issued for (their ``aud``).
AUDIENCE = "pgwire-tests"


def gateway_policy(
    path: Path, store: str | None = None, *, authority: str | None = None, ca: str | None = None
) -> Path:
    """Write the gateway tests' policy at ``path``: the demo plus the three services.

    A gateway signs people in with a verified provider, never the local one; ``authority``
    is the OIDC issuer whose tokens it accepts (one that cannot be reached by default).
    """
    data = yaml.safe_load(demo_policy_text())
    data["name"] = "gateway-clients"
    data["identity"] = {
        "provider": "msal",
        "client_id": AUDIENCE,
        "audience": AUDIENCE,
        "oidc_authority": authority or "https://issuer.invalid/tenant1",
        "groups_claim": "groups",
    }
    if ca:
        data["identity"]["ca_bundle"] = ca
    roles = {"etl": ["analyst"], "ops": ["approver"], "writer": ["admin"]}
    data["services"] = {
        name: {"roles": roles[name], "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
        for name, token in TOKENS.items()
    }
    if store:
        data["audit"] = {"store": store}
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class PgWire:
    """A running ``jupyter-gov gateway pgwire`` process."""

    process: subprocess.Popen[str]
    host: str
    port: int
    store: str
    home: Path | None = None

    def dsn(self, token: str, user: str = "analyst") -> str:
        return (
            f"host={self.host} port={self.port} user={user} dbname=governed "
            f"password={token} sslmode=disable connect_timeout=10"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def launch_pgwire(
    policy: Path, store: str, home: Path, extra: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """Start the server process on a free loopback port (see :func:`wait_ready`)."""
    env = {**os.environ, "JUPYTER_GOV_HOME": str(home), "JUPYTER_GOV_MASK_KEY": MASK_KEY}
    env.pop("JUPYTER_GOV_POLICY", None)
    env.pop("JUPYTER_GOV_AUDIT_STORE", None)
    command = [sys.executable, "-m", "jupyter_gov.cli", "gateway", "pgwire"]
    command += ["--policy", str(policy), "--store", store, "--listen", "127.0.0.1:0", *extra]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_ready(process: subprocess.Popen[str], store: str) -> PgWire:
    """Return once the server says where it listens (its first line of output)."""
    assert process.stdout is not None and process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    ready = selector.select(timeout=STARTUP_DEADLINE)
    line = process.stdout.readline() if ready else ""
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"pgwire did not start: {line!r} {process.stderr.read()[-2000:]!r}")
    host, _, port = line.rsplit(" ", 1)[1].strip().rpartition(":")
    return PgWire(process, host, int(port), store)


class PgWireFactory:
    """Starts pgwire servers on the gateway policy; stops them all at the end."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.started: list[PgWire] = []

    def start(
        self,
        store: str | None = None,
        *,
        replicas: int = 1,
        checkpoints: bool = False,
        **identity: str,
    ) -> list[PgWire]:
        """``replicas`` servers sharing ``store`` (default: a new SQLite file), started at
        once so their start-ups overlap. ``checkpoints``: each signs audit checkpoints into
        ``<home>/checkpoints`` with the key ``<home>/checkpoint.key``."""
        launched = []
        for _ in range(replicas):
            home = self.tmp.mktemp("pgwire")
            url = store or f"sqlite:///{home / 'audit.sqlite'}"
            policy = gateway_policy(home / "policy.yaml", url, **identity)
            extra: tuple[str, ...] = ()
            if checkpoints:
                generate_key(home / "checkpoint.key")
                extra = ("--checkpoint-key", str(home / "checkpoint.key"))
                extra += ("--checkpoint-dir", str(home / "checkpoints"))
            launched.append((launch_pgwire(policy, url, home, extra), url, home))
        servers = []
        for process, url, home in launched:
            server = wait_ready(process, url)
            server.home = home
            servers.append(server)
        self.started += servers
        return servers

    def stop(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture(scope="session")
def pgwire_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgWireFactory]:
    factory = PgWireFactory(tmp_path_factory)
    yield factory
    factory.stop()


@pytest.fixture(scope="session")
def pgwire(pgwire_factory: PgWireFactory) -> PgWire:
    """One shared server with its own SQLite audit store."""
    return pgwire_factory.start(checkpoints=True)[0]


@pytest.fixture(scope="session")
def psql() -> str:
    """The stock ``psql`` binary; skipped (failed when CI=true) where it is not installed."""
    binary = shutil.which("psql")
    if binary is None:
        require_server("the psql client binary")
    return str(binary)


@contextlib.contextmanager
def in_process(server: PgWireServer) -> Iterator[PgWireServer]:
    """Run ``server`` on an event loop in a thread of this process (no start-up of a new
    interpreter); stop it on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=STARTUP_DEADLINE)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(_shutdown(server), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _shutdown(server: PgWireServer) -> None:
    """Stop listening, then end every client's task while the loop still runs."""
    server.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# The TLS OIDC provider of the identity tests (tests/identity/conftest.py), for OIDC tokens.
from tests.identity.conftest import oidc_server  # noqa: E402, F401
