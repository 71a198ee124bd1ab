"""REST handlers under ``{base_url}/jupyter-gov/api/``; every route needs a signed-in user.

``GET audit``         events, newest first, paged and filtered
``GET audit/verify``  walk the hash chain (:meth:`AuditStore.verify`)
``GET audit/stats``   decision counts per time bucket, for the panel's chart

With a gateway configured (``c.GovServer.gateway`` or ``$JUPYTER_GOV_GATEWAY``), the audit
routes, the report, the policy summary and the approvals read the gateway's policy and
stores through Flight actions, authenticated with the server's token (its user's); the
gateway decides what that identity may read. Nothing is read from a store the kernels could
write, nor from a policy file nobody enforces.
``GET policy``        a summary of the policy in force for the server's identity: the
                      gateway's when one is configured, else the configured one (the
                      demo policy by default)
``GET approvals``     approval requests (``state=pending|all``, paged), each with
                      ``can_decide``; the exact statement and its values only where it is true
``POST approvals/{id}/approve|deny``  decide, as the identity the configured provider gives
``GET report``        the compliance report (``since=30d``, ``format=html|md|csv|json``):
                      HTML to open in a tab, a file download for the others

Bad parameters (absurd, negative, non-numeric, not UTF-8) are answered with a JSON 400 whose
``message`` is one sentence naming the parameter. A :class:`~jupyter_gov.errors.GovError`
is answered with its class's ``http_status`` (the table in ``docs/errors.md``: an audit store
that cannot be opened or read is a 503, an unknown approval a 404, ...) and its sentence;
anything unexpected with a one-sentence 500, never a traceback. Only approval decisions
write to the audit, as events in its hash chain, under the approver's own identity.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from jupyter_gov.approvals import STATES, ApprovalStore
from jupyter_gov.audit import KINDS, AuditReader
from jupyter_gov.errors import GovError
from jupyter_gov.policy.summary import PII_FINDING_EVENTS, pii_findings, policy_summary

if TYPE_CHECKING:
    from jupyter_gov.server.app import GovCore

API_PREFIX = ("jupyter-gov", "api")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: No store holds this many events; a larger offset is a mistake, not a page.
MAX_OFFSET = 10**12
#: Epoch seconds of 9999-12-31T23:59:59Z: later times are not times.
MAX_EPOCH = 253_402_300_799.0
MAX_TEXT = 200
MIN_BUCKET = 60
MAX_BUCKET = 7 * 24 * 3600
MAX_BUCKETS = 1000
DEFAULT_BUCKETS = 24

#: The panel's badge for each decision; ``allow`` with masked columns becomes ``masked``.
CATEGORIES = ("allowed", "masked", "denied", "approval", "error")
_CATEGORY_OF_DECISION = {
    "allow": "allowed",
    "deny": "denied",
    "approval_required": "approval",
    "error": "error",
}

_INTEGER = re.compile(r"-?[0-9]{1,18}")
_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_APPROVALS_PARAMS = frozenset({"state", "limit", "offset"})

_FILTER_PARAMS = ("user", "connection", "decision", "kind", "since", "until", "text", "query_id")
_AUDIT_PARAMS = frozenset({"limit", "offset", *_FILTER_PARAMS})
_STATS_PARAMS = frozenset({"bucket", *_FILTER_PARAMS})


def category(event: Mapping[str, Any]) -> str | None:
    """The badge of one event: allowed / masked / denied / approval / error, or None."""
    decision = event.get("decision")
    if decision == "allow" and event.get("masked_columns"):
        return "masked"
    return _CATEGORY_OF_DECISION.get(decision) if decision else None


def is_break_glass(event: Mapping[str, Any]) -> bool:
    """Whether an event belongs to a break-glass run (the panel flags those rows)."""
    rules = event.get("rules") or []
    detail = event.get("detail")
    return (
        event.get("kind") == "break_glass"
        or any(isinstance(r, str) and r.startswith("break-glass:") for r in rules)
        or (isinstance(detail, Mapping) and detail.get("break_glass") is True)
    )


class GovAPIHandler(APIHandler):
    """Shared parsing and store access; ``auth_resource`` lets an Authorizer gate the API."""

    auth_resource = "jupyter_gov"

    @property
    def gov(self) -> Any:
        """The :class:`~jupyter_gov.server.app.GovServer` extension (its traits)."""
        return self.settings["jupyter_gov"]

    @property
    def core(self) -> GovCore:
        """The server's one resolved configuration, policy and stores."""
        core = self.settings["jupyter_gov_core"]
        core.refresh()
        return core

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Arguments are UTF-8 (lone surrogates included in what is refused)."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            what = f"Parameter {name[:40]!r}" if name else "The URL"
            raise tornado.web.HTTPError(400, f"{what} is not valid UTF-8.") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is JSON with a one-sentence ``message``; never a traceback.

        A :class:`GovError` escaping a handler answers with its class's ``http_status``.
        """
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, GovError):
            status_code = error.http_status
            self.set_status(status_code)
            message = str(error)
        elif isinstance(error, tornado.web.HTTPError) and error.log_message:
            message = error.log_message
        elif status_code >= 500:
            message = "The jupyter-gov API failed unexpectedly; the server log says why."
        else:
            message = f"The request was refused ({status_code} {self._reason})."
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.log.warning("jupyter-gov API %s: %s", status_code, message)
        body = {"message": message, "reason": self._reason}
        if isinstance(error, GovError):
            body["error"] = type(error).__name__
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A :class:`GovError` is a user's error, logged by :meth:`write_error` in one line."""
        if isinstance(value, GovError):
            return
        super().log_exception(typ, value, tb)

    # -- the store -----------------------------------------------------------------------

    def store(self) -> AuditReader:
        """The audit the views read: the gateway's when one is configured (as much as the
        server's token owner may read), else the core's store, opened on first use so a bad
        path only fails requests."""
        return self.core.reader()

    async def in_thread(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call off the event loop; a SQLite error becomes a JSON 503."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except sqlite3.Error as error:
            raise tornado.web.HTTPError(503, f"The audit store cannot be read: {error}") from error

    # -- parameters ----------------------------------------------------------------------

    def check_params(self, allowed: frozenset[str]) -> None:
        # JupyterLab's ServerConnection appends a bare timestamp (``?1718000000000``) to
        # every GET to defeat caches: an all-digit name without a value is not a filter.
        given = {
            name
            for name, values in self.request.query_arguments.items()
            if not (name.isdigit() and values in ([b""], []))
        }
        unknown = sorted(given - allowed)
        if unknown:
            expected = (
                f"expected one of {', '.join(sorted(allowed))}"
                if allowed
                else "this route takes no parameters"
            )
            raise tornado.web.HTTPError(400, f"Unknown parameter {unknown[0][:40]!r}; {expected}.")

    def one(self, name: str) -> str | None:
        values = self.get_query_arguments(name)
        if not values:
            return None
        if len(values) > 1 and name != "kind":
            raise tornado.web.HTTPError(400, f"Parameter {name!r} is given more than once.")
        value = values[-1].strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """A decimal integer in ``low..high``: ``1e30``, ``0x10``, ``１２``, ``1_0`` are 400s."""
        raw = self.one(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw):
            raise tornado.web.HTTPError(
                400, f"Parameter {name!r} must be an integer between {low} and {high}."
            )
        value = int(raw)
        if not low <= value <= high:
            raise tornado.web.HTTPError(
                400, f"Parameter {name!r} must be between {low} and {high}, not {value}."
            )
        return value

    def epoch(self, name: str) -> float | None:
        """Epoch seconds as plain decimals (``1e30``, ``inf``, ``NaN``, ``１２`` are 400s)."""
        raw = self.one(name)
        if raw is None:
            return None
        value = float(raw) if _EPOCH.fullmatch(raw) else math.nan
        if not 0 <= value <= MAX_EPOCH:  # NaN fails this too
            raise tornado.web.HTTPError(
                400,
                f"Parameter {name!r} must be a time in epoch seconds "
                f"between 0 and {MAX_EPOCH:.0f}.",
            )
        return value

    def filters(self) -> dict[str, Any]:
        """The filters shared by ``audit`` and ``audit/stats``, as ``AuditStore.events`` kwargs."""
        kinds: list[str] = []
        for raw in self.get_query_arguments("kind"):
            kinds.extend(k.strip() for k in raw.split(",") if k.strip())
        for kind in kinds:
            if kind not in KINDS:
                raise tornado.web.HTTPError(
                    400,
                    f"Unknown kind {kind[:40]!r}; expected an audit event kind such as "
                    "attempt, decision or result (jupyter_gov.audit.chain.KINDS lists them all).",
                )
        since, until = self.epoch("since"), self.epoch("until")
        if since is not None and until is not None and since > until:
            raise tornado.web.HTTPError(400, "Parameter 'since' is after 'until'.")
        text = self.one("text")
        if text is not None and len(text) > MAX_TEXT:
            raise tornado.web.HTTPError(
                400, f"Parameter 'text' is longer than {MAX_TEXT} characters."
            )
        out: dict[str, Any] = {
            "subject": self.one("user"),
            "connection": self.one("connection"),
            "decision": self.one("decision"),
            "query_id": self.one("query_id"),
            "kinds": tuple(dict.fromkeys(kinds)) or None,
            "since": since,
            "until": until,
            "text": text,
        }
        for name in ("subject", "connection", "decision", "query_id"):
            if out[name] is not None and len(out[name]) > MAX_TEXT:
                raise tornado.web.HTTPError(400, f"A filter is longer than {MAX_TEXT} characters.")
        return out

    def reply(self, body: Any) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, default=str))


