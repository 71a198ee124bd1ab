"""Audit sinks: every committed audit event, exported to where a SIEM reads it.

The chain in the audit store stays the record; sinks are copies sent on the side. A sink
never sits on the query path: the store hands each committed event to a
:class:`SinkDispatcher`, which only puts it on a bounded queue; one daemon thread delivers
from there. A full queue drops the event (counted, then audited once as ``sink_backlog``);
a sink that raises is audited once as ``sink_failure`` when it starts failing and once as
``sink_recovered`` when it delivers again, so a dead sink cannot flood the chain with
reports about itself.

Each exported event is the row as stored: every chain field (JSON fields still encoded),
``id``, ``prev_hash`` and ``hash``, so a receiver can recompute
:func:`jupyter_gov.audit.chain.row_hash` and check that each event links to the one before.

Sinks are looked up by ``kind``: the built-in ones below, then the entry points of group
``jupyter_gov.audit_sinks``. A sink class is constructed as ``Sink(config, policy)``.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import importlib
import json
import logging
import logging.handlers
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timezone
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jupyter_gov.errors import PolicyError
from jupyter_gov.files import private_dir

if TYPE_CHECKING:
    from jupyter_gov.audit.store import AuditStore
    from jupyter_gov.policy import Policy

ENTRY_POINT_GROUP = "jupyter_gov.audit_sinks"

#: Kinds written by the dispatcher about itself. They are exported like any event, but a
#: dropped or failed one never causes another report (that would loop).
SINK_KINDS = ("sink_backlog", "sink_failure", "sink_recovered")

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_TIMEOUT = 5.0


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events are copied to. ``emit`` may block or raise; only the worker calls it."""

    kind: str

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[Mapping[str, Any], "Policy"], AuditSink]

#: Built-in kinds, imported on first use ("module:attribute"). ``openlineage`` is the
#: lineage step's sink (``jupyter_gov.audit.lineage``).
_BUILTIN: dict[str, str] = {
    "jsonl": "jupyter_gov.audit.sinks:JsonLinesSink",
    "syslog": "jupyter_gov.audit.sinks:SyslogSink",
    "otlp": "jupyter_gov.audit.sinks:OtlpLogSink",
    "webhook": "jupyter_gov.audit.sinks:WebhookSink",
    "openlineage": "jupyter_gov.audit.lineage:OpenLineageSink",
}
_EXTRAS = {"otlp": "siem", "openlineage": "lineage"}  # what a missing import asks to install
_REGISTERED: dict[str, SinkFactory] = {}


def register(kind: str, factory: SinkFactory) -> None:
    """Register a sink kind in this process (tests, embedding); entry points need no call."""
    _REGISTERED[kind] = factory


def _load(target: str) -> SinkFactory:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def sink_class(kind: str) -> SinkFactory:
    """The class for ``kind``: registered, built in, or from the entry-point group."""
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    if kind in _BUILTIN:
        try:
            return _load(_BUILTIN[kind])
        except (ImportError, AttributeError) as error:
            extra = _EXTRAS.get(kind, "siem")
            raise PolicyError(
                f"The audit sink kind {kind!r} is not available here ({error.__class__.__name__}"
                f": {error}); install its extra: pip install 'jupyter-gov[{extra}]'."
            ) from error
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == kind:
            return point.load()
    plugins = (p.name for p in entry_points(group=ENTRY_POINT_GROUP))
    known = sorted({*_BUILTIN, *_REGISTERED, *plugins})
    raise PolicyError(
        f"audit.sinks names an unknown sink kind {kind!r}; known kinds are {', '.join(known)}."
    )


def build_sinks(policy: Policy) -> list[AuditSink]:
    """The sinks ``audit.sinks`` names, constructed; a bad entry is a one-sentence PolicyError."""
    sinks: list[AuditSink] = []
    try:
        for config in policy.audit_sinks:
            sinks.append(sink_class(str(config["kind"]))(config, policy))
    except BaseException:
        for sink in sinks:
            with suppress(Exception):
                sink.close()
        raise
    return sinks


def attach(
    store: AuditStore, policy: Policy, session_id: str | None = None
) -> SinkDispatcher | None:
    """Export ``store``'s committed events to the policy's sinks; None when it names none."""
    if not policy.audit_sinks:
        return None
    shared = getattr(store, "_sink_dispatcher", None)
    if shared is not None and shared.share():  # sessions on one store object export once
        return shared
    dispatcher = SinkDispatcher(
        build_sinks(policy), store, queue_size=policy.audit_sink_queue, session_id=session_id
    )
    store.subscribe(dispatcher.submit)
    store._sink_dispatcher = dispatcher  # type: ignore[attr-defined]
    return dispatcher


