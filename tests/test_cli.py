"""The jupyter-gov command line: its JSON contract and exit codes."""

from __future__ import annotations

import json

import pytest

from jupyter_gov.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_query_json_contract(capsys):
    status, out, _ = run(
        capsys,
        "query",
        "--user",
        "bob",
        "--format",
        "json",
        "SELECT email, city FROM customers ORDER BY customer_id LIMIT 2",
    )
    payload = json.loads(out)
    assert status == 0
    assert payload["decision"] == "allow"
    assert payload["masked_columns"] == {"email": "email"}
    assert payload["columns"] == ["email", "city"]
    assert len(payload["rows"]) == 2 and payload["rows"][0][0].startswith("***@")
    assert isinstance(payload["audit_id"], int)
    assert {"rules", "reasons"} <= payload.keys()


def test_denied_query_exits_3_with_reasons(capsys):
    status, out, _ = run(capsys, "query", "--user", "bob", "--format", "json", "DROP TABLE orders")
    assert status == 3
    payload = json.loads(out)
    assert payload["decision"] == "deny" and payload["rules"] == ["deny-drop"]


def test_approval_required_exits_4(capsys):
    status, out, _ = run(
        capsys,
        "query",
        "--user",
        "alice",
        "--format",
        "json",
        "DELETE FROM orders WHERE order_id = 1",
    )
    assert status == 4
    assert json.loads(out)["decision"] == "approval_required"


def test_explain_runs_nothing_and_shows_the_rewrite(capsys):
    status, out, _ = run(capsys, "explain", "--user", "carol", "SELECT * FROM orders")
    assert status == 0 and "$g_user_region" in out
    status, out, _ = run(capsys, "audit", "tail", "--format", "json")
    assert json.loads(out) == []


def test_policy_check_reports_line_numbers(capsys, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "version: 1\nname: p\nroles:\n  r: {access: write_everything}\n"
        "connections: {d: {url: 'duckdb:demo'}}\n"
    )
    status, _, err = run(capsys, "policy", "check", str(bad))
    assert status == 2
    assert "p.yaml:4:" in err and "write_everything" in err


def test_policy_check_accepts_the_demo_policy(capsys, tmp_path):
    status, out, _ = run(capsys, "policy", "show")
    assert status == 0
    path = tmp_path / "demo.yaml"
    path.write_text(out)
    assert run(capsys, "policy", "check", str(path))[0] == 0


def test_audit_verify_and_tail(capsys):
    run(capsys, "query", "--user", "bob", "SELECT 1")
    status, out, _ = run(capsys, "audit", "verify", "--format", "json")
    assert status == 0 and json.loads(out)["ok"] is True
    status, out, _ = run(capsys, "audit", "tail", "-n", "2", "--format", "json")
    assert [e["kind"] for e in json.loads(out)] == ["result", "decision"]


def test_impersonation_needs_the_local_provider(capsys, tmp_path):
    policy = tmp_path / "hub.yaml"
    policy.write_text(
        "version: 1\nname: hub\nidentity: {provider: jupyterhub}\n"
        "roles: {r: {groups: [g]}}\nconnections: {d: {url: 'duckdb:demo'}}\n"
    )
    status, _, err = run(capsys, "query", "--policy", str(policy), "--user", "alice", "SELECT 1")
    assert status == 6 and "only allowed with the local identity provider" in err


@pytest.mark.parametrize("argv", [["query"], ["frobnicate"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_tables_lists_each_column_with_the_callers_mask(capsys):
    status, out, _ = run(capsys, "tables", "--user", "bob", "--format", "json")
    rows = {(r["table"], r["column"]): r for r in json.loads(out)}
    assert status == 0
    assert rows[("customers", "ssn")]["mask"] == "partial (last 4 kept)"
    assert rows[("customers", "ssn")]["tags"] == ["ssn"]
    assert rows[("orders", "amount")]["mask"] == "none"


def test_approvals_round_trip_on_the_command_line(capsys):
    from jupyter_gov.engine import GovernedSession

    alice = GovernedSession(None, "alice")
    request = alice.request_approval(
        "DELETE FROM orders WHERE order_id = 3", justification="duplicate order"
    )
    status, out, _ = run(capsys, "approvals", "list", "--user", "dave", "--format", "json")
    assert status == 0 and [r["id"] for r in json.loads(out)] == [request.id]
    status, _, err = run(capsys, "approvals", "approve", request.id, "--user", "alice")
    assert status == 5 and "their own request" in err
    status, out, _ = run(
        capsys,
        "approvals",
        "approve",
        request.id,
        "--user",
        "dave",
        "--comment",
        "ok",
        "--format",
        "json",
    )
    assert status == 0 and json.loads(out)["state"] == "approved"
    status, _, err = run(
        capsys, "approvals", "deny", request.id, "--user", "dave", "--comment", "changed my mind"
    )
    assert status == 5 and "already approved" in err
