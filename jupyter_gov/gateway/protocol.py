"""What travels between a kernel and the gateway: JSON requests and replies, typed values.

A query is a Flight ``do_get`` whose ticket is a JSON request; the reply is a stream of
Arrow record batches whose first message carries the decision as JSON metadata (decision,
reasons, masked columns, audit id, banner fields). Everything else (explain, tables,
approvals, who am I) is a Flight action with a JSON body and a JSON answer. Bound values
keep their types through a small tagged encoding, so a date stays a date and is still bound,
never pasted into SQL.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_gov import errors
from jupyter_gov.plan import Plan

#: 2: a result streams; its first message is the decision, its last the count and audit id.
PROTOCOL = 2

#: The actions a gateway answers (an allow-list on both sides).
ACTIONS = (
    "hello",
    "explain",
    "tables",
    "approval.request",
    "approval.approve",
    "approval.deny",
    "approval.get",
    "approval.actionable",
    "approval.list",
    "audit.events",
    "audit.count",
    "audit.stats",
    "audit.verify",
    "audit.head",
    "sign_in",
    "policy.summary",
)
#: The audit filters a caller may send (``AuditStore.events``' keywords but ``issuer``,
#: which the gateway sets itself).
AUDIT_FILTERS = ("subject", "connection", "decision", "query_id", "kinds", "since", "until", "text")


def encode_value(value: Any) -> Any:
    """A bound value as JSON, tagged when JSON alone would lose its type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):
        return {"$t": "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$t": "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$t": "time", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$t": "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$t": "uuid", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$t": "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return {"$t": "list", "v": [encode_value(v) for v in value]}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return encode_value(item())
    raise errors.UsageError(
        f"A parameter of type {type(value).__name__} cannot be sent to the gateway; use a "
        "number, text, date, time, decimal, bytes or a list of those."
    )


_DECODERS = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        tag = value.get("$t")
        if tag == "list":
            return [decode_value(v) for v in value.get("v", [])]
        decoder = _DECODERS.get(str(tag))
        if decoder is None:
            raise errors.UsageError("The gateway received a parameter of an unknown type.")
        return decoder(value.get("v"))
    return value


def encode_params(params: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {"named": {str(k): encode_value(v) for k, v in params.items()}}
    return {"positional": [encode_value(v) for v in params]}


def decode_params(data: Any) -> Mapping[str, Any] | list[Any] | None:
    if not data:
        return None
    if "named" in data:
        return {str(k): decode_value(v) for k, v in data["named"].items()}
    return [decode_value(v) for v in data.get("positional", [])]


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()


def loads(data: bytes | memoryview | Any) -> Any:
    raw = data.to_pybytes() if hasattr(data, "to_pybytes") else bytes(data)
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.UsageError("The gateway could not read the request.") from None


#: What ``Plan`` derives from its planned statements, which never leave the gateway (their
#: SQL binds the masking key): sent as computed there, with the type each one has.
PLAN_DERIVED: dict[str, type] = {
    "masked_columns": dict,
    "row_filters": list,
    "rewritten_sql": str,
    "statement_kind": str,
}
#: What a front end learns of a plan (banner, ``--explain``, ``to_dict``): ``Plan``'s own
#: fields but its statements, then :data:`PLAN_DERIVED`; the one list both sides use.
PLAN_FIELDS = (
    *(f.name for f in dataclasses.fields(Plan) if f.name != "statements"),
    *PLAN_DERIVED,
)


def plan_to_json(plan: Any) -> dict[str, Any]:
    """A plan's :data:`PLAN_FIELDS` as JSON (findings as ``[verdict, rule, reason]``)."""
    data = {name: getattr(plan, name) for name in PLAN_FIELDS}
    data["findings"] = [[f.verdict, f.rule, f.reason] for f in plan.findings]
    return {name: _plain(value) for name, value in data.items()}


def _plain(value: Any) -> Any:
    """Tuples and mappings as JSON has them (lists, dicts)."""
    if isinstance(value, Mapping):
        return dict(value)
    return list(value) if isinstance(value, tuple) else value


def identity_to_json(identity: Any) -> dict[str, Any]:
    """The caller as the banner shows it; no token, no attribute values."""
    return {
        "subject": identity.subject,
        "display_name": identity.display_name,
        "auth_method": identity.auth_method,
        "issuer": identity.issuer,
        "verified": identity.verified,
        "kind": identity.kind,
    }


def error_to_json(error: errors.GovError) -> dict[str, Any]:
    return {"class": type(error).__name__, "message": str(error)}


def error_from_json(data: Mapping[str, Any]) -> errors.GovError:
    """The same GovError class the gateway raised (an allow-list: errors.py's classes)."""
    cls = getattr(errors, str(data.get("class", "")), None)
    message = str(data.get("message") or "The gateway refused the request.")
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.GovError)
        and cls not in (errors.QueryDenied, errors.ApprovalRequired, errors.PipelineNeedsApproval)
    ):
        try:
            return cls(message)
        except TypeError:  # a class with more constructor arguments: same class, same sentence
            error = cls.__new__(cls)
            Exception.__init__(error, message)
            return error
    return errors.GovError(message)


def wire_schema(schema: Any) -> Any:
    """``schema`` with dictionary-encoded types replaced by their value types.

    Why: a Flight stream written batch by batch with app metadata (``GeneratorStream``)
    sends no dictionary batches, so a dictionary column (a DuckDB ENUM) cannot cross as
    such; it crosses decoded, and the kernel casts it back to ``schema``, which the decision
    carries (:func:`schema_to_json`).
    """
    import pyarrow as pa

    def plain(kind: Any) -> Any:
        if pa.types.is_dictionary(kind):
            return plain(kind.value_type)
        if pa.types.is_large_list(kind):
            return pa.large_list(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_list(kind):
            return pa.list_(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(kind.value_field.with_type(plain(kind.value_type)), kind.list_size)
        if pa.types.is_struct(kind):
            return pa.struct([f.with_type(plain(f.type)) for f in kind])
        return kind

    return pa.schema([f.with_type(plain(f.type)) for f in schema], metadata=schema.metadata)


def schema_to_json(schema: Any) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_json(text: str) -> Any:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
