"""Approval notifications: tell approvers a request waits, and requesters what was decided.

The policy names the channels (``approvals.notify``): a generic JSON webhook, Slack and
Microsoft Teams incoming webhooks, and e-mail over SMTP. A notice carries the request's id,
requester, connection, rules, justification and the statement *with literals replaced by
placeholders* (the request's ``statement``, never ``statement_text`` or ``params``), and
says how to approve. Approvers open the request itself to see the exact values.

Delivery happens on one daemon thread behind a bounded queue, never on the caller's:
creating, approving or denying a request does not wait for a receiver, and a receiver that
is down does not fail anything. Each failed delivery is audited as ``notify_failure``
(the channel's kind and the error's class name, never its message, which may hold a URL
with a token).
"""

from __future__ import annotations

import atexit
import os
import queue
import smtplib
import ssl
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_gov.audit.sinks import post_json
from jupyter_gov.errors import PolicyError

if TYPE_CHECKING:
    from jupyter_gov.approvals import ApprovalRequest
    from jupyter_gov.audit import AuditStore
    from jupyter_gov.policy import Policy

EVENTS = ("requested", "approved", "denied", "expired", "break_glass")
DEFAULT_TIMEOUT = 5.0

_TITLES = {
    "requested": "Approval requested",
    "approved": "Request approved",
    "denied": "Request denied",
    "expired": "Request expired",
    "break_glass": "Break-glass run",
}


