"""Where governed statements run: one connector per kind of database.

A connector knows its dialect, reads its catalog (so analysis can resolve every table and
``SELECT *``), and executes the already-rewritten SQL with bound parameters, returning
Arrow. It never decides anything.
"""

from __future__ import annotations

from jupyter_gov.connectors.base import Catalog, Connector
from jupyter_gov.connectors.duckdb import DuckDBConnector, open_connector

__all__ = ["Catalog", "Connector", "DuckDBConnector", "open_connector"]
