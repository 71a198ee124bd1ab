"""Sign-in front ends: the device-code widget for notebooks and the terminal prompt for the CLI.

Both drive the UI-agnostic :func:`jupyter_gov.identity.factory.login`. The widget never
blocks the kernel: a background thread polls the issuer until the person has finished,
the code expires, or the widget is closed, and then shows who signed in. Every sign-in and
sign-out is an audit event; no token ever reaches an output or the audit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jupyter_gov.audit import AuditStore
from jupyter_gov.errors import IdentityError
from jupyter_gov.identity import Identity, IdentityProvider
from jupyter_gov.identity.factory import login
from jupyter_gov.identity.msal_provider import LoginChallenge


def audit_sign_in(audit: AuditStore, identity: Identity, kind: str = "sign_in") -> None:
    fields = identity.audit_fields()
    fields.pop("groups", None)
    audit.append(kind, **fields, detail={"groups": list(identity.groups)})


class DeviceLoginWidget:
    """Code, link and countdown while the person signs in elsewhere; then their name.

    ``poll_once()`` is what the background thread calls; tests call it directly.
    """

    def __init__(
        self,
        challenge: LoginChallenge,
        on_signed_in: Callable[[Identity], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import ipywidgets as widgets

        from jupyter_gov.widgets import html_of

        self.challenge = challenge
        self.on_signed_in = on_signed_in
        self.clock = clock
        self.identity: Identity | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        code = challenge.user_code or ""
        # The issuer says what the URL, code and name are: escaped text, a link only if https.
        url = challenge.url
        link = "<a href='{url}' target='_blank' rel='noopener noreferrer'>{url}</a>"
        self.prompt = widgets.HTML(
            html_of("<b>Sign in</b>: open ")
            + html_of(link if url.startswith("https://") else "{url}", url=url)
            + (
                html_of(
                    " and enter the code <code style='font-size:1.2em'>{code}</code>", code=code
                )
                if code
                else ""
            )
        )
        self.status = widgets.HTML(self._countdown())
        self.cancel = widgets.Button(description="Cancel", icon="times")
        self.cancel.on_click(lambda _: self.close())
        self.widget = widgets.VBox([self.prompt, widgets.HBox([self.status, self.cancel])])

    def _countdown(self) -> str:
        left = max(0, int(self.challenge.expires_at - self.clock()))
        return f"Waiting for you to sign in… code expires in {left // 60}:{left % 60:02d}"

    def poll_once(self) -> bool:
        """Check once; return True when finished (signed in, failed or expired)."""
        if self.clock() >= self.challenge.expires_at:
            self._finish(error="The sign-in code expired; run %gsql_login again.")
            return True
        try:
            identity = self.challenge.poll()
        except IdentityError as error:
            self._finish(error=str(error))
            return True
        if identity is None:
            self.status.value = self._countdown()
            return False
        self._finish(identity=identity)
        return True

    def _finish(self, identity: Identity | None = None, error: str | None = None) -> None:
        from jupyter_gov.widgets import html_of

        self._stop.set()
        self.cancel.layout.display = "none"
        if identity is not None:
            self.identity = identity
            self.prompt.value = ""
            self.status.value = html_of(
                "✔ Signed in as <b>{name}</b> ({subject}, {method})",
                name=identity.display_name,
                subject=identity.subject,
                method=identity.auth_method,
            )
            if self.on_signed_in is not None:
                self.on_signed_in(identity)
        else:
            self.error = error
            self.status.value = html_of("✖ {error}", error=error)

    def start(self, interval: float = 5.0, lifetime: float = 900.0) -> None:
        """Poll from a daemon thread; the kernel stays free. Stops by itself."""

        def run() -> None:
            deadline = time.monotonic() + lifetime
            while not self._stop.wait(interval) and time.monotonic() < deadline:
                if self.poll_once():
                    return

        threading.Thread(target=run, name="jupyter-gov-login", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self.identity is None and self.error is None:
            self._finish(error="Sign-in cancelled.")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def login_in_notebook(
    provider: IdentityProvider, audit: AuditStore, flow: str = "device"
) -> DeviceLoginWidget | Identity:
    """Start a sign-in for a notebook: a widget for the device flow, else the identity."""
    outcome = login(provider, flow=flow)
    if isinstance(outcome, LoginChallenge):
        if outcome.kind != "device":
            raise IdentityError("In a notebook use the device flow or, on a local kernel, browser.")
        widget = DeviceLoginWidget(outcome, on_signed_in=lambda i: audit_sign_in(audit, i))
        widget.start()
        return widget
    audit_sign_in(audit, outcome)
    return outcome


def login_in_terminal(
    provider: IdentityProvider,
    audit: AuditStore,
    flow: str = "device",
    echo: Callable[[str], None] = print,
) -> Identity:
    """Sign in from a terminal: print the device code and wait, or open the browser."""
    outcome = login(provider, flow=flow)
    if isinstance(outcome, LoginChallenge):
        echo(outcome.message or f"Open {outcome.url} and enter {outcome.user_code}.")
        outcome = outcome.complete(timeout=max(0.0, outcome.expires_at - time.time()))
    audit_sign_in(audit, outcome)
    return outcome
