"""Where the policy, the audit store, the approvals and the masking key are: resolved once.

Every front end (the ``%%gsql`` magic, the ``jupyter-gov`` CLI, the server extension behind
the sidebar, :func:`jupyter_gov.connect`) calls :func:`resolve`, so a kernel, the sidebar and
``jupyter-gov audit verify`` read and write the same store. Each setting is taken from the
first of these that gives it:

1. an explicit argument: a CLI flag, a ``%config GovMagic`` / ``c.GovServer`` trait, an API
   keyword;
2. the environment: ``JUPYTER_GOV_POLICY``, ``JUPYTER_GOV_AUDIT_STORE``, ``JUPYTER_GOV_HOME``;
3. the policy file: ``audit.store``, ``masking.key_env``, the default connection;
4. defaults: the built-in demo policy, ``<home>/audit.sqlite``, ``<home>/mask.key``, with
   ``<home>`` the Jupyter data dir's ``jupyter_gov`` folder.

Paths become absolute when resolved: a relative ``audit.store`` in a policy file is relative
to that file's folder (a kernel, the server and the CLI run in different working directories),
a relative flag or environment value to the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jupyter_gov.errors import PolicyError
from jupyter_gov.policy import Policy

ENV_POLICY = "JUPYTER_GOV_POLICY"
ENV_HOME = "JUPYTER_GOV_HOME"
ENV_AUDIT_STORE = "JUPYTER_GOV_AUDIT_STORE"
ENV_GATEWAY = "JUPYTER_GOV_GATEWAY"
ENV_GATEWAY_TOKEN = "JUPYTER_GOV_GATEWAY_TOKEN"
ENV_GATEWAY_CA = "JUPYTER_GOV_GATEWAY_CA"
DEMO = "demo"

#: Where a resolved setting came from, strongest first.
Origin = Literal["argument", "environment", "policy", "default"]


@dataclass(frozen=True)
class MaskKeySource:
    """The masking secret: the variable ``env`` if set, else the owner-only file ``file``."""

    env: str
    file: Path


@dataclass(frozen=True)
class Settings:
    """One resolution of every location jupyter-gov uses; see the module docstring."""

    policy: Policy
    policy_source: str | None  # an absolute path, or None for the built-in demo policy
    home: Path
    audit_store: str  # a sqlite:/// URL with an absolute path, or a postgresql:// URL
    connection: str
    mask_key: MaskKeySource
    origins: Mapping[str, Origin] = field(default_factory=dict)

    @property
    def approvals_store(self) -> str:
        """Approval requests live in the audit store, so every front end shares them."""
        return self.audit_store

    def describe(self) -> dict[str, str]:
        """Each setting and where it came from, for ``jupyter-gov config`` and the logs."""
        values = {
            "policy": self.policy_source or "<built-in demo policy>",
            "home": str(self.home),
            "audit_store": shown_store(self.audit_store),
            "approvals_store": shown_store(self.approvals_store),
            "connection": self.connection,
            "mask_key": f"${self.mask_key.env}, else {self.mask_key.file}",
        }
        origins = {**self.origins, "approvals_store": self.origins.get("audit_store", "default")}
        return {name: f"{value} ({origins.get(name, 'default')})" for name, value in values.items()}


def resolve(
    *,
    policy: Policy | str | os.PathLike[str] | None = None,
    audit_store: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    connection: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting; raise :class:`PolicyError` (one sentence) if one cannot be.

    ``policy`` may be a loaded :class:`Policy`, a path, ``"demo"`` or None; empty strings
    count as "not given", as unset traits and flags do.
    """
    env = os.environ if environ is None else environ
    origins: dict[str, Origin] = {}
    home_path = resolve_home(home, env, origins)
    loaded, source = load_policy(policy, env, origins)
    store = resolve_audit_store(audit_store, env, loaded, home_path, origins)
    chosen = loaded.connection(connection or None).name  # PolicyError names the known ones
    origins["connection"] = "argument" if connection else "policy"
    origins["mask_key"] = "policy" if loaded.mask_key_env != "JUPYTER_GOV_MASK_KEY" else "default"
    return Settings(
        policy=loaded,
        policy_source=source,
        home=home_path,
        audit_store=store,
        connection=chosen,
        mask_key=MaskKeySource(loaded.mask_key_env, home_path / "mask.key"),
        origins=origins,
    )


@dataclass(frozen=True)
class GatewaySettings:
    """Where a kernel's gateway is, and how it proves who is asking (see docs/gateway.md)."""

    address: str  # grpc://host:port or grpc+tls://host:port
    origin: Origin
    ca_file: str | None = None  # PEM roots for a grpc+tls gateway; None: the system's


