"""A PostgreSQL wire-protocol front door: psql, psycopg, BI tools, governed by the policy.

Standard clients speak the PostgreSQL protocol (v3) to this server; every statement they
send goes through :class:`jupyter_gov.engine.GovernedSession` (plan, guardrails, approvals,
masking, audit) exactly as a cell does. What the server supports, on purpose small:

* start-up with ``sslmode`` ``disable`` or ``require`` (TLS when a certificate is given;
  a non-loopback address without TLS is refused), then a **cleartext password that is a
  bearer token**: a service token from the policy's ``services:`` or an OIDC access token
  validated like :mod:`jupyter_gov.identity.oidc` does. The user name is never an
  identity: it is ignored, and the token alone says who is calling.
* the simple query protocol and the extended protocol's Parse / Bind / Describe /
  Execute / Sync / Close / Flush, text format only, ``$1`` parameters always bound;
* cancel requests for the running statement (backend id plus a random secret);
* ``BEGIN`` / ``COMMIT`` / ``ROLLBACK`` as bookkeeping only: statements commit as they run
  (a ``ROLLBACK`` after a write says so with an error instead of pretending);
* ``SET jupyter_gov.purpose | justification | approval_id = '...'`` for the audit's purpose
  and the approval workflow, and ``SELECT jupyter_gov_approve('id', 'comment')`` /
  ``jupyter_gov_deny('id', 'comment')`` for approvers.

A denied statement answers an ErrorResponse with the policy's one sentence and SQLSTATE
42501 (insufficient_privilege); a refused token answers 28P01 and the connection closes.
The engine is synchronous and, when this server runs alone, its connectors are shared by
every client, so engine calls run one at a time on a worker thread; beside the Flight
service each identity's pooled session is leased per call instead (see
``docs/gateway-clients.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import ipaddress
import json
import re
import secrets
import ssl
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from jupyter_gov.audit import AuditStore
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import (
    ApprovalError,
    ApprovalFiled,
    ApprovalRequired,
    ClientProtocolError,
    DatabaseError,
    GovError,
    IdentityError,
    NotSupportedError,
    PolicyError,
    QueryDenied,
    SqlSyntaxError,
    TokenRejected,
    UsageError,
)
from jupyter_gov.gateway.auth import OIDC_APP_AUTH, OIDC_USER_AUTH, is_app_token
from jupyter_gov.identity.base import PRINCIPAL_ISSUER, SERVICE_AUTH, Identity
from jupyter_gov.identity.service import _token_matches
from jupyter_gov.policy import Policy

#: How this front door names itself in the audit (``detail.front_end``).
FRONT_END = "pgwire"
#: How a service token may name its service (as the Arrow Flight gateway's tokens do).
SERVICE_PREFIX = "service:"
#: ``auth_method`` of identities proven by an OIDC token sent as the password: the labels
#: of the Flight gateway and the msal provider (one kind of token, one label).
OIDC_AUTH = OIDC_USER_AUTH

_PROTOCOL_3 = 196608
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
#: Largest message accepted (a Bind with its values); the policy caps SQL text separately.
MAX_MESSAGE = 64 * 1024 * 1024
#: DataRows encoded and written at a time.
ROWS_PER_WRITE = 2048
#: Seconds a client has to finish start-up and authentication.
STARTUP_TIMEOUT = 30.0

# SQLSTATEs (PostgreSQL's appendix A) for the errors this server answers.
INSUFFICIENT_PRIVILEGE = "42501"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
SYNTAX_ERROR = "42601"
FEATURE_NOT_SUPPORTED = "0A000"
PROTOCOL_VIOLATION = "08P01"
INVALID_TRANSACTION_STATE = "25000"
IN_FAILED_TRANSACTION = "25P02"
CONFIG_ERROR = "F0000"
EXTERNAL_ERROR = "58000"
QUERY_CANCELED = "57014"
INVALID_PARAMETER_VALUE = "22023"
UNDEFINED_OBJECT = "42704"

# Type OIDs (pg_type) used in RowDescription and to read text parameters.
_INT2, _INT4, _INT8, _FLOAT4, _FLOAT8, _NUMERIC = 21, 23, 20, 700, 701, 1700
_BOOL, _TEXT, _BYTEA, _DATE, _TIME, _TIMESTAMP, _TIMESTAMPTZ = 16, 25, 17, 1082, 1083, 1114, 1184
_UNKNOWN = 705


def sqlstate_for(error: BaseException) -> str:
    """The SQLSTATE a governed refusal, a failure or a protocol refusal answers with."""
    if isinstance(error, ClientProtocolError):
        return error.sqlstate
    if isinstance(error, (QueryDenied, ApprovalRequired, ApprovalError)):
        return INSUFFICIENT_PRIVILEGE
    if isinstance(error, IdentityError):
        return INVALID_AUTHORIZATION
    if isinstance(error, SqlSyntaxError):
        return SYNTAX_ERROR
    if isinstance(error, UsageError):
        return INVALID_PARAMETER_VALUE
    if isinstance(error, PolicyError):
        return CONFIG_ERROR
    if isinstance(error, NotSupportedError):
        return FEATURE_NOT_SUPPORTED
    return EXTERNAL_ERROR


# -- identity -----------------------------------------------------------------------------


class TokenAuthenticator:
    """Turns the password field's bearer token into an :class:`Identity`, or refuses it.

    A token matching a ``services:`` entry's ``token_sha256`` signs in as that service; a
    JWT is validated against the policy's OIDC issuer (``identity.oidc_authority`` or
    ``authority``, ``audience``, ``issuer``, ``tenants``) when the policy names one. The
    message of a refusal never says which check failed for a service token, and never
    contains the token.
    """

    def __init__(self, policy: Policy, validator: Any | None = None) -> None:
        self.policy = policy
        config = dict(policy.identity_config)
        group_claims = config.get("groups_claim", ("groups", "roles"))
        if isinstance(group_claims, str):  # as the msal provider reads it: plus app roles
            group_claims = tuple(dict.fromkeys([group_claims, "roles"]))
        self.group_claims = group_claims
        self.attributes = config.get("attributes")
        self.audience = config.get("audience") or config.get("client_id")
        authority = config.get("oidc_authority") or config.get("authority")
        if validator is None and authority and self.audience:
            from jupyter_gov.identity.oidc import TokenValidator

            validator = TokenValidator(
                str(authority),
                issuer=config.get("issuer"),
                tenants=tuple(config.get("tenants") or ()),
                leeway=float(config.get("leeway", 60)),
                ca_bundle=config.get("ca_bundle"),
            )
        self.validator = validator

    def authenticate(self, token: str) -> Identity:
        token = token.strip()
        if not token:
            raise TokenRejected("Send a bearer token as the password; none was given.")
        if token.startswith(SERVICE_PREFIX):  # the Flight gateway's form: service:<name>:<token>
            name, _, secret = token.removeprefix(SERVICE_PREFIX).partition(":")
            service = self.policy.services.get(name)
            if service is None or not secret or not _token_matches(secret, service.token_sha256):
                raise TokenRejected(
                    f"Service {name!r} could not sign in: the policy lists no such service or "
                    "its token does not match."
                )
            return _service_identity(service.name)
        for service in self.policy.services.values():
            if _token_matches(token, service.token_sha256):
                return _service_identity(service.name)
        if token.count(".") == 2 and self.validator is not None:
            from jupyter_gov.identity.oidc import identity_from_claims

            claims = self.validator.validate(token, audience=self.audience)
            app = is_app_token(claims)
            return identity_from_claims(
                claims,
                auth_method=OIDC_APP_AUTH if app else OIDC_AUTH,
                group_claims=self.group_claims,
                attributes=self.attributes,
                kind="service" if app else "user",
            )
        raise TokenRejected(
            "The password is not a token this gateway accepts: no service's token matches "
            "and it is not an access token from the policy's identity provider."
        )


def _service_identity(name: str) -> Identity:
    return Identity(
        subject=name,
        display_name=f"service {name}",
        auth_method=SERVICE_AUTH,
        issuer=PRINCIPAL_ISSUER,
        verified=True,
        kind="service",
    )


# -- statements this front door answers itself --------------------------------------------

_TX_RE = re.compile(
    r"^\s*(begin|start\s+transaction|commit|end|rollback|abort)(\s+(work|transaction))?\s*;?\s*$",
    re.IGNORECASE,
)
_SET_GOV_RE = re.compile(
    r"^\s*set\s+(session\s+)?jupyter_gov\.(\w+)\s*(=|to)\s*'((?:[^']|'')*)'\s*;?\s*$",
    re.IGNORECASE,
)
#: Client settings drivers send at start-up that change nothing the engine does.
_HARMLESS_SET_RE = re.compile(
    r"^\s*set\s+(session\s+)?(application_name|extra_float_digits)\s*(=|to)\s*"
    r"('(?:[^']|'')*'|-?\d+)\s*;?\s*$",
    re.IGNORECASE,
)
_DECIDE_RE = re.compile(
    r"^\s*select\s+jupyter_gov_(approve|deny)\s*\(\s*'([0-9A-Za-z_-]+)'\s*"
    r"(,\s*'((?:[^']|'')*)'\s*)?\)\s*;?\s*$",
    re.IGNORECASE,
)
_DEALLOCATE_RE = re.compile(
    r'^\s*deallocate\s+(prepare\s+)?("(?:[^"]|"")+"|\w+)\s*;?\s*$', re.IGNORECASE
)
_GOV_SETTINGS = ("purpose", "justification", "approval_id")


def bind_dollar_parameters(sql: str) -> tuple[str, int]:
    """Rename PostgreSQL's ``$n`` parameters to the engine's bound ``:pg_n`` names.

    Only placeholders outside string literals, quoted identifiers, dollar-quoted strings and
    comments are renamed; returns the text and the highest parameter number.
    """
    out: list[str] = []
    i, n, highest = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                if c == "'" and sql[j] == "\\" and i > 0 and sql[i - 1] in "eE":
                    j += 2
                    continue
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(sql[i:j])
            i = j
        elif c == "$":
            digits = re.match(r"\$(\d+)", sql[i:])
            tag = re.match(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$", sql[i:])
            prev = sql[i - 1] if i else " "
            if digits and not (prev.isalnum() or prev in "_$"):
                number = int(digits.group(1))
                highest = max(highest, number)
                out.append(f":pg_{number}")
                i += len(digits.group(0))
            elif tag and not (prev.isalnum() or prev in "_$"):
                end = sql.find(tag.group(0), i + len(tag.group(0)))
                j = n if end < 0 else end + len(tag.group(0))
                out.append(sql[i:j])
                i = j
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), highest


def _parse_text_param(raw: bytes | None, oid: int) -> Any:
    """A text-format parameter as the Python value its declared type says."""
    if raw is None:
        return None
    text = raw.decode("utf-8")
    try:
        if oid in (_INT2, _INT4, _INT8):
            return int(text)
        if oid in (_FLOAT4, _FLOAT8):
            return float(text)
        if oid == _NUMERIC:
            return decimal.Decimal(text)
        if oid == _BOOL:
            return text.strip().lower() in ("t", "true", "1", "yes", "on")
        if oid == _DATE:
            return dt.date.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"A parameter's text does not match its declared type {oid}.") from error
    return text


_PG_EPOCH = dt.datetime(2000, 1, 1)
_BINARY_FORMATS = {_INT2: "!h", _INT4: "!i", _INT8: "!q", _FLOAT4: "!f", _FLOAT8: "!d"}


def _parse_binary_param(raw: bytes | None, oid: int) -> Any:
    """A binary-format parameter (psycopg sends numbers this way) as its Python value."""
    if raw is None:
        return None
    try:
        if oid in _BINARY_FORMATS:
            return struct.unpack(_BINARY_FORMATS[oid], raw)[0]
        if oid == _BOOL:
            return raw != b"\x00"
        if oid in (_TEXT, _UNKNOWN, 1043):  # text, unknown, varchar
            return raw.decode("utf-8")
        if oid == _BYTEA:
            return bytes(raw)
        if oid == _DATE:
            return (_PG_EPOCH + dt.timedelta(days=struct.unpack("!i", raw)[0])).date()
        if oid == _TIMESTAMP:
            return _PG_EPOCH + dt.timedelta(microseconds=struct.unpack("!q", raw)[0])
    except (struct.error, UnicodeDecodeError, OverflowError) as error:
        raise UsageError("A binary parameter does not match its declared type.") from error
    raise ClientProtocolError(
        f"Binary parameters of type {oid} are not supported; send them as text.",
        FEATURE_NOT_SUPPORTED,
    )


def _oid_of(dtype: pa.DataType) -> int:
    if pa.types.is_boolean(dtype):
        return _BOOL
    if pa.types.is_int8(dtype) or pa.types.is_int16(dtype) or pa.types.is_uint8(dtype):
        return _INT2
    if pa.types.is_int32(dtype) or pa.types.is_uint16(dtype):
        return _INT4
    if pa.types.is_integer(dtype):
        return _INT8
    if pa.types.is_float32(dtype) or pa.types.is_float16(dtype):
        return _FLOAT4
    if pa.types.is_float64(dtype):
        return _FLOAT8
    if pa.types.is_decimal(dtype):
        return _NUMERIC
    if pa.types.is_date(dtype):
        return _DATE
    if pa.types.is_time(dtype):
        return _TIME
    if pa.types.is_timestamp(dtype):
        return _TIMESTAMPTZ if dtype.tz else _TIMESTAMP
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return _BYTEA
    return _TEXT


def _text_value(value: Any) -> bytes | None:
    """One value in PostgreSQL's text output format."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, float):
        if value != value:
            return b"NaN"
        if value in (float("inf"), float("-inf")):
            return b"Infinity" if value > 0 else b"-Infinity"
        return repr(value).encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"\\x" + bytes(value).hex().encode()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ").encode()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat().encode()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str).encode()
    return str(value).encode()


