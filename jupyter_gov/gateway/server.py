"""The gateway: the governed engine in its own process, behind Arrow Flight.

It holds what a kernel must not: the policy's connection credentials, the masking key and
the audit and approval stores. Every call carries a bearer token that
:mod:`jupyter_gov.gateway.auth` turns into an identity; the engine then decides, rewrites,
runs and audits exactly as it does in a kernel, and only masked Arrow record batches leave.

One :class:`~jupyter_gov.engine.GovernedSession` per verified identity keeps that caller's
plan cache, saved results and bulk-export accounting across calls; calls of one identity
run one at a time (a session's connectors are not shared by two statements at once), calls
of different identities in parallel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from jupyter_gov.config import resolve
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import (
    ApprovalRequired,
    GovError,
    IdentityError,
    PipelineNeedsApproval,
    QueryDenied,
    UsageError,
)
from jupyter_gov.gateway import protocol
from jupyter_gov.gateway.auth import Authenticator, BearerMiddlewareFactory
from jupyter_gov.identity.base import Identity

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


@dataclass
class _Entry:
    session: GovernedSession
    provider: _CallIdentity
    lock: threading.Lock = field(default_factory=threading.Lock)


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
    ) -> None:
        self.settings = resolve(policy=policy, audit_store=audit_store)
        self.policy = self.settings.policy
        self.authenticator = authenticator or Authenticator(self.policy)
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
        self._sessions: dict[str, _Entry] = {}
        self._sessions_lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- sessions ------------------------------------------------------------------------

    def _entry(self, context: flight.ServerCallContext) -> tuple[_Entry, Identity]:
        middleware = context.get_middleware("auth")
        if middleware is None:  # cannot happen: the factory runs on every call
            raise flight.FlightUnauthenticatedError("The gateway needs a bearer token.")
        identity: Identity = middleware.identity
        with self._sessions_lock:
            entry = self._sessions.get(identity.key)
            if entry is None:
                provider = _CallIdentity()
                session = GovernedSession(self.policy, provider, audit=self.settings.audit_store)
                entry = _Entry(session, provider)
                self._sessions[identity.key] = entry
        return entry, identity

    # -- queries: do_get -----------------------------------------------------------------

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        try:
            entry, identity = self._entry(context)
            request = protocol.loads(ticket.ticket)
            with entry.lock:
                entry.provider.set(identity)
                reply, table = self._run(entry.session, identity, request)
        except GovError as error:
            reply, table = {"status": "error", "error": protocol.error_to_json(error)}, None
        except flight.FlightError:
            raise
        except Exception as error:  # a defect: one sentence out, never a traceback or value
            reply, table = {"status": "error", "error": _internal(error)}, None
        if table is None:
            schema = pa.schema([])
            batches: list[pa.RecordBatch] = [pa.RecordBatch.from_arrays([], schema=schema)]
        else:
            schema = table.schema
            batches = table.to_batches(max_chunksize=BATCH_ROWS) or [
                pa.RecordBatch.from_pylist([], schema=schema)
            ]
        return flight.GeneratorStream(schema, _with_metadata(batches, reply))

    def _run(
        self, session: GovernedSession, identity: Identity, request: Mapping[str, Any]
    ) -> tuple[dict[str, Any], pa.Table | None]:
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
            audit_id=result.audit_id,
            query_id=result.query_id,
            duration_ms=result.duration_ms,
            rows=result.row_count,
            name=result.name,
        )
        return reply, result.arrow()

    # -- everything else: do_action ------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [(name, "jupyter-gov gateway action (JSON body)") for name in protocol.ACTIONS]

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        try:
            entry, identity = self._entry(context)
            body = protocol.loads(action.body) if action.body.size else {}
            with entry.lock:
                entry.provider.set(identity)
                answer = self._action(entry.session, identity, action.type, body)
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

    def shutdown(self) -> None:
        super().shutdown()
        for entry in self._sessions.values():
            entry.session.close()


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


def _with_metadata(
    batches: list[pa.RecordBatch], reply: dict[str, Any]
) -> Iterator[tuple[pa.RecordBatch, bytes] | pa.RecordBatch]:
    """The batches, the first one carrying the decision as JSON metadata."""
    first, *rest = batches
    yield first, protocol.dumps(reply)
    yield from rest


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
    announce: Any = print,
) -> None:
    """Run a gateway until interrupted; announce its address once it listens."""
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
    )
    announce(f"jupyter-gov gateway listening on {server.scheme}://{host}:{server.port}")
    server.serve()
