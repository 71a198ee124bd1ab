"""Every error jupyter-gov raises on purpose, and how each front end reports it.

Each class carries one sentence (``str(error)``) that says what happened and what to do,
and two statuses: ``exit_code`` for the ``jupyter-gov`` command line and ``http_status``
for the server extension (and later the gateway). Front ends read them from the class, so
the table lives here once; ``docs/errors.md`` lists it. A traceback is for bugs, not for
users.

Connector failures follow the PEP 249 classes, as ADBC names them (``OperationalError``,
``ProgrammingError``, ...), so a driver's error maps onto one of ours by its own class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from jupyter_gov.plan import Plan

#: Exit statuses of the command line (``jupyter-gov``); 0 is success.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_APPROVAL = 4
EXIT_APPROVAL_REFUSED = 5
EXIT_IDENTITY = 6


class GovError(Exception):
    """Base class of every error jupyter-gov raises on purpose."""

    #: The ``jupyter-gov`` command's exit status when this error ends it.
    exit_code: ClassVar[int] = EXIT_FAILED
    #: The HTTP status the server's API answers with.
    http_status: ClassVar[int] = 500


# -- the caller's mistakes ------------------------------------------------------------------


class UsageError(GovError):
    """An option or argument is missing or malformed (CLI flags, magic options)."""

    exit_code = EXIT_USAGE
    http_status = 400


class SqlSyntaxError(GovError):
    """The cell does not parse; carries the line and column of the first error."""

    exit_code = EXIT_USAGE
    http_status = 400

    def __init__(
        self,
        message: str,
        line: int | None = None,
        column: int | None = None,
        rule: str = "parse-error",
    ):
        super().__init__(message)
        self.line = line
        self.column = column
        self.rule = rule


class SqlTooLarge(SqlSyntaxError):
    """The cell is larger or deeper than the policy's guardrails allow; carries the rule id."""

    def __init__(self, message: str, rule: str = "sql-too-large"):
        super().__init__(message, rule=rule)


# -- configuration --------------------------------------------------------------------------


class PolicyError(GovError):
    """The policy file is missing, unreadable or does not validate.

    HTTP 503: a server whose policy does not load cannot serve anyone until it is fixed.
    """

    exit_code = EXIT_USAGE
    http_status = 503


class UnknownConnection(PolicyError):
    """The policy has no connection of that name (the caller asked for one it lacks)."""

    http_status = 404


class MaskKeyError(GovError):
    """The masking key is missing, weak or unreadable; nothing that masks can run."""

    exit_code = EXIT_USAGE
    http_status = 503


# -- who is asking ---------------------------------------------------------------------------


class IdentityError(GovError):
    """Nobody could be identified, or the identity has expired or been revoked."""

    exit_code = EXIT_IDENTITY
    http_status = 401


class TokenRejected(IdentityError):
    """A token failed validation; the message says which check, never the token."""


# -- the policy's decisions ------------------------------------------------------------------


class QueryDenied(GovError):
    """The policy denied the statement; ``plan`` says which rules and why."""

    exit_code = EXIT_DENIED
    http_status = 403

    def __init__(self, plan: Plan, audit_id: int | None = None) -> None:
        self.plan = plan
        self.audit_id = audit_id
        super().__init__(" ".join(plan.reasons) or "The statement was denied.")


class ApprovalRequired(GovError):
    """The statement may run only after someone else approves it.

    HTTP 403 as for a denial (the statement did not run); the body's ``decision`` says
    ``approval_required``, and asking for an approval is the next step.
    """

    exit_code = EXIT_APPROVAL
    http_status = 403

    def __init__(self, plan: Plan, audit_id: int | None = None, query_id: str = "") -> None:
        self.plan = plan
        self.audit_id = audit_id
        self.query_id = query_id
        super().__init__(" ".join(plan.reasons) or "The statement needs an approval.")


class PipelineNeedsApproval(ApprovalRequired):
    """An unattended (service) run needs approval; ``request_id`` names the request to approve.

    Nobody is at the keyboard to click a widget, so the run fails fast with the id to
    approve, and the same run re-run after approval proceeds.
    """

    def __init__(
        self,
        plan: Plan,
        audit_id: int | None = None,
        query_id: str = "",
        request_id: str = "",
        service: str = "",
    ) -> None:
        super().__init__(plan, audit_id, query_id)
        self.request_id = request_id
        reason = next((r for r in plan.reasons if r), "an approval rule applies").rstrip(".")
        Exception.__init__(
            self,
            f"This unattended run of service {service!r} needs approval request {request_id} "
            f"({reason}); approve it (jupyter-gov approvals approve {request_id}) and re-run.",
        )


