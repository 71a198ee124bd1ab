"""The kernel's side of gateway mode: a remote governed session over Arrow Flight.

:class:`GatewaySession` has the interface the magic, the widgets, the CLI and
``jupyter_gov.connect`` use on a :class:`~jupyter_gov.engine.GovernedSession` (``sql``,
``explain``, ``visible_columns``, approvals, ``identity``, ``policy``), but it holds no
policy file, no connection credentials and no masking key: every call goes to the gateway
with a bearer token, and the gateway decides, runs and audits. Results arrive as Arrow
record batches and become a :class:`~jupyter_gov.result.GovernedResult` (a DuckDB relation
on the kernel's scratch connection), with the same banner.

The token is, in order: ``token=`` (a string or a callable returning one),
``$JUPYTER_GOV_GATEWAY_TOKEN``, a service's ``service:<name>:<secret>`` from
``$JUPYTER_GOV_SERVICE`` and ``$JUPYTER_GOV_SERVICE_TOKEN``, else the JupyterHub server's
``$JUPYTERHUB_API_TOKEN`` (the gateway asks the Hub whose it is).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from jupyter_gov.approvals import ApprovalRequest
from jupyter_gov.audit.chain import VerifyReport
from jupyter_gov.audit.store import StatsRow
from jupyter_gov.config import ENV_GATEWAY_TOKEN, GatewaySettings
from jupyter_gov.errors import (
    ApprovalRequired,
    GatewayUnavailable,
    GovError,
    IdentityError,
    PipelineNeedsApproval,
    QueryDenied,
    UsageError,
)
from jupyter_gov.gateway import protocol
from jupyter_gov.guardrails import Finding
from jupyter_gov.identity.base import Identity
from jupyter_gov.plan import Plan
from jupyter_gov.result import GovernedResult
from jupyter_gov.stream import TableStream

TokenSource = str | Callable[[], str] | None


@dataclass
class RemotePlan(Plan):
    """A gateway's :class:`Plan` as a front end sees it (banner, ``--explain``, ``to_dict``).

    Why a subclass: the field list, ``rules``, ``reasons`` and ``to_dict`` are ``Plan``'s own
    (one source; :data:`protocol.PLAN_FIELDS` on the wire). The planned statements stay in
    the gateway, so what ``Plan`` derives from them (:data:`protocol.PLAN_DERIVED`) is read
    from ``sent``, as the gateway computed it.
    """

    sent: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RemotePlan:
        values = {name: data.get(name) for name in protocol.PLAN_FIELDS}
        sent = {name: values.pop(name) for name in protocol.PLAN_DERIVED}
        defaults = {f.name: f.default for f in fields(Plan) if f.default is not MISSING}
        position = values.get("error_position")
        return cls(
            **{
                **{k: v if v is not None else defaults.get(k) for k, v in values.items()},
                "findings": [Finding(v, r, m) for v, r, m in values.get("findings") or []],
                "statements": [],
                "roles": tuple(values.get("roles") or ()),
                "error_position": tuple(position) if position else None,
            },
            sent=sent,
        )


def _derived(name: str, kind: type) -> property:
    """A ``Plan`` property read from what the gateway sent (statements never leave it)."""

    def read(self: RemotePlan) -> Any:
        return kind(self.sent.get(name) or kind())

    return property(read, doc=f"``Plan.{name}`` as the gateway computed it.")


for _name, _kind in protocol.PLAN_DERIVED.items():
    setattr(RemotePlan, _name, _derived(_name, _kind))


class RemotePolicy:
    """What the kernel knows of the gateway's policy: its name, connections and your roles."""

    def __init__(self, hello: Mapping[str, Any]) -> None:
        self.name = str(hello["policy"]["name"])
        self.short_hash = str(hello["policy"]["short_hash"])
        self.connections: dict[str, dict[str, Any]] = dict(hello["connections"])
        self.default_connection = str(hello["default_connection"])
        self._roles = tuple(hello.get("roles", ()))

    def roles_for(self, identity: Identity) -> tuple[str, ...]:
        """The roles the gateway derived for the token's owner (never computed here)."""
        return self._roles