def resolve_gateway(
    gateway: str | None = None,
    *,
    ca_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewaySettings | None:
    """The gateway a front end must use instead of the in-process engine, if any.

    Explicit argument (``GovMagic.gateway``, ``--gateway``, ``gateway=``) first, then
    ``$JUPYTER_GOV_GATEWAY``; None means in-kernel mode. Only ``grpc://`` and
    ``grpc+tls://`` addresses are accepted.
    """
    env = os.environ if environ is None else environ
    address, origin = (gateway, "argument") if gateway else (env.get(ENV_GATEWAY), "environment")
    if not address:
        return None
    if not address.startswith(("grpc://", "grpc+tls://")):
        raise PolicyError(
            f"The gateway address {address!r} is not grpc://HOST:PORT or grpc+tls://HOST:PORT."
        )
    ca = ca_file or env.get(ENV_GATEWAY_CA) or None
    return GatewaySettings(address, origin, ca)  # type: ignore[arg-type]


def resolve_store(
    *,
    policy: Policy | str | os.PathLike[str] | None = None,
    audit_store: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The audit store's URL alone, as :func:`resolve` finds it.

    The policy is only loaded when neither an argument nor the environment names the store,
    so ``jupyter-gov audit verify --store X`` works whatever state the policy is in.
    """
    env = os.environ if environ is None else environ
    home_path = resolve_home(home, env)
    loaded = None if audit_store or env.get(ENV_AUDIT_STORE) else load_policy(policy, env)[0]
    return resolve_audit_store(audit_store, env, loaded, home_path)


def resolve_home(
    home: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    origins: dict[str, Origin] | None = None,
) -> Path:
    """The folder for the default audit store and masking key."""
    origins = {} if origins is None else origins
    if home:
        origins["home"] = "argument"
        return _absolute(Path(home))
    if environ.get(ENV_HOME):
        origins["home"] = "environment"
        return _absolute(Path(environ[ENV_HOME]))
    origins["home"] = "default"
    try:
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "jupyter_gov"
    except ImportError:  # pragma: no cover - jupyter_core ships with ipykernel
        return Path.home() / ".local" / "share" / "jupyter" / "jupyter_gov"


def resolve_policy_source(
    policy: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    origins: dict[str, Origin] | None = None,
) -> str | None:
    """The policy file to load, as an absolute path, or None for the built-in demo."""
    origins = {} if origins is None else origins
    if policy:
        origins["policy"] = "argument"
        raw = str(policy)
    elif environ.get(ENV_POLICY):
        origins["policy"] = "environment"
        raw = environ[ENV_POLICY]
    else:
        origins["policy"] = "default"
        return None
    return None if raw == DEMO else str(_absolute(Path(raw)))


def load_policy(
    policy: Policy | str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    origins: dict[str, Origin] | None = None,
) -> tuple[Policy, str | None]:
    """The policy object and the file it came from (None for the built-in demo)."""
    if isinstance(policy, Policy):
        if origins is not None:
            origins["policy"] = "argument"
        return policy, _policy_file(policy)
    source = resolve_policy_source(policy, environ, origins)
    return Policy.load(source if source is not None else DEMO), source


def resolve_audit_store(
    audit_store: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    policy: Policy | None,
    home: Path,
    origins: dict[str, Origin] | None = None,
) -> str:
    """The audit store's URL: argument, ``$JUPYTER_GOV_AUDIT_STORE``, ``audit.store``, home.

    ``policy`` may be None when the policy could not be loaded: then only an argument or the
    environment can name the store, and otherwise :class:`PolicyError` says so (fail closed:
    the default store might not be the one the policy names).
    """
    origins = {} if origins is None else origins
    if audit_store:
        origins["audit_store"] = "argument"
        return store_url(str(audit_store), Path.cwd())
    if environ.get(ENV_AUDIT_STORE):
        origins["audit_store"] = "environment"
        return store_url(environ[ENV_AUDIT_STORE], Path.cwd())
    if policy is None:
        raise PolicyError(
            "The audit store cannot be found because the policy did not load; fix the policy "
            f"or name the store with ${ENV_AUDIT_STORE}."
        )
    if policy.audit_store:
        origins["audit_store"] = "policy"
        policy_file = _policy_file(policy)
        base = Path(policy_file).parent if policy_file else Path.cwd()
        return store_url(policy.audit_store, base)
    origins["audit_store"] = "default"
    return store_url(str(home / "audit.sqlite"), home)


def store_url(value: str, base: Path) -> str:
    """``sqlite:///abs/path`` for a SQLite path or URL (relative to ``base``); others as given.

    A ``postgresql://`` URL is kept exactly as written, ``${VAR}`` references included: the
    team store expands them only when it connects, so the resolved settings (shown by
    ``jupyter-gov config``) never hold a secret from the environment.
    """
    if value.startswith("sqlite:///"):
        value = value[len("sqlite:///") :]
    elif "://" in value:
        return value  # another kind of store: its own module checks and opens it
    path = Path(value).expanduser()
    return f"sqlite:///{path if path.is_absolute() else (base / path).resolve()}"


def shown_store(url: str) -> str:
    """The store's URL fit to show: a PostgreSQL URL without its password."""
    from jupyter_gov.audit.store import is_postgres_url

    if "://" in url and is_postgres_url(url):
        from jupyter_gov.audit.postgres import redact_url

        return redact_url(url)
    return url


def _policy_file(policy: Policy) -> str | None:
    """The file a loaded policy came from, or None for the built-in demo or a string."""
    origin = Path(policy.origin)
    return str(origin.resolve()) if origin.is_absolute() or origin.is_file() else None


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


__all__ = [
    "ENV_AUDIT_STORE",
    "ENV_HOME",
    "ENV_POLICY",
    "MaskKeySource",
    "Settings",
    "load_policy",
    "resolve",
    "resolve_audit_store",
    "resolve_home",
    "resolve_policy_source",
    "resolve_store",
    "store_url",
]
