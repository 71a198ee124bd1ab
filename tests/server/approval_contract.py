"""The approvals contract the front ends are written against, for tests run before it lands.

The approvals work adds ``statement_text``, ``params``, ``dry_run_rows`` and ``row_limit``
to :class:`ApprovalRequest` and ``to_dict(approver=False)``, which leaves the exact statement
and its parameters out unless ``approver=True``. Until that branch is merged, :func:`install`
patches exactly that onto the class, in the test process (and, through ``sitecustomize``,
in the browser tests' lab and kernels). Once the real contract exists it does nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jupyter_gov.approvals import ApprovalRequest

FIELDS = ("statement_text", "params", "dry_run_rows", "row_limit")
APPROVER_ONLY = ("statement_text", "params")


def has_contract() -> bool:
    return "approver" in inspect.signature(ApprovalRequest.to_dict).parameters


def install(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Give ``ApprovalRequest`` the contract's fields and ``to_dict(approver=)``, if missing.

    ``patch`` is ``setattr`` or a test's ``monkeypatch.setattr`` (undone after the test).
    """
    if has_contract():
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