def config_path(config: Mapping[str, Any], policy: Policy | None, key: str = "path") -> Path:
    """A path from a sink's config; a relative one is relative to the policy file's folder."""
    raw = config.get(key)
    if not raw:
        raise PolicyError(f"The {config.get('kind')} audit sink needs {key!r}.")
    path = Path(str(raw)).expanduser()
    origin = Path(policy.origin) if policy is not None else None
    if not path.is_absolute() and origin is not None and origin.is_file():
        path = origin.parent / path
    return path.absolute()


def serialize(event: Mapping[str, Any]) -> str:
    """One event as compact JSON with sorted keys (the form every built-in sink sends)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)


_STOP = object()


class SinkDispatcher:
    """A bounded queue and one daemon thread between the audit store and its sinks.

    ``submit`` never blocks: when the queue is full the event is dropped and counted. The
    worker reports drops as one ``sink_backlog`` event once it has caught up (or every
    ``report_every`` seconds while it has not).
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        store: AuditStore | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        session_id: str | None = None,
        report_every: float = 30.0,
    ) -> None:
        self.sinks = list(sinks)
        self.store = store
        self.session_id = session_id
        self.report_every = report_every
        self.dropped = 0  # every event that did not fit in the queue
        self.delivered: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self._unreported = 0  # drops not yet audited (sink events excluded: no loop)
        self._last_report = time.monotonic()
        self._failing: set[int] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(queue_size)))
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closed = False
        self._users = 1  # sessions sharing this dispatcher (one store object, one export)
        self._thread = threading.Thread(
            target=self._run, name="jupyter-gov-audit-sinks", daemon=True
        )
        self._thread.start()
        _open_dispatchers.add(self)

    # -- the writer's side -----------------------------------------------------------------

    def submit(self, events: Sequence[dict[str, Any]]) -> None:
        """Enqueue committed events; drop (and count) what does not fit. Never blocks."""
        for event in events:
            with self._lock:
                if self._closed:
                    return
                try:
                    self._queue.put_nowait(event)
                except queue.Full:
                    self.dropped += 1
                    if event.get("kind") not in SINK_KINDS:
                        self._unreported += 1
                    continue
                self._pending += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event was handed to every sink; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending or self._unreported:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(left)
        return True

    def share(self) -> bool:
        """Count one more user of this dispatcher; False once it is closed."""
        with self._lock:
            if self._closed:
                return False
            self._users += 1
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), stop the worker and close the sinks.

        With several users (sessions sharing one store object) only the last close stops it.
        """
        with self._lock:
            if self._closed:
                return
            self._users -= 1
            if self._users > 0:
                return
        if self.store is not None:
            self.store.unsubscribe(self.submit)
        self.flush(timeout)
        with self._lock:
            self._closed = True
        with suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        for sink in self.sinks:
            with suppress(Exception):
                sink.close()
        _open_dispatchers.discard(self)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            for index, sink in enumerate(self.sinks):
                self._deliver(index, sink, item)
            self._report_drops()  # before this item counts as done: flush() sees the report
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _deliver(self, index: int, sink: AuditSink, event: dict[str, Any]) -> None:
        kind = getattr(sink, "kind", type(sink).__name__)
        try:
            sink.emit(event)
        except Exception as error:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if index not in self._failing:
                self._failing.add(index)
                # The class name only: a message may hold a URL with a token in it.
                self._audit(
                    "sink_failure",
                    error=type(error).__name__,
                    detail={"sink": kind, "index": index, "event_id": event.get("id")},
                )
            return
        self.delivered[kind] = self.delivered.get(kind, 0) + 1
        if index in self._failing:
            self._failing.discard(index)
            self._audit(
                "sink_recovered",
                detail={"sink": kind, "index": index, "failures": self.failures.get(kind, 0)},
            )

    def _report_drops(self) -> None:
        with self._lock:
            due = self._unreported and (
                self._queue.empty() or time.monotonic() - self._last_report >= self.report_every
            )
            if not due:
                return
            count, self._unreported = self._unreported, 0
            self._last_report = time.monotonic()
            total, size = self.dropped, self._queue.maxsize
        self._audit(
            "sink_backlog",
            detail={"dropped": count, "dropped_total": total, "queue_size": size},
        )

    def _audit(self, kind: str, **fields: Any) -> None:
        """Record what happened to the export in the chain itself (best effort)."""
        if self.store is None:
            return
        with suppress(Exception):
            self.store.append(kind, session_id=self.session_id, **fields)


_open_dispatchers: weakref.WeakSet[SinkDispatcher] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Give queued events a moment to leave before the interpreter stops the worker."""
    for dispatcher in list(_open_dispatchers):
        with suppress(Exception):
            dispatcher.flush(timeout=2.0)