# -- messages ------------------------------------------------------------------------------


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _cstr(text: str) -> bytes:
    return text.encode("utf-8").replace(b"\x00", b"") + b"\x00"


def error_response(
    message: str, sqlstate: str, *, severity: str = "ERROR", detail: str | None = None
) -> bytes:
    fields = b"S" + _cstr(severity) + b"V" + _cstr(severity) + b"C" + _cstr(sqlstate)
    fields += b"M" + _cstr(message)
    if detail:
        fields += b"D" + _cstr(detail)
    return _message(b"E", fields + b"\x00")


def _row_description(schema: pa.Schema) -> bytes:
    payload = struct.pack("!h", len(schema))
    for column in schema:
        oid = _oid_of(column.type)
        payload += _cstr(column.name) + struct.pack("!ihihih", 0, 0, oid, -1, -1, 0)
    return _message(b"T", payload)


def _data_rows(table: pa.Table, start: int, stop: int) -> bytes:
    columns = [
        table.column(i).slice(start, stop - start).to_pylist() for i in range(table.num_columns)
    ]
    chunks: list[bytes] = []
    for row in zip(*columns):
        payload = struct.pack("!h", len(row))
        for value in row:
            text = _text_value(value)
            payload += (
                struct.pack("!i", -1) if text is None else struct.pack("!i", len(text)) + text
            )
        chunks.append(_message(b"D", payload))
    return b"".join(chunks)


