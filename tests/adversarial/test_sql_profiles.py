"""Each engine's profile extends and walls the allow-list: its ``functions`` are allowed on
that engine only, its ``dangerous_functions`` are refused even when a policy's
``guardrails.allow_functions`` lists them, and its ``file_readers`` are file reads."""

from __future__ import annotations

import json

import pytest

from jupyter_gov.analysis import describe, parse
from jupyter_gov.guardrails import Context, check_statement
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy

URLS = {
    "duckdb": "duckdb:memory",
    "postgres": "postgresql://u@localhost/db",
    "mysql": "mysql://u@localhost/db",
    "sqlite": "sqlite:///tmp/x.db",
    "spark": "sc://localhost:15002",
}


def rules_for(engine: str, sql: str, allow: tuple[str, ...] = ()) -> list[str]:
    data = json.loads(json.dumps(Policy.load().data))
    data["connections"] = {"db": {"url": URLS[engine], "default": True}}
    data["guardrails"] = {"allow_functions": list(allow)}
    policy = Policy(data)
    identity = Identity(subject="ana", display_name="Ana", auth_method="local", groups=("admins",))
    ctx = Context(policy, identity, policy.roles_for(identity), policy.connection("db"), "")
    dialect = ctx.profile.dialect
    ctx = Context(policy, identity, ctx.roles, ctx.connection, dialect)
    (tree,) = parse(sql, dialect)
    return [f.rule for f in check_statement(describe(tree, dialect, {"t": object()}), ctx)]


@pytest.mark.parametrize(
    ("engine", "sql"),
    [
        ("duckdb", "SELECT getenv('HOME')"),
        ("duckdb", "SELECT current_setting('memory_limit')"),
        ("postgres", "SELECT pg_read_file('/etc/passwd')"),
        ("postgres", "SELECT pg_ls_dir('.')"),
        ("mysql", "SELECT load_file('/etc/passwd')"),
        ("sqlite", "SELECT load_extension('x')"),
        ("spark", "SELECT reflect('java.lang.System', 'getenv')"),
    ],
)
def test_dangerous_function_is_denied_even_when_the_policy_allows_it(engine, sql) -> None:
    name = sql.split("(")[0].split()[-1]
    rules = rules_for(engine, sql, allow=(name,))
    assert rules and set(rules) <= {"dangerous-function", "file-read"}


@pytest.mark.parametrize(
    ("engine", "sql"),
    [
        ("postgres", "SELECT justify_days(x) FROM t"),
        ("duckdb", "SELECT list_sum([1, 2])"),
    ],
)
def test_engine_function_is_allowed_on_its_own_engine(engine, sql) -> None:
    assert rules_for(engine, sql) == []


def test_engine_function_is_not_allowed_on_another_engine() -> None:
    assert rules_for("mysql", "SELECT justify_days(x) FROM t") == ["function-not-allowed"]


def test_file_reader_of_the_profile_is_a_file_read() -> None:
    assert "file-read" in rules_for("duckdb", "SELECT * FROM read_text('/etc/passwd')")