class RemoteApprovals:
    """The approval store, which lives with the gateway; the widgets call these."""

    def __init__(self, session: GatewaySession) -> None:
        self._session = session

    def get(self, request_id: str) -> ApprovalRequest:
        answer = self._session._action("approval.get", {"id": request_id})
        return ApprovalRequest.from_dict(answer["request"])

    def actionable_by(self, identity: Identity | None = None, **_: Any) -> list[ApprovalRequest]:
        """Pending requests the token's owner may decide (``identity`` is ignored: the
        gateway decides who is asking)."""
        answer = self._session._action("approval.actionable", {})
        return [ApprovalRequest.from_dict(r) for r in answer["requests"]]

    def list(
        self, state: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[ApprovalRequest]:
        """Requests newest first, as :meth:`ApprovalStore.list`; statements and values only
        for those the caller may decide."""
        answer = self._session._action("approval.list", {"state": state})
        requests = [ApprovalRequest.from_dict(r) for r in answer["requests"]]
        return requests[offset:] if limit is None else requests[offset : offset + limit]

    def approve(
        self, request_id: str, identity: Identity | None = None, comment: str = ""
    ) -> ApprovalRequest:
        return self._session.approve(request_id, comment)

    def deny(
        self, request_id: str, identity: Identity | None = None, comment: str = ""
    ) -> ApprovalRequest:
        return self._session.deny(request_id, comment)


class RemoteAuditReader:
    """The gateway's audit store as an :class:`~jupyter_gov.audit.AuditReader`.

    Why: the sidebar's Audit views, the report and ``jupyter-gov audit`` then read what the
    gateway lets the token's owner read (their own events, or everyone's for the roles of
    ``gateway.audit_roles``), never a store the kernel's user could write. Verification
    walks the whole chain, in the gateway.
    """

    def __init__(self, session: GatewaySession) -> None:
        self._session = session
        self.url = self.path = session.address

    def _ask(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._session._action(kind, body)

    @staticmethod
    def _filters(filters: Mapping[str, Any]) -> dict[str, Any]:
        return {k: list(v) if k == "kinds" and v else v for k, v in filters.items()}

    def events(
        self, *, limit: int = 100, offset: int = 0, newest_first: bool = True, **filters: Any
    ) -> list[dict[str, Any]]:
        answer = self._ask(
            "audit.events",
            {
                "limit": limit,
                "offset": offset,
                "newest_first": newest_first,
                "filters": self._filters(filters),
            },
        )
        return list(answer["events"])

    def count(self, **filters: Any) -> int:
        return int(self._ask("audit.count", {"filters": self._filters(filters)})["count"])

    def stats(self, *, bucket: int, **filters: Any) -> list[StatsRow]:
        answer = self._ask("audit.stats", {"bucket": bucket, "filters": self._filters(filters)})
        return [StatsRow(int(s), d, bool(m), int(c)) for s, d, m, c in answer["rows"]]

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> VerifyReport:
        report = self._ask("audit.verify", {"checkpoint": checkpoint})["report"]
        return VerifyReport(**{**report, "problems": tuple(report.get("problems") or ())})

    def checkpoint(self) -> dict[str, Any]:
        answer = self._ask("audit.head", {})
        return {"count": answer["count"], "last_id": answer["last_id"], "head": answer["head"]}

    def head(self) -> tuple[int, str]:
        answer = self._ask("audit.head", {})
        return int(answer["last_id"]), str(answer["head"])

    def store_id(self) -> str:
        """The hash of the store's first event (see :func:`audit.checkpoints.store_id`)."""
        return str(self._ask("audit.head", {})["store_id"])

    def close(self) -> None:
        """Nothing of its own to close (the session is the caller's)."""


class GatewaySignIn:
    """The identity provider of a gateway session, for ``%gsql_login`` and ``%gsql_logout``.

    Why: in gateway mode there is no sign-in flow in the kernel; the token (Hub, access
    token, service) is the sign-in, and ``current()`` is what the gateway says it proves.
    A missing or refused token is one sentence saying how to give one.
    """

    name = "gateway"

    def __init__(self, session: GatewaySession) -> None:
        self._session = session

    def current(self) -> Identity:
        self._session._hello = None  # ask again: the token may have changed
        return self._session.identity


class GatewaySignInAudit:
    """Where ``%gsql_login`` records a sign-in in gateway mode: the gateway's audit, as the
    identity the token proves (what the kernel sends about it is not used)."""

    def __init__(self, session: GatewaySession) -> None:
        self._session = session

    def append(self, kind: str, **_: Any) -> int | None:
        if kind not in ("sign_in", "sign_out"):
            raise UsageError("In gateway mode the kernel writes nothing to the audit itself.")
        self._session._action("sign_in", {"kind": kind})
        return None


def _token_from_env(env: Mapping[str, str]) -> str | None:
    if env.get(ENV_GATEWAY_TOKEN):
        return env[ENV_GATEWAY_TOKEN]
    path = env.get(ENV_GATEWAY_TOKEN + "_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text().strip() or None
        except OSError:
            return None
    if env.get("JUPYTER_GOV_SERVICE") and env.get("JUPYTER_GOV_SERVICE_TOKEN"):
        return f"service:{env['JUPYTER_GOV_SERVICE']}:{env['JUPYTER_GOV_SERVICE_TOKEN']}"
    return env.get("JUPYTERHUB_API_TOKEN") or None


_FLIGHT_TAIL = re.compile(r"\.?\s*(?:\. )?(?:Detail: |gRPC client debug context: ).*$", re.S)


def _flight_sentence(error: Exception) -> str:
    """The gateway's own sentence out of a Flight error's text (no gRPC detail or context)."""
    text = str(error)
    if "with message: " in text:
        text = text.split("with message: ", 1)[1]
    sentence = _FLIGHT_TAIL.sub("", text).strip().rstrip(".")
    return sentence + "."


class GatewaySession:
    """A governed session whose engine runs in a gateway; see the module docstring."""

    def __init__(
        self,
        gateway: GatewaySettings | str,
        token: TokenSource = None,
        *,
        connection: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        if isinstance(gateway, str):
            gateway = GatewaySettings(gateway, "argument")
        self.gateway = gateway
        self.address = gateway.address
        self._env = os.environ if env is None else env
        self._token = token
        self._timeout = timeout
        kwargs: dict[str, Any] = {}
        if gateway.ca_file:
            kwargs["tls_root_certs"] = Path(gateway.ca_file).read_bytes()
        self._client = flight.FlightClient(self.address, **kwargs)
        self._hello: dict[str, Any] | None = None
        self._identity: Identity | None = None
        self._requested_connection = connection
        self._lock = threading.Lock()
        self.scratch = duckdb.connect(":memory:", config={"enable_external_access": False})
        self.approvals = RemoteApprovals(self)
        #: The gateway's audit, as much of it as the token's owner may read.
        self.audit_reader = RemoteAuditReader(self)
        #: ``%gsql_login`` / ``%gsql_logout`` in gateway mode: the token is the sign-in.
        self.provider = GatewaySignIn(self)
        self.audit = GatewaySignInAudit(self)
        self.session_id = ""

    # -- what a front end reads --------------------------------------------------------

    def _hello_answer(self) -> dict[str, Any]:
        if self._hello is None:
            hello = self._action("hello", {})
            self._hello = hello
            self._identity = _identity(hello["identity"])
        return self._hello

    @property
    def policy(self) -> RemotePolicy:
        return RemotePolicy(self._hello_answer())

    @property
    def identity(self) -> Identity:
        self._hello_answer()
        assert self._identity is not None
        return self._identity

    @property
    def default_connection(self) -> str:
        hello = self._hello_answer()
        requested = self._requested_connection
        if requested and requested not in hello["connections"]:
            raise UsageError(
                f"The gateway's policy has no connection {requested!r}; it has "
                f"{', '.join(sorted(hello['connections']))}."
            )
        return requested or str(hello["default_connection"])

    def policy_summary(self) -> dict[str, Any]:
        """The Policy tab's summary of the gateway's policy, for the token's owner.

        Why from the gateway: in gateway mode it is the only policy enforced, and only it
        knows the roles it derives for this token. ``origin`` names the gateway (where the
        file lies on its host stays there). An unreachable gateway raises
        :class:`GatewayUnavailable`; there is no local policy to fall back on.
        """
        summary = dict(self._action("policy.summary", {})["summary"])
        summary["origin"] = f"the gateway at {self.address}"
        return summary

    def dialect(self, connection: str | None = None) -> str:
        hello = self._hello_answer()
        name = connection or self.default_connection
        info = hello["connections"].get(name)
        return str(info["dialect"]) if info else "duckdb"

    # -- calls -------------------------------------------------------------------------

    def _options(self) -> flight.FlightCallOptions:
        token = self._token() if callable(self._token) else self._token
        token = token or _token_from_env(self._env)
        if not token:
            raise IdentityError(
                "Gateway mode needs a token: set JUPYTER_GOV_GATEWAY_TOKEN (an access token "
                "or service:<name>:<secret>) or JUPYTER_GOV_GATEWAY_TOKEN_FILE, or run inside "
                "JupyterHub."
            )
        headers = [(b"authorization", f"Bearer {token}".encode())]
        return flight.FlightCallOptions(headers=headers, timeout=self._timeout)

    def _transport_error(self, error: Exception) -> GovError:
        if isinstance(error, flight.FlightUnauthenticatedError):
            return IdentityError(_flight_sentence(error))
        if isinstance(error, flight.FlightUnauthorizedError):
            return IdentityError(_flight_sentence(error))
        return GatewayUnavailable(
            f"The gateway at {self.address} could not be reached or dropped the connection "
            "mid-query; no rows reached this notebook, and the gateway's audit records "
            "whether the statement ran."
        )

    def _action(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        options = self._options()
        try:
            results = list(
                self._client.do_action(flight.Action(kind, protocol.dumps(body)), options)
            )
        except (flight.FlightError, OSError, pa.ArrowException) as error:
            raise self._transport_error(error) from None
        answer = protocol.loads(results[0].body) if results else {}
        if answer.get("status") == "error":
            raise protocol.error_from_json(answer["error"])
        return answer

    def explain(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        connection: str | None = None,
        unmask: Iterable[str] = (),
        limit: int | None = None,
    ) -> RemotePlan:
        answer = self._action(
            "explain",
            {
                "statement": text,
                "params": protocol.encode_params(params),
                "connection": connection or self._requested_connection,
                "unmask": list(unmask),
                "limit": limit,
            },
        )
        return RemotePlan.from_json(answer["plan"])

    def visible_columns(self, connection: str | None = None) -> list[dict[str, Any]]:
        answer = self._action("tables", {"connection": connection or self._requested_connection})
        return list(answer["columns"])

    def sql(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        connection: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        purpose: str | None = None,
        unmask: Iterable[str] = (),
        approval_id: str | None = None,
        break_glass: str | None = None,
    ) -> GovernedResult:
        """Run through the gateway; the same result, banner and errors as in a kernel."""
        request = {
            "op": "sql",
            "statement": text,
            "params": protocol.encode_params(params),
            "connection": connection or self._requested_connection,
            "name": name,
            "limit": limit,
            "purpose": purpose,
            "unmask": list(unmask),
            "approval_id": approval_id,
            "break_glass": break_glass,
        }
        options = self._options()
        started = time.perf_counter()
        try:
            reader = self._client.do_get(flight.Ticket(protocol.dumps(request)), options)
            first, metadata = reader.read_chunk()
            reply = protocol.loads(metadata) if metadata is not None else {}
            batches, end = [], None
            if reply.get("status") == "ok":
                batches, end = self._read_result(reader)
        except StopIteration:
            raise GatewayUnavailable(
                f"The gateway at {self.address} ended the reply before its decision; no "
                "rows reached this notebook."
            ) from None
        except (flight.FlightError, OSError, pa.ArrowException) as error:
            raise self._transport_error(error) from None
        identity = _identity(reply["identity"]) if "identity" in reply else self.identity
        self._identity = identity
        status = reply.get("status")
        if status == "error":
            raise protocol.error_from_json(reply["error"])
        plan = RemotePlan.from_json(reply["plan"])
        if status == "denied":
            raise QueryDenied(plan, reply.get("audit_id"))
        if status == "approval_required":
            if reply.get("request_id"):
                error = PipelineNeedsApproval.__new__(PipelineNeedsApproval)
                ApprovalRequired.__init__(error, plan, reply.get("audit_id"), reply["query_id"])
                error.request_id = reply["request_id"]
                Exception.__init__(error, reply.get("message", ""))
                raise error
            raise ApprovalRequired(plan, reply.get("audit_id"), reply.get("query_id", ""))
        if status != "ok" or end is None:
            raise GatewayUnavailable("The gateway answered with a reply this kernel cannot read.")
        if end.get("status") == "error":  # failed mid-result: audited there, nothing shown
            raise protocol.error_from_json(end["error"])
        table = pa.Table.from_batches(batches, schema=first.schema)
        if reply.get("schema"):  # dictionary columns crossed decoded: their types back
            table = table.cast(protocol.schema_from_json(reply["schema"]))
        if table.num_rows != end.get("rows"):
            raise GatewayUnavailable(
                f"The gateway at {self.address} sent {table.num_rows:,} rows but counted "
                f"{end.get('rows')}; nothing is shown."
            )
        if name is not None and table.num_columns:
            self.scratch.register(name, table)
        return GovernedResult(
            TableStream(table),
            RemotePlan.from_json(end.get("plan") or reply["plan"]),
            identity,
            query_id=str(reply.get("query_id", "")),
            audit_id=end.get("audit_id"),
            duration_ms=float(end.get("duration_ms") or (time.perf_counter() - started) * 1000),
            name=name,
        )

    def _read_result(
        self, reader: flight.FlightStreamReader
    ) -> tuple[list[pa.RecordBatch], dict[str, Any]]:
        """The batches after the decision, up to the gateway's end message (count, audit
        id, final plan). A stream that stops before that message was cut: one sentence."""
        batches: list[pa.RecordBatch] = []
        while True:
            try:
                batch, metadata = reader.read_chunk()
            except StopIteration:
                raise GatewayUnavailable(
                    f"The gateway at {self.address} dropped the connection mid-result "
                    f"({sum(b.num_rows for b in batches):,} rows arrived before it ended); no "
                    "rows reached this notebook, and the gateway's audit records what it sent."
                ) from None
            if metadata is not None:
                return batches, protocol.loads(metadata)
            batches.append(batch)

    # -- approvals: the store lives with the gateway ----------------------------------

    def request_approval(
        self,
        text: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        justification: str,
        connection: str | None = None,
        unmask: Iterable[str] = (),
        limit: int | None = None,
    ) -> ApprovalRequest:
        answer = self._action(
            "approval.request",
            {
                "statement": text,
                "params": protocol.encode_params(params),
                "justification": justification,
                "connection": connection or self._requested_connection,
                "unmask": list(unmask),
                "limit": limit,
            },
        )
        return ApprovalRequest.from_dict(answer["request"])

    def approve(self, request_id: str, comment: str = "") -> ApprovalRequest:
        answer = self._action("approval.approve", {"id": request_id, "comment": comment})
        return ApprovalRequest.from_dict(answer["request"])

    def deny(self, request_id: str, comment: str) -> ApprovalRequest:
        answer = self._action("approval.deny", {"id": request_id, "comment": comment})
        return ApprovalRequest.from_dict(answer["request"])

    def close(self) -> None:
        self._client.close()
        self.scratch.close()


def _identity(data: Mapping[str, Any]) -> Identity:
    return Identity(
        subject=str(data["subject"]),
        display_name=str(data["display_name"]),
        auth_method=str(data["auth_method"]),
        issuer=str(data.get("issuer", "")),
        verified=bool(data.get("verified")),
        kind=str(data.get("kind", "user")),
    )
