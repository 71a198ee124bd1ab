"""People, not only services, through the pgwire door: an OIDC token as the password.

The token is validated by the gateway against the policy's issuer (signature, issuer,
audience, expiry), as the msal provider validates a kernel's sign-in; the real TLS OIDC
provider of the identity tests issues them.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.gateway.pgwire import PgWireServer
from tests.identity.test_identity_oidc import id_token, server_marks
from tests.pgwire.conftest import AUDIENCE, TOKENS, PgWire, gateway_policy, in_process

pytestmark = server_marks

UPDATE = "UPDATE orders SET status = 'shipped' WHERE order_id = 9"


@pytest.fixture(scope="module")
def oidc_pgwire(oidc_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("pgwire-oidc")
    authority = oidc_server.authority("tenant1")
    policy = gateway_policy(home / "policy.yaml", authority=authority, ca=oidc_server.ca_file)
    store = f"sqlite:///{home / 'audit.sqlite'}"
    with in_process(PgWireServer(policy, audit=store)) as server:
        yield PgWire(None, "127.0.0.1", server.port, store)  # type: ignore[arg-type]


def test_an_oidc_users_token_signs_her_in_with_her_groups_roles(oidc_pgwire, oidc_server):
    token = id_token(oidc_server, "alice", client=AUDIENCE)
    with psycopg.connect(oidc_pgwire.dsn(token, user="bob"), autocommit=True) as conn:
        email = conn.execute("SELECT email FROM customers WHERE customer_id = 1").fetchone()[0]
    assert email.startswith("***@")  # alice is in analysts: masked
    event = AuditStore(oidc_pgwire.store).events(kinds=["result"], limit=1)[0]
    assert (event["subject"], event["auth_method"]) == ("alice", "msal")
    assert event["issuer"] == oidc_server.base and event["verified"]


def test_a_token_for_another_application_is_refused(oidc_pgwire, oidc_server):
    token = id_token(oidc_server, "alice", client="some-other-app")
    with pytest.raises(psycopg.OperationalError, match="meant for another application"):
        psycopg.connect(oidc_pgwire.dsn(token))


def test_a_token_from_another_issuer_is_refused(oidc_pgwire, oidc_server):
    token = id_token(oidc_server, "alice", tenant="tenant2", client=AUDIENCE)
    with pytest.raises(psycopg.OperationalError, match="The sign-in token was rejected"):
        psycopg.connect(oidc_pgwire.dsn(token))


def test_a_person_files_a_request_with_a_justification_and_runs_it_once_approved(
    oidc_pgwire, oidc_server
):
    token = id_token(oidc_server, "bob", client=AUDIENCE)  # bob is an admin
    with psycopg.connect(oidc_pgwire.dsn(token), autocommit=True) as bob:
        bob.execute("SET jupyter_gov.justification = 'order 9 left the warehouse'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="was filed") as needed:
            bob.execute(UPDATE)
        request_id = re.search(r"Approval request (\w+) was filed", str(needed.value)).group(1)
        with psycopg.connect(oidc_pgwire.dsn(TOKENS["ops"]), autocommit=True) as ops:
            ops.execute(f"SELECT jupyter_gov_approve('{request_id}', 'checked')")
        bob.execute(f"SET jupyter_gov.approval_id = '{request_id}'")
        assert bob.execute(UPDATE).statusmessage == "UPDATE 1"
    used = AuditStore(oidc_pgwire.store).events(kinds=["approval_used"], limit=1)[0]
    assert used["subject"] == "bob"


def test_rollback_after_a_write_says_the_write_was_committed(oidc_pgwire, oidc_server):
    token = id_token(oidc_server, "bob", client=AUDIENCE)
    update = "UPDATE orders SET status = 'shipped' WHERE order_id = 11"
    with psycopg.connect(oidc_pgwire.dsn(token), autocommit=True) as bob:
        bob.execute("SET jupyter_gov.justification = 'order 11 left the warehouse'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as needed:
            bob.execute(update)
    request_id = re.search(r"Approval request (\w+) was filed", str(needed.value)).group(1)
    with psycopg.connect(oidc_pgwire.dsn(TOKENS["ops"]), autocommit=True) as ops:
        ops.execute(f"SELECT jupyter_gov_approve('{request_id}', 'checked')")
    with psycopg.connect(oidc_pgwire.dsn(token)) as bob:  # psycopg opens a transaction
        bob.execute(f"SET jupyter_gov.approval_id = '{request_id}'")
        assert bob.execute(update).statusmessage == "UPDATE 1"
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="not rolled back"):
            bob.rollback()