# -- JSON lines --------------------------------------------------------------------------


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that is owner-only and whose write errors reach the caller."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, self.mode, encoding=self.encoding)

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # called inside the handler's except block: the dispatcher audits the failure


class JsonLinesSink:
    """One JSON object per line, rotated by size (``max_bytes``, ``backup_count``)."""

    kind = "jsonl"

    def __init__(self, config: Mapping[str, Any], policy: Policy | None = None) -> None:
        self.path = config_path(config, policy)
        private_dir(self.path.parent)
        self._handler = _PrivateRotatingHandler(
            self.path,
            maxBytes=int(config.get("max_bytes", 10 * 1024 * 1024)),
            backupCount=int(config.get("backup_count", 5)),
            encoding="utf-8",
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, event: dict[str, Any]) -> None:
        record = logging.makeLogRecord({"msg": serialize(event), "levelno": logging.INFO})
        self._handler.emit(record)
        self._handler.flush()

    def close(self) -> None:
        self._handler.close()


# -- syslog (RFC 5424) -------------------------------------------------------------------

_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}  # fmt: skip
_NOTICE, _WARNING, _ERROR = 5, 4, 3

#: Fields repeated as RFC 5424 structured data, so a collector can index them unparsed.
_SD_FIELDS = ("id", "hash", "prev_hash", "kind", "subject", "decision", "connection", "fingerprint")


def _sd_value(value: Any) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 section 6.3.3)."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _severity(event: Mapping[str, Any]) -> int:
    if event.get("error") or str(event.get("kind", "")).startswith("sink_"):
        return _ERROR if event.get("kind") != "sink_recovered" else _NOTICE
    if event.get("decision") in ("deny", "denied") or event.get("kind") == "break_glass":
        return _WARNING
    return _NOTICE


def syslog_frame(
    event: Mapping[str, Any],
    *,
    facility: int = _FACILITIES["auth"],
    app_name: str = "jupyter-gov",
    hostname: str | None = None,
    sd_id: str = "jupyter-gov@32473",
) -> bytes:
    """One RFC 5424 message: header, structured data with the chain fields, JSON body."""
    ts = datetime.fromtimestamp(float(event.get("ts") or time.time()), tz=timezone.utc)
    stamp = ts.isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-")[:255]
    msgid = str(event.get("kind") or "-")[:32]
    params = " ".join(
        f'{name}="{_sd_value(event[name])}"' for name in _SD_FIELDS if event.get(name) is not None
    )
    structured = f"[{sd_id} {params}]" if params else "-"
    pri = facility * 8 + _severity(event)
    header = f"<{pri}>1 {stamp} {host} {app_name} {os.getpid()} {msgid} {structured} "
    return header.encode() + b"\xef\xbb\xbf" + serialize(event).encode()


class SyslogSink:
    """RFC 5424 over UDP (one datagram) or TCP (octet-counted frames, RFC 6587)."""

    kind = "syslog"

    def __init__(self, config: Mapping[str, Any], policy: Policy | None = None) -> None:
        self.host = str(config.get("host", "127.0.0.1"))
        self.port = int(config.get("port", 514))
        self.protocol = str(config.get("protocol", "udp")).lower()
        if self.protocol not in ("udp", "tcp"):
            raise PolicyError("The syslog audit sink's protocol must be udp or tcp.")
        facility = str(config.get("facility", "auth"))
        if facility not in _FACILITIES:
            raise PolicyError(f"The syslog audit sink's facility {facility!r} is not known.")
        self.facility = _FACILITIES[facility]
        self.app_name = str(config.get("app_name", "jupyter-gov"))
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self._socket: socket.socket | None = None

    def _connected(self) -> socket.socket:
        if self._socket is None:
            kind = socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM
            info = socket.getaddrinfo(self.host, self.port, type=kind)[0]
            sock = socket.socket(info[0], kind)
            sock.settimeout(self.timeout)
            try:
                sock.connect(info[4])
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def emit(self, event: dict[str, Any]) -> None:
        frame = syslog_frame(event, facility=self.facility, app_name=self.app_name)
        try:
            sock = self._connected()
            if self.protocol == "udp":
                sock.send(frame)
            else:
                sock.sendall(str(len(frame)).encode() + b" " + frame)
        except OSError:
            self.close()  # reconnect on the next event
            raise

    def close(self) -> None:
        if self._socket is not None:
            with suppress(OSError):
                self._socket.close()
            self._socket = None


# -- OpenTelemetry logs over OTLP/HTTP ---------------------------------------------------


