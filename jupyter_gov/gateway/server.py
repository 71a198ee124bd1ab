"""The gateway: the governed engine in its own process, behind Arrow Flight.

It holds what a kernel must not: the policy's connection credentials, the masking key and
the audit and approval stores. Every call carries a bearer token that
:mod:`jupyter_gov.gateway.auth` turns into an identity; the engine then decides, rewrites,
runs and audits exactly as it does in a kernel, and only masked Arrow record batches leave.

One :class:`~jupyter_gov.engine.GovernedSession` per verified identity (a bounded
:class:`SessionPool`) keeps that caller's plan cache, saved results and bulk-export
accounting across calls; calls of one identity run one at a time (a session's connectors
are not shared by two statements at once), calls of different identities in parallel. A
result streams from the engine's reader as the client reads it; its audit ``result`` event
is written once, with the row count, when the stream ends, is cut by the row cap, or is
dropped by the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from jupyter_gov.audit.checkpoints import store_id
from jupyter_gov.config import resolve
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import (
    ApprovalRequired,
    GovError,
    IdentityError,
    PipelineNeedsApproval,
    PolicyError,
    QueryDenied,
    UsageError,
)
from jupyter_gov.gateway import protocol
from jupyter_gov.gateway.auth import Authenticator, BearerMiddlewareFactory
from jupyter_gov.identity.base import Identity
from jupyter_gov.policy.summary import PII_FINDING_EVENTS, pii_findings, policy_summary
from jupyter_gov.result import GovernedResult

BATCH_ROWS = 65_536
_log = logging.getLogger("jupyter_gov.gateway")


class _CallIdentity:
    """The identity provider of a gateway session: whoever the current call's token proved."""

    name = "gateway"

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, identity: Identity) -> None:
        self._local.identity = identity

    def current(self) -> Identity:
        identity: Identity | None = getattr(self._local, "identity", None)
        if identity is None:
            raise IdentityError("The gateway has no verified identity for this call.")
        if identity.expired():
            raise IdentityError("Your sign-in has expired; sign in again.")
        return identity


#: Engine sessions a gateway keeps at most (one per identity), least recently used first out.
DEFAULT_MAX_SESSIONS = 256
#: Seconds an identity's session is kept after its last call ends.
DEFAULT_IDLE_SECONDS = 900.0
#: Seconds a call waits for the same identity's running call (a stream being read) to end.
DEFAULT_WAIT_SECONDS = 300.0


@dataclass
class _Entry:
    session: GovernedSession
    provider: _CallIdentity
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # calls running or waiting: never evicted while above 0


