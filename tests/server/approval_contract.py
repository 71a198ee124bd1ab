"""The approvals contract the front ends are written against, for tests run before it lands.

The approvals work adds ``statement_text``, ``params``, ``dry_run_rows`` and ``row_limit``
to :class:`ApprovalRequest` and ``to_dict(approver=False)``, which leaves the exact statement
and its parameters out unless ``approver=True``. Until that branch is merged, :func:`install`
patches exactly that onto the class, in the test process (and, through ``sitecustomize``,
in the browser tests' lab and kernels). Once the real contract exists it does nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from jupyter_gov.approvals import ApprovalRequest, Binding

FIELDS = ("statement_text", "params", "dry_run_rows", "row_limit")
APPROVER_ONLY = ("statement_text", "params")


def has_contract() -> bool:
    """Whether the real contract is there (the shim adds no dataclass fields)."""
    return "statement_text" in ApprovalRequest.__dataclass_fields__ and (
        "approver" in inspect.signature(ApprovalRequest.to_dict).parameters
    )


def install(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Give ``ApprovalRequest`` the contract's fields and ``to_dict(approver=)``, if missing.

    ``patch`` is ``setattr`` or a test's ``monkeypatch.setattr`` (undone after the test).
    """
    if has_contract() or "approver" in inspect.signature(ApprovalRequest.to_dict).parameters:
        return
    to_dict = ApprovalRequest.to_dict
    from_dict = ApprovalRequest.from_dict.__func__  # type: ignore[attr-defined]

    def contract_to_dict(self: ApprovalRequest, approver: bool = False) -> dict[str, Any]:
        data = to_dict(self)
        for name in FIELDS:
            data[name] = getattr(self, name, None)
        if not approver:
            for name in APPROVER_ONLY:
                data.pop(name)
        return data

    def contract_from_dict(cls: type, data: Any) -> ApprovalRequest:
        request = from_dict(cls, data)
        for name in FIELDS:
            setattr(request, name, data.get(name))
        return request

    patch(ApprovalRequest, "to_dict", contract_to_dict)
    patch(ApprovalRequest, "from_dict", classmethod(contract_from_dict))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bound_values(
    data: dict[str, Any],
    *,
    statement_text: str,
    params: Any,
    dry_run_rows: int | None,
    row_limit: int | None,
) -> dict[str, Any]:
    """A stored request body carrying the contract's values, bound the way the store binds
    them (the store shows an approver the exact text only when it hashes to the binding)."""
    binding = dict(data["binding"])
    binding["statement_hash"] = _digest(statement_text.strip())
    binding["params_hash"] = _digest(json.dumps(params, sort_keys=True, default=str))
    out = {**data, "statement_text": statement_text, "params": params}
    out["dry_run_rows"] = dry_run_rows
    if "row_limit" in Binding.__dataclass_fields__:
        binding["row_limit"] = row_limit
    else:
        out["row_limit"] = row_limit
    out["binding"] = binding
    return out


def with_values(request: ApprovalRequest, **values: Any) -> ApprovalRequest:
    """``request`` with the contract's values (see :func:`bound_values`)."""
    data = bound_values(request.to_dict(approver=True), **values)
    return ApprovalRequest.from_dict(data)
