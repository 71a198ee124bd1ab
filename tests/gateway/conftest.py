"""One gateway process for the whole session, started as the deployment guide says.

The gateway runs ``jupyter-gov gateway serve`` over TLS on loopback with a copy of the demo
policy that identifies callers by OIDC tokens from the real test provider of
``tests/identity`` (oidc-provider-mock behind a trustme CA). Its credentials file (the
masking key, and the password of a database role) is ``chmod 600``.

Run as root (as CI is), the gateway runs under its own OS user ``jgov-gateway`` (created
with ``useradd`` when absent), with its private folder, credentials file, audit store and a
private PostgreSQL cluster (password authentication, its data folder owned by that user)
out of reach of the notebook user ``jgov-notebook``. Elsewhere it runs as the current user
and the tests that need the OS boundary skip with the reason (they fail when ``CI=true``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.adversarial.conftest import pytest_collection_modifyitems  # noqa: F401 (stress)
from tests.identity.conftest import OidcServer, oidc_server  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_USER = "jgov-gateway"
NOTEBOOK_USER = "jgov-notebook"
CLIENT = "jupyter-gov-gateway"
TENANT = "tenant-guid-1"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)

#: Users of the test provider for the gateway, set over its HTTP API (claims as issued).
USERS: dict[str, dict[str, Any]] = {
    "gw-alice": {"name": "Alice", "groups": ["analysts"], "region": "EMEA", "tid": TENANT},
    "gw-bob": {"name": "Bob", "groups": ["admins"], "tid": TENANT},
    "gw-dave": {"name": "Dave", "groups": ["approvers"], "tid": TENANT},
    "gw-expired": {"name": "Old", "groups": ["admins"], "tid": TENANT, "exp": 1000},
    "gw-forged-issuer": {"groups": ["admins"], "tid": TENANT, "iss": "https://evil.example"},
    "gw-mallory": {"name": "Mallory", "groups": ["admins"], "tid": "tenant-guid-evil"},
}


def is_root() -> bool:
    return os.geteuid() == 0


def need(condition: bool, reason: str) -> None:
    """Skip with the reason, or fail when CI=true (CI runs as root with PostgreSQL)."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def id_token(server: OidcServer, sub: str, client: str = CLIENT) -> str:
    """An ID token the provider signs for ``sub`` and ``client`` (the auth-code flow)."""
    from urllib.parse import parse_qs, urlparse

    import msal

    app = msal.ConfidentialClientApplication(
        client,
        client_credential="secret",
        oidc_authority=server.authority("tenant1"),
        token_cache=msal.TokenCache(),
    )
    flow = app.initiate_auth_code_flow([], redirect_uri="http://localhost:8765/cb")
    redirect = server.authorize(flow["auth_uri"], sub)
    params = {k: v[0] for k, v in parse_qs(urlparse(redirect).query).items()}
    result = app.acquire_token_by_auth_code_flow(flow, params)
    return str(result["id_token"])


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster owned by the gateway's OS user, password authentication only."""

    port: int
    data: Path
    reader_password: str

    def url(self, password: str = "${GW_PG_PASSWORD}") -> str:
        return f"postgresql://gw_reader:{password}@127.0.0.1:{self.port}/postgres"


@dataclass
class Gateway:
    address: str
    ca_file: str
    policy_path: str
    audit_path: Path
    env_file: Path
    mask_key: str
    base: Path
    process: subprocess.Popen[str]
    os_user: str | None
    pg: PrivatePostgres | None
    oidc: OidcServer
    tokens: dict[str, str]

    def token(self, sub: str) -> str:
        if sub not in self.tokens:
            self.tokens[sub] = id_token(self.oidc, sub)
        return self.tokens[sub]

    def session(self, sub: str, **kwargs: Any) -> Any:
        from jupyter_gov.config import GatewaySettings
        from jupyter_gov.connectors.gateway import GatewaySession

        settings = GatewaySettings(self.address, "argument", self.ca_file)
        return GatewaySession(settings, self.token(sub), **kwargs)


