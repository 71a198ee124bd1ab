"""A user with no role sees nothing she cannot read: not even the list of columns."""

from __future__ import annotations

import json

from jupyter_gov.cli import main
from jupyter_gov.policy import Policy


def test_no_role_lists_no_columns_in_the_engine(session_for) -> None:
    assert session_for("eve").visible_columns() == []


def test_role_without_the_connection_lists_no_columns(session_for) -> None:
    data = json.loads(json.dumps(Policy.load().data))
    data["roles"]["analyst"]["connections"] = ["elsewhere"]
    data["connections"]["elsewhere"] = {"url": "duckdb:memory"}
    assert session_for("bob", Policy(data)).visible_columns("demo") == []


def test_analyst_still_lists_columns_with_their_masks(session_for) -> None:
    rows = session_for("bob").visible_columns()
    masks = {(r["table"], r["column"]): r["mask"] for r in rows}
    assert masks[("customers", "ssn")] != "none"


def test_no_role_lists_no_columns_in_the_cli(capsys) -> None:
    assert main(["tables", "--user", "eve", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_no_role_lists_no_columns_in_the_magic(shell, capsys) -> None:
    listing = shell.run_line_magic("gsql", "--user eve --tables")
    shown = repr(listing) + capsys.readouterr().out
    assert "ssn" not in shown and "customers" not in shown
