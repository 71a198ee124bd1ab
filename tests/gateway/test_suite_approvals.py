"""The approvals flow, taken in the kernel and through the gateway, step by step alike.

One scenario of ``tests/test_approvals.py`` (ask, approve by another identity, run; refuse a
self-approval, a non-approver, an edited statement, other parameters, another row limit, a
second use, a denied request; just-in-time unmasking; a bulk export of raw PII under a row
limit) runs once with three kernel sessions sharing one approval store and once with three
gateway sessions of the same identities, whose store lives with the gateway. Every step's
outcome (decision, rules, reasons, error class and sentence, the request as an approver sees
it (without the statement's text and values, which the gateway shows deciders only),
the rows a run returns) must be the same on both paths, request ids aside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jupyter_gov.errors import GovError
from tests.adversarial.paths import Observed, assert_same, observe
from tests.gateway.conftest import Gateway, PathFactory, path_factory

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]

UPDATE = "UPDATE orders SET amount = amount WHERE order_id = :id"  # changes nothing
BY_STATUS = "UPDATE orders SET amount = amount WHERE status = 'placed'"
EMAILS = "SELECT customer_id, email FROM customers ORDER BY customer_id LIMIT 3"
BULK = "SELECT customer_id, ssn, credit_card FROM customers ORDER BY customer_id"
#: Fields of a request that differ between two stores by construction (ids, clocks).
VOLATILE = {"id", "created_at", "expires_at", "decided_at", "at", "approval_id", "request_id"}


@pytest.fixture(scope="module")
def approval_paths(
    gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PathFactory]:
    """Fresh identities, and a private demo database for the kernel side (writes run)."""
    from jupyter_gov.connectors.duckdb import DuckDBConnector

    connector = DuckDBConnector("demo", "duckdb:demo")
    try:
        with path_factory(gateway, connector, tmp_path_factory.mktemp("approvals")) as factory:
            yield factory
    finally:
        connector.close()


def _stable(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with clocks dropped and request ids replaced by their names in the flow."""
    if isinstance(value, dict):
        return {k: _stable(v, ids) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return type(value)(_stable(v, ids) for v in value)
    if isinstance(value, str):
        for real, name in ids.items():
            value = value.replace(real, name)
    return value


class Flow:
    """One path's run of the scenario: its sessions by demo user, and what each step gave."""

    def __init__(self, sessions: dict[str, Any]) -> None:
        self.sessions = sessions
        self.ids: dict[str, str] = {}
        self.steps: list[tuple[str, Any]] = []

    def sql(self, label: str, user: str, *args: Any, **kwargs: Any) -> None:
        session = self.sessions[user]
        seen = observe(lambda: session.sql(*args, **kwargs), ids=self.ids)
        if seen.plan is not None:
            seen.plan = _stable(seen.plan, self.ids)
        self.steps.append((label, seen))

    def act(self, label: str, call: Callable[[], Any], name: str | None = None) -> Any:
        """An approval call: the request it returns, or the refusal."""
        try:
            request = call()
        except GovError as error:
            self.steps.append((label, (type(error).__name__, _stable(str(error), self.ids))))
            return None
        if name is not None:
            self.ids[request.id] = name
        # As everyone sees it: the gateway hands the statement's text and values to deciders
        # only, where the kernel's requester holds the object it made (notes/suites.md).
        self.steps.append((label, _stable(request.to_dict(), self.ids)))
        return request


def scenario(flow: Flow) -> None:
    """The approvals suite's story, written once for both paths."""
    alice, bob, dave = (flow.sessions[u] for u in ("alice", "bob", "dave"))
    flow.sql("write needs approval", "alice", UPDATE, {"id": 7})
    r1 = flow.act(
        "ask",
        lambda: alice.request_approval(UPDATE, {"id": 7}, justification="fix rounding"),
        "r1",
    )
    assert r1 is not None, flow.steps[-1]
    flow.act("self-approval", lambda: alice.approve(r1.id, "mine"))
    flow.act("analyst approves", lambda: bob.approve(r1.id, "ok"))
    flow.steps.append(
        ("inbox", r1.id in {r.id for r in dave.approvals.actionable_by(dave.identity)})
    )
    flow.sql("run before approval", "alice", UPDATE, {"id": 7}, approval_id=r1.id)
    flow.act("approve", lambda: dave.approve(r1.id, "checked"))
    flow.act("requester sees it", lambda: alice.approvals.get(r1.id))
    flow.sql("other parameters", "alice", UPDATE, {"id": 8}, approval_id=r1.id)
    flow.sql(
        "edited statement",
        "alice",
        UPDATE.replace("= :id", "= :id + 0"),
        {"id": 7},
        approval_id=r1.id,
    )
    flow.sql("run", "alice", UPDATE, {"id": 7}, approval_id=r1.id)
    flow.sql("second use", "alice", UPDATE, {"id": 7}, approval_id=r1.id)

    r2 = flow.act(
        "ask by status", lambda: alice.request_approval(BY_STATUS, justification="x"), "r2"
    )
    assert r2 is not None, flow.steps[-1]
    flow.act("deny without a reason", lambda: dave.deny(r2.id, ""))
    flow.act("deny", lambda: dave.deny(r2.id, "not during month end"))
    flow.sql("run a denied request", "alice", BY_STATUS, approval_id=r2.id)

    flow.act("no justification", lambda: alice.request_approval(BY_STATUS, justification=" "))
    flow.act("needs none", lambda: alice.request_approval("SELECT 1", justification="x"))

    flow.sql("unmask needs approval", "bob", EMAILS, unmask=["email"])
    flow.sql("unmask not allowed", "bob", EMAILS, unmask=["ssn"])
    r3 = flow.act(
        "ask to unmask",
        lambda: bob.request_approval(EMAILS, unmask=["email"], justification="bounces"),
        "r3",
    )
    assert r3 is not None, flow.steps[-1]
    flow.act("approve unmask", lambda: dave.approve(r3.id, "ok"))
    flow.sql("unmasked run", "bob", EMAILS, unmask=["email"], approval_id=r3.id)
    flow.sql("masked again", "bob", EMAILS)

    flow.sql("bulk export needs approval", "alice", BULK, limit=600)
    r4 = flow.act(
        "ask for a bulk export",
        lambda: alice.request_approval(BULK, justification="audit sample", limit=600),
        "r4",
    )
    assert r4 is not None, flow.steps[-1]
    flow.act("approve bulk", lambda: dave.approve(r4.id, "ok"))
    flow.sql("another row limit", "alice", BULK, approval_id=r4.id)
    flow.sql("bulk run", "alice", BULK, approval_id=r4.id, limit=600)


def test_the_approvals_flow_goes_alike_in_the_kernel_and_through_the_gateway(
    approval_paths: PathFactory,
) -> None:
    users = ("alice", "bob", "dave")
    kernel = Flow({u: approval_paths(u).kernel for u in users})
    gateway = Flow({u: approval_paths(u).gateway for u in users})
    scenario(kernel)
    scenario(gateway)
    assert [label for label, _ in gateway.steps] == [label for label, _ in kernel.steps]
    for (label, in_kernel), (_, through_gateway) in zip(kernel.steps, gateway.steps):
        if isinstance(in_kernel, Observed):
            assert_same(in_kernel, through_gateway, ordered=True, sql=label)
        else:
            assert through_gateway == in_kernel, label
    outcomes = dict(gateway.steps)
    assert outcomes["inbox"] is True
    assert outcomes["run"].plan["decision"] == "allow"
    assert ("allow", "approved:r1") in {(v, r) for v, r, _ in outcomes["run"].plan["findings"]}
    assert outcomes["second use"].error[0] == "ApprovalRefused"
    assert outcomes["unmasked run"].table.column("email").to_pylist()[0].count("*") == 0
    assert outcomes["bulk run"].table.num_rows == 600
    assert outcomes["ask by status"]["dry_run_rows"] > 1
