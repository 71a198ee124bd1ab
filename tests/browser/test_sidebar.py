"""The jupyter-gov sidebar in a real JupyterLab, driven by Debian's chromium.

Seeds an audit store, opens the shield tab, and checks that the Audit tab shows the events
with their badges, details, filters, the chain's integrity and live updates that keep
existing rows in place. Takes the light and dark screenshots for the docs: they are saved
next to the test's temporary files, and into ``docs/images/`` when missing there or when
``JUPYTER_GOV_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

from jupyter_gov.audit import AuditStore

from .conftest import ROOT, Lab

pytestmark = [pytest.mark.browser, pytest.mark.server]

SIDEBAR = '[id="jupyter-gov:sidebar"]'
ROWS = f"{SIDEBAR} tr.jp-gov-row"
IMAGES = ROOT / "docs" / "images"
TIMEOUT = 30_000  # ms, for every Playwright wait

USERS = {
    "alice": "Alice Martin",
    "bob": "Bob Okafor",
    "carol": "Carol Nguyen",
    "dave": "Dave Fischer",
}

#: (subject, statement, decision, rules, reasons, masked columns)
STATEMENTS = [
    (
        "alice",
        "SELECT full_name, email FROM customers WHERE country = ? LIMIT ?",
        "allow",
        ["mask:person_name", "mask:email"],
        [],
        {"customers.full_name": "token", "customers.email": "email"},
    ),
    ("bob", "SELECT status, count(*) FROM orders GROUP BY status", "allow", [], [], {}),
    (
        "bob",
        "DELETE FROM orders WHERE order_id = ?",
        "deny",
        ["read_only"],
        ["The analyst role is read-only: DELETE is not allowed."],
        {},
    ),
    (
        "carol",
        "UPDATE customers SET phone = ? WHERE customer_id = ?",
        "approval_required",
        ["approval:prod-writes"],
        ["Writes on production need a second person (rule prod-writes)."],
        {},
    ),
    (
        "alice",
        "SELECT * FROM read_csv(?)",
        "deny",
        ["table_function"],
        ["read_csv is not an allowed table function."],
        {},
    ),
    (
        "dave",
        "SELECT customer_id, ssn FROM customers WHERE customer_id = ?",
        "allow",
        ["mask:ssn"],
        [],
        {"customers.ssn": "partial (last 4 kept)"},
    ),
    ("carol", "SELECT avg(total) FROM orders WHERE placed_at >= ?", "allow", [], [], {}),
]

SEEDED_DECISIONS = 36


def seed(store: AuditStore, count: int = SEEDED_DECISIONS) -> None:
    """``count`` queries over the last three hours: attempt, decision and, if run, result."""
    pick = random.Random(5)
    now = time.time()
    for i in range(count):
        subject, statement, decision, rules, reasons, masked = STATEMENTS[i % len(STATEMENTS)]
        ts = now - (count - i) * 300 + pick.uniform(-60, 60)
        base = {
            "subject": subject,
            "display_name": USERS[subject],
            "auth_method": "local",
            "verified": False,
            "connection": "demo",
            "statement": statement,
            "fingerprint": hashlib.sha256(statement.encode()).hexdigest()[:16],
            "query_id": AuditStore.new_query_id(),
            "policy_name": "demo",
            "policy_hash": "e70b69849b3c135db26281cd8525d7b261ed2347d92bd3594dea8e11f3aebb90",
        }
        store.append("attempt", ts=ts, **base)
        store.append(
            "decision",
            ts=ts + 0.01,
            decision=decision,
            rules=rules,
            reasons=reasons,
            masked_columns=masked,
            **base,
        )
        if decision == "allow":
            store.append(
                "result",
                ts=ts + 0.2,
                decision="allow",
                rows=pick.randint(1, 500),
                duration_ms=round(pick.uniform(2, 80), 3),
                **base,
            )


@pytest.fixture(scope="module")
def seeded_lab(lab: Lab) -> Lab:
    store = AuditStore(f"sqlite:///{lab.audit_path}")
    seed(store)
    store.close()
    # Poll every second and chart 10-minute buckets; keep news pop-ups out of the pictures.
    lab.write_settings("jupyter-gov:plugin", {"refreshInterval": 1, "statsBucket": 600})
    lab.write_settings(
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    return lab


@pytest.fixture(scope="module")
def page(browser, seeded_lab: Lab):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(seeded_lab.lab_url())
    expect(page.locator("#jp-main-dock-panel")).to_be_visible()
    yield page
    context.close()


def open_sidebar(page) -> None:
    from playwright.sync_api import expect

    tab = page.locator('.jp-SideBar [data-id="jupyter-gov:sidebar"]')
    expect(tab).to_be_visible()
    if not page.locator(SIDEBAR).is_visible():
        tab.click()
    expect(page.locator(SIDEBAR)).to_be_visible()


def widen_sidebar(page, width: int = 430) -> None:
    """Drag the left split handle so the panel is as wide as a person would make it."""
    box = page.locator(SIDEBAR).bounding_box()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    hb = handle.bounding_box()
    assert box is not None and hb is not None
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + width, hb["y"] + hb["height"] / 2, steps=5)
    page.mouse.up()


def save_screenshot(page, name: str, tmp_dir: Path) -> None:
    shot = page.locator(SIDEBAR).screenshot(animations="disabled")
    (tmp_dir / name).write_bytes(shot)
    target = IMAGES / name
    if not target.exists() or os.environ.get("JUPYTER_GOV_UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shot)


def test_audit_tab_shows_seeded_events(page, seeded_lab: Lab, tmp_path: Path):
    from playwright.sync_api import expect

    open_sidebar(page)
    widen_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    expect(sidebar.locator('.jp-gov-tab[data-tab="audit"]')).to_have_attribute(
        "aria-selected", "true"
    )
    rows = page.locator(ROWS)
    # Decisions only by default: one row per seeded query.
    expect(rows).to_have_count(SEEDED_DECISIONS)
    expect(sidebar.locator(".jp-gov-status")).to_contain_text(f"{SEEDED_DECISIONS} events")
    for category in ("allowed", "masked", "denied", "approval"):
        expect(rows.locator(f'.jp-gov-badge[data-category="{category}"]').first).to_be_visible()
    newest = STATEMENTS[(SEEDED_DECISIONS - 1) % len(STATEMENTS)]
    expect(rows.first).to_contain_text(USERS[newest[0]])  # newest first
    expect(rows.first.locator(".jp-gov-col-statement")).to_have_text(newest[1])

    integrity = sidebar.locator(".jp-gov-integrity")
    expect(integrity).to_have_attribute("data-state", "ok")
    expect(integrity).to_contain_text("Chain intact")

    chart = sidebar.locator(".jp-gov-chart-svg")
    expect(chart.locator(".jp-gov-fill-denied").first).to_be_attached()
    expect(sidebar.locator(".jp-gov-chart-total")).to_contain_text(f"{SEEDED_DECISIONS} decisions")

    # Details of a masked query: statement, rules and the masked columns.
    masked = rows.filter(has=page.locator('[data-category="masked"]')).filter(has_text="full_name")
    masked.first.click()
    details = sidebar.locator(".jp-gov-details")
    expect(details).to_be_visible()
    expect(details.locator(".jp-gov-detail-statement")).to_have_text(STATEMENTS[0][1])
    expect(details.locator(".jp-gov-detail-rules")).to_contain_text("mask:email")
    expect(details.locator(".jp-gov-detail-masked")).to_contain_text("customers.email")
    expect(masked.first).to_have_attribute("aria-selected", "true")
    save_screenshot(page, "sidebar-light.png", tmp_path)

    # A denied one shows its reason.
    rows.filter(has=page.locator('[data-category="denied"]')).first.click()
    expect(details.locator(".jp-gov-detail-reasons")).to_contain_text("is not")
    details.locator(".jp-gov-close").click()
    expect(details).to_be_hidden()


def test_filters(page, seeded_lab: Lab):
    from playwright.sync_api import expect

    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    rows = page.locator(ROWS)
    decision = sidebar.locator('select[name="decision"]')
    decision.select_option("deny")
    expect(rows.locator('[data-category="denied"]')).to_have_count(len(rows_of("deny")))
    expect(rows).to_have_count(len(rows_of("deny")))

    decision.select_option("")
    user = sidebar.locator('input[name="user"]')
    user.fill("bob")
    expect(rows).to_have_count(len(rows_of(None, subject="bob")))
    expect(rows.first).to_contain_text("Bob Okafor")

    user.fill("")
    sidebar.locator('input[name="text"]').fill("read_csv")
    expect(rows).to_have_count(len(rows_of(None, text="read_csv")))
    sidebar.locator('input[name="text"]').fill("")

    sidebar.locator('select[name="kind"]').select_option("")  # all events
    every = 2 * SEEDED_DECISIONS + len(rows_of("allow"))  # attempts, decisions, results
    expect(rows).to_have_count(every)
    expect(sidebar.locator(".jp-gov-status")).to_contain_text(f"{every} events")
    expect(rows.locator('[data-category="none"]').first).to_contain_text("attempt")
    sidebar.locator('select[name="kind"]').select_option("decision")
    expect(rows).to_have_count(SEEDED_DECISIONS)


def rows_of(decision: str | None, subject: str | None = None, text: str | None = None):
    out = []
    for i in range(SEEDED_DECISIONS):
        s_subject, statement, s_decision, *_ = STATEMENTS[i % len(STATEMENTS)]
        if decision is not None and s_decision != decision:
            continue
        if subject is not None and s_subject != subject:
            continue
        if text is not None and text not in statement:
            continue
        out.append(i)
    return out


def test_new_events_arrive_without_redrawing_rows(page, seeded_lab: Lab):
    from playwright.sync_api import expect

    open_sidebar(page)
    rows = page.locator(ROWS)
    expect(rows).to_have_count(SEEDED_DECISIONS)
    # Tag the rendered rows; rows that are updated in place keep the tag.
    page.eval_on_selector_all(ROWS, "rows => rows.forEach(r => { r.__govTag = 'kept'; })")
    store = AuditStore(f"sqlite:///{seeded_lab.audit_path}")
    store.append(
        "decision",
        subject="erin",
        display_name="Erin Live",
        connection="demo",
        statement="SELECT 'live' AS arrival",
        decision="deny",
        rules=["live"],
        reasons=["a live event"],
        masked_columns={},
    )
    store.close()
    expect(rows).to_have_count(SEEDED_DECISIONS + 1)
    expect(rows.first).to_contain_text("Erin Live")
    kept = page.eval_on_selector_all(ROWS, "rows => rows.map(r => r.__govTag === 'kept')")
    assert kept[0] is False and all(kept[1:]), "existing rows were re-created"


def test_dark_theme_and_restored_layout(page, seeded_lab: Lab, tmp_path: Path):
    from playwright.sync_api import expect

    open_sidebar(page)
    response = page.request.put(
        f"{seeded_lab.url}lab/api/settings/@jupyterlab/apputils-extension:themes",
        headers={"Authorization": f"token {seeded_lab.token}"},
        data={"raw": '{"theme": "JupyterLab Dark"}'},
    )
    assert response.ok, response.text()
    page.reload()
    expect(page.locator('body[data-jp-theme-name="JupyterLab Dark"]')).to_be_attached()
    # The layout restorer brings the sidebar back open, without a click.
    expect(page.locator(SIDEBAR)).to_be_visible()
    rows = page.locator(ROWS)
    expect(rows.first).to_be_visible()
    rows.filter(has=page.locator('[data-category="denied"]')).nth(1).click()
    expect(page.locator(f"{SIDEBAR} .jp-gov-details")).to_be_visible()
    expect(page.locator(f"{SIDEBAR} .jp-gov-integrity")).to_have_attribute("data-state", "ok")
    save_screenshot(page, "sidebar-dark.png", tmp_path)
    page.request.put(
        f"{seeded_lab.url}lab/api/settings/@jupyterlab/apputils-extension:themes",
        headers={"Authorization": f"token {seeded_lab.token}"},
        data={"raw": '{"theme": "JupyterLab Light"}'},
    )


def test_other_tabs(page, seeded_lab: Lab, tmp_path: Path):
    from playwright.sync_api import expect

    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    sidebar.locator('.jp-gov-tab[data-tab="approvals"]').click()
    expect(sidebar.locator(".jp-gov-empty", has_text="No approvals are pending")).to_be_visible()
    expect(sidebar.locator('[data-testid="approvals-coming"]')).to_be_hidden()
    expect(sidebar.locator(".jp-gov-audit")).to_be_hidden()
    sidebar.screenshot(path=tmp_path / "approvals.png")
    sidebar.locator('.jp-gov-tab[data-tab="policy"]').click()
    expect(sidebar.locator(".jp-gov-policy-title")).to_contain_text("demo")
    expect(sidebar.locator(".jp-gov-policy-roles")).to_contain_text("analyst")
    you = sidebar.locator('[data-testid="policy-you"]')  # the server approves as dave
    expect(you).to_contain_text("Dave")
    expect(you).to_contain_text("roles: approver")
    expect(you).to_contain_text("email → email")
    sidebar.screenshot(path=tmp_path / "policy.png")
    sidebar.locator('.jp-gov-tab[data-tab="audit"]').click()
    expect(sidebar.locator(".jp-gov-audit")).to_be_visible()


def test_report_tab_summarises_the_audit_and_opens_the_full_report(
    page, seeded_lab: Lab, tmp_path: Path
):
    """The Report tab's figures come from ``GET report``; its Report button opens the
    self-contained HTML report in a new browser tab; its CSV link downloads the CSV."""
    from playwright.sync_api import expect

    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    sidebar.locator('.jp-gov-tab[data-tab="report"]').click()
    expect(sidebar.locator('[data-testid="report-chain"]')).to_contain_text("Chain intact")
    store = AuditStore(f"sqlite:///{seeded_lab.audit_path}")
    denied = store.count(kinds=("decision",), decision="deny")  # seeded, and live ones since
    store.close()
    expect(sidebar.locator('[data-figure="denied"]')).to_have_text(str(denied))
    denials = sidebar.locator('[data-testid="report-denials"]')
    expect(denials).to_contain_text("read_only on demo")
    expect(denials).to_contain_text("table_function on demo")
    save_screenshot(page, "report-tab.png", tmp_path)
    with page.expect_popup() as opened:
        sidebar.locator('[data-testid="report-open"]').click()
    report = opened.value
    report.wait_for_load_state()
    expect(report).to_have_title("jupyter-gov compliance report")
    expect(report.locator("#chain")).to_contain_text("Chain intact")
    expect(report.locator("#denials + svg")).to_be_visible()  # the inline chart
    assert report.locator("script").count() == 0
    shot = report.screenshot(full_page=True, animations="disabled")
    (tmp_path / "report.png").write_bytes(shot)
    if not (IMAGES / "report.png").exists():
        (IMAGES / "report.png").write_bytes(shot)
    report.close()
    href = sidebar.locator('[data-testid="report-csv"]').get_attribute("href")
    assert href is not None and "format=csv" in href
    response = page.request.get(
        urljoin(seeded_lab.url, href),
        headers={"Authorization": f"token {seeded_lab.token}"},
    )
    assert response.ok and response.headers["content-type"].startswith("text/csv")
    assert response.text().startswith("section,")
    sidebar.locator('.jp-gov-tab[data-tab="audit"]').click()


def test_a_tampered_log_shows_a_broken_chain(page, seeded_lab: Lab):
    from playwright.sync_api import expect

    open_sidebar(page)
    with sqlite3.connect(seeded_lab.audit_path) as db:
        db.execute("UPDATE events SET statement = 'SELECT 1' WHERE id = 5")
    integrity = page.locator(f"{SIDEBAR} .jp-gov-integrity")
    integrity.click()
    expect(integrity).to_have_attribute("data-state", "broken")
    expect(integrity).to_contain_text("Chain broken at event #5")


def test_policy_tab_lists_columns_pii_detection_found_without_values(page, seeded_lab: Lab):
    """``unclassified: auto`` findings reach the Policy tab from the audit: tag, confidence
    and sample size, never a value."""
    from playwright.sync_api import expect

    store = AuditStore(f"sqlite:///{seeded_lab.audit_path}")
    store.append(
        "classification",
        connection="demo",
        policy_name="demo",
        detail={
            "schema": "main",
            "table": "signups",
            "column": "contact",
            "tag": "email",
            "confidence": 0.97,
            "sample_size": 200,
        },
    )
    store.close()
    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    sidebar.locator('.jp-gov-tab[data-tab="policy"]').click()
    sidebar.locator(".jp-gov-policy-header .jp-gov-refresh").click()
    found = sidebar.locator('[data-testid="policy-pii"]')
    expect(found).to_contain_text("signups.contact")
    expect(found).to_contain_text("looks like email: masked")
    expect(found).to_contain_text("confidence 0.97 · 200 sampled · demo")
    sidebar.locator('.jp-gov-tab[data-tab="audit"]').click()
