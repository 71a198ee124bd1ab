"""The audit's reader interface: what the sidebar's API needs from any store, SQLite or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_gov.audit import GENESIS, AuditReader, AuditStore, StatsRow, VerifyReport
from jupyter_gov.server.handlers import decision_stats, page_events

BUCKET = 60


def test_every_store_is_an_audit_reader(store_url):
    assert isinstance(AuditStore(store_url), AuditReader)


def test_stats_counts_per_bucket_decision_and_mask(store_url):
    store = AuditStore(store_url)
    store.append("decision", ts=10.0, decision="allow")
    store.append("decision", ts=20.0, decision="allow", masked_columns={"email": "email"})
    store.append("decision", ts=70.0, decision="deny")
    store.append("result", ts=75.0, decision="allow")
    rows = store.stats(bucket=BUCKET, kinds=("decision",))
    assert sorted(rows, key=lambda r: (r.start, r.masked)) == [
        StatsRow(0, "allow", False, 1),
        StatsRow(0, "allow", True, 1),
        StatsRow(60, "deny", False, 1),
    ]


def test_stats_applies_the_same_filters_as_events(store_url):
    store = AuditStore(store_url)
    store.append("decision", ts=10.0, decision="allow", subject="alice")
    store.append("decision", ts=11.0, decision="allow", subject="bob")
    (row,) = store.stats(bucket=BUCKET, subject="bob")
    assert row.count == 1 and store.count(subject="bob") == 1


def test_text_filter_ignores_case_on_every_store(store_url):
    store = AuditStore(store_url)
    store.append("attempt", statement="SELECT * FROM customers")
    assert store.count(text="select * from CUSTOMERS") == 1
    assert [e["statement"] for e in store.events(text="customers")] == ["SELECT * FROM customers"]


class ListReader:
    """A store that is not SQLite at all: events in a list, as a gateway's client might be."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.items = events

    def _match(self, subject: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return [e for e in self.items if subject is None or e["subject"] == subject]

    def events(
        self, *, limit: int = 100, offset: int = 0, newest_first: bool = True, **filters: Any
    ) -> list[dict[str, Any]]:
        found = self._match(**filters)
        found = list(reversed(found)) if newest_first else found
        return [dict(e) for e in found[offset : offset + limit]]

    def count(self, **filters: Any) -> int:
        return len(self._match(**filters))

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]:
        return [
            StatsRow(int(e["ts"] // bucket) * bucket, e["decision"], False, 1)
            for e in self._match(**filters)
        ]

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport:
        return VerifyReport(True, len(self.items), GENESIS)

    def head(self) -> tuple[int, str]:
        return len(self.items), GENESIS


def test_the_sidebar_api_reads_any_store_through_the_reader_interface():
    reader = ListReader(
        [{"id": i, "ts": 60.0 * i, "subject": "bob", "decision": "deny"} for i in range(3)]
    )
    assert isinstance(reader, AuditReader)
    events, total = page_events(reader, {"subject": "bob"}, limit=2, offset=0)
    assert total == 3 and [e["category"] for e in events] == ["denied", "denied"]
    buckets = decision_stats(reader, {"subject": "bob"}, BUCKET, 0.0, 179.0)
    assert [b["counts"]["denied"] for b in buckets] == [1, 1, 1]