@dataclass(frozen=True)
class Notice:
    """What every channel says about one request event; holds no bound or literal value."""

    event: str
    approval_id: str
    requester: str  # display name
    requester_id: str  # issuer|subject
    connection: str
    rules: tuple[str, ...]
    approvers: tuple[str, ...]  # roles that may decide
    justification: str
    statement: str  # literals replaced by placeholders
    state: str
    expires_at: float
    decided_by: str | None = None
    comment: str | None = None
    unmask: tuple[str, ...] = ()
    approve_command: str = ""
    link: str | None = None

    @property
    def title(self) -> str:
        return f"{_TITLES[self.event]}: {self.approval_id} by {self.requester}"

    def facts(self) -> list[tuple[str, str]]:
        """Label/value pairs, in the order every channel shows them."""
        rows = [
            ("Request", self.approval_id),
            ("Requester", f"{self.requester} ({self.requester_id})"),
            ("Connection", self.connection),
            ("Rules", ", ".join(self.rules) or "-"),
            ("Justification", self.justification),
        ]
        if self.unmask:
            rows.append(("Unmask", ", ".join(self.unmask)))
        if self.event == "requested":
            rows.append(("Approvers", ", ".join(self.approvers) or "-"))
            rows.append(("Expires", _when(self.expires_at)))
        if self.decided_by:
            rows.append(("Decided by", self.decided_by))
        if self.comment:
            rows.append(("Comment", self.comment))
        return rows

    def action(self) -> str:
        """What the reader can do next."""
        if self.event == "requested":
            where = f" or open {self.link}" if self.link else ""
            return f"Review it: `{self.approve_command}`{where}."
        if self.event == "approved":
            return f"Run the statement again with approval {self.approval_id}."
        return ""

    def text(self) -> str:
        """The plain-text body (e-mail, Slack's fallback)."""
        lines = [self.title, ""]
        lines += [f"{label}: {value}" for label, value in self.facts()]
        lines += ["", "Statement (values replaced by placeholders):", self.statement]
        if self.action():
            lines += ["", self.action()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["title"] = self.title
        data["source"] = "jupyter-gov"
        return data


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def notice_for(event: str, request: ApprovalRequest, link: str | None = None) -> Notice:
    """The notice for one event of ``request``; built from its literal-free fields only."""
    return Notice(
        event=event,
        approval_id=request.id,
        requester=request.requester_name,
        requester_id=request.binding.requester,
        connection=request.binding.connection,
        rules=tuple(request.rules),
        approvers=tuple(request.approvers),
        justification=request.justification,
        statement=request.statement,
        state=request.state,
        expires_at=request.expires_at,
        decided_by=request.decided_by_name or request.decided_by,
        comment=request.comment,
        unmask=tuple(request.binding.unmask),
        approve_command=f"jupyter-gov approvals approve {request.id}",
        link=link.replace("{id}", request.id) if link else None,
    )


# -- channels -----------------------------------------------------------------------------


class Channel(Protocol):
    kind: str
    events: frozenset[str]

    def send(self, notice: Notice) -> None: ...


class ChannelNotConfigured(Exception):
    """A channel's URL is read from an environment variable that is not set."""


def _check_url(url: str, kind: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise PolicyError(f"The {kind} notification channel needs an http(s) url.")
    return url


class _HttpChannel:
    kind = "webhook"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.url = _check_url(str(config["url"]), self.kind) if config.get("url") else None
        self.url_env = None if self.url else str(config.get("url_env") or "")
        if self.url is None and not self.url_env:
            raise PolicyError(f"The {self.kind} notification channel needs a url or url_env.")
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.events = frozenset(config.get("events") or EVENTS)
        self.secret_env = str(config["secret_env"]) if config.get("secret_env") else None

    def target(self) -> str:
        """The URL, read from the environment at send time when the policy names a variable.

        A variable that is unset is a failed delivery (audited), not a failed request.
        """
        if self.url is not None:
            return self.url
        url = os.environ.get(self.url_env or "")
        if not url:
            raise ChannelNotConfigured(self.url_env)
        return _check_url(url, self.kind)

    def payload(self, notice: Notice) -> Any:
        return notice.to_dict()

    def send(self, notice: Notice) -> None:
        post_json(
            self.target(), self.payload(notice), timeout=self.timeout, secret_env=self.secret_env
        )


class WebhookChannel(_HttpChannel):
    """The notice as one JSON object, for any receiver (a ticketing system, a bot)."""

    kind = "webhook"


def _slack_escape(text: str) -> str:
    """Slack's three control characters; a justification cannot ping @channel or fake links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(_HttpChannel):
    """A Slack incoming webhook: a text fallback and Block Kit sections."""

    kind = "slack"

    def payload(self, notice: Notice) -> Any:
        facts = "\n".join(f"*{k}:* {_slack_escape(v)}" for k, v in notice.facts())
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts[:3000]}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"```{_slack_escape(notice.statement)[:2900]}```",
                },
            },
        ]
        if notice.action():
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": _slack_escape(notice.action())},
                }
            )
        return {"text": _slack_escape(notice.title), "blocks": blocks}


class TeamsChannel(_HttpChannel):
    """A Microsoft Teams incoming webhook (or Workflows): one Adaptive Card."""

    kind = "teams"

    def payload(self, notice: Notice) -> Any:
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in notice.facts()],
            },
            {"type": "TextBlock", "text": notice.statement, "fontType": "Monospace", "wrap": True},
        ]
        if notice.action():
            body.append({"type": "TextBlock", "text": notice.action(), "wrap": True})
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        }
        if notice.link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": notice.link}]
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }


class SmtpChannel:
    """E-mail through an SMTP relay (``host``, ``port``, ``sender``, ``to``; STARTTLS optional)."""

    kind = "smtp"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.host = str(config["host"])
        self.port = int(config.get("port", 25))
        self.sender = str(config["sender"])
        self.to = [str(a) for a in config["to"]]
        self.starttls = bool(config.get("starttls", False))
        self.username = config.get("username")
        self.password_env = config.get("password_env")
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.events = frozenset(config.get("events") or EVENTS)

    def message(self, notice: Notice) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        # A header cannot carry a line break (EmailMessage refuses one): keep the subject flat.
        message["Subject"] = "[jupyter-gov] " + " ".join(notice.title.split())
        message["X-Jupyter-Gov-Approval"] = notice.approval_id
        message.set_content(notice.text())
        return message

    def send(self, notice: Notice) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(str(self.username), os.environ.get(str(self.password_env or ""), ""))
            smtp.send_message(self.message(notice))


CHANNELS: dict[str, type[Any]] = {
    "webhook": WebhookChannel,
    "slack": SlackChannel,
    "teams": TeamsChannel,
    "smtp": SmtpChannel,
}


def build_channels(configs: Sequence[Mapping[str, Any]]) -> list[Channel]:
    channels = []
    for config in configs:
        kind = str(config.get("kind"))
        if kind not in CHANNELS:
            raise PolicyError(
                f"approvals.notify names an unknown channel kind {kind!r}; "
                f"known kinds are {', '.join(CHANNELS)}."
            )
        channels.append(CHANNELS[kind](config))
    return channels


# -- delivery -----------------------------------------------------------------------------

_STOP = object()


class Notifier:
    """Sends notices to channels from one daemon thread; audits each failed delivery."""

    def __init__(
        self,
        channels: Sequence[Channel],
        audit: AuditStore | None = None,
        *,
        link: str | None = None,
        queue_size: int = 100,
    ) -> None:
        self.channels = list(channels)
        self.audit = audit
        self.link = link
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        _open_notifiers.add(self)

    def notify(self, event: str, request: ApprovalRequest) -> None:
        """Queue a notice of ``event`` for ``request``; never blocks, never raises."""
        try:
            notice = notice_for(event, request, self.link)
            targets = [c for c in self.channels if event in c.events]
            if not targets:
                return
            self._start()
            with self._lock:
                self._queue.put_nowait((notice, targets))
                self._pending += 1
        except queue.Full:
            self.dropped += 1
            self._audit_failure(notice, None, "QueueFull")
        except Exception:  # a notice is a courtesy; the request itself already committed
            self.failed += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued notice was attempted on every channel; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        if self._thread is not None:
            with suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)
            self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="jupyter-gov-notify", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            notice, targets = item
            for index, channel in enumerate(targets):
                try:
                    channel.send(notice)
                    self.sent += 1
                except Exception as error:
                    self.failed += 1
                    self._audit_failure(notice, (index, channel), type(error).__name__)
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()

    def _audit_failure(
        self, notice: Notice, channel: tuple[int, Channel] | None, error: str
    ) -> None:
        if self.audit is None:
            return
        with suppress(Exception):
            self.audit.append(
                "notify_failure",
                connection=notice.connection,
                error=error,
                detail={
                    "approval_id": notice.approval_id,
                    "event": notice.event,
                    "channel": channel[1].kind if channel else None,
                },
            )


_open_notifiers: weakref.WeakSet[Notifier] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Let a short-lived process (``jupyter-gov approvals approve``) send what it queued."""
    for notifier in list(_open_notifiers):
        with suppress(Exception):
            notifier.close(timeout=5.0)


def for_policy(policy: Policy | None, audit: AuditStore | None) -> Notifier | None:
    """The notifier ``approvals.notify`` asks for, or None when it names no channel."""
    if policy is None or not policy.approval_notify:
        return None
    return Notifier(build_channels(policy.approval_notify), audit, link=policy.approval_link)
