"""Where governed statements run: one connector per kind of database.

Each kind of database is one :class:`Profile` (its schemes, dialect, lockdown, catalog
query and how masks are spelled), found by :mod:`~jupyter_gov.connectors.registry`. A
connector reads its catalog (so analysis can resolve every table and ``SELECT *``) and
executes the already-rewritten SQL with bound parameters, returning Arrow. It never
decides anything.
"""

from __future__ import annotations

from jupyter_gov.connectors.base import Catalog, Connector, TableEntry
from jupyter_gov.connectors.profile import Capabilities, MaskDialect, Profile
from jupyter_gov.connectors.registry import (
    open_connector,
    profile_for_dialect,
    profile_for_url,
    profiles,
)


def __getattr__(name: str) -> object:
    # Connector modules are imported on first use, through the registry: importing the
    # package must not pull in every engine (nor, through them, masking and scrubbing).
    if name == "DuckDBConnector":
        from jupyter_gov.connectors.duckdb import DuckDBConnector

        return DuckDBConnector
    raise AttributeError(name)


__all__ = [
    "Capabilities",
    "Catalog",
    "Connector",
    "DuckDBConnector",
    "MaskDialect",
    "Profile",
    "TableEntry",
    "open_connector",
    "profile_for_dialect",
    "profile_for_url",
    "profiles",
]
