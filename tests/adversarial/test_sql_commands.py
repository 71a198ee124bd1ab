"""Commands sqlglot reads as something else are denied, and the sentence names the command."""

from __future__ import annotations

import pytest

from jupyter_gov.analysis import describe, parse, statement_kind
from jupyter_gov.guardrails import Context, check_statement
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy


def spark_rules(sql: str) -> list[tuple[str, str]]:
    data = Policy.load().data
    policy = Policy({**data, "connections": {"db": {"url": "sc://localhost:15002"}}})
    identity = Identity(subject="ana", display_name="Ana", auth_method="local", groups=("admins",))
    ctx = Context(policy, identity, policy.roles_for(identity), policy.connection("db"), "spark")
    (tree,) = parse(sql, "spark")
    findings = check_statement(describe(tree, "spark", {"t": object()}), ctx)
    return [(f.rule, f.reason) for f in findings]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT OVERWRITE LOCAL DIRECTORY '/tmp/out' SELECT * FROM t",
        "INSERT OVERWRITE DIRECTORY '/tmp/out' SELECT * FROM t",
    ],
)
def test_spark_insert_overwrite_directory_is_denied(sql) -> None:
    assert "file-write" in [rule for rule, _ in spark_rules(sql)]


@pytest.mark.parametrize(("sql", "word"), [("LIST JAR", "LIST"), ("CLEAR CACHE", "CLEAR")])
def test_spark_command_denial_names_the_command(sql, word) -> None:
    ((rule, reason),) = spark_rules(sql)
    assert rule == "statement-type"
    assert reason.startswith(f"{word} statements are not allowed")
    assert "ALIAS" not in reason


def test_bare_word_root_never_names_a_literal() -> None:
    (tree,) = parse("'Hana Nguyen' x", "duckdb")
    assert statement_kind(tree) == "unrecognised"