class _Reader:
    """Reads the fields of one message body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def cstr(self) -> str:
        end = self.data.index(b"\x00", self.at)
        text = self.data[self.at : end].decode("utf-8")
        self.at = end + 1
        return text

    def int16(self) -> int:
        (value,) = struct.unpack_from("!h", self.data, self.at)
        self.at += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from("!i", self.data, self.at)
        self.at += 4
        return int(value)

    def bytes_(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ValueError("truncated message")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value

    def byte(self) -> bytes:
        return self.bytes_(1)


class _Closed(Exception):
    """The client went away or broke the protocol; the connection ends."""


@dataclass
class _Outcome:
    """What one statement produced: rows (or none) and the CommandComplete tag."""

    table: pa.Table | None
    tag: str
    sent: int = 0


@dataclass
class _Prepared:
    sql: str
    param_oids: list[int]
    params: int


@dataclass
class _Portal:
    statement: _Prepared
    values: list[Any]
    outcome: _Outcome | None = None
    described: bool = False


@dataclass
class _ClientState:
    settings: dict[str, str] = field(default_factory=dict)
    tx: str = "I"  # I idle, T in a transaction block, E failed transaction block
    wrote_in_tx: bool = False


# -- the server ---------------------------------------------------------------------------


class PgWireServer:
    """Serves the PostgreSQL protocol on ``host:port`` for one policy and audit store.

    Alone (``jupyter-gov gateway pgwire``), every client gets its own
    :class:`GovernedSession` bound to the identity its token proved; the connectors and the
    audit store are opened once and shared. Beside the Flight service
    (``jupyter-gov gateway serve --pg-listen``), it is given that service's
    ``authenticator`` and ``sessions`` (:class:`jupyter_gov.gateway.server.SessionPool`):
    a token proves the same identity through either door, and its statements run in that
    identity's one engine session, whichever door they came through.
    """

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        *,
        audit: str | None = None,
        connection: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        authenticator: Any | None = None,
        sessions: Any | None = None,
    ) -> None:
        if tls is None and not _is_loopback(host):
            raise UsageError(
                f"Refusing to listen on {host} without TLS: tokens travel as passwords; "
                "give --tls-cert and --tls-key or listen on a loopback address."
            )
        self._template = GovernedSession(policy, _NOBODY, connection=connection, audit=audit)
        self.policy = self._template.policy
        self.audit: AuditStore = self._template.audit
        #: Turns the password into an identity: ``authenticate(token) -> Identity``.
        self.authenticator = authenticator or TokenAuthenticator(self.policy)
        self.sessions = sessions
        self.host, self.port, self.tls = host, port, tls
        self._engine_lock = threading.Lock()
        self._server: asyncio.base_events.Server | None = None
        self._next_key = 1
        # Cancel requests: backend id -> (secret, connection); and whose statement runs now.
        self._cancel_keys: dict[int, tuple[bytes, _Connection]] = {}
        self._running: set[_Connection] = set()  # connections whose statement runs now

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = port
        return host, port

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._template.close()

    def _session(self, identity: Identity) -> Any:
        if self.sessions is not None:
            return _PooledSession(self.sessions, identity)
        session = GovernedSession(self.policy, identity, audit=self.audit)
        session.default_connection = self._template.default_connection
        for name in self.policy.connections:
            session.use_connector(name, _LazyConnector(self._template, name))
        return session

    async def _engine(self, call: Callable[[], Any], owner: _Connection | None = None) -> Any:
        """Run an engine call on a worker thread. Alone, the server's connectors are shared,
        so calls run one at a time; beside Flight, each identity's pooled session is leased
        for the call, and different identities run in parallel."""

        def locked() -> Any:
            with self._engine_lock if self.sessions is None else contextlib.nullcontext():
                if owner is not None:
                    self._running.add(owner)
                try:
                    return call()
                finally:
                    self._running.discard(owner)  # type: ignore[arg-type]

        return await asyncio.get_running_loop().run_in_executor(None, locked)

    # -- one client -----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        connection = _Connection(self, reader, writer, peer)
        try:
            await connection.run()
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except GovError as error:  # e.g. the audit store cannot record a refusal: fail closed
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(error_response(str(error), sqlstate_for(error), severity="FATAL"))
                await writer.drain()
        finally:
            self._cancel_keys.pop(connection.backend_id, None)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _cancel(self, key: bytes) -> None:
        """Interrupt the statement of the connection a cancel request names, if it runs now.

        The request must carry that connection's backend id and its random secret; a wrong
        or stale key, or a connection that is not running a statement, changes nothing.
        """
        if len(key) != 8:
            return
        (backend_id,) = struct.unpack("!i", key[:4])
        known = self._cancel_keys.get(backend_id)
        if known is None or not secrets.compare_digest(known[0], key[4:]):
            return
        target = known[1]
        if target not in self._running or target.session is None:
            return
        target.cancelled = True
        connector = target.session.connector()
        await asyncio.get_running_loop().run_in_executor(None, connector.interrupt)

    def _audit_refused(self, reason: str, peer: Any) -> None:
        """A refused token is a denied decision in the chain (no token, no claimed name)."""
        self.audit.append(
            "decision",
            query_id=AuditStore.new_query_id(),
            policy_name=self.policy.name,
            policy_version=self.policy.short_hash,
            policy_hash=self.policy.hash,
            decision="deny",
            rules=["identity"],
            reasons=[reason],
            auth_method="bearer-password",
            detail={"front_end": FRONT_END, "peer": str(peer[0]) if peer else None},
        )


_NOBODY = Identity(subject="pgwire-gateway", display_name="gateway", auth_method="none")


class _PooledSession:
    """A client's view of its identity's session in the gateway's pool: every engine call
    leases the session for its length (the same session Flight calls of that identity use).
    Results are read whole inside the lease, so nothing reads a connector outside it."""

    def __init__(self, pool: Any, identity: Identity) -> None:
        self._pool, self._identity = pool, identity

    def sql(self, *args: Any, **kwargs: Any) -> Any:
        with self._pool.lease(self._identity) as session:
            result = session.sql(*args, **kwargs)
            result.to_arrow_table()
            return result

    def request_approval(self, *args: Any, **kwargs: Any) -> Any:
        with self._pool.lease(self._identity) as session:
            return session.request_approval(*args, **kwargs)

    def approve(self, request_id: str, comment: str = "") -> Any:
        with self._pool.lease(self._identity) as session:
            return session.approve(request_id, comment)

    def deny(self, request_id: str, comment: str) -> Any:
        with self._pool.lease(self._identity) as session:
            return session.deny(request_id, comment)

    def connector(self, name: str | None = None) -> Any:
        """The running statement's connector, without the lease (a cancel interrupts it
        while its statement holds the lease)."""
        session = self._pool.peek(self._identity)
        return session.connector(name) if session is not None else _Idle()


class _Idle:
    """What a cancel interrupts when the identity's session is gone: nothing."""

    def interrupt(self) -> None:
        return None