def _otel_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    """Flat attributes for indexing; the full stored event is the record's body."""
    out: dict[str, Any] = {}
    for name, value in event.items():
        if value is None:
            continue
        key = f"jupyter_gov.{name}"
        out[key] = value if isinstance(value, bool | int | float | str) else serialize(value)
    return out


class OtlpLogSink:
    """OpenTelemetry log records sent to an OTLP/HTTP endpoint (``.../v1/logs``).

    Uses its own ``LoggerProvider`` (never the process's global one) and exports each
    record synchronously from the dispatcher's thread, so a failed export raises here and
    is audited instead of vanishing into the SDK's log.
    """

    kind = "otlp"

    def __init__(self, config: Mapping[str, Any], policy: Policy | None = None) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
            from opentelemetry.sdk._logs.export import LogRecordExportResult
            from opentelemetry.sdk.resources import Resource
        except ImportError as error:
            raise PolicyError(
                "The otlp audit sink needs OpenTelemetry; pip install 'jupyter-gov[siem]'."
            ) from error
        endpoint = config.get("endpoint")
        if not endpoint:
            raise PolicyError("The otlp audit sink needs an 'endpoint' (http://host:4318/v1/logs).")
        headers = dict(config.get("headers") or {})
        token_env = config.get("token_env")
        if token_env and os.environ.get(str(token_env)):
            headers["authorization"] = f"Bearer {os.environ[str(token_env)]}"
        self._exporter = OTLPLogExporter(
            endpoint=str(endpoint),
            headers=headers,
            timeout=float(config.get("timeout", DEFAULT_TIMEOUT)),
        )
        success = LogRecordExportResult.SUCCESS
        sink = self

        class _ExportNow(LogRecordProcessor):
            def on_emit(self, log_record: Any) -> None:
                sink._last_ok = sink._exporter.export([log_record]) == success

            def shutdown(self) -> None:
                sink._exporter.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return True

        attributes = {"service.name": str(config.get("service_name", "jupyter-gov"))}
        if policy is not None:
            attributes["jupyter_gov.policy"] = policy.name
        self._provider = LoggerProvider(resource=Resource.create(attributes))
        self._provider.add_log_record_processor(_ExportNow())
        self._logger = self._provider.get_logger("jupyter_gov.audit")
        self._last_ok = True

    def emit(self, event: dict[str, Any]) -> None:
        from opentelemetry._logs import SeverityNumber

        severity = _severity(event)
        number, text = {
            _ERROR: (SeverityNumber.ERROR, "ERROR"),
            _WARNING: (SeverityNumber.WARN, "WARN"),
        }.get(severity, (SeverityNumber.INFO, "INFO"))
        self._last_ok = False
        self._logger.emit(
            timestamp=int(float(event.get("ts") or time.time()) * 1e9),
            severity_number=number,
            severity_text=text,
            body=serialize(event),
            attributes=_otel_attributes(event),
            event_name=f"jupyter_gov.audit.{event.get('kind')}",
        )
        if not self._last_ok:
            raise ConnectionError("the OTLP endpoint did not accept the log record")

    def close(self) -> None:
        with suppress(Exception):
            self._provider.shutdown()


# -- webhook ------------------------------------------------------------------------------


SIGNATURE_HEADER = "x-jupyter-gov-signature"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC of the body>``: lets a receiver check who sent it, and that intact."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_json(
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    secret_env: str | None = None,
) -> None:
    """POST ``payload`` as JSON (signed when ``$secret_env`` is set); raise unless 2xx."""
    import requests

    body = json.dumps(payload, default=str).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    secret = os.environ.get(secret_env) if secret_env else None
    if secret:
        sent[SIGNATURE_HEADER] = signature(secret, body)
    response = requests.post(url, data=body, headers=sent, timeout=timeout, allow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise ConnectionError(f"the receiver answered HTTP {response.status_code}")


class WebhookSink:
    """Each event POSTed as one JSON object (``url``; ``token_env`` for a bearer token,
    ``secret_env`` for an HMAC-SHA256 signature of the body)."""

    kind = "webhook"

    def __init__(self, config: Mapping[str, Any], policy: Policy | None = None) -> None:
        url = config.get("url")
        if not url or not str(url).startswith(("http://", "https://")):
            raise PolicyError("The webhook audit sink needs an http(s) 'url'.")
        self.url = str(url)
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        token_env = config.get("token_env")
        if token_env and os.environ.get(str(token_env)):
            self.headers["authorization"] = f"Bearer {os.environ[str(token_env)]}"
        self.secret_env = str(config["secret_env"]) if config.get("secret_env") else None

    def emit(self, event: dict[str, Any]) -> None:
        post_json(
            self.url, event, headers=self.headers, timeout=self.timeout, secret_env=self.secret_env
        )

    def close(self) -> None:
        pass
