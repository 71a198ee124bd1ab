"""Find the profile for a URL or a dialect: built-ins first, then installed plug-ins.

Modelled on sqlglot's dialect registry (look up by name, suggest a close one) and ADBC's
``dbapi.connect`` (the URL scheme picks the driver). A third-party package adds a backend
by exposing a :class:`~jupyter_gov.connectors.profile.Profile` under the entry-point group
``jupyter_gov.connectors``::

    [project.entry-points."jupyter_gov.connectors"]
    clickhouse = "jupyter_gov_clickhouse:PROFILE"

A plug-in may not take over a scheme or a name a built-in already answers: a package
replacing DuckDB's lockdown by being installed would be a bypass. Audit sinks will be
found the same way under ``jupyter_gov.audit_sinks``.
"""

from __future__ import annotations

import difflib
import importlib
import threading
import warnings
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from jupyter_gov.connectors.profile import Profile
from jupyter_gov.errors import UnknownBackend  # importable from here as before

if TYPE_CHECKING:
    from jupyter_gov.connectors.base import Connector
    from jupyter_gov.policy import Connection

ENTRY_POINT_GROUP = "jupyter_gov.connectors"
AUDIT_SINKS_GROUP = "jupyter_gov.audit_sinks"

#: Built-in profiles: one module each, exposing ``PROFILE``.
BUILTIN = (
    "duckdb",
    "postgres",
    "mysql",
    "sqlite",
    "spark",
    "snowflake",
    "bigquery",
    "trino",
    "databricks",
    "redshift",
)

_by_name: dict[str, Profile] = {}
_by_scheme: dict[str, Profile] = {}
_loaded = False
_lock = threading.RLock()


def register(profile: Profile, *, replace: bool = False) -> Profile:
    """Add a profile; refuses to shadow a name or scheme unless ``replace`` (tests only)."""
    taken = [s for s in (profile.name, *profile.schemes) if s in _by_scheme or s in _by_name]
    if taken and not replace:
        raise ValueError(f"profile {profile.name!r} would take over {', '.join(taken)}")
    _by_name[profile.name] = profile
    for scheme in profile.schemes:
        _by_scheme[scheme] = profile
    return profile


def unregister(name: str) -> None:
    """Remove a profile (tests and plug-in development)."""
    profile = _by_name.pop(name, None)
    if profile is not None:
        for scheme in profile.schemes:
            if _by_scheme.get(scheme) is profile:
                del _by_scheme[scheme]


def _load() -> None:
    global _loaded
    # Other threads (the server extension's) wait for a complete registry; a plug-in that
    # looks profiles up while being loaded, in this thread, sees the built-ins.
    with _lock:
        if not _loaded:
            _loaded = True
            _register_all()


def _register_all() -> None:
    for module in BUILTIN:
        register(importlib.import_module(f"jupyter_gov.connectors.{module}").PROFILE)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            profile = entry.load()
            if not isinstance(profile, Profile):
                raise TypeError(f"{entry.value} is not a jupyter_gov Profile")
            register(profile)
        except Exception as error:  # a broken plug-in must not take DuckDB down with it
            warnings.warn(
                f"jupyter-gov ignored the connector plug-in {entry.name!r}: {error}",
                stacklevel=2,
            )


def profiles() -> dict[str, Profile]:
    """Every known profile by name."""
    _load()
    return dict(_by_name)


def scheme_of(url: str) -> str:
    """``postgresql+psycopg://u@h/db`` -> ``postgresql``; ``duckdb:demo`` -> ``duckdb``."""
    return url.split(":", 1)[0].split("+", 1)[0].strip().lower() if ":" in url else ""


def profile_for_url(url: str, connection_name: str = "") -> Profile:
    """The profile whose schemes include the URL's, or a one-sentence error with a hint."""
    _load()
    scheme = scheme_of(url)
    profile = _by_scheme.get(scheme)
    if profile is not None:
        return profile
    known = sorted(_by_scheme)
    close = difflib.get_close_matches(scheme, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known schemes: {', '.join(known)}."
    which = f"Connection {connection_name!r}" if connection_name else "The connection URL"
    if not scheme:  # never echo the URL itself: it may hold an expanded secret
        raise UnknownBackend(f"{which} has no scheme; start it with one ({', '.join(known)}).")
    raise UnknownBackend(
        f"{which} uses the scheme {scheme!r}, which no installed jupyter-gov profile knows; {hint}"
    )


def profile_for_dialect(dialect: str) -> Profile | None:
    """The profile rendering a sqlglot dialect (its own, else the first declaring it)."""
    _load()
    profile = _by_name.get(dialect)
    if profile is not None and profile.dialect == dialect:
        return profile
    return next((p for p in _by_name.values() if p.dialect == dialect), None)


def open_connector(connection: Connection) -> Connector:
    """Open the connector for a policy connection, through the profile of its URL."""
    return profile_for_url(connection.expanded_url, connection.name).open(connection)
