"""``jupyter-gov mcp``: governed tools for AI agents over the Model Context Protocol.

A thin front end over :mod:`jupyter_gov.engine`: every tool call goes through the same
identity -> policy -> guardrails -> masking -> audit path as a person's query. The caller is
an agent from the policy's ``agents:`` section, acting on behalf of the user the policy's
identity provider says is signed in (or alone with ``--no-user``). What an agent sends is
SQL text and arguments only: nothing in them can choose the identity, the roles or the
limits. One server process serves one agent for one user.

Over streamable HTTP every request needs ``Authorization: Bearer <token>`` (the SDK's
bearer middleware with :class:`BearerTokens` as its token verifier): the agent's own token
(``agents.<name>.token_sha256``) or a token of a ``services:`` entry. The policy holds
only SHA-256 digests; a request without a token, or with another, is answered 401 before
any tool runs, and a policy that lists no token refuses to serve HTTP at all. stdio needs
none: whoever can start the process already holds the policy's credentials.

Limits on top of the guardrails: the agent's ``max_rows`` caps every result,
``queries_per_minute`` rate-limits ``query`` and ``explain``, and the text returned by one
call is capped at :data:`MAX_OUTPUT_CHARS`.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError, PolicyError, RateLimited
from jupyter_gov.identity.service import agent_identity, token_digest
from jupyter_gov.result import ApprovalRequired, QueryDenied

#: The most text one tool call returns; rows past it are dropped and ``truncated`` is set.
MAX_OUTPUT_CHARS = 32_000

INSTRUCTIONS = (
    "Governed SQL over jupyter-gov. Every call is checked against the policy, masked and "
    "audited as this agent acting for its user. Start with list_tables, then query. A "
    "refusal is final for that text: rephrasing it does not change the policy."
)


class GovTools:
    """The tools' logic, free of MCP so it is plain to read and test."""

    def __init__(
        self,
        session: GovernedSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        identity = session.identity
        if identity.kind != "agent":
            raise GovError("The MCP front end serves agents only; start it with --agent NAME.")
        self.session = session
        self.agent = session.policy.agents[identity.subject]
        self.clock = clock
        self._calls: deque[float] = deque()

    # -- tools ---------------------------------------------------------------------------

    def list_tables(self, connection: str | None = None) -> dict[str, Any]:
        tables: dict[str, list[dict[str, Any]]] = {}
        for row in self.session.visible_columns(connection):
            tables.setdefault(row["table"], []).append(
                {k: row[k] for k in ("column", "type", "tags", "mask")}
            )
        return {"caller": self._caller(), "tables": tables}

    def describe_policy(self) -> dict[str, Any]:
        summary = dict(self.session.policy.summary)
        summary.pop("origin", None)
        identity = self.session.identity
        return {
            "caller": self._caller(),
            "roles": list(self.session.policy.roles_for(identity)),
            "agent_limits": {
                "max_rows": self.agent.max_rows,
                "queries_per_minute": self.agent.queries_per_minute,
                "deny_statements": list(self.agent.deny_statements),
                "max_output_chars": MAX_OUTPUT_CHARS,
            },
            "policy": summary,
        }

    def explain(self, sql: str, connection: str | None = None) -> dict[str, Any]:
        self._spend()
        plan = self.session.explain(sql, connection=connection, limit=self.agent.max_rows)
        out = plan.to_dict()
        out.pop("fingerprint", None)
        return out

    def query(
        self,
        sql: str,
        connection: str | None = None,
        max_rows: int | None = None,
        format: str = "json",
        purpose: str | None = None,
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        if format not in ("json", "csv"):
            raise GovError("format must be json or csv.")
        self._spend()
        cap = (
            self.agent.max_rows if max_rows is None else max(1, min(max_rows, self.agent.max_rows))
        )
        try:
            result = self.session.sql(
                sql,
                connection=connection,
                limit=cap,
                purpose=purpose,
                approval_id=approval_id,
            )
        except QueryDenied as denied:
            raise GovError(_refusal(denied.plan.reasons)) from None
        except ApprovalRequired as needed:
            raise GovError(
                "Needs approval: "
                + _first(needed.plan.reasons)
                + " Call request_approval with the same sql and a justification."
            ) from None
        table = result.arrow()
        rows = table.to_pylist()[:cap]
        data, shown = _render(result.columns, rows, format)
        return {
            "decision": result.decision,
            "audit_id": result.audit_id,
            "query_id": result.query_id,
            "columns": result.columns,
            "masked_columns": result.masked_columns,
            "rows": shown,
            "truncated": shown < table.num_rows or table.num_rows >= cap,
            "row_cap": cap,
            "format": format,
            "data": data,
        }

    def request_approval(
        self, sql: str, justification: str, connection: str | None = None
    ) -> dict[str, Any]:
        try:
            request = self.session.request_approval(
                sql, justification=justification, connection=connection, limit=self.agent.max_rows
            )
        except QueryDenied as denied:
            raise GovError(_refusal(denied.plan.reasons)) from None
        return _request_view(request)

    def approval_status(self, request_id: str) -> dict[str, Any]:
        request = self.session.approvals.get(request_id)
        if request.binding.requester != _principal(self.session):
            raise GovError(f"Request {request_id} was not made by this agent for this user.")
        return _request_view(request)

    # -- internals -----------------------------------------------------------------------

    def _caller(self) -> str:
        return self.session.identity.display_name

    def _spend(self) -> None:
        """Count one call against the agent's per-minute budget, or refuse it."""
        now = self.clock()
        while self._calls and now - self._calls[0] >= 60.0:
            self._calls.popleft()
        if len(self._calls) >= self.agent.queries_per_minute:
            raise RateLimited(
                f"Rate limit: agent {self.agent.name!r} may run "
                f"{self.agent.queries_per_minute} queries per minute; wait a minute and retry."
            )
        self._calls.append(now)


def _principal(session: GovernedSession) -> str:
    from jupyter_gov.approvals import principal

    return principal(session.identity)


def _request_view(request: Any) -> dict[str, Any]:
    return {
        "request_id": request.id,
        "state": request.state,
        "statement": request.statement,
        "approvers": list(request.approvers),
        "justification": request.justification,
        "decided_by": getattr(request, "decided_by_name", None),
        "comment": request.comment,
    }


def _first(reasons: list[str]) -> str:
    return next((r for r in reasons if r), "the policy does not allow it.")


def _refusal(reasons: list[str]) -> str:
    """One sentence for the model: the first reason a rule gave."""
    return "Refused: " + _first(reasons)


def _render(columns: list[str], rows: list[dict[str, Any]], fmt: str) -> tuple[str, int]:
    """Rows as JSON or CSV text of at most MAX_OUTPUT_CHARS, and how many rows it holds."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        shown = 0
        for row in rows:
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow([row[c] for c in columns])
            if buffer.tell() + len(line.getvalue()) > MAX_OUTPUT_CHARS:
                break
            buffer.write(line.getvalue())
            shown += 1
        return buffer.getvalue(), shown
    out: list[str] = []
    size = 2
    for row in rows:
        text = json.dumps(row, default=str)
        if size + len(text) + 1 > MAX_OUTPUT_CHARS:
            break
        out.append(text)
        size += len(text) + 1
    return "[" + ",".join(out) + "]", len(out)


class BearerTokens:
    """The SDK's ``TokenVerifier`` for this server: the agent's token or a service's.

    Tokens are compared by SHA-256 digest in constant time; the accepted ones are the
    agent's ``token_sha256`` and each ``services:`` entry's. The returned access token names
    who presented it (``agent:NAME`` or ``service:NAME``), never the token's value.
    """

    def __init__(self, policy: Any, agent: str) -> None:
        self.digests: dict[str, str] = {}
        spec = policy.agents.get(agent)
        if spec is not None and spec.token_sha256:
            self.digests[spec.token_sha256.lower()] = f"agent:{agent}"
        for name, service in policy.services.items():
            self.digests.setdefault(service.token_sha256.lower(), f"service:{name}")

    async def verify_token(self, token: str) -> Any:
        from mcp.server.auth.provider import AccessToken

        digest = token_digest(token)
        for expected, client in self.digests.items():
            if hmac.compare_digest(digest, expected):
                return AccessToken(token=digest, client_id=client, scopes=[])
        return None


def http_auth(tools: GovTools) -> tuple[BearerTokens, Any]:
    """The token verifier and auth settings for HTTP; refuses when the policy has no token."""
    from mcp.server.auth.settings import AuthSettings

    verifier = BearerTokens(tools.session.policy, tools.session.identity.subject)
    if not verifier.digests:
        raise PolicyError(
            "Serving MCP over HTTP needs a bearer token: give the agent a token_sha256 or "
            "list a service with one in the policy's services: section."
        )
    # The SDK wants an issuer even for a resource server that verifies its own tokens.
    settings = AuthSettings(issuer_url="http://127.0.0.1", resource_server_url=None)
    return verifier, settings


def build_server(tools: GovTools, http: bool = False) -> Any:
    """The MCP server: each tool is a thin async wrapper; a GovError becomes a refusal.

    With ``http`` every request must carry a bearer token :class:`BearerTokens` accepts.
    """
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    if http:
        verifier, auth = http_auth(tools)
        server = MCPServer(
            "jupyter-gov", instructions=INSTRUCTIONS, token_verifier=verifier, auth=auth
        )
    else:
        server = MCPServer("jupyter-gov", instructions=INSTRUCTIONS)

    def call(fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        # Synchronous on purpose: the engine's connections and audit store stay on one
        # thread, and calls from one agent are serialised.
        try:
            return fn(**kwargs)
        except GovError as error:
            raise ToolError(str(error)) from None

    @server.tool()
    async def list_tables(connection: str | None = None) -> dict[str, Any]:
        """Tables and columns you can query, with the mask each column gets for you."""
        return call(tools.list_tables, connection=connection)

    @server.tool()
    async def describe_policy() -> dict[str, Any]:
        """The governing policy: roles, masks, row filters, approval rules and your limits."""
        return call(tools.describe_policy)

    @server.tool()
    async def explain(sql: str, connection: str | None = None) -> dict[str, Any]:
        """Decide and show the rewritten SQL for one statement without running it."""
        return call(tools.explain, sql=sql, connection=connection)

    @server.tool()
    async def query(
        sql: str,
        connection: str | None = None,
        max_rows: int | None = None,
        format: str = "json",
        purpose: str | None = None,
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one governed SQL statement; masked rows (capped) as JSON or CSV text, the
        decision and the audit id."""
        return call(
            tools.query,
            sql=sql,
            connection=connection,
            max_rows=max_rows,
            format=format,
            purpose=purpose,
            approval_id=approval_id,
        )

    @server.tool()
    async def request_approval(
        sql: str, justification: str, connection: str | None = None
    ) -> dict[str, Any]:
        """Ask a human approver to allow exactly this statement; returns the request id."""
        return call(
            tools.request_approval, sql=sql, justification=justification, connection=connection
        )

    @server.tool()
    async def approval_status(request_id: str) -> dict[str, Any]:
        """The state of an approval request this agent made (pending, approved, denied...)."""
        return call(tools.approval_status, request_id=request_id)

    return server


def open_tools(
    agent: str,
    *,
    policy: str | None = None,
    store: str | None = None,
    user: str | None = None,
    connection: str | None = None,
    alone: bool = False,
) -> GovTools:
    """Sign the agent in for the current user (the policy's provider) and open its tools."""
    from jupyter_gov.engine import provider_for
    from jupyter_gov.policy import Policy

    loaded = Policy.load(policy)
    person = None if alone else provider_for(loaded, user).current()
    identity = agent_identity(loaded.agents, agent, person)
    session = GovernedSession(loaded, identity, audit=store, connection=connection)
    return GovTools(session)


def serve(
    tools: GovTools, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Run until the client disconnects (stdio) or the process is stopped (HTTP)."""
    server = build_server(tools, http=transport != "stdio")
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