def python_for(user: str | None) -> tuple[str, str]:
    """The interpreter and PYTHONPATH another OS user can run this tree with.

    The test's own interpreter may live where only root can read (a pyenv under /root);
    the system's Python of the same minor version runs the venv's packages as well.
    """
    paths = [str(ROOT)]
    if user is None:
        return sys.executable, os.pathsep.join(paths)
    _let_others_reach(ROOT)
    import sysconfig

    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / minor
    if not system.exists():
        raise RuntimeError(f"no {system} for the gateway's OS user to run")
    return str(system), os.pathsep.join([*paths, sysconfig.get_paths()["purelib"]])


def _let_others_reach(tree: Path) -> None:
    """Let other OS users read the checkout ``tree`` and traverse (not list) the folders
    above it.

    A checkout in a private folder (``mktemp -d`` makes them 0700) is otherwise out of the
    gateway's user's reach, and its interpreter dies importing jupyter_gov (Python's import
    lists a ``sys.path`` folder, so the checkout itself needs read as well as search
    permission). Only what is missing is added, and only by root, who runs these tests
    (``useradd``, ``runuser``); the files inside keep their own modes.
    """
    if os.geteuid() != 0:
        return
    for folder, wanted in (
        (tree, stat.S_IROTH | stat.S_IXOTH),
        *((p, stat.S_IXOTH) for p in tree.parents),
    ):
        mode = folder.stat().st_mode
        if mode & wanted != wanted:
            folder.chmod(mode | wanted)


