"""A tamper-evident, append-only audit store: one hash-chained row per event.

Each row stores the hash of the previous row, and its own hash covers every field and
that link, so an edited, deleted or reordered row breaks the chain at a findable place
(``verify``). A truncated tail is only detectable against a checkpoint kept elsewhere
(``checkpoint`` / ``verify(checkpoint=...)``).

- :mod:`.chain`: the events, their hashing, the walk and the approvals' replay;
- :mod:`.store`: the :class:`AuditReader` protocol and the :class:`AuditStore` base, whose
  ``AuditStore(url)`` opens the kind the URL names;
- :mod:`.sqlite`: one file (the default); :mod:`.postgres`: the team store.
"""

from jupyter_gov.audit.chain import (
    _JSON_FIELDS,
    APPROVAL_KINDS,
    FIELDS,
    GENESIS,
    KINDS,
    ApprovalTrail,
    VerifyReport,
    _canonical,
    _decode,
    _record,
    _Walk,
    feed_trail,
    request_digest,
    row_hash,
)
from jupyter_gov.audit.sqlite import SQLiteAuditStore
from jupyter_gov.audit.store import (
    _MASKED_SQL,
    AuditReader,
    AuditStore,
    AuditTransaction,
    StatsRow,
    default_home,
    default_store_url,
    filter_clause,
    is_postgres_url,
    path_from_url,
)

__all__ = [
    "APPROVAL_KINDS",
    "FIELDS",
    "GENESIS",
    "KINDS",
    "_JSON_FIELDS",
    "_MASKED_SQL",
    "ApprovalTrail",
    "AuditReader",
    "AuditStore",
    "AuditTransaction",
    "SQLiteAuditStore",
    "StatsRow",
    "VerifyReport",
    "_Walk",
    "_canonical",
    "_decode",
    "_record",
    "default_home",
    "default_store_url",
    "feed_trail",
    "filter_clause",
    "is_postgres_url",
    "path_from_url",
    "request_digest",
    "row_hash",
]


def __getattr__(name: str) -> object:
    """``PostgresAuditStore`` on first use: importing it loads the PostgreSQL driver."""
    if name == "PostgresAuditStore":
        from jupyter_gov.audit.postgres import PostgresAuditStore

        return PostgresAuditStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