class _LazyConnector:
    """The server's shared connector for one connection, opened on first use."""

    def __init__(self, template: GovernedSession, name: str) -> None:
        self._template, self._name = template, name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._template.connector(self._name), attr)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Connection:
    """The protocol state machine of one client connection."""

    def __init__(
        self,
        server: PgWireServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Any,
    ) -> None:
        self.server, self.reader, self.writer, self.peer = server, reader, writer, peer
        self.session: Any = None  # a GovernedSession, or a _PooledSession beside Flight
        self.state = _ClientState()
        self.statements: dict[str, _Prepared] = {}
        self.portals: dict[str, _Portal] = {}
        self.skip_to_sync = False
        self.backend_id = 0
        self.cancelled = False  # a cancel request reached this connection's statement

    # -- I/O ------------------------------------------------------------------------------

    async def _read_exactly(self, size: int) -> bytes:
        return await self.reader.readexactly(size)

    async def _read_startup(self) -> tuple[int, bytes]:
        (length,) = struct.unpack("!i", await self._read_exactly(4))
        if length < 8 or length > 10_000:
            raise _Closed
        body = await self._read_exactly(length - 4)
        (code,) = struct.unpack_from("!i", body)
        return code, body[4:]

    async def _read_message(self) -> tuple[bytes, bytes]:
        head = await self._read_exactly(5)
        kind = head[:1]
        (length,) = struct.unpack("!i", head[1:])
        if length < 4 or length > MAX_MESSAGE:
            await self._send(
                error_response("Message too large.", PROTOCOL_VIOLATION, severity="FATAL")
            )
            raise _Closed
        return kind, await self._read_exactly(length - 4)

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    # -- start-up and authentication ------------------------------------------------------

    async def run(self) -> None:
        # A client that connects and never signs in does not hold a connection for long.
        await asyncio.wait_for(self._startup(), STARTUP_TIMEOUT)
        await self._send(_message(b"Z", self.state.tx.encode()))
        while True:
            kind, body = await self._read_message()
            if kind == b"X":
                return
            if self.skip_to_sync and kind != b"S":
                continue
            try:
                await self._dispatch(kind, _Reader(body))
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                await self._send(
                    error_response("Malformed message.", PROTOCOL_VIOLATION, severity="FATAL")
                )
                raise _Closed from None

    async def _startup(self) -> None:
        code, body = await self._read_startup()
        while code in (_SSL_REQUEST, _GSSENC_REQUEST):
            if code == _SSL_REQUEST and self.server.tls is not None:
                await self._send(b"S")
                await self.writer.start_tls(self.server.tls)
            else:
                await self._send(b"N")
            code, body = await self._read_startup()
        if code == _CANCEL_REQUEST:
            await self.server._cancel(body[:8])
            raise _Closed  # the protocol answers a cancel request with nothing
        if code != _PROTOCOL_3:
            await self._send(
                error_response(
                    "Only protocol 3.0 is supported.", FEATURE_NOT_SUPPORTED, severity="FATAL"
                )
            )
            raise _Closed
        if self.server.tls is not None and self.writer.get_extra_info("ssl_object") is None:
            await self._send(
                error_response(
                    "This gateway requires TLS; connect with sslmode=require.",
                    INVALID_AUTHORIZATION,
                    severity="FATAL",
                )
            )
            raise _Closed
        await self._send(_message(b"R", struct.pack("!i", 3)))  # cleartext password
        kind, password = await self._read_message()
        if kind != b"p":
            raise _Closed
        token = password.rstrip(b"\x00").decode("utf-8", "replace")
        try:
            identity = await self.server._engine(
                lambda: self.server.authenticator.authenticate(token)
            )
        except IdentityError as error:
            reason = str(error)
            await self.server._engine(lambda: self.server._audit_refused(reason, self.peer))
            await self._send(error_response(reason, INVALID_PASSWORD, severity="FATAL"))
            raise _Closed from None
        self.session = await self.server._engine(lambda: self.server._session(identity))
        out = _message(b"R", struct.pack("!i", 0))
        for name, value in (
            ("server_version", "16.0 (jupyter-gov gateway)"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("TimeZone", "UTC"),
            ("application_name", ""),
        ):
            out += _message(b"S", _cstr(name) + _cstr(value))
        self.backend_id = self.server._next_key
        self.server._next_key += 1
        secret = secrets.token_bytes(4)
        self.server._cancel_keys[self.backend_id] = (secret, self)
        out += _message(b"K", struct.pack("!i", self.backend_id) + secret)
        await self._send(out)

    # -- messages -------------------------------------------------------------------------

    async def _dispatch(self, kind: bytes, body: _Reader) -> None:
        if kind == b"Q":
            await self._simple_query(body.cstr())
        elif kind == b"P":
            name, sql = body.cstr(), body.cstr()
            oids = [body.int32() for _ in range(body.int16())]
            text, highest = bind_dollar_parameters(sql)
            oids += [0] * (highest - len(oids))
            self.statements[name] = _Prepared(text, oids, highest)
            await self._send(_message(b"1"))
        elif kind == b"B":
            await self._bind(body)
        elif kind == b"D":
            what, name = body.byte(), body.cstr()
            await self._describe(what, name)
        elif kind == b"E":
            portal, max_rows = body.cstr(), body.int32()
            await self._execute(portal, max_rows)
        elif kind == b"S":
            self.skip_to_sync = False
            self.portals.pop("", None)
            await self._send(_message(b"Z", self.state.tx.encode()))
        elif kind == b"H":
            await self.writer.drain()
        elif kind == b"C":
            what, name = body.byte(), body.cstr()
            (self.statements if what == b"S" else self.portals).pop(name, None)
            await self._send(_message(b"3"))
        else:
            await self._send(
                error_response(
                    f"Message type {kind!r} is not supported.", PROTOCOL_VIOLATION, severity="FATAL"
                )
            )
            raise _Closed

    async def _fail(self, error: BaseException, extended: bool) -> None:
        if isinstance(error, GovError):
            message, state = str(error), sqlstate_for(error)
            if self.cancelled and isinstance(error, DatabaseError):
                state = QUERY_CANCELED
        else:  # a bug: the client gets a sentence, never a traceback
            message, state = "The gateway failed to run the statement.", EXTERNAL_ERROR
        detail = None
        if isinstance(error, (QueryDenied, ApprovalRequired)):
            detail = f"rules: {', '.join(error.plan.rules)}; audit event {error.audit_id}"
            request_id = getattr(error, "request_id", "")
            if request_id:
                detail += f"; approval request {request_id}"
        if self.state.tx == "T":
            self.state.tx = "E"
        await self._send(error_response(message, state, detail=detail))
        if extended:
            self.skip_to_sync = True
        if isinstance(error, IdentityError):
            await self._send(error_response(message, INVALID_AUTHORIZATION, severity="FATAL"))
            raise _Closed

    async def _simple_query(self, sql: str) -> None:
        try:
            if not sql.strip().strip(";").strip():
                await self._send(_message(b"I"))
            else:
                outcome = await self._run(sql, [])
                if outcome.table is not None:
                    await self._send(_row_description(outcome.table.schema))
                    await self._send_rows(outcome.table, 0, outcome.table.num_rows)
                await self._send(_message(b"C", _cstr(outcome.tag)))
        except Exception as error:  # every failure becomes an ErrorResponse
            await self._fail(error, extended=False)
        await self._send(_message(b"Z", self.state.tx.encode()))

    async def _bind(self, body: _Reader) -> None:
        portal, name = body.cstr(), body.cstr()
        formats = [body.int16() for _ in range(body.int16())]
        raw: list[bytes | None] = []
        for _ in range(body.int16()):
            size = body.int32()
            raw.append(None if size == -1 else body.bytes_(size))
        results = [body.int16() for _ in range(body.int16())]
        try:
            statement = self.statements.get(name)
            if statement is None:
                raise UsageError(f"There is no prepared statement named {name!r}.")
            if any(results):
                raise ClientProtocolError(
                    "Binary results are not supported; ask for text format.",
                    FEATURE_NOT_SUPPORTED,
                )
            if len(raw) != statement.params:
                raise UsageError(
                    f"The statement has {statement.params} parameter(s) but {len(raw)} were bound."
                )
            if len(formats) not in (0, 1, len(raw)):
                raise UsageError("The Bind message's format codes do not match its parameters.")
            codes = formats * len(raw) if len(formats) == 1 else formats or [0] * len(raw)
            values = [
                _parse_binary_param(v, oid) if code else _parse_text_param(v, oid)
                for v, oid, code in zip(raw, statement.param_oids, codes)
            ]
            self.portals[portal] = _Portal(statement, values)
            await self._send(_message(b"2"))
        except Exception as error:
            await self._fail(error, extended=True)

    async def _describe(self, what: bytes, name: str) -> None:
        try:
            if what == b"S":
                statement = self.statements.get(name)
                if statement is None:
                    raise UsageError(f"There is no prepared statement named {name!r}.")
                oids = [oid or _TEXT for oid in statement.param_oids]
                # Columns are known only once the engine has run the bound statement.
                await self._send(
                    _message(b"t", struct.pack(f"!h{len(oids)}i", len(oids), *oids))
                    + _message(b"n")
                )
                return
            portal = self._portal(name)
            if portal.outcome is None:
                portal.outcome = await self._run(portal.statement.sql, portal.values)
            portal.described = True
            table = portal.outcome.table
            await self._send(
                _row_description(table.schema) if table is not None else _message(b"n")
            )
        except Exception as error:
            await self._fail(error, extended=True)

    async def _execute(self, name: str, max_rows: int) -> None:
        try:
            portal = self._portal(name)
            if portal.outcome is None:
                portal.outcome = await self._run(portal.statement.sql, portal.values)
            outcome = portal.outcome
            if outcome.table is None:
                await self._send(_message(b"C", _cstr(outcome.tag)))
                return
            stop = outcome.table.num_rows
            if max_rows > 0:
                stop = min(stop, outcome.sent + max_rows)
            await self._send_rows(outcome.table, outcome.sent, stop)
            outcome.sent = stop
            done = stop >= outcome.table.num_rows
            await self._send(_message(b"C", _cstr(outcome.tag)) if done else _message(b"s"))
        except Exception as error:
            await self._fail(error, extended=True)

    async def _send_rows(self, table: pa.Table, start: int, stop: int) -> None:
        """DataRows in slices, each written and drained before the next is encoded, so a
        large result never sits in memory twice and a slow client slows the sender."""
        for at in range(start, stop, ROWS_PER_WRITE):
            await self._send(_data_rows(table, at, min(stop, at + ROWS_PER_WRITE)))

    def _portal(self, name: str) -> _Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise UsageError(f"There is no portal named {name!r}.")
        return portal

    # -- running one statement ------------------------------------------------------------

    async def _run(self, sql: str, values: Sequence[Any]) -> _Outcome:
        local = self._answer_locally(sql)
        if local is not None:
            return local
        if self.state.tx == "E":
            raise ClientProtocolError(
                "The transaction has failed; end it with ROLLBACK before sending more statements.",
                IN_FAILED_TRANSACTION,
            )
        decide = _DECIDE_RE.match(sql)
        if decide:
            return await self._decide(decide)
        text, highest = bind_dollar_parameters(sql) if not values else (sql, len(values))
        params = {f"pg_{i}": v for i, v in enumerate(values, 1)} if highest else None
        settings = dict(self.state.settings)
        session = self.session
        assert session is not None
        self.cancelled = False
        try:

            def run() -> Any:
                result = session.sql(
                    text,
                    params,
                    purpose=settings.get("purpose"),
                    approval_id=settings.get("approval_id") or None,
                )
                result.to_arrow_table()  # read under the engine's lock: connectors are shared
                return result

            result = await self.server._engine(run, owner=self)
        except ApprovalRequired as error:
            justification = settings.get("justification", "").strip()
            if justification and not getattr(error, "request_id", ""):
                request = await self.server._engine(
                    lambda: session.request_approval(text, params, justification=justification)
                )
                raise ApprovalFiled(error, request.id) from None
            raise
        plan = result.plan
        last = plan.statements[-1].info
        table = result.arrow()
        if self.state.tx == "T" and not last.is_read:
            self.state.wrote_in_tx = True
        if last.is_read:
            return _Outcome(table, f"SELECT {table.num_rows}")
        count = _affected(table)
        rows = None if count is not None else table if table.num_columns else None
        if count is None:
            count = table.num_rows if rows is not None else 0
        tag = {"insert": f"INSERT 0 {count}", "update": f"UPDATE {count}"}
        return _Outcome(rows, tag.get(last.kind, f"{last.kind.upper()} {count}"))

    def _answer_locally(self, sql: str) -> _Outcome | None:
        """Transaction bookkeeping and session settings: answered here, never run."""
        tx = _TX_RE.match(sql)
        if tx:
            word = tx.group(1).lower().split()[0]
            if word in ("begin", "start"):
                if self.state.tx == "I":
                    self.state.tx, self.state.wrote_in_tx = "T", False
                return _Outcome(None, "BEGIN" if word == "begin" else "START TRANSACTION")
            failed, wrote = self.state.tx == "E", self.state.wrote_in_tx
            self.state.tx, self.state.wrote_in_tx = "I", False
            if word in ("rollback", "abort") and wrote:
                raise ClientProtocolError(
                    "Statements through the gateway commit as they run; the writes since BEGIN "
                    "were not rolled back.",
                    INVALID_TRANSACTION_STATE,
                )
            return _Outcome(
                None, "ROLLBACK" if failed or word in ("rollback", "abort") else "COMMIT"
            )
        setting = _SET_GOV_RE.match(sql)
        if setting:
            name = setting.group(2).lower()
            if name not in _GOV_SETTINGS:
                raise ClientProtocolError(
                    f"jupyter_gov.{name} is not a setting; use one of "
                    + ", ".join(f"jupyter_gov.{s}" for s in _GOV_SETTINGS)
                    + ".",
                    UNDEFINED_OBJECT,
                )
            self.state.settings[name] = setting.group(4).replace("''", "'")
            return _Outcome(None, "SET")
        if _HARMLESS_SET_RE.match(sql):
            return _Outcome(None, "SET")
        deallocate = _DEALLOCATE_RE.match(sql)
        if deallocate:  # drivers free their prepared statements (psycopg on rollback)
            name = deallocate.group(2)
            if name.lower() == "all":
                self.statements.clear()
                return _Outcome(None, "DEALLOCATE ALL")
            self.statements.pop(name.strip('"').replace('""', '"'), None)
            return _Outcome(None, "DEALLOCATE")
        return None

    async def _decide(self, match: re.Match[str]) -> _Outcome:
        action, request_id = match.group(1).lower(), match.group(2)
        comment = (match.group(4) or "").replace("''", "'")
        session = self.session
        assert session is not None
        if action == "approve":
            request = await self.server._engine(lambda: session.approve(request_id, comment))
        else:
            request = await self.server._engine(lambda: session.deny(request_id, comment))
        table = pa.table({"request_id": [request.id], "state": [request.state]})
        return _Outcome(table, "SELECT 1")


def _affected(table: pa.Table) -> int | None:
    """Rows a write touched, from the one count column engines return; None when the table
    is something else (a write's RETURNING rows)."""
    if table.num_columns == 0:
        return 0
    if (
        table.num_rows == 1
        and table.num_columns == 1
        and table.column_names[0].lower()
        in (
            "count",
            "rowcount",
            "rows_affected",
        )
    ):
        value = table.column(0)[0].as_py()
        if isinstance(value, int):
            return value
    return None


# -- command line -------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--listen takes HOST:PORT (port 0 picks a free one), not {listen!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None when neither is given."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise UsageError("Give both --tls-cert and --tls-key, or neither.")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise UsageError(
            f"The TLS certificate or key cannot be loaded ({type(error).__name__})."
        ) from None
    return context


