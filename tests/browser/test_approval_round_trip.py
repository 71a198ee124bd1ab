"""The whole loop in a real JupyterLab: a masked query, then an approval given in the panel.

A notebook runs ``%%gsql`` as bob (masked banner in the output, a new row in the Audit tab),
then an UPDATE as alice, which shows the approval widget; the request is sent from the
widget, approved from the sidebar's Approvals tab (the server acts as dave, an approver),
and the requester's widget turns approved and shows the result.
"""

from __future__ import annotations

import json
import os

import pytest

from .conftest import Lab
from .test_sidebar import SIDEBAR, TIMEOUT, open_sidebar

pytestmark = [pytest.mark.browser, pytest.mark.server]

CELLS = [
    "%load_ext jupyter_gov",
    "%%gsql --user bob\nSELECT email FROM customers ORDER BY customer_id LIMIT 3",
    '%%gsql --user alice --purpose "customer asked to cancel"\n'
    "UPDATE orders SET status = 'cancelled' WHERE order_id = 7",
]


def write_notebook(lab: Lab) -> str:
    root = lab.home.parent / "root"
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": source,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for source in CELLS
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "round_trip.ipynb").write_text(json.dumps(notebook))
    return "round_trip.ipynb"


def run_all_cells(page, notebook) -> None:
    """Focus the notebook and run every cell from the Run menu, once its kernel is ready."""
    from playwright.sync_api import expect

    notebook.locator(".jp-Cell").first.click()
    enabled = page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel")
    entry = enabled.get_by_text("Run All Cells", exact=True)
    # The item is disabled until the kernel session is connected, which on a loaded
    # machine takes a while: reopen the menu until it is enabled.
    for _ in range(30):
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        try:
            expect(entry).to_be_visible(timeout=4_000)
        except AssertionError:
            page.keyboard.press("Escape")
            continue
        entry.click()
        break
    expect(notebook.locator(".jp-InputPrompt", has_text="[1]")).to_be_visible(timeout=120_000)


@pytest.fixture
def page(browser, lab: Lab):
    from playwright.sync_api import expect

    lab.write_settings("jupyter-gov:plugin", {"refreshInterval": 1})
    lab.write_settings(
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    expect.set_options(timeout=TIMEOUT)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    yield page
    context.close()


def test_masked_query_then_approval_given_in_the_panel(page, lab: Lab):
    from playwright.sync_api import expect

    name = write_notebook(lab)
    page.goto(lab.lab_url().replace("/lab?", f"/lab/tree/{name}?"))
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook).to_be_visible()
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=120_000
    )
    run_all_cells(page, notebook)

    # 1. bob's query: the masked banner in the output, and his row in the Audit tab.
    banner = notebook.locator(".jp-gov-banner").first
    expect(banner).to_contain_text("masked: email → email", timeout=120_000)
    open_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    expect(sidebar.locator("tr.jp-gov-row", has_text="Bob").first).to_be_visible(timeout=60_000)

    # 2. alice's UPDATE needs approval: the widget, then a pending request.
    request_button = notebook.locator("button", has_text="Request approval")
    expect(request_button).to_be_visible(timeout=120_000)
    request_button.click()
    expect(notebook.get_by_text("PENDING")).to_be_visible()

    # 3. the Approvals tab counts it for dave, who approves it there.
    badge = sidebar.locator('[data-testid="approvals-count"]')
    expect(badge).to_have_text("1", timeout=60_000)
    sidebar.locator('.jp-gov-tab[data-tab="approvals"]').click()
    item = sidebar.locator(".jp-gov-approval", has_text="Alice")
    expect(item).to_be_visible(timeout=60_000)
    # What dave decides on: the justification, the statement, the dry run and the limit.
    expect(item.locator(".jp-gov-approval-justification")).to_contain_text(
        "customer asked to cancel"
    )
    expect(item.locator(".jp-gov-approval-sql")).to_contain_text("UPDATE orders")
    expect(item.locator(".jp-gov-approval-facts")).to_contain_text("Row limit")
    item.locator("input.jp-gov-input").fill("checked with support")
    if os.environ.get("JUPYTER_GOV_UPDATE_SCREENSHOTS") == "1":
        sidebar.screenshot(path="docs/images/approvals.png")
    item.locator("button", has_text="Approve").click()

    # 4. the requester's widget turns approved and shows the result of the UPDATE.
    expect(notebook.get_by_text("approved by Dave")).to_be_visible(timeout=60_000)
    expect(notebook.get_by_text("USED")).to_be_visible()
    expect(badge).to_be_hidden(timeout=60_000)
