"""Real receivers on loopback for the evidence tests: HTTP, OTLP/HTTP, syslog, SMTP.

Each binds port 0 (SMTP: a port found free a moment before) and hands what it received to
a queue, so tests wait on a condition with a timeout instead of sleeping.
"""

from __future__ import annotations

import copy
import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from jupyter_gov.policy import Policy

WAIT = 10.0  # seconds a test waits for something that should arrive at once


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """A threaded HTTP server that records every POST; ``hold`` keeps answers back."""

    status: int = 200
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    inbox: queue.Queue[Received] = field(default_factory=queue.Queue)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.inbox.put(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(WAIT)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def take(self, count: int, timeout: float = WAIT) -> list[Received]:
        """The next ``count`` requests, waiting for each up to ``timeout``."""
        return [self.inbox.get(timeout=timeout) for _ in range(count)]

    def drain(self) -> list[Received]:
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[Callable[..., HttpReceiver]]:
    started: list[HttpReceiver] = []

    def start(**kwargs: Any) -> HttpReceiver:
        receiver = HttpReceiver(**kwargs).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


class SyslogListener:
    """A UDP socket on loopback collecting datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT)
        self.port = self.sock.getsockname()[1]

    def take(self, count: int) -> list[bytes]:
        return [self.sock.recv(65535) for _ in range(count)]

    def drain(self) -> list[bytes]:
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(65535))
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(WAIT)


@pytest.fixture
def syslog_listener() -> Iterator[SyslogListener]:
    listener = SyslogListener()
    yield listener
    listener.sock.close()


def free_port() -> int:
    """A port nobody listens on (bound and released: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler keeping each message's envelope and content."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox.put(envelope)
        return "250 Message accepted for delivery"

    def take(self, count: int) -> list[Any]:
        return [self.inbox.get(timeout=WAIT) for _ in range(count)]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def policy_with(demo: Policy, **sections: dict[str, Any]) -> Policy:
    """The demo policy with keys merged into its top-level sections, validated as a file is."""
    data = copy.deepcopy(demo.data)
    for name, values in sections.items():
        data[name] = {**(data.get(name) or {}), **values}
    return Policy.from_text(yaml.safe_dump(data), "<evidence test policy>")