class SessionPool:
    """One engine session per verified identity, bounded in number and in idle time.

    Why bounded: a session holds that identity's open database connections, plan cache and
    saved results; a gateway serving many users over weeks must not keep them all. A session
    unused for ``idle_seconds`` is closed (its connectors with it), and beyond
    ``max_sessions`` the least recently used idle one is; a session with a call running or
    a result still streaming is never closed. What an evicted session held (saved results,
    the per-session bulk-export budget) starts again at the identity's next call, as after
    a kernel restart. Shared by the Flight service and the PostgreSQL door of one process.
    """

    def __init__(
        self,
        policy: Any,
        audit_store: str,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        connection: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or idle_seconds <= 0:
            raise UsageError("The gateway keeps at least one session, idle for more than 0 s.")
        self.policy, self.audit_store, self.connection = policy, audit_store, connection
        self.max_sessions, self.idle_seconds = max_sessions, idle_seconds
        self.wait_seconds, self.clock = wait_seconds, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        #: Sessions closed so far (idle or least recently used), for operators and tests.
        self.evicted = 0
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def start_expiry(self) -> None:
        """Close idle sessions on a timer too, not only when a call comes in (a quiet
        gateway must not keep a departed user's database connections open)."""
        every = min(60.0, max(1.0, self.idle_seconds / 4))

        def reap() -> None:
            while not self._stop.wait(every):
                self.expire()

        self._reaper = threading.Thread(target=reap, name="jupyter-gov-sessions", daemon=True)
        self._reaper.start()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identity: Identity) -> bool:
        return identity.key in self._entries

    def acquire(self, identity: Identity) -> _Entry:
        """The identity's session, locked for this call (release it with :meth:`release`)."""
        with self._lock:
            stale = self._expire(self.clock())
            entry = self._entries.get(identity.key)
            if entry is None:
                provider = _CallIdentity()
                session = GovernedSession(
                    self.policy, provider, connection=self.connection, audit=self.audit_store
                )
                entry = _Entry(session, provider, self.clock())
                self._entries[identity.key] = entry
            self._entries.move_to_end(identity.key)
            entry.users += 1  # before the limit is applied: the caller's own is kept
            stale += self._over_limit()
        _close(stale)
        if not entry.lock.acquire(timeout=self.wait_seconds):
            with self._lock:
                entry.users -= 1
            raise GovError(
                "Another call of yours is still running in the gateway (a result being read); "
                "try again once it ends."
            )
        entry.provider.set(identity)
        return entry

    def release(self, entry: _Entry) -> None:
        entry.last_used = self.clock()
        entry.lock.release()
        with self._lock:
            entry.users -= 1

    @contextlib.contextmanager
    def lease(self, identity: Identity) -> Iterator[GovernedSession]:
        """The identity's session for the length of a ``with`` block."""
        entry = self.acquire(identity)
        try:
            yield entry.session
        finally:
            self.release(entry)

    def peek(self, identity: Identity) -> GovernedSession | None:
        """The identity's session without locking it (to interrupt its running statement)."""
        entry = self._entries.get(identity.key)
        return entry.session if entry is not None else None

    def expire(self) -> int:
        """Close the sessions idle too long now; how many were closed."""
        with self._lock:
            stale = self._expire(self.clock())
        _close(stale)
        return len(stale)

    def _expire(self, now: float) -> list[GovernedSession]:
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.users == 0 and now - entry.last_used >= self.idle_seconds
        ]
        return [self._pop(key) for key in stale]

    def _over_limit(self) -> list[GovernedSession]:
        closed = []
        while len(self._entries) > self.max_sessions:
            idle = next((k for k, e in self._entries.items() if e.users == 0), None)
            if idle is None:  # every session is busy: keep them, the bound is exceeded briefly
                break
            closed.append(self._pop(idle))
        return closed

    def _pop(self, key: str) -> GovernedSession:
        self.evicted += 1
        return self._entries.pop(key).session

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sessions = [e.session for e in self._entries.values()]
            self._entries.clear()
        _close(sessions)


def _close(sessions: list[GovernedSession]) -> None:
    """Close evicted sessions outside the pool's lock (closing a connector may take a while)."""
    for session in sessions:
        try:
            session.close()
        except Exception as error:  # one session's failed close must not stop the others
            _log.error("jupyter-gov gateway: closing a session failed (%s)", type(error).__name__)