def _run_as(user: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


def _start_postgres(private: Path, user: str) -> PrivatePostgres | None:
    """initdb + start as ``user``, a table with PII and a reader role with a password."""
    if PG_BIN is None:
        return None
    data, sockets = private / "pgdata", private / "pgsock"
    sockets.mkdir()
    shutil.chown(sockets, user)
    superuser = secrets.token_urlsafe(16)
    pwfile = private / "pg-superuser"
    pwfile.write_text(superuser)
    shutil.chown(pwfile, user)
    pwfile.chmod(0o600)
    subprocess.run(
        _run_as(
            user,
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "gw_owner",
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            ],
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = private / "pg.log"
    subprocess.run(  # the server inherits no pipe of ours (it would hold it open)
        _run_as(
            user,
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        ),
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    reader = secrets.token_urlsafe(16)
    setup = f"""
        CREATE ROLE gw_reader LOGIN PASSWORD '{reader}';
        CREATE TABLE gateway_customers (customer_id int, full_name text, email text);
        INSERT INTO gateway_customers VALUES
            (1, 'Grace Hopper', 'grace.hopper@navy.example'),
            (2, 'Alan Turing', 'alan.turing@bletchley.example');
        GRANT SELECT ON gateway_customers TO gw_reader;
    """
    subprocess.run(
        _run_as(
            user,
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "gw_owner",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                setup,
            ],
        ),
        check=True,
        capture_output=True,
        env={**os.environ, "PGPASSWORD": superuser},
    )
    return PrivatePostgres(port, data, reader)


def write_policy(path: Path, oidc: OidcServer, ca_file: str, pg: PrivatePostgres | None) -> None:
    """The demo policy, identified by OIDC tokens of the test provider's tenant1."""
    from importlib.resources import files

    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["name"] = "gateway-test"
    data["identity"] = {
        "provider": "msal",
        "oidc_authority": oidc.authority("tenant1"),
        "client_id": CLIENT,
        "tenants": [TENANT],
        "attributes": {"region": "region"},
        "ca_bundle": ca_file,
    }
    data["gateway"] = {"auth": ["oidc"]}
    if pg is not None:
        data["connections"]["warehouse"] = {"url": pg.url(), "description": "private cluster"}
        data["classifications"]["email"].append("gateway_customers.email")
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def start_gateway(
    policy: Path,
    *,
    user: str | None,
    home: Path,
    env_file: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    extra: tuple[str, ...] = (),
    doors: list[str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``jupyter-gov gateway serve`` as ``user``; returns the process and its address.

    ``extra`` are more options (``--pg-listen 127.0.0.1:0``...); ``doors``, when given,
    receives the address of every door the gateway announced (Flight first, then pgwire).
    """
    python, pythonpath = python_for(user)
    command = [
        python,
        "-c",
        "from jupyter_gov.cli import main; raise SystemExit(main())",
        "gateway",
        "serve",
        "--policy",
        str(policy),
        "--listen",
        "127.0.0.1:0",
    ]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    if tls is not None:
        command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    command += list(extra)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": pythonpath,
        "HOME": str(home),
        "JUPYTER_GOV_HOME": str(home),
    }
    process = subprocess.Popen(
        _run_as(user, command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )
    assert process.stdout is not None
    # selectors, not select.select: a long suite may hold file descriptors above 1024
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(60)
        line = process.stdout.readline() if ready else ""
        lines = [line]
        if "--pg-listen" in extra and "listening on" in line:
            lines.append(process.stdout.readline())
    if not all("listening on" in announced for announced in lines):
        process.kill()
        raise RuntimeError(f"the gateway did not start: {lines!r} {process.stderr.read()[-2000:]}")
    if doors is not None:
        doors.extend(announced.rsplit(" ", 1)[1].strip() for announced in lines)
    return process, line.rsplit(" ", 1)[1].strip()


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="session")
def gateway(oidc_server: OidcServer) -> Iterator[Gateway]:  # noqa: F811
    import requests
    import trustme

    for sub, claims in USERS.items():
        requests.put(
            f"{oidc_server.authority('tenant1')}/users/{sub}", json=claims, timeout=10
        ).raise_for_status()
    user = GATEWAY_USER if is_root() else None
    base = Path(tempfile.mkdtemp(prefix="jgov-gateway-"))
    base.chmod(0o755)
    private = base / "private"
    private.mkdir(mode=0o700)
    home = private / "home"
    home.mkdir(mode=0o700)
    process: subprocess.Popen[str] | None = None
    try:  # whatever step fails, the cluster and the gateway started so far are stopped
        pg = None
        if user is not None:
            ensure_user(GATEWAY_USER)
            ensure_user(NOTEBOOK_USER)
            shutil.chown(private, user)
            shutil.chown(home, user)
            pg = _start_postgres(private, user)
        ca_file = base / "oidc-ca.pem"
        shutil.copy(oidc_server.ca_file, ca_file)
        ca_file.chmod(0o644)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        gateway_ca = base / "gateway-ca.pem"
        gateway_ca.write_bytes(ca.cert_pem.bytes())
        gateway_ca.chmod(0o644)
        cert_file, key_file = private / "tls.crt", private / "tls.key"
        cert_file.write_bytes(b"".join(c.bytes() for c in cert.cert_chain_pems))
        key_file.write_bytes(cert.private_key_pem.bytes())
        mask_key = secrets.token_hex(32)
        env_file = private / "gateway.env"
        lines = [f"JUPYTER_GOV_MASK_KEY={mask_key}"]
        if pg is not None:
            lines.append(f"GW_PG_PASSWORD={pg.reader_password}")
        env_file.write_text("\n".join(lines) + "\n")
        for path in (cert_file, key_file, env_file):
            path.chmod(0o600)
            if user is not None:
                shutil.chown(path, user)
        policy = base / "policy.yaml"
        write_policy(policy, oidc_server, str(ca_file), pg)
        policy.chmod(0o644)
        process, address = start_gateway(
            policy, user=user, home=home, env_file=env_file, tls=(cert_file, key_file)
        )
        handle = Gateway(
            address=address,
            ca_file=str(gateway_ca),
            policy_path=str(policy),
            audit_path=home / "audit.sqlite",
            env_file=env_file,
            mask_key=mask_key,
            base=base,
            process=process,
            os_user=user,
            pg=pg,
            oidc=oidc_server,
            tokens={},
        )
        yield handle
    finally:
        if process is not None:
            stop(process)
        data = private / "pgdata"
        if (data / "postmaster.pid").exists() and PG_BIN is not None:
            subprocess.run(
                _run_as(user, [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                cwd="/",
            )
        shutil.rmtree(base, ignore_errors=True)


def audit_events(path: Path, query_id: str | None = None) -> list[dict[str, Any]]:
    """The gateway's audit, read as the auditor does (the store's own reader)."""
    from jupyter_gov.audit import AuditStore

    store = AuditStore(f"sqlite:///{path}")
    try:
        events = store.events(limit=100_000)
    finally:
        store.close()
    return [e for e in events if query_id is None or e.get("query_id") == query_id]


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition was not met in time")
        time.sleep(0.02)


@pytest.fixture
def notebook(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh IPython shell configured for the gateway only through the environment, as a
    JupyterHub spawner would set it: ``notebook("gw-alice")`` signs it in as that user."""
    from IPython.core.interactiveshell import InteractiveShell

    def make(sub: str, token: str | None = None) -> InteractiveShell:
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY", gateway.address)
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY_CA", gateway.ca_file)
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", token or gateway.token(sub))
        shell = InteractiveShell()
        shell.extension_manager.load_extension("jupyter_gov")
        return shell

    return make


#: Services of the ``served`` gateway: name -> (secret, roles).
SERVED_SERVICES = {
    "etl": ("etl-secret-0123456789", ["admin"]),
    "reporting": ("reporting-secret-0123456789", ["analyst"]),
}


@dataclass
class Served:
    """``jupyter-gov gateway serve --pg-listen ... --checkpoint-key``: one process, the Flight
    and the PostgreSQL doors, signed in to with services' tokens (the demo policy and its
    DuckDB), publishing signed checkpoints into ``home/checkpoints``."""

    process: subprocess.Popen[str]
    address: str  # grpc://host:port
    pg_host: str
    pg_port: int
    home: Path

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.sqlite"

    @staticmethod
    def token(service: str) -> str:
        return f"service:{service}:{SERVED_SERVICES[service][0]}"

    def session(self, service: str) -> Any:
        from jupyter_gov.connectors.gateway import GatewaySession

        return GatewaySession(self.address, self.token(service))


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from importlib.resources import files

    from jupyter_gov.identity.service import token_digest

    home = tmp_path_factory.mktemp("served")
    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["name"] = "served-test"
    data["gateway"] = {"audit_roles": ["admin"]}  # etl reads every event, reporting its own
    data["services"] = {
        name: {"token_sha256": token_digest(secret), "roles": roles}
        for name, (secret, roles) in SERVED_SERVICES.items()
    }
    (home / "policy.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    doors: list[str] = []
    from jupyter_gov.audit.checkpoints import generate_key

    key, _ = generate_key(home / "checkpoint.key")
    options = ("--pg-listen", "127.0.0.1:0", "--checkpoint-key", str(key))
    options += ("--checkpoint-dir", str(home / "checkpoints"))
    policy = home / "policy.yaml"
    process, address = start_gateway(policy, user=None, home=home, extra=options, doors=doors)
    pg_host, _, pg_port = doors[1].rpartition(":")
    try:
        yield Served(process, address, pg_host, int(pg_port), home)
    finally:
        stop(process)


# -- the suites' seam: one identity, in the kernel and through the gateway ---------------

#: The demo users of the governance suites (tests/adversarial/conftest.py), as claims the
#: test provider issues: the same roles and attributes the local demo policy gives them.
SUITE_CLAIMS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice", "groups": ["admins"]},
    "bob": {"name": "Bob", "groups": ["analysts"]},
    "carol": {"name": "Carol", "groups": ["analysts"], "region": "EMEA"},
    "dave": {"name": "Dave", "groups": ["approvers"]},
    "eve": {"name": "Eve", "groups": []},
}


class PathFactory:
    """``paths("bob")``: bob's :class:`~tests.adversarial.paths.Paths`, a kernel session and
    a gateway session of one identity, proven by one token of the test provider.

    The kernel side validates that token with the gateway's own authenticator, reads the
    gateway's policy, shares its masking key and reads the same demo data (``connector``, a
    DuckDB demo database: the shared one, or a private one for a suite that writes). Each
    factory signs its users in under fresh subjects, so the gateway's per-identity session
    (plan cache, saved results, bulk-export accounting) starts as empty as the kernel's
    does; both then see the same statements in the same order.
    """

    def __init__(self, gateway: Gateway, connector: Any, home: Path, audit: Any) -> None:
        from jupyter_gov.gateway.auth import Authenticator
        from jupyter_gov.policy import Policy

        self.gateway = gateway
        self.policy = Policy.load(gateway.policy_path)
        self.authenticator = Authenticator(self.policy)
        self.connector = connector
        self.home = home
        self.audit = audit
        self.tag = secrets.token_hex(3)
        self.made: dict[str, Any] = {}
        self.references: dict[str, Any] = {}

    def reference(self, user: str) -> Any:
        """The oracle's plain database of ``user``'s view under the gateway's key (None: the
        user sees nothing), read in the kernel with the approval rules left out."""
        from jupyter_gov.demo.data import TABLE_NAMES
        from jupyter_gov.errors import GovError
        from tests.adversarial.conftest import without_approvals
        from tests.adversarial.oracle import Reference

        if user not in self.references:
            session = self.kernel(user, without_approvals(self.policy))
            try:
                self.references[user] = Reference.materialize(
                    lambda sql: session.sql(sql).arrow(), TABLE_NAMES
                )
            except GovError:
                self.references[user] = None
        return self.references[user]

    def subject(self, user: str) -> str:
        return f"suite-{self.tag}-{user}"

    def token(self, user: str) -> str:
        import requests

        sub = self.subject(user)
        if sub not in self.gateway.tokens:
            claims = {**SUITE_CLAIMS[user], "tid": TENANT}
            authority = self.gateway.oidc.authority("tenant1")
            requests.put(f"{authority}/users/{sub}", json=claims, timeout=10).raise_for_status()
        return self.gateway.token(sub)

    def kernel(self, user: str, policy: Any = None) -> Any:
        """An in-kernel session of ``user``'s identity (``policy``: another view of the same
        policy, as the oracle's references use)."""
        from jupyter_gov.engine import GovernedSession

        identity = self.authenticator.identify(f"Bearer {self.token(user)}")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("JUPYTER_GOV_HOME", str(self.home))
            patch.setenv("JUPYTER_GOV_MASK_KEY", self.gateway.mask_key)
            session = GovernedSession(policy or self.policy, identity, audit=self.audit)
            session.keys.params()  # the gateway's key, resolved now and kept
        session.use_connector("demo", self.connector)
        return session

    def __call__(self, user: str) -> Any:
        from tests.adversarial.paths import Paths

        if user not in self.made:
            kernel = self.kernel(user)  # signs the subject in first
            self.made[user] = Paths(user, kernel, self.gateway.session(self.subject(user)))
        return self.made[user]

    def close(self) -> None:
        for reference in self.references.values():
            if reference is not None:
                reference.con.close()
        for paths in self.made.values():  # kernel sessions share the demo database and the
            paths.gateway.close()  # audit store, which their owners close


@contextlib.contextmanager
def path_factory(gateway: Gateway, connector: Any, home: Path) -> Iterator[PathFactory]:
    """A :class:`PathFactory` on ``connector`` whose kernel sessions share one audit (and
    approval) store under ``home``."""
    from jupyter_gov.audit import AuditStore

    audit = AuditStore(f"sqlite:///{home / 'audit.sqlite'}")
    factory = PathFactory(gateway, connector, home, audit)
    try:
        yield factory
    finally:
        factory.close()
        audit.close()


@pytest.fixture(scope="session")
def paths(
    gateway: Gateway, demo_connector: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PathFactory]:
    """The governance suites' seam (see :class:`PathFactory`) on the shared, read-only demo
    database, for the whole test session: the gateway builds a demo database per identity
    it serves, so the read-only suites share five identities (each side keeps one session
    per identity, as the gateway does, and sees every statement the other sees)."""
    with path_factory(gateway, demo_connector, tmp_path_factory.mktemp("paths")) as factory:
        yield factory