def page_events(
    store: AuditReader, filters: Mapping[str, Any], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    events = store.events(limit=limit, offset=offset, newest_first=True, **filters)
    if not events and offset == 0:
        total = 0
    elif offset == 0 and len(events) < limit:
        total = len(events)
    else:
        total = store.count(**filters)
    for event in events:
        event["category"] = category(event)
        event["break_glass"] = is_break_glass(event)
    return events, total


def decision_stats(
    store: AuditReader, filters: Mapping[str, Any], bucket: int, since: float, until: float
) -> list[dict[str, Any]]:
    """Zero-filled buckets from ``since`` to ``until``, each with counts per category."""
    rows = store.stats(bucket=bucket, **{**filters, "since": since, "until": until})
    first, last = int(since // bucket), int(until // bucket)
    buckets = {
        slot: {"start": slot * bucket, "counts": dict.fromkeys(CATEGORIES, 0), "total": 0}
        for slot in range(first, last + 1)
    }
    for row in rows:
        entry = buckets.get(row.start // bucket)
        name = category({"decision": row.decision, "masked_columns": row.masked})
        if entry is None or name is None:
            continue
        entry["counts"][name] += row.count
        entry["total"] += row.count
    return [buckets[slot] for slot in sorted(buckets)]


# -- handlers ------------------------------------------------------------------------------


class AuditHandler(GovAPIHandler):
    """``GET audit?limit=&offset=&user=&connection=&decision=&kind=&since=&until=&text=``"""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_params(_AUDIT_PARAMS)
        limit = self.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self.integer("offset", 0, 0, MAX_OFFSET)
        filters = self.filters()
        store = self.store()
        events, total = await self.in_thread(page_events, store, filters, limit, offset)
        self.reply({"events": events, "limit": limit, "offset": offset, "total": total})


class VerifyHandler(GovAPIHandler):
    """``GET audit/verify``: the chain walk, as :meth:`VerifyReport.to_dict`."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_params(frozenset())
        store = self.store()
        report = await self.in_thread(store.verify)
        self.reply({**report.to_dict(), "checked_at": time.time()})


class StatsHandler(GovAPIHandler):
    """``GET audit/stats?bucket=3600``: decisions per time bucket (``kind`` defaults to
    ``decision``, one event per statement; the window defaults to the last 24 buckets)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_params(_STATS_PARAMS)
        bucket = self.integer("bucket", 3600, MIN_BUCKET, MAX_BUCKET)
        filters = self.filters()
        until = filters.pop("until")
        since = filters.pop("since")
        until = time.time() if until is None else until
        since = until - bucket * DEFAULT_BUCKETS + 1 if since is None else since
        if since > until:
            raise tornado.web.HTTPError(400, "Parameter 'since' is after 'until'.")
        if (until - since) / bucket > MAX_BUCKETS:
            raise tornado.web.HTTPError(
                400,
                f"The window holds more than {MAX_BUCKETS} buckets; "
                "use a larger 'bucket' or a shorter 'since'..'until'.",
            )
        filters["kinds"] = filters["kinds"] or ("decision",)
        store = self.store()
        buckets = await self.in_thread(decision_stats, store, filters, bucket, since, until)
        self.reply(
            {
                "bucket": bucket,
                "since": since,
                "until": until,
                "kinds": list(filters["kinds"]),
                "categories": list(CATEGORIES),
                "buckets": buckets,
            }
        )


_REPORT_TYPES = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}


class ReportHandler(GovAPIHandler):
    """``GET report?since=30d&format=html``: :mod:`jupyter_gov.report`, built off the loop."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from jupyter_gov.report import build_report, parse_since, render

        self.check_params(frozenset({"since", "format"}))
        fmt = self.one("format") or "html"
        if fmt not in _REPORT_TYPES:
            raise tornado.web.HTTPError(
                400, f"Parameter 'format' must be one of {', '.join(_REPORT_TYPES)}."
            )
        since = parse_since(self.one("since") or "30d")  # a bad value is a UsageError: 400
        store = self.store()
        report = await self.in_thread(build_report, store, since)
        body = render(report, fmt)
        self.set_header("Cache-Control", "no-store")
        # The page has no script and loads nothing: forbid both, whoever opens it.
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
        )
        if fmt != "html":
            self.set_header(
                "Content-Disposition", f'attachment; filename="jupyter-gov-report.{fmt}"'
            )
        self.finish(body, set_content_type=_REPORT_TYPES[fmt])


class PolicyHandler(GovAPIHandler):
    """``GET policy``: a summary of the policy in force, for the server's own identity.

    With a gateway configured it is the gateway's policy, as the gateway summarises it for
    the owner of the server's token (roles it derives, masks, pii findings from its audit);
    an unreachable gateway is its one-sentence 503, never the local file, which nobody
    enforces then. Without one it is the server's policy (the demo policy by default), or
    ``{"error": ...}`` saying why it did not load.
    """

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_params(frozenset())
        core = self.core
        remote = await self.in_thread(core.remote)
        if remote is not None:
            self.reply(await self.in_thread(remote.policy_summary))
            return
        # A policy that did not load is loaded again only to say why.
        policy = core.policy if core.policy is not None else self.gov.policy
        summary = await asyncio.to_thread(local_policy_summary, policy, core.user)
        # pii hook: what unclassified: auto found, from the audit's classification events
        if "error" not in summary:
            summary["pii_findings"] = await asyncio.to_thread(local_pii_findings, self.store)
        self.reply(summary)


def local_pii_findings(open_store: Any) -> list[dict[str, Any]]:
    """The PII findings of the server's own audit (tags and counts, never values)."""
    try:
        events = open_store().events(kinds=["classification"], limit=PII_FINDING_EVENTS)
    except GovError:  # no store: the policy summary is still worth showing
        return []
    return pii_findings(events)


def local_policy_summary(policy: Any, user: str | None = None) -> dict[str, Any]:
    """The server's policy summarised for its own identity (``user`` with the local
    provider); the demo policy when none is set; ``{"error": ...}`` if it does not load."""
    from jupyter_gov.engine import provider_for
    from jupyter_gov.policy import Policy

    try:
        policy = policy if isinstance(policy, Policy) else Policy.load(policy)
    except (GovError, OSError, ValueError) as error:
        return {"error": str(error)}
    try:
        identity: Any = provider_for(policy, user).current()
    except GovError as error:
        identity = error
    return policy_summary(policy, identity)


class ApprovalsHandler(GovAPIHandler):
    """``GET approvals?state=pending|all&limit=&offset=``: a page of requests, newest first,
    each with ``can_decide``; ``total`` and ``actionable`` count every match, so nothing is
    cut off silently."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_params(_APPROVALS_PARAMS)
        state = self.one("state") or "pending"
        if state not in ("pending", "all", *STATES):
            raise tornado.web.HTTPError(
                400, f"Parameter 'state' must be one of pending, all, {', '.join(STATES[1:])}."
            )
        limit = self.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self.integer("offset", 0, 0, MAX_OFFSET)
        self.reply(await self.in_thread(list_approvals, self.core, state, limit, offset))


class ApprovalDecisionHandler(GovAPIHandler):
    """``POST approvals/{id}/approve|deny`` with ``{"comment": ...}``."""

    @tornado.web.authenticated
    @authorized
    async def post(self, request_id: str, action: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError) as error:  # RecursionError: [[[[...]]]]
            raise tornado.web.HTTPError(400, "The body must be a JSON object.") from error
        comment = body.get("comment", "") if isinstance(body, dict) else None
        if not isinstance(comment, str) or len(comment) > 2000:
            raise tornado.web.HTTPError(400, "'comment' must be a string of at most 2000 chars.")
        try:
            comment.encode("utf-8")  # a lone surrogate ("\ud800") cannot be stored
        except UnicodeEncodeError:
            raise tornado.web.HTTPError(400, "'comment' must be valid Unicode text.") from None
        request = await self.in_thread(decide_approval, self.core, request_id, action, comment)
        self.reply(request)


def _approver(core: GovCore) -> tuple[Any, tuple[str, ...], ApprovalStore]:
    """The identity the configured provider gives this server, its roles, and the store
    (in gateway mode: the identity the gateway's token proves, its roles there, its store)."""
    remote = core.remote()
    if remote is not None:
        identity = remote.identity
        return identity, remote.policy.roles_for(identity), remote.approvals
    identity = core.identity()
    return identity, core.require_policy().roles_for(identity), core.approvals()


def list_approvals(
    core: GovCore,
    state: str,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """One page of requests; the exact statement and its values only for those who decide."""
    identity, roles, approvals = _approver(core)
    actionable = {r.id for r in approvals.actionable_by(identity)}
    matching = approvals.list(state)
    items = []
    for request in matching[offset : offset + limit]:
        can_decide = request.id in actionable
        item = request.to_dict(approver=can_decide)
        item["subject"] = request.binding.requester.split("|", 1)[-1]
        item["display_name"] = request.requester_name
        item["requested_at"] = request.created_at
        item["can_decide"] = can_decide
        items.append(item)
    return {
        "approvals": items,
        "limit": limit,
        "offset": offset,
        "total": len(matching),
        "actionable": len(actionable),
        "identity": {
            "subject": identity.subject,
            "display_name": identity.display_name,
            "roles": list(roles),
            "verified": identity.verified,
        },
    }


def decide_approval(core: GovCore, request_id: str, action: str, comment: str) -> dict[str, Any]:
    identity, _, approvals = _approver(core)
    if action == "approve":
        return approvals.approve(request_id, identity, comment).to_dict()
    return approvals.deny(request_id, identity, comment).to_dict()


def routes() -> list[tuple[str, type[GovAPIHandler]]]:
    """The API's routes under ``jupyter-gov/api/``; the ExtensionApp prefixes ``base_url``."""
    base = url_path_join(*API_PREFIX)
    return [
        (url_path_join(base, "audit"), AuditHandler),
        (url_path_join(base, "audit", "verify"), VerifyHandler),
        (url_path_join(base, "audit", "stats"), StatsHandler),
        (url_path_join(base, "report"), ReportHandler),
        (url_path_join(base, "policy"), PolicyHandler),
        (url_path_join(base, "approvals"), ApprovalsHandler),
        (
            url_path_join(base, "approvals", r"([0-9a-f]{6,32})", r"(approve|deny)"),
            ApprovalDecisionHandler,
        ),
    ]
