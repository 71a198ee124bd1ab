"""Amazon Redshift (rendering only): PostgreSQL-like, but ``SHA2`` returns hex text and
``regexp_replace`` replaces every match without flags (a fourth argument is a position).
"""

from __future__ import annotations

from jupyter_gov.connectors.postgres import CATALOG_SQL
from jupyter_gov.connectors.profile import Capabilities, Profile

PROFILE = Profile(
    name="redshift",
    title="Amazon Redshift",
    schemes=("redshift",),
    dialect="redshift",
    paramstyle="pyformat",
    default_schema="public",
    catalog_query=CATALOG_SQL,
    capabilities=Capabilities(cancel=True, read_only_transactions=True, server_timeout=True),
)