class ApprovalFiled(ApprovalRequired):
    """A statement needed approval and, with a justification given, a request was filed;
    ``request_id`` names it (the gateway's PostgreSQL door answers this to a client)."""

    def __init__(self, needed: ApprovalRequired, request_id: str) -> None:
        super().__init__(needed.plan, needed.audit_id, needed.query_id)
        self.request_id = request_id
        Exception.__init__(
            self,
            f"{needed} Approval request {request_id} was filed; once it is approved, "
            f"SET jupyter_gov.approval_id = '{request_id}' and run the statement again.",
        )


class RateLimited(GovError):
    """An agent made more calls than its policy's ``queries_per_minute`` allow."""

    exit_code = EXIT_DENIED
    http_status = 429


# -- approvals -------------------------------------------------------------------------------


class ApprovalError(GovError):
    """An approval step was refused; the message says why in one sentence."""

    exit_code = EXIT_APPROVAL_REFUSED
    http_status = 400


class ApprovalNotFound(ApprovalError):
    """No request has that id."""

    http_status = 404


class ApprovalForbidden(ApprovalError):
    """The caller may not take this step (their own request, or not an approver)."""

    http_status = 403


class ApprovalConflict(ApprovalError):
    """The request is in a state that does not allow this step (another call won the race)."""

    http_status = 409


class ApprovalRefused(ApprovalError):
    """An approval could not be used for a run; ``rule`` names why, for the audit."""

    http_status = 403

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


# -- the audit -------------------------------------------------------------------------------


class AuditError(GovError):
    """The audit store cannot be written or read; queries fail closed."""

    http_status = 503


class ProvenanceMismatch(GovError):
    """A saved dataset does not match the audit: its rows, its record or the chain changed.

    Carries the :class:`~jupyter_gov.provenance.ProvenanceReport` as ``report``.
    """

    http_status = 409

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


# -- databases: PEP 249's classes, as ADBC names them ------------------------------------------


class CheckpointInvalid(AuditError):
    """A signed audit checkpoint does not verify: another key, an edited field, bad format."""

    exit_code = EXIT_FAILED
    http_status = 400


class ClientProtocolError(UsageError):
    """A standard client asked the gateway's PostgreSQL door for something it does not do,
    or not in this state; carries the SQLSTATE the client gets."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class InterfaceError(GovError):
    """The driver itself failed or is missing (not the database)."""

    http_status = 500


class DatabaseError(GovError):
    """The database raised an error; the subclasses say which kind, as PEP 249 does."""

    http_status = 502


class OperationalError(DatabaseError):
    """The database could not be reached, timed out, or the statement was cancelled."""

    http_status = 503


class ProgrammingError(DatabaseError):
    """The database rejected the statement itself (a name, a type, an argument)."""

    http_status = 400


class DataError(DatabaseError):
    """A value could not be processed (out of range, not convertible, division by zero)."""

    http_status = 400


class IntegrityError(DatabaseError):
    """A write broke a constraint (unique, foreign key, not null)."""

    http_status = 409


class InternalError(DatabaseError):
    """The database reported an internal inconsistency."""

    http_status = 502


class NotSupportedError(DatabaseError):
    """The engine lacks something the statement or the policy needs."""

    http_status = 501


class ConnectionFailed(OperationalError):
    """The target database could not be reached or rejected the governed statement."""


class UnknownBackend(ConnectionFailed):
    """No profile answers a URL's scheme: the policy names an engine nobody installed."""

    exit_code = EXIT_USAGE


class GatewayUnavailable(OperationalError):
    """The gateway could not be reached, or the connection to it dropped mid-query.

    The kernel cannot tell whether a dropped statement ran; the gateway audited the attempt
    before running it, so its audit says. No row that did not arrive is shown.
    """


class QueryFailed(DatabaseError):
    """The database raised an error while running an allowed statement."""


class MaskUnsupported(NotSupportedError):
    """An engine lacks a building block a mask needs; the plan is denied, never sent."""


def error_classes() -> list[type[GovError]]:
    """Every class in this table, base first, in definition order (docs and tests)."""
    return [value for value in globals().values() if _is_error_class(value)]


def _is_error_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, GovError)


class PiiForbidden(GovError):
    """Classifying a connection, or reversing PII tokens, is not allowed for your roles."""

    exit_code = EXIT_DENIED
    http_status = 403


class TokenInvalid(GovError):
    """A PII token cannot be reversed: its key left the key ring, or it was altered."""

    exit_code = EXIT_USAGE
    http_status = 400
