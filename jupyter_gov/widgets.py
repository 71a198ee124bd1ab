"""Approval widgets: the requester's inline request, and the approver's inbox.

A running cell cannot receive widget events, so nothing here waits inside a cell: the
request widget renders and the cell ends; a daemon thread polls the approval store (or
``refresh()`` is called), and once approved the widget runs exactly the approved statement
and shows the result in its own area. Tests drive the same widgets headlessly with
``button.click()`` and ``refresh()``.
"""

from __future__ import annotations

import json
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from markupsafe import Markup, escape

from jupyter_gov.approvals import ApprovalRequest
from jupyter_gov.errors import GovError
from jupyter_gov.result import ApprovalRequired, banner_html, banner_text, identity_or_none

_STATE_COLORS = {
    "pending": "#9a6700",
    "approved": "#1a7f37",
    "used": "#1a7f37",
    "denied": "#cf222e",
    "expired": "#6e7781",
    "revoked": "#6e7781",
}


#: Unicode categories drawn as ``⟨U+XXXX⟩``: format (bidi overrides, zero-width),
#: control and surrogate characters, which could make shown text differ from what runs.
_HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Cs"})
_KEPT_CONTROLS = frozenset("\n\t")


def reveal(text: Any) -> str:
    """``text`` with every invisible or reordering character shown as ``⟨U+XXXX⟩``.

    Why: a bidi override or a zero-width character in a statement, a name or a comment
    would let an approver read something other than what runs (Trojan Source).
    """
    value = str(text)
    if value.isascii() and value.isprintable():
        return value
    return "".join(
        f"⟨U+{ord(c):04X}⟩"
        if c not in _KEPT_CONTROLS and unicodedata.category(c) in _HIDDEN_CATEGORIES
        else c
        for c in value
    )


def shown(value: Any) -> Markup:
    """A value as HTML text: revealed, then escaped (markup passes through unchanged)."""
    return value if isinstance(value, Markup) else escape(reveal(value))


def html_of(template: str, **values: Any) -> Markup:
    """``template`` (a constant) with every ``{name}`` filled in as escaped text.

    The only way this module builds HTML: nothing reaches the page without escaping.
    """
    return Markup(template).format(**{name: shown(v) for name, v in values.items()})


