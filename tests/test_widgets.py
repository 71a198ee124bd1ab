"""The approval widgets, driven headlessly: click, refresh, and read what they show."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from jupyter_gov.approvals import ApprovalRequest, Binding
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.result import ApprovalRequired
from jupyter_gov.widgets import ApprovalInbox, ApprovalRequestWidget, reveal
from tests.server.approval_contract import install as install_contract
from tests.server.approval_contract import with_values

UPDATE = "UPDATE orders SET status = 'returned' WHERE order_id = 11"

#: Stored-XSS payloads: markup, attribute breakout, script URLs and a bidi override.
PAYLOADS = [
    '<img src=x onerror="window.__xss=1">',
    '"><script>window.__xss=2</script>',
    "'><svg onload=window.__xss=3>",
    "javascript:window.__xss=4",
    "admin\u202e)1=1 ERE\u2066HW\u2069\u200b",
]

#: What the widgets may emit: their own layout tags and pygments' spans, styled only.
SAFE_TAGS = {"div", "span", "b", "i", "br", "pre", "code"}
SAFE_ATTRIBUTES = {"style", "class"}


@pytest.fixture(autouse=True)
def approval_contract(monkeypatch):
    install_contract(monkeypatch.setattr)


class Markup(HTMLParser):
    """The tags, attributes and text of an HTML fragment."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.chunks: list[str] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def assert_only_escaped_text(fragment: str, payload: str) -> None:
    """No tag or attribute came from the payload, and the payload reads as (revealed) text."""
    parsed = Markup(fragment)
    for tag, attrs in parsed.tags:
        assert tag in SAFE_TAGS, f"payload made a <{tag}> tag: {fragment}"
        for name, value in attrs:
            assert name in SAFE_ATTRIBUTES, f"payload made a {name}= attribute: {fragment}"
            assert "javascript:" not in (value or "") and "__xss" not in (value or "")
    assert reveal(payload) in parsed.text.replace("\n", "")
    for hidden in ("\u202e", "\u2066", "\u2069", "\u200b"):
        assert hidden not in parsed.text, "a bidi or zero-width character reached the page"


@pytest.fixture
def team():
    alice = GovernedSession(None, "alice")
    dave = GovernedSession(alice.policy, "dave", audit=alice.audit)
    bob = GovernedSession(alice.policy, "bob", audit=alice.audit)
    for other in (dave, bob):
        other.use_connector("demo", alice.connector("demo"))
    return alice, bob, dave


def request_widget(session, sql, **kwargs) -> ApprovalRequestWidget:
    with pytest.raises(ApprovalRequired) as pending:
        session.sql(sql, unmask=kwargs.get("unmask", ()))
    widget = ApprovalRequestWidget(session, pending.value, sql, **kwargs)
    widget.start_polling = lambda *a, **k: None  # tests call refresh() themselves
    return widget


def test_widget_shows_statement_rules_and_a_required_justification(team):
    alice, _, _ = team
    widget = request_widget(alice, UPDATE, purpose="ticket 7")
    assert "admin-write-production" in widget.banner.value
    assert "orders" in widget.statement.value
    assert widget.justification.value == "ticket 7"
    widget.justification.value = ""
    widget.request_button.click()
    assert "justification is required" in widget.status.value and widget.request is None


def test_pending_then_approved_runs_exactly_the_approved_statement(team):
    alice, _, dave = team
    namespace: dict = {}
    widget = request_widget(
        alice, UPDATE, purpose="customer returned it", out="changed", user_ns=namespace
    )
    widget.request_button.click()
    assert widget.refresh() == "pending"
    assert "PENDING" in widget.status.value and "approver" in widget.status.value

    inbox = ApprovalInbox(dave)
    approve_button, _ = inbox.buttons[widget.request.id]
    inbox.comment.value = "fine"
    approve_button.click()
    assert "approved request" in inbox.message.value

    assert widget.refresh() == "used"
    assert "approved by Dave" in widget.status.value and "“fine”" in widget.status.value
    assert widget.result is not None and widget.result.decision == "allow"
    assert namespace["changed"] is widget.result
    status = (
        alice.connector().con.execute("SELECT status FROM orders WHERE order_id = 11").fetchone()[0]
    )
    assert status == "returned"


def test_denied_request_shows_the_reason(team):
    alice, _, dave = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    inbox = ApprovalInbox(dave)
    _, deny_button = inbox.buttons[widget.request.id]
    deny_button.click()
    assert "Say why" in inbox.message.value  # a denial needs a comment
    inbox.comment.value = "use the returns workflow"
    deny_button.click()
    assert widget.refresh() == "denied"
    assert "use the returns workflow" in widget.status.value and widget.result is None


