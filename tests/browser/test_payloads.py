"""Stored XSS in the sidebar: payloads in every field of audit events and approval requests.

An attacker who can write to the shared audit store (or sign in with a crafted name, or
run a statement with a crafted literal or justification) controls every string the panel
shows. Each payload tries to run script (``window.__xss`` would be set), open a dialog, or
hide what it says behind bidi and zero-width characters; the panel must show each one as
literal text, with those characters drawn as ``⟨U+XXXX⟩``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing

import pytest

from jupyter_gov.approvals import ApprovalRequest, ApprovalStore, Binding
from jupyter_gov.audit import AuditStore
from jupyter_gov.widgets import reveal
from tests.server.approval_contract import install as install_approval_contract
from tests.server.approval_contract import with_values

from .conftest import Lab
from .test_sidebar import ROWS, SIDEBAR, TIMEOUT, open_sidebar

pytestmark = [pytest.mark.browser, pytest.mark.server]

PAYLOADS = [
    '<img src=x onerror="window.__xss=1">',
    '"><script>window.__xss=2</script>',
    "'><svg onload=window.__xss=3>",
    "javascript:window.__xss=4",
    "<iframe srcdoc='<script>parent.__xss=5</script>'>",
    "admin\u202e)1=1 ERE\u2066HW\u2069\u200b",
]


def seed_events(store: AuditStore) -> None:
    """One decision per payload with the payload in every text field the panel shows."""
    for i, p in enumerate(PAYLOADS):
        store.append(
            "decision",
            subject=p,
            display_name=p,
            auth_method=p,
            connection=p,
            statement=p,
            statement_kind=p,
            fingerprint=p,
            decision=p if i % 2 else "deny",
            rules=[p, f"break-glass:{p}"] if i == 0 else [p],
            reasons=[p],
            masked_columns={p: p},
            purpose=p,
            error=p,
            query_id=p,
            policy_name=p,
            policy_hash=p,
        )


def payload_request(p: str, *, state: str, break_glass: bool = False) -> ApprovalRequest:
    binding = Binding(p, p, p, p, p, p, (p,))
    request = ApprovalRequest(
        id=p,
        state=state,
        binding=binding,
        requester_name=p,
        statement=p,
        rules=[p],
        reasons=[p],
        approvers=["approver", p],  # dave may decide, so he is shown the exact values
        justification=p,
        created_at=time.time(),
        expires_at=time.time() + 3600,
        break_glass=break_glass,
        decided_by_name=None if state == "pending" else p,
        comment=None if state == "pending" else p,
    )
    return with_values(request, statement_text=p, params={p: p}, dry_run_rows=7, row_limit=5)


def seed_approvals(store: AuditStore) -> None:
    """Rows written straight into the approvals table, as a forger with file access could."""
    ApprovalStore(store)  # creates the table
    rows = [payload_request(p, state="pending") for p in PAYLOADS]
    rows.append(payload_request(PAYLOADS[0] + " bg", state="used", break_glass=True))
    with closing(sqlite3.connect(store.path)) as db, db:
        for request in rows:
            db.execute(
                "INSERT INTO approvals (id, state, body, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.state,
                    json.dumps(request.to_dict(approver=True)),
                    request.created_at,
                    request.expires_at,
                ),
            )


@pytest.fixture(scope="module")
def page(browser, lab: Lab):
    from playwright.sync_api import expect

    store = AuditStore(f"sqlite:///{lab.audit_path}")
    seed_events(store)
    with pytest.MonkeyPatch.context() as patch:
        install_approval_contract(patch.setattr)
        seed_approvals(store)
    store.close()
    lab.write_settings("jupyter-gov:plugin", {"refreshInterval": 1})
    lab.write_settings(
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    expect.set_options(timeout=TIMEOUT)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(lab.lab_url())
    expect(page.locator("#jp-main-dock-panel")).to_be_visible()
    yield page
    context.close()


def assert_nothing_ran(page) -> None:
    """No payload set its flag, opened a dialog, or became an element with a handler."""
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []
    sidebar = page.locator(SIDEBAR)
    assert sidebar.locator("img, script, iframe, object, embed").count() == 0
    # The only links are the Report tab's own downloads, which point at the report API.
    links = sidebar.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    assert all("/jupyter-gov/api/report?" in href for href in links), links
    handlers = page.eval_on_selector(
        SIDEBAR,
        "root => [...root.querySelectorAll('*')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))",
    )
    assert handlers == []
    text = sidebar.inner_text()
    for hidden in ("\u202e", "\u2066", "\u2069", "\u200b"):
        assert hidden not in text, "a bidi or zero-width character reached the panel"


def test_audit_rows_and_details_show_payloads_as_text(page):
    from playwright.sync_api import expect

    open_sidebar(page)
    rows = page.locator(ROWS)
    expect(rows).to_have_count(len(PAYLOADS))
    for i, p in enumerate(reversed(PAYLOADS)):  # newest first
        row = rows.nth(i)
        expect(row.locator(".jp-gov-col-statement")).to_have_text(reveal(p))
        expect(row.locator(".jp-gov-col-user")).to_contain_text(reveal(p))
        row.click()  # the details: statement, rules, reasons, masked columns, every field
        details = page.locator(f"{SIDEBAR} .jp-gov-details")
        expect(details.locator(".jp-gov-detail-statement")).to_have_text(reveal(p))
        expect(details.locator(".jp-gov-detail-reasons")).to_have_text(reveal(p))
        expect(details.locator(".jp-gov-detail-masked")).to_contain_text(reveal(p))
        for term in ("Purpose", "Error", "Query id", "Connection"):
            dd = details.locator("dt", has_text=term).locator("xpath=following-sibling::dd[1]")
            expect(dd).to_have_text(reveal(p))
        assert_nothing_ran(page)


def test_break_glass_is_flagged_in_the_audit_list(page):
    from playwright.sync_api import expect

    open_sidebar(page)
    flagged = page.locator(ROWS).filter(has=page.locator('[data-testid="break-glass"]'))
    expect(flagged).to_have_count(1)
    expect(flagged.locator(".jp-gov-col-statement")).to_have_text(reveal(PAYLOADS[0]))


def test_approvals_show_payloads_as_text_with_the_exact_values(page):
    from playwright.sync_api import expect

    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    sidebar.locator('.jp-gov-tab[data-tab="approvals"]').click()
    items = sidebar.locator(".jp-gov-approval")
    expect(items).to_have_count(len(PAYLOADS))
    for p in PAYLOADS:
        item = items.filter(has=page.locator(".jp-gov-approval-who", has_text=reveal(p)))
        expect(item).to_have_count(1)
        expect(item.locator(".jp-gov-approval-justification")).to_contain_text(reveal(p))
        expect(item.locator(".jp-gov-approval-sql")).to_have_text(reveal(p))
        params = item.locator(".jp-gov-approval-params")
        expect(params).to_contain_text(reveal(p).replace('"', '\\"'))
        facts = item.locator(".jp-gov-approval-facts")
        expect(facts).to_contain_text("Dry runtouches 7 rows")
        expect(facts).to_contain_text("Row limit5")
        expect(item.locator(".jp-gov-detail-reasons")).to_have_text(reveal(p))
    assert_nothing_ran(page)

    sidebar.locator('select[name="approval-state"]').select_option("all")
    expect(items).to_have_count(len(PAYLOADS) + 1)
    used = items.filter(has=page.locator('[data-testid="break-glass"]'))
    expect(used).to_have_count(1)
    expect(used).to_have_attribute("data-state", "used")
    expect(used.locator(".jp-gov-approval-facts")).to_contain_text(reveal(PAYLOADS[0]))
    assert_nothing_ran(page)
    sidebar.locator('select[name="approval-state"]').select_option("pending")


def test_approvals_beyond_a_page_are_counted_and_reachable(page, lab: Lab):
    from playwright.sync_api import expect

    store = AuditStore(f"sqlite:///{lab.audit_path}")
    more = 50
    with pytest.MonkeyPatch.context() as patch:
        install_approval_contract(patch.setattr)
        ApprovalStore(store)
        with closing(sqlite3.connect(store.path)) as db, db:
            for i in range(more):
                request = payload_request(f"older request {i:02d}", state="pending")
                request.created_at -= 3600 + i  # older than every payload request
                db.execute(
                    "INSERT INTO approvals (id, state, body, created_at, expires_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        request.id,
                        request.state,
                        json.dumps(request.to_dict(approver=True)),
                        request.created_at,
                        request.expires_at,
                    ),
                )
    store.close()
    total = len(PAYLOADS) + more
    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    sidebar.locator('.jp-gov-tab[data-tab="approvals"]').click()
    expect(sidebar.locator('[data-testid="approvals-count"]')).to_have_text(str(total))
    items = sidebar.locator(".jp-gov-approval")
    expect(items).to_have_count(50)
    pager = sidebar.locator(".jp-gov-pager")
    expect(pager).to_contain_text(f"1–50 of {total} pending requests")
    pager.locator("button", has_text="Older").click()
    expect(items).to_have_count(total - 50)
    expect(items.last).to_contain_text("older request 49")
    expect(pager).to_contain_text(f"51–{total} of {total}")
    pager.locator("button", has_text="Newer").click()
    expect(items).to_have_count(50)