def highlight_sql(sql: str) -> Markup:
    """SQL as HTML (revealed, escaped), highlighted with pygments when it is installed."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import SqlLexer
    except ImportError:  # pragma: no cover - pygments ships with IPython
        return html_of("<pre>{sql}</pre>", sql=sql)
    # pygments escapes every token it emits; the input carries no markup of ours.
    return Markup(highlight(reveal(sql), SqlLexer(), HtmlFormatter(noclasses=True, nowrap=False)))


def error_html(message: str) -> Markup:
    return html_of("<span style='color:#cf222e'>✖ {message}</span>", message=message)


def _when(timestamp: float | None) -> str:
    return time.strftime("%H:%M", time.localtime(timestamp)) if timestamp else "?"


def _count(value: Any, none: str) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else none


def request_details(data: Mapping[str, Any], *, statement: bool = True) -> Markup:
    """What a decision needs: justification, exact statement and values, rows, limit.

    ``data`` is ``ApprovalRequest.to_dict(approver=...)``: the exact statement and its
    parameters are there only for those who may decide, so only they see them here.
    """
    parts = [
        html_of(
            "<div><b>Justification:</b> <i>“{text}”</i></div>", text=data.get("justification") or ""
        )
    ]
    if data.get("break_glass"):
        parts.append(
            Markup(
                "<div style='color:#cf222e;font-weight:600'>"
                "⚠ BREAK-GLASS: ran without an approver</div>"
            )
        )
    if data.get("unmask"):
        parts.append(html_of("<div>unmask: {tags}</div>", tags=", ".join(map(str, data["unmask"]))))
    parts.append(
        html_of(
            "<div>rows it touches (dry run): <b>{rows}</b> · row limit: <b>{limit}</b></div>",
            rows=_count(data.get("dry_run_rows"), "not counted"),
            limit=_count(data.get("row_limit"), "none"),
        )
    )
    if statement and data.get("statement_text"):
        parts.append(Markup("<div><b>Runs exactly:</b></div>"))
        parts.append(highlight_sql(str(data["statement_text"])))
    elif statement:
        parts.append(highlight_sql(str(data.get("statement") or "")))
    if data.get("params") is not None:
        parts.append(
            html_of(
                "<div><b>with parameters:</b> <code>{params}</code></div>",
                params=json.dumps(data["params"], default=str, ensure_ascii=False),
            )
        )
    return Markup("").join(parts)


class ApprovalRequestWidget:
    """What a cell shows when its statement needs approval, through to the approved result."""

    def __init__(
        self,
        session: Any,
        pending: ApprovalRequired,
        sql: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        connection: str | None = None,
        unmask: Sequence[str] = (),
        limit: int | None = None,
        purpose: str | None = None,
        out: str | None = None,
        user_ns: dict[str, Any] | None = None,
        displaylimit: int = 10,
    ) -> None:
        self.session = session
        self.plan = pending.plan
        self.sql = sql
        self.params = params
        self.connection = connection
        self.unmask = list(unmask)
        self.limit = limit
        self.out = out
        self.user_ns = user_ns
        self.displaylimit = displaylimit
        self.request: ApprovalRequest | None = None
        self.result: Any = None
        self.error: str | None = None
        self._stop = threading.Event()

        self.banner = widgets.HTML(banner_html(self.plan, identity_or_none(session)))
        self.statement = widgets.HTML(highlight_sql(sql.strip()))
        self.justification = widgets.Textarea(
            value=purpose or "",
            placeholder="Why must this run? (required; approvers see it)",
            layout=widgets.Layout(width="100%"),
        )
        self.request_button = widgets.Button(
            description="Request approval", button_style="warning", icon="paper-plane"
        )
        self.request_button.on_click(lambda _: self.submit())
        self.asked = widgets.HTML("")
        self.status = widgets.HTML("")
        self.output = widgets.HTML("")
        self.widget = widgets.VBox(
            [
                self.banner,
                self.statement,
                self.justification,
                self.request_button,
                self.asked,
                self.status,
                self.output,
            ]
        )

    # -- actions ---------------------------------------------------------------------------

    def submit(self) -> None:
        """Send the request; then poll for the decision in the background."""
        try:
            self.request = self.session.request_approval(
                self.sql,
                self.params,
                justification=self.justification.value,
                connection=self.connection,
                unmask=self.unmask,
                limit=self.limit,
            )
        except GovError as error:
            self.status.value = error_html(str(error))
            return
        self.justification.disabled = True
        self.request_button.layout.display = "none"
        self.asked.value = self._asked(self.request)
        self.refresh()
        self.start_polling()

    def refresh(self) -> str:
        """Read the request's state, show it, and run the statement once it is approved."""
        if self.request is None:
            return "not requested"
        self.request = self.session.approvals.get(self.request.id)
        if self.request.state == "approved" and self.result is None:
            self._run()  # re-reads the request: a single-use approval is now "used"
        request = self.request
        self.status.value = self._describe(request)
        if request.state not in ("pending",) or self.result is not None:
            self._stop.set()
        return request.state

    def _run(self) -> None:
        assert self.request is not None
        try:
            self.result = self.session.sql(
                self.sql,
                self.params,
                connection=self.connection,
                unmask=self.unmask,
                limit=self.limit,
                name=self.out,
                approval_id=self.request.id,
            )
        except GovError as error:
            self.error = str(error)
            self.output.value = error_html(self.error)
            return
        self.result.displaylimit = self.displaylimit
        if self.out and self.user_ns is not None:
            self.user_ns[self.out] = self.result
        self.output.value = self.result._repr_html_()
        self.request = self.session.approvals.get(self.request.id)

    def _asked(self, request: ApprovalRequest) -> str:
        """What the requester asked for, as approvers will see it (values are their own)."""
        data = request.to_dict(approver=False)
        data["statement_text"], data["params"] = self.sql.strip(), self.params
        return str(
            html_of("<div><b>You asked for:</b></div>{details}", details=request_details(data))
        )

    def _describe(self, request: ApprovalRequest) -> str:
        color = _STATE_COLORS.get(request.state, "#6e7781")
        head = html_of(
            "<b style='color:{color}'>{state}</b> · request {id}",
            color=color,
            state=request.state.upper(),
            id=request.id,
        )
        if request.state == "pending":
            detail = (
                f"waiting for {', '.join(request.approvers)}; "
                f"expires at {_when(request.expires_at)}"
            )
        elif request.state in ("approved", "used"):
            detail = f"approved by {request.decided_by_name or 'break-glass'}"
            detail += f": “{request.comment}”" if request.comment else ""
            if self.result is not None:
                detail += f" · ran, {self.result.row_count:,} rows"
        elif request.state == "denied":
            detail = f"denied by {request.decided_by_name}: “{request.comment}”"
        else:
            detail = f"{request.state} — request a new approval to run it"
        return str(html_of("{head}<br>{detail}", head=head, detail=detail))

    def start_polling(self, interval: float = 3.0, lifetime: float = 3600.0) -> None:
        """Poll from a daemon thread, so the kernel stays free; stops by itself."""

        def run() -> None:
            deadline = time.monotonic() + lifetime
            while not self._stop.wait(interval) and time.monotonic() < deadline:
                try:
                    self.refresh()
                except GovError:
                    return

        threading.Thread(target=run, name="jupyter-gov-approval", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def __repr__(self) -> str:
        state = self.request.state if self.request else "not requested yet"
        return f"{banner_text(self.plan, identity_or_none(self.session))}\napproval: {state}"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(self.widget._repr_mimebundle_(**kwargs), repr(self))


def _with_text(bundle: Any, text: str) -> Any:
    """A widget's mime bundle, with a readable text/plain for consoles and logs."""
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if isinstance(data, dict):
        data["text/plain"] = text
    return bundle


class ApprovalInbox:
    """``%gsql_approvals``: pending requests the current user may approve, with buttons."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.comment = widgets.Text(placeholder="comment (required to deny)")
        self.message = widgets.HTML("")
        self.rows = widgets.VBox([])
        refresh = widgets.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _: self.refresh())
        self.widget = widgets.VBox([widgets.HBox([refresh, self.comment]), self.message, self.rows])
        self.buttons: dict[str, tuple[widgets.Button, widgets.Button]] = {}
        self.refresh()

    def pending(self) -> list[ApprovalRequest]:
        identity = self.session.identity
        return self.session.approvals.actionable_by(identity)

    def refresh(self) -> None:
        children = []
        self.buttons = {}
        requests = self.pending()
        for request in requests:
            approve = widgets.Button(description="Approve", button_style="success", icon="check")
            deny = widgets.Button(description="Deny", button_style="danger", icon="times")
            approve.on_click(lambda _, r=request.id: self.decide(r, "approve"))
            deny.on_click(lambda _, r=request.id: self.decide(r, "deny"))
            self.buttons[request.id] = (approve, deny)
            info = widgets.HTML(self._describe(request))
            children.append(widgets.VBox([info, widgets.HBox([approve, deny])]))
        if not requests:
            children.append(widgets.HTML("<i>No pending requests you may approve.</i>"))
        self.rows.children = children

    @staticmethod
    def _describe(request: ApprovalRequest) -> str:
        """One request as its approver needs it, every value escaped."""
        head = html_of(
            "<b>{who}</b> on {connection} · {rules} · expires {expires}",
            who=request.requester_name,
            connection=request.connection,
            rules=", ".join(request.rules),
            expires=_when(request.expires_at),
        )
        # Only requests this user may decide are listed: they see the exact values.
        details = request_details(request.to_dict(approver=True))
        return str(html_of("{head}{details}", head=head, details=details))

    def decide(self, request_id: str, action: str) -> None:
        try:
            if action == "approve":
                self.session.approve(request_id, self.comment.value)
            else:
                self.session.deny(request_id, self.comment.value)
        except GovError as error:
            self.message.value = error_html(str(error))
            return
        self.message.value = str(html_of("✔ {action}d request {id}", action=action, id=request_id))
        self.comment.value = ""
        self.refresh()

    def __repr__(self) -> str:
        pending = self.pending()
        lines = [f"{len(pending)} pending request(s) you may approve"]
        lines += [reveal(f"  {r.id} {r.requester_name}: {', '.join(r.rules)}") for r in pending]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(self.widget._repr_mimebundle_(**kwargs), repr(self))


def approval_widget_for(
    magic: Any, pending: ApprovalRequired, args: Any, sql: str, params: Any, session: Any
) -> ApprovalRequestWidget:
    """Called by ``%%gsql`` when a statement needs approval."""
    return ApprovalRequestWidget(
        session,
        pending,
        sql,
        params,
        connection=args.connection,
        unmask=args.unmask,
        limit=args.limit or magic.autolimit or None,
        purpose=args.purpose,
        out=args.out,
        user_ns=magic.shell.user_ns,
        displaylimit=magic.displaylimit,
    )


def register_widget_magics(ipython: Any, magic: Any) -> None:
    """Register ``%gsql_approvals [--user NAME]``: the approver's inbox."""

    from IPython.core.error import UsageError
    from IPython.core.magic_arguments import argument, magic_arguments

    from jupyter_gov.magic import parse_options

    @magic_arguments()
    @argument("--user", metavar="NAME", help="Act as this user (local identity provider only).")
    def gsql_approvals(line: str = "") -> ApprovalInbox:
        """Pending requests you may approve, with Approve and Deny buttons."""
        user = parse_options(gsql_approvals, line).user
        try:
            return ApprovalInbox(magic.session(user))
        except GovError as error:
            raise UsageError(str(error)) from None

    ipython.register_magic_function(gsql_approvals, "line", "gsql_approvals")