def test_inbox_lists_only_requests_the_user_may_approve(team):
    alice, bob, dave = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    assert list(ApprovalInbox(dave).buttons) == [widget.request.id]
    assert ApprovalInbox(bob).buttons == {}  # analysts approve nothing
    assert ApprovalInbox(alice).buttons == {}  # nor does anyone their own request


def test_unmask_widget_shows_raw_values_only_in_its_own_result(team):
    _, bob, dave = team
    sql = "SELECT email FROM customers ORDER BY customer_id LIMIT 2"
    widget = request_widget(bob, sql, unmask=["email"], purpose="deliverability check")
    widget.request_button.click()
    ApprovalInbox(dave).buttons[widget.request.id][0].click()
    widget.refresh()
    assert all(not v.startswith("***") for (v,) in widget.result.fetchall())
    assert all(v.startswith("***@") for (v,) in bob.sql(sql).fetchall())


def test_expired_request_says_so(team):
    alice, _, _ = team
    widget = request_widget(alice, UPDATE, purpose="x")
    widget.request_button.click()
    store = alice.approvals
    store.clock = lambda: widget.request.expires_at + 1
    assert widget.refresh() == "expired"
    assert "request a new approval" in widget.status.value


def test_gsql_cell_needing_approval_shows_the_request_widget():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    try:
        widget = shell.run_cell_magic("gsql", "--user alice --purpose 'ticket 9'", UPDATE)
        assert isinstance(widget, ApprovalRequestWidget)
        assert widget.justification.value == "ticket 9"
        inbox = shell.run_line_magic("gsql_approvals", "--user dave")
        assert isinstance(inbox, ApprovalInbox)
    finally:
        InteractiveShell.clear_instance()


# -- stored XSS: every field of a request is attacker-controlled text ----------------------


def payload_request(payload: str, state: str = "pending") -> ApprovalRequest:
    """A request whose every stored field is ``payload`` (as a forged store row could be)."""
    binding = Binding(
        requester=payload,
        connection=payload,
        fingerprint=payload,
        statement_hash=payload,
        params_hash=payload,
        policy_hash=payload,
        unmask=(payload,),
    )
    request = ApprovalRequest(
        id=payload,
        state=state,
        binding=binding,
        requester_name=payload,
        statement=payload,
        rules=[payload],
        reasons=[payload],
        approvers=[payload],
        justification=payload,
        created_at=time.time(),
        expires_at=time.time() + 3600,
        decided_by=payload,
        decided_by_name=payload,
        comment=payload,
    )
    return with_values(
        request,
        statement_text=payload,
        params={payload: payload},
        dry_run_rows=3,
        row_limit=5,
    )


class PayloadSession:
    """A session whose store and engine hand back payloads, for the widgets to render."""

    def __init__(self, real: GovernedSession, request: ApprovalRequest, error: str) -> None:
        self.identity = real.identity
        self.policy = real.policy
        self.request = request
        self.error = error
        self.approvals = SimpleNamespace(
            get=lambda _id: self.request,
            actionable_by=lambda *args, **kwargs: [self.request],
            approve=self.fail,
            deny=self.fail,
        )

    def fail(self, *args, **kwargs):
        raise GovError(self.error)

    approve = deny = fail  # the session deciding (roles derived by the store)

    def request_approval(self, *args, **kwargs) -> ApprovalRequest:
        return self.request

    def sql(self, *args, **kwargs):
        self.fail()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("state", ["pending", "approved", "denied", "expired", "<b>state</b>"])