class GatewayServer(flight.FlightServerBase):
    """Arrow Flight front end of the engine; see the module docstring."""

    def __init__(
        self,
        policy: str | Path | None,
        location: str = "grpc://127.0.0.1:0",
        *,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        audit_store: str | None = None,
        authenticator: Authenticator | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.settings = resolve(policy=policy, audit_store=audit_store)
        self.policy = self.settings.policy
        self.authenticator = authenticator or Authenticator(self.policy)
        unknown = set(self.audit_roles) - set(self.policy.roles)
        if unknown:
            raise PolicyError(
                f"gateway.audit_roles names roles the policy does not have: {sorted(unknown)}."
            )
        certificates = []
        if tls_cert or tls_key:
            if not (tls_cert and tls_key):
                raise UsageError("TLS needs both --tls-cert and --tls-key.")
            certificates = [
                flight.CertKeyPair(cert=Path(tls_cert).read_bytes(), key=Path(tls_key).read_bytes())
            ]
            location = location.replace("grpc://", "grpc+tls://", 1)
        super().__init__(
            location,
            tls_certificates=certificates,
            middleware={"auth": BearerMiddlewareFactory(self.authenticator)},
        )
        self.scheme = "grpc+tls" if certificates else "grpc"
        self.sessions = SessionPool(
            self.policy,
            self.settings.audit_store,
            max_sessions=max_sessions,
            idle_seconds=idle_seconds,
        )
        self.sessions.start_expiry()

    @property
    def address(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- sessions ------------------------------------------------------------------------

    @staticmethod
    def _identity(context: flight.ServerCallContext) -> Identity:
        middleware = context.get_middleware("auth")
        if middleware is None:  # cannot happen: the factory runs on every call
            raise flight.FlightUnauthenticatedError("The gateway needs a bearer token.")
        return middleware.identity  # type: ignore[no-any-return]

    # -- queries: do_get -----------------------------------------------------------------

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        """The decision first (an empty batch with JSON metadata), then the result's batches
        as the engine reads them, then an empty batch whose metadata is the end: row count,
        audit id and the final plan (a row cap adds its finding while the rows pass)."""
        entry: _Entry | None = None
        try:
            identity = self._identity(context)
            request = protocol.loads(ticket.ticket)
            entry = self.sessions.acquire(identity)
            reply, result = self._run(entry.session, identity, request)
        except GovError as error:
            reply, result = {"status": "error", "error": protocol.error_to_json(error)}, None
        except flight.FlightError:
            if entry is not None:
                self.sessions.release(entry)
            raise
        except Exception as error:  # a defect: one sentence out, never a traceback or value
            reply, result = {"status": "error", "error": _internal(error)}, None
        if result is None:
            if entry is not None:
                self.sessions.release(entry)
            schema = pa.schema([])
            empty = pa.RecordBatch.from_arrays([], schema=schema)
            return flight.GeneratorStream(schema, iter([(empty, protocol.dumps(reply))]))
        assert entry is not None
        try:
            reply_stream = _ReplyStream(result, reply, lambda: self.sessions.release(entry))
        except BaseException:
            _finish(result, lambda: self.sessions.release(entry))
            raise
        return flight.GeneratorStream(reply_stream.schema, reply_stream)

    def _run(
        self, session: GovernedSession, identity: Identity, request: Mapping[str, Any]
    ) -> tuple[dict[str, Any], GovernedResult | None]:
        reply: dict[str, Any] = {"protocol": protocol.PROTOCOL}
        reply["identity"] = protocol.identity_to_json(identity)
        try:
            if request.get("op") != "sql":
                raise UsageError("The gateway only runs 'sql' requests through do_get.")
            result = session.sql(
                str(request.get("statement") or ""),
                protocol.decode_params(request.get("params")),
                connection=request.get("connection"),
                name=request.get("name"),
                limit=request.get("limit"),
                purpose=request.get("purpose"),
                unmask=request.get("unmask") or (),
                approval_id=request.get("approval_id"),
                break_glass=request.get("break_glass"),
            )
        except PipelineNeedsApproval as pending:
            reply.update(
                status="approval_required",
                plan=protocol.plan_to_json(pending.plan),
                audit_id=pending.audit_id,
                query_id=pending.query_id,
                request_id=pending.request_id,
                message=str(pending),
            )
            return reply, None
        except ApprovalRequired as pending:
            reply.update(
                status="approval_required",
                plan=protocol.plan_to_json(pending.plan),
                audit_id=pending.audit_id,
                query_id=pending.query_id,
            )
            return reply, None
        except QueryDenied as denied:
            reply.update(
                status="denied", plan=protocol.plan_to_json(denied.plan), audit_id=denied.audit_id
            )
            return reply, None
        except GovError as error:
            reply.update(status="error", error=protocol.error_to_json(error))
            return reply, None
        reply.update(
            status="ok",
            plan=protocol.plan_to_json(result.plan),
            query_id=result.query_id,
            name=result.name,
        )
        return reply, result

    # -- everything else: do_action ------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [(name, "jupyter-gov gateway action (JSON body)") for name in protocol.ACTIONS]

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        try:
            identity = self._identity(context)
            body = protocol.loads(action.body) if action.body.size else {}
            with self.sessions.lease(identity) as session:
                answer = self._action(session, identity, action.type, body)
        except GovError as error:
            answer = {"status": "error", "error": protocol.error_to_json(error)}
        except flight.FlightError:
            raise
        except Exception as error:  # a defect: one sentence out, never a traceback or value
            answer = {"status": "error", "error": _internal(error)}
        yield protocol.dumps(answer)

    def _action(
        self, session: GovernedSession, identity: Identity, kind: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if kind not in protocol.ACTIONS:
            raise UsageError(f"The gateway has no action {kind!r}.")
        if kind.startswith("audit."):
            return self._audit(session, identity, kind, body)
        if kind == "policy.summary":
            return {"status": "ok", "summary": self._policy_summary(session, identity)}
        if kind == "sign_in":  # %gsql_login / %gsql_logout: recorded as the token proves
            event = "sign_out" if body.get("kind") == "sign_out" else "sign_in"
            fields = identity.audit_fields()
            groups = fields.pop("groups")
            session.audit.append(event, **fields, detail={"groups": groups, "front_end": "flight"})
            return {"status": "ok", "identity": protocol.identity_to_json(identity)}
        params = protocol.decode_params(body.get("params"))
        if kind == "hello":
            policy = session.policy
            return {
                "status": "ok",
                "protocol": protocol.PROTOCOL,
                "identity": protocol.identity_to_json(identity),
                "roles": list(policy.roles_for(identity)),
                "policy": {"name": policy.name, "short_hash": policy.short_hash},
                "connections": {
                    name: {"dialect": _dialect_of(conn)}
                    for name, conn in policy.connections.items()
                },
                "default_connection": session.default_connection,
            }
        if kind == "explain":
            plan = session.explain(
                str(body.get("statement") or ""),
                params,
                connection=body.get("connection"),
                unmask=body.get("unmask") or (),
                limit=body.get("limit"),
            )
            return {"status": "ok", "plan": protocol.plan_to_json(plan)}
        if kind == "tables":
            return {
                "status": "ok",
                "roles": list(session.policy.roles_for(identity)),
                "columns": session.visible_columns(body.get("connection")),
            }
        if kind == "approval.request":
            request = session.request_approval(
                str(body.get("statement") or ""),
                params,
                justification=str(body.get("justification") or ""),
                connection=body.get("connection"),
                unmask=body.get("unmask") or (),
                limit=body.get("limit"),
            )
            return {"status": "ok", "request": request.to_dict()}
        request_id = str(body.get("id") or "")
        if kind == "approval.approve":
            request = session.approve(request_id, str(body.get("comment") or ""))
        elif kind == "approval.deny":
            request = session.deny(request_id, str(body.get("comment") or ""))
        elif kind == "approval.get":  # what would run, with its values, only for deciders
            request = session.approvals.get(request_id)
            may_decide = any(r.id == request.id for r in session.approvals.actionable_by(identity))
            return {"status": "ok", "request": request.to_dict(approver=may_decide)}
        elif kind == "approval.list":  # as the sidebar lists them: details for deciders only
            actionable = {r.id for r in session.approvals.actionable_by(identity)}
            state = body.get("state")
            return {
                "status": "ok",
                "requests": [
                    r.to_dict(approver=r.id in actionable)
                    for r in session.approvals.list(str(state) if state else None)
                ],
            }
        else:  # approval.actionable: the caller decides these, so sees what would run
            return {
                "status": "ok",
                "requests": [
                    r.to_dict(approver=True) for r in session.approvals.actionable_by(identity)
                ],
            }
        return {"status": "ok", "request": request.to_dict()}

    def _audit(
        self, session: GovernedSession, identity: Identity, kind: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The audit as the sidebar and ``jupyter-gov audit`` read it, decided here.

        Anyone signed in may verify the chain and read its head (counts and hashes, no
        event). Events, counts and statistics are the caller's own (their subject and
        issuer, whatever filter they send), or everyone's for the roles the policy's
        ``gateway.audit_roles`` lists.
        """
        store = session.audit
        if kind == "audit.verify":
            checkpoint = body.get("checkpoint")
            if checkpoint is not None and not isinstance(checkpoint, dict):
                raise UsageError("A checkpoint is a JSON object.")
            return {"status": "ok", "report": store.verify(checkpoint).to_dict()}
        if kind == "audit.head":  # a checkpoint of the whole chain, and which store it is
            return {"status": "ok", **store.checkpoint(), "store_id": store_id(store)}
        filters = audit_filters(body.get("filters"))
        everyone = bool(set(self.policy.roles_for(identity)) & set(self.audit_roles))
        if not everyone:
            if filters.get("subject") not in (None, identity.subject):
                filters = {"kinds": ("none",)}  # another person's events: nothing to read
            else:
                filters.update(subject=identity.subject, issuer=identity.issuer)
        scope = "all" if everyone else "own"
        if kind == "audit.count":
            return {"status": "ok", "scope": scope, "count": store.count(**filters)}
        if kind == "audit.stats":
            bucket = body.get("bucket")
            if not isinstance(bucket, int) or isinstance(bucket, bool) or bucket <= 0:
                raise UsageError("An audit statistics bucket is a positive number of seconds.")
            rows = store.stats(bucket=bucket, **filters)
            return {
                "status": "ok",
                "scope": scope,
                "rows": [[r.start, r.decision, r.masked, r.count] for r in rows],
            }
        limit, offset = body.get("limit", 100), body.get("offset", 0)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (limit, offset)):
            raise UsageError("limit and offset are whole numbers.")
        events = store.events(
            limit=max(0, min(limit, MAX_AUDIT_PAGE)),
            offset=max(0, offset),
            newest_first=bool(body.get("newest_first", True)),
            **filters,
        )
        return {"status": "ok", "scope": scope, "events": events}

    def _policy_summary(self, session: GovernedSession, identity: Identity) -> dict[str, Any]:
        """The sidebar's Policy tab in gateway mode: the policy enforced here, for the
        token's owner (roles derived here, never sent by the caller).

        What crosses is :func:`~jupyter_gov.policy.summary.policy_summary` (no connection
        URL, service token digest nor masking key), without ``origin`` (where the file lies
        on the gateway's host is the gateway's business), and the PII findings of the
        ``classification`` events the caller may read through ``audit.events``: their own,
        or everyone's for the roles of ``gateway.audit_roles``.
        """
        summary = policy_summary(session.policy, identity)
        summary.pop("origin", None)
        readable = self._audit(
            session,
            identity,
            "audit.events",
            {"limit": PII_FINDING_EVENTS, "filters": {"kinds": ["classification"]}},
        )
        summary["pii_findings"] = pii_findings(readable["events"])
        summary["pii_findings_scope"] = readable["scope"]
        return summary

    @property
    def audit_roles(self) -> tuple[str, ...]:
        """Roles that read every caller's audit events (``gateway.audit_roles``)."""
        return tuple(self.policy.gateway_config.get("audit_roles") or ())

    def shutdown(self) -> None:
        super().shutdown()
        self.sessions.close()


#: The most events one ``audit.events`` call returns (the sidebar pages by 500 at most).
MAX_AUDIT_PAGE = 10_000


def audit_filters(data: Any) -> dict[str, Any]:
    """A caller's audit filters, checked: known names, plain values (every one is bound)."""
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - set(protocol.AUDIT_FILTERS):
        raise UsageError(
            "Audit filters are an object of " + ", ".join(protocol.AUDIT_FILTERS) + "."
        )
    filters: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        if name == "kinds":
            if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                raise UsageError("The audit filter 'kinds' is a list of event kinds.")
            filters[name] = tuple(value)
        elif name in ("since", "until"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise UsageError(f"The audit filter {name!r} is epoch seconds.")
            filters[name] = float(value)
        elif isinstance(value, str):
            filters[name] = value
        else:
            raise UsageError(f"The audit filter {name!r} is text.")
    return filters


def _internal(error: Exception) -> dict[str, str]:
    """An unexpected failure as the client (and the log) sees it: its class name, nothing it
    carried (a driver's message may quote a value)."""
    _log.error("jupyter-gov gateway: unexpected %s while serving a call", type(error).__name__)
    return {
        "class": "GovError",
        "message": f"The gateway failed unexpectedly ({type(error).__name__}); nothing more "
        "ran, and its audit records what did.",
    }


def _dialect_of(connection: Any) -> str:
    """A connection's dialect from the policy or its URL's profile, without connecting (a
    database that is down must not stop a kernel from learning the connection names)."""
    from jupyter_gov.connectors.registry import profile_for_url

    if connection.dialect:
        return str(connection.dialect)
    try:
        return profile_for_url(connection.url, connection.name).dialect
    except GovError:
        return "duckdb"


class _ReplyStream:
    """One result leaving the gateway, batch by batch, as the client reads it.

    The first message is the decision; the batches come from the engine's
    :class:`~jupyter_gov.stream.GovernedStream` (read from the connector's reader, counted,
    capped); the last message carries the count and the audit id of the ``result`` event the
    stream's end wrote. It holds the caller's session until it ends: read to the end, failed,
    or dropped (the client went away; the server then drops this object, and its finalizer
    closes the result, which audits the rows read for it so far, marked "closed before the
    end").
    """

    def __init__(
        self, result: GovernedResult, reply: dict[str, Any], release: Callable[[], None]
    ) -> None:
        self._result = result
        self._reader = result.to_arrow_reader(BATCH_ROWS)
        self.schema = protocol.wire_schema(self._reader.schema)
        self._decode = not self.schema.equals(self._reader.schema)
        if self._decode:  # dictionary columns cross decoded; the kernel casts them back
            reply = {**reply, "schema": protocol.schema_to_json(self._reader.schema)}
        self._reply: dict[str, Any] | None = reply
        self._done = False
        self._finalizer = weakref.finalize(self, _finish, result, release)

    def __iter__(self) -> _ReplyStream:
        return self

    def __next__(self) -> tuple[pa.RecordBatch, bytes] | pa.RecordBatch:
        if self._done:
            raise StopIteration
        if self._reply is not None:
            reply, self._reply = self._reply, None
            return _empty(self.schema), protocol.dumps(reply)
        try:
            batch = self._reader.read_next_batch()
            return batch.cast(self.schema) if self._decode else batch
        except StopIteration:
            end: dict[str, Any] = {"status": "end"}
        except GovError as error:
            end = {"status": "error", "error": protocol.error_to_json(error)}
        except Exception as error:  # a defect: one sentence out, never a value
            end = {"status": "error", "error": _internal(error)}
        self._done = True
        self._finalizer()  # the result event is written (or the failure was): then report it
        result = self._result
        end.update(
            rows=result.rows_fetched,
            audit_id=result.audit_id,
            duration_ms=result.duration_ms,
            plan=protocol.plan_to_json(result.plan),
        )
        return _empty(self.schema), protocol.dumps(end)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def _finish(result: GovernedResult, release: Callable[[], None]) -> None:
    """End a reply: a result not read to its end is closed (audited with the rows handed
    over), then the caller's session is free for its next call."""
    try:
        if not result.complete:
            result.close()
    except Exception as error:  # the audit failed: logged by class; the session is freed
        _log.error("jupyter-gov gateway: ending a result failed (%s)", type(error).__name__)
    finally:
        release()


def load_env_file(path: str | Path, environ: Any = None) -> list[str]:
    """Put the ``NAME=VALUE`` lines of a credentials file into the environment.

    The policy's connection URLs name secrets as ``${VAR}``; this file is where the gateway's
    OS user keeps them (as systemd's ``EnvironmentFile``). A file that its group or others
    may read is refused: the point of the gateway is that nobody else can. Returns the
    names set (never the values).
    """
    import os
    import stat

    environ = os.environ if environ is None else environ
    location = Path(path)
    try:
        mode = location.stat().st_mode
        text = location.read_text()
    except OSError as error:
        raise UsageError(
            f"The credentials file {location} cannot be read ({error.strerror})."
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"The credentials file {location} is readable by others; chmod 600 it first."
        )
    names = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"Line {number} of {location} is not NAME=VALUE.")
        environ[name] = value.strip().strip("'\"")
        names.append(name)
    return names


def serve(
    policy: str | Path | None,
    listen: str = "127.0.0.1:0",
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    audit_store: str | None = None,
    env_file: str | None = None,
    pg_listen: str | None = None,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    idle_seconds: float = DEFAULT_IDLE_SECONDS,
    checkpoint_key: str | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: float = 300.0,
    announce: Any = print,
) -> None:
    """Run a gateway until interrupted; announce its address once it listens.

    With ``pg_listen`` the same process also serves the PostgreSQL wire protocol
    (:mod:`jupyter_gov.gateway.pgwire`) with the same authenticator, engine sessions and
    audit; its address is announced on the next line. With ``checkpoint_key`` it signs the
    audit's checkpoint into ``checkpoint_dir`` at start-up and every ``checkpoint_every`` s.
    """
    if env_file:
        load_env_file(env_file)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--listen takes HOST:PORT, not {listen!r}.")
    server = GatewayServer(
        policy,
        f"grpc://{host}:{port}",
        tls_cert=tls_cert,
        tls_key=tls_key,
        audit_store=audit_store,
        max_sessions=max_sessions,
        idle_seconds=idle_seconds,
    )
    door: _PgDoor | None = None
    publisher = None
    try:
        if pg_listen:
            door = _PgDoor(server, pg_listen, tls_cert, tls_key)
        if checkpoint_key:
            publisher = _publisher(server, checkpoint_key, checkpoint_dir, checkpoint_every)
        announce(f"jupyter-gov gateway listening on {server.scheme}://{host}:{server.port}")
        if door is not None:
            announce(f"jupyter-gov pgwire listening on {door.host}:{door.port}")
        server.serve()
    finally:
        if publisher is not None:
            publisher.stop()
        if door is not None:
            door.close()
        server.shutdown()


class _PgDoor:
    """The PostgreSQL wire door of a gateway process: its own event loop on a thread,
    sharing the Flight service's authenticator, session pool and audit store."""

    def __init__(
        self, server: GatewayServer, listen: str, tls_cert: str | None, tls_key: str | None
    ) -> None:

        from jupyter_gov.gateway import pgwire

        host, port = pgwire.parse_listen(listen)
        self.server = pgwire.PgWireServer(
            server.policy,
            audit=server.settings.audit_store,
            host=host,
            port=port,
            tls=pgwire.tls_context(tls_cert, tls_key),
            authenticator=server.authenticator,
            sessions=server.sessions,
        )
        self.loop = asyncio.new_event_loop()
        self.host, self.port = self.loop.run_until_complete(self.server.start())
        self._thread = threading.Thread(target=self._run, name="jupyter-gov-pgwire", daemon=True)
        self._thread.start()

    def _run(self) -> None:

        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve_forever())
        except (Exception, asyncio.CancelledError) as error:  # closed at shutdown
            _log.info("jupyter-gov pgwire stopped (%s)", type(error).__name__)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self._thread.join(10)


def _publisher(server: GatewayServer, key: str, folder: str | None, every: float) -> Any:
    """Signed audit checkpoints published by the gateway (see docs/gateway-clients.md)."""
    import sys

    from jupyter_gov.audit.checkpoints import CheckpointPublisher, load_private_key

    if not folder:
        raise UsageError("--checkpoint-key needs --checkpoint-dir (where to publish them).")
    from jupyter_gov.audit import AuditStore

    publisher = CheckpointPublisher(
        AuditStore(server.settings.audit_store),
        load_private_key(key),
        folder,
        every=every,
        on_error=lambda error: print(f"jupyter-gov gateway: {error}", file=sys.stderr),
    )
    publisher.start()
    return publisher
