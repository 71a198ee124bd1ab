"""The compliance report, built from a real audit chain that one scenario writes.

The scenario (once per module, on a private copy of the demo database): bob reads masked
PII and, with dave's approval, unmasked email; eve and bob are denied; alice's write on
production is approved by dave; alice breaks glass for another write; carol reads orders
through her region's row filter.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.cli import main
from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import QueryDenied, UsageError
from jupyter_gov.policy import Policy
from jupyter_gov.report import build_report, parse_since, render
from tests.conftest import raw_sql

UNMASK = "SELECT customer_id, email FROM customers ORDER BY customer_id LIMIT 7"
WRITE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 7"
GLASS = "UPDATE orders SET status = 'cancelled' WHERE order_id = 8"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> AuditStore:
    """The store after the scenario; tests that tamper work on a copy of its file."""
    base = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_GOV_HOME", str(base / "home"))
        env.delenv("JUPYTER_GOV_POLICY", raising=False)
        data = json.loads(json.dumps(Policy.load().data))
        data["approvals"]["break_glass"] = {"roles": ["admin"]}
        policy = Policy(data)
        url = f"sqlite:///{base / 'audit.sqlite'}"
        connector = DuckDBConnector("demo", "duckdb:demo")  # private: the scenario writes

        def session(user: str) -> GovernedSession:
            s = GovernedSession(policy, user, audit=url)
            s.use_connector("demo", connector)
            return s

        bob, dave, alice, eve, carol = (
            session(u) for u in ("bob", "dave", "alice", "eve", "carol")
        )
        bob.sql("SELECT full_name, email, city FROM customers LIMIT 3")
        bob.sql("SELECT full_name FROM customers LIMIT 2")
        request = bob.request_approval(UNMASK, justification="churn model", unmask=["email"])
        dave.approve(request.id, "ok")
        bob.sql(UNMASK, unmask=["email"], approval_id=request.id)
        for statement in ("SELECT * FROM customers", "SELECT city FROM customers"):
            with pytest.raises(QueryDenied):
                eve.sql(statement)
        with pytest.raises(QueryDenied):
            bob.sql("DROP TABLE orders")
        write = alice.request_approval(WRITE, justification="customer asked")
        dave.approve(write.id, "checked")
        alice.sql(WRITE, approval_id=write.id)
        alice.sql(GLASS, break_glass="INC-7 fraud stop")
        carol.sql("SELECT order_id, region FROM orders LIMIT 5")
        store = AuditStore(url)
        yield store
        connector.close()


def _copy(store: AuditStore, folder: Path) -> AuditStore:
    """A consistent copy of a SQLite store (its WAL included), to tamper with."""
    target = folder / "audit.sqlite"
    with sqlite3.connect(store.path) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return AuditStore(f"sqlite:///{target}")


@pytest.fixture(scope="module")
def report(audited: AuditStore):
    return build_report(audited, parse_since("1d"))


def test_pii_reads_count_statements_and_rows_per_identity_connection_tag(report) -> None:
    rows = {(r["subject"], r["tag"], r["state"]): r for r in report.pii_reads}
    assert rows[("bob", "person_name", "masked")]["reads"] == 2
    assert rows[("bob", "person_name", "masked")]["rows"] == 5
    assert rows[("bob", "email", "masked")]["reads"] == 1
    assert rows[("bob", "email", "unmasked")] == {
        "subject": "bob",
        "connection": "demo",
        "tag": "email",
        "state": "unmasked",
        "reads": 1,
        "rows": 7,
    }


def test_unmasking_approvals_name_requester_approver_and_latency(report) -> None:
    (approval,) = report.unmask_approvals
    assert (approval["requester"], approval["decided_by"], approval["state"]) == (
        "bob",
        "dave",
        "approved",
    )
    assert approval["unmask"] == "email" and approval["uses"] == 1
    assert 0 <= approval["latency_s"] < 60
    assert report.latency(report.unmask_approvals)["median_s"] is not None


def test_denied_attempts_are_grouped_by_rule_with_who_tried(report) -> None:
    assert report.denials == [
        {"rule": "no-role", "connection": "demo", "attempts": 2, "subjects": "eve"},
        {"rule": "deny-drop", "connection": "demo", "attempts": 1, "subjects": "bob"},
    ]
    assert report.totals["denied"] == 3


def test_write_approvals_and_break_glass_are_listed_apart(report) -> None:
    (write,) = report.write_approvals
    assert (write["requester"], write["decided_by"], write["uses"]) == ("alice", "dave", 1)
    (glass,) = report.break_glass
    assert glass["requester"] == "alice"
    assert glass["justification"] == "INC-7 fraud stop"
    assert glass["id"] not in {w["id"] for w in report.write_approvals}


def test_an_intact_chain_is_reported_with_a_checkpoint_to_keep(report, audited) -> None:
    assert report.chain["ok"] is True
    assert report.chain["current_checkpoint"] == audited.checkpoint()


def test_a_tampered_chain_and_a_truncated_tail_are_reported(audited, tmp_path: Path) -> None:
    checkpoint = audited.checkpoint()
    store = _copy(audited, tmp_path)
    last = checkpoint["last_id"]
    raw_sql(store, "DELETE FROM events WHERE id = ?", (last,))
    report = build_report(store, parse_since("1d"), checkpoints=[checkpoint])
    assert report.checkpoints[0]["ok"] is False
    assert "truncated" in report.checkpoints[0]["reason"]
    raw_sql(store, "UPDATE events SET subject = 'mallory' WHERE id = 3")
    broken = build_report(store, parse_since("1d"))
    assert broken.chain["ok"] is False and broken.chain["broken_at"] == 3
    assert "Chain BROKEN at event 3" in render(broken, "md")


def test_the_window_leaves_out_older_events(audited) -> None:
    future = build_report(audited, since=4_000_000_000.0, until=4_000_000_100.0)
    assert future.pii_reads == [] and future.denials == [] and future.totals["events"] == 0


def test_html_is_self_contained_readable_light_and_dark(report) -> None:
    page = render(report, "html")
    assert page.startswith("<!doctype html>")
    assert "prefers-color-scheme: dark" in page
    assert page.count("<svg") >= 3  # decisions per day, tags, denials
    assert "<script" not in page
    assert "src=" not in page and "<link" not in page and "url(" not in page


def test_csv_is_one_table_with_a_section_column(report) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    sections = {r["section"] for r in rows}
    assert {"chain", "pii_reads", "unmask_approvals", "denials", "break_glass"} <= sections
    assert "write_approvals" in sections
    unmask = next(r for r in rows if r["section"] == "unmask_approvals")
    assert unmask["decided_by"] == "dave" and unmask["requested_at"].endswith("Z")


def test_csv_cells_cannot_run_as_spreadsheet_formulas(audited, tmp_path: Path) -> None:
    store = _copy(audited, tmp_path)
    store.append("decision", subject="=HYPERLINK(1)", decision="deny", rules=["r"], connection="x")
    text = render(build_report(store, parse_since("1d")), "csv")
    assert "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text


def test_the_report_holds_no_row_value_or_bound_attribute(audited, report) -> None:
    values = [v for (v,) in raw_sql(audited, "SELECT 1")]  # the store is readable
    assert values == [1]
    text = "".join(render(report, fmt) for fmt in ("html", "md", "csv", "json"))
    assert "EMEA" not in text  # carol's row filter value stays a bound parameter
    assert "@" not in text.replace("@media", "")  # no e-mail address, masked or not


def test_the_command_writes_each_format_and_refuses_a_bad_window(
    audited, tmp_path: Path, capsys
) -> None:
    for fmt in ("html", "md", "csv"):
        out = tmp_path / f"report.{fmt}"
        code = main(
            ["report", "--since", "1d", "--format", fmt, "--store", audited.url, "-o", str(out)]
        )
        assert code == 0 and out.stat().st_size > 200
    assert main(["report", "--since", "yesterday", "--store", audited.url]) == 2
    assert "--since takes a duration" in capsys.readouterr().err


def test_parse_since_accepts_minutes_hours_days_weeks() -> None:
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_since("2w", now=2e6) == 2e6 - 14 * 86400
    with pytest.raises(UsageError):
        parse_since("30 days")


def test_the_report_reads_either_store_through_the_reader_interface(
    store_url: str, demo_connector
) -> None:
    bob = GovernedSession(None, "bob", audit=store_url)
    bob.use_connector("demo", demo_connector)
    bob.sql("SELECT email FROM customers LIMIT 2")
    with pytest.raises(QueryDenied):
        bob.sql("DROP TABLE orders")
    report = build_report(AuditStore(store_url), parse_since("1h"))
    assert report.chain["ok"] is True
    assert [(r["tag"], r["state"], r["rows"]) for r in report.pii_reads] == [("email", "masked", 2)]
    assert [d["rule"] for d in report.denials] == ["deny-drop"]