def serve(
    policy: str | None,
    listen: str,
    *,
    audit: str | None = None,
    connection: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    checkpoint_key: str | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: float = 300.0,
) -> None:
    """Run until interrupted; prints ``listening on HOST:PORT`` once ready (for scripts).

    With ``checkpoint_key`` the server signs the audit store's checkpoint into
    ``checkpoint_dir`` at start-up and every ``checkpoint_every`` seconds.
    """
    host, port = parse_listen(listen)
    server = PgWireServer(
        policy,
        audit=audit,
        connection=connection,
        host=host,
        port=port,
        tls=tls_context(tls_cert, tls_key),
    )

    publisher = None
    if checkpoint_key:
        from jupyter_gov.audit.checkpoints import CheckpointPublisher, load_private_key

        if not checkpoint_dir:
            raise UsageError("--checkpoint-key needs --checkpoint-dir (where to publish them).")
        publisher = CheckpointPublisher(
            server.audit,
            load_private_key(checkpoint_key),
            checkpoint_dir,
            every=checkpoint_every,
            on_error=lambda error: print(f"jupyter-gov pgwire: {error}", file=sys.stderr),
        )
        publisher.start()

    async def main() -> None:
        bound_host, bound_port = await server.start()
        print(f"jupyter-gov pgwire listening on {bound_host}:{bound_port}", flush=True)
        await server.serve_forever()

    try:
        asyncio.run(main())
    finally:
        if publisher is not None:
            publisher.stop()
        server.close()
        sys.stdout.flush()
