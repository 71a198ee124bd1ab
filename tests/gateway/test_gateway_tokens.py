"""Identity is what the token proves at the gateway: bad tokens stop before the engine."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from IPython.core.error import UsageError

from jupyter_gov.errors import IdentityError
from tests.gateway.conftest import Gateway, audit_events, id_token

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]


def _unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_valid_token_is_the_identity_and_roles_the_gateway_reports(gateway: Gateway) -> None:
    session = gateway.session("gw-alice")
    result = session.sql("SELECT customer_id, email FROM customers ORDER BY 1 LIMIT 3")
    assert result.identity.subject == "gw-alice" and result.identity.verified
    assert result.plan.roles == ("analyst",)
    assert result.masked_columns == {"email": "email"}
    assert all(v.startswith("***@") for v in result.arrow().column("email").to_pylist())


def _bad_tokens(gateway: Gateway) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    return {
        "expired": (gateway.token("gw-expired"), "has expired"),
        "wrong audience": (
            id_token(gateway.oidc, "gw-bob", client="another-app"),
            "meant for another application",
        ),
        "wrong issuer": (gateway.token("gw-forged-issuer"), "was issued by 'https://evil.example'"),
        "unsigned": (
            _unsigned({"sub": "gw-bob", "aud": "jupyter-gov-gateway", "exp": now + 600}),
            "algorithm 'none' is not accepted",
        ),
        "another tenant": (gateway.token("gw-mallory"), "tenant 'tenant-guid-evil'"),
        "not a token at all": ("hello", "does not accept JupyterHub tokens"),
    }


def test_bad_tokens_are_refused_with_one_sentence_and_nothing_is_audited(
    gateway: Gateway,
) -> None:
    before = len(audit_events(gateway.audit_path))
    for what, (token, sentence) in _bad_tokens(gateway).items():
        gateway.tokens[f"bad:{what}"] = token
        session = gateway.session(f"bad:{what}")
        with pytest.raises(IdentityError) as caught:
            session.sql("SELECT count(*) FROM customers")
        message = str(caught.value)
        assert sentence in message, (what, message)
        assert "\n" not in message and "gRPC" not in message and token not in message
    assert len(audit_events(gateway.audit_path)) == before  # no call reached the engine


def test_a_bad_token_is_one_line_in_the_notebook(gateway: Gateway, notebook: Any) -> None:
    shell = notebook("gw-expired")
    with pytest.raises(UsageError, match=r"^The sign-in token was rejected: it has expired\.$"):
        shell.run_cell_magic("gsql", "", "SELECT 1")


def test_there_is_no_user_impersonation_in_gateway_mode(notebook: Any) -> None:
    shell = notebook("gw-alice")
    with pytest.raises(UsageError, match="no --user in gateway mode"):
        shell.run_cell_magic("gsql", "--user gw-bob", "SELECT 1")


def test_the_cli_queries_through_the_gateway_with_the_token_from_the_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_gov.cli import main

    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_CA", gateway.ca_file)
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", gateway.token("gw-alice"))
    sql = "SELECT email FROM customers ORDER BY customer_id LIMIT 2"
    assert main(["query", "--gateway", gateway.address, "--format", "json", sql]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["masked_columns"] == {"email": "email"} and answer["roles"] == ["analyst"]
    assert all(row[0].startswith("***@") for row in answer["rows"])
    assert main(["query", "--gateway", gateway.address, "DROP TABLE customers"]) == 3
    assert main(["query", "--gateway", gateway.address, "--user", "gw-bob", sql]) == 2


def test_the_approvals_cli_decides_in_the_gateways_store(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_gov.cli import main

    sql = "UPDATE orders SET amount = amount WHERE order_id = 5"
    request = gateway.session("gw-bob").request_approval(sql, justification="ticket 13")
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY", gateway.address)
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_CA", gateway.ca_file)
    monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", gateway.token("gw-dave"))
    assert main(["approvals", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert request.id in [r["id"] for r in listed]
    assert main(["approvals", "show", request.id]) == 0
    assert sql in capsys.readouterr().out  # dave may decide: he sees what would run
    assert main(["approvals", "approve", request.id, "--comment", "ok"]) == 0
    assert f"request {request.id}: approved by Dave" in capsys.readouterr().out
    assert main(["approvals", "revoke", request.id]) == 2


def test_whoami_in_the_notebook_is_the_gateways_answer(
    notebook: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = notebook("gw-dave")
    shell.run_line_magic("gsql_whoami", "")
    line = capsys.readouterr().out.strip()
    assert line.startswith(
        "Dave [gw-dave] via msal (verified); roles: approver; policy gateway-test@"
    )