def test_request_widget_shows_payloads_in_every_field_as_text(team, payload, state):
    alice, _, _ = team
    sql = f"SELECT '{payload}' AS x -- {payload}"
    with pytest.raises(ApprovalRequired) as pending:
        alice.sql(UPDATE)
    fake = PayloadSession(alice, payload_request(payload, state), error=payload)
    widget = ApprovalRequestWidget(fake, pending.value, sql, {"p": payload}, purpose=payload)
    widget.start_polling = lambda *a, **k: None
    widget.request_button.click()
    for fragment in (widget.statement.value, widget.asked.value, widget.status.value):
        assert_only_escaped_text(fragment, payload)
    if state == "approved":  # the approved run failed with an error quoting the payload
        assert_only_escaped_text(widget.output.value, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_request_widget_shows_a_payload_error_as_text(team, payload):
    alice, _, _ = team
    with pytest.raises(ApprovalRequired) as pending:
        alice.sql(UPDATE)
    fake = PayloadSession(alice, payload_request(payload), error=payload)
    fake.request_approval = fake.fail
    widget = ApprovalRequestWidget(fake, pending.value, UPDATE, purpose="x")
    widget.request_button.click()
    assert_only_escaped_text(widget.status.value, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_inbox_shows_payloads_in_every_field_as_text(team, payload):
    _, _, dave = team
    inbox = ApprovalInbox(PayloadSession(dave, payload_request(payload), error=payload))
    (row,) = inbox.rows.children
    info = row.children[0].value
    assert_only_escaped_text(info, payload)
    parsed = Markup(info).text
    assert parsed.count(reveal(payload)) >= 5  # name, connection, rules, justification, SQL
    approve, _ = inbox.buttons[payload]
    approve.click()  # the store refuses with a message quoting the payload
    assert_only_escaped_text(inbox.message.value, payload)
    assert reveal(payload) in repr(inbox) and "\u202e" not in repr(inbox)


def test_reveal_shows_bidi_and_zero_width_characters_and_keeps_the_rest():
    assert reveal("a\u202eb\u200bc") == "a⟨U+202E⟩b⟨U+200B⟩c"
    assert reveal("plain SQL\n\twith é and 漢字") == "plain SQL\n\twith é and 漢字"


# -- approvers decide with full information ------------------------------------------------


def test_inbox_shows_the_exact_statement_values_dry_run_rows_and_limit(team):
    alice, _, dave = team
    request = with_values(
        alice.request_approval(UPDATE, justification="customer 11 returned it"),
        statement_text="UPDATE orders SET amount = $1 WHERE order_id = 11",
        params=[125.5],
        dry_run_rows=1,
        row_limit=5,
    )
    fake = PayloadSession(dave, request, error="")
    text = Markup(ApprovalInbox(fake).rows.children[0].children[0].value).text
    assert "customer 11 returned it" in text
    assert "UPDATE orders SET amount = $1 WHERE order_id = 11" in text and "[125.5]" in text
    assert "rows it touches (dry run): 1" in text and "row limit: 5" in text


def test_requester_widget_shows_what_was_asked(team):
    alice, _, _ = team
    widget = request_widget(alice, UPDATE, purpose="ticket 7", limit=5)
    widget.request_button.click()
    asked = Markup(widget.asked.value).text
    assert "You asked for" in asked and "ticket 7" in asked and "row limit" in asked


# -- the sign-in widget: the issuer decides the URL, the code, the name and the error ------


class HostileChallenge:
    """A device-code challenge from an issuer that puts payloads everywhere it can."""

    def __init__(self, payload: str, url: str) -> None:
        self.url = url
        self.user_code = payload
        self.expires_at = time.time() + 600
        self.payload = payload
        self.outcome: Exception | None = None

    def poll(self):
        if self.outcome is not None:
            raise self.outcome
        from jupyter_gov.identity import Identity

        p = self.payload
        return Identity(subject=p, display_name=p, auth_method=p, issuer=p, verified=True)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sign_in_widget_shows_a_hostile_issuers_url_code_and_name_as_text(payload):
    from jupyter_gov.signin import DeviceLoginWidget

    widget = DeviceLoginWidget(HostileChallenge(payload, url=payload))
    assert_only_escaped_text(widget.prompt.value, payload)
    assert widget.poll_once() is True
    assert_only_escaped_text(widget.status.value, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sign_in_widget_shows_an_issuers_error_as_text(payload):
    from jupyter_gov.errors import IdentityError
    from jupyter_gov.signin import DeviceLoginWidget

    challenge = HostileChallenge(payload, url="https://login.example/device")
    challenge.outcome = IdentityError(payload)
    widget = DeviceLoginWidget(challenge)
    assert widget.poll_once() is True
    assert_only_escaped_text(widget.status.value, payload)


def test_sign_in_link_is_a_link_only_for_https():
    from jupyter_gov.signin import DeviceLoginWidget

    https = DeviceLoginWidget(HostileChallenge("X", url="https://login.example/device"))
    assert "<a href='https://login.example/device'" in https.prompt.value
    script = DeviceLoginWidget(HostileChallenge("X", url="javascript:alert(1)"))
    assert "<a" not in script.prompt.value and "javascript:alert(1)" in script.prompt.value
