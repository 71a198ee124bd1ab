"""Golden rewrite fixtures: every mask and a row filter, rewritten for every dialect.

One file per dialect in ``tests/fixtures/rewrite/<profile>.sql``, in the style of
sqlglot's ``tests/fixtures/optimizer/*.sql``: an input line, the expected line, a blank
line; ``#`` lines are comments (``# title: ...`` names the case). The expected line is the
governed statement exactly as the profile renders it, placeholders in its paramstyle, or
``DENIED <rule>`` when the plan is denied. Each expected statement must also parse back
in its dialect.

Regenerate after a deliberate change to masking, a profile or the planner, and review
the diff like code::

    python -m tests.test_rewrite_fixtures --update
    # or: JUPYTER_GOV_UPDATE_FIXTURES=1 pytest tests/test_rewrite_fixtures.py
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from jupyter_gov.connectors import registry
from jupyter_gov.connectors.base import Catalog
from jupyter_gov.connectors.profile import Profile, RenderedSQL
from jupyter_gov.guardrails import Context
from jupyter_gov.identity import Identity
from jupyter_gov.plan import build_plan
from jupyter_gov.policy import Policy

FIXTURES = Path(__file__).parent / "fixtures" / "rewrite"

POLICY = """
version: 1
name: rewrite-fixtures
identity:
  provider: local
  default_groups: [analysts]
roles:
  analyst: {groups: [analysts], access: read_only}
connections:
  db: {url: "duckdb:memory", default: true}
classifications:
  hash: ["hashed_text.v", "hashed_int.v"]
  token: ["tokens.v"]
  partial: ["partials.v"]
  partial_last: ["cards.v"]
  email: ["emails.v"]
  year: ["births.v", "events.v"]
  redact: ["addresses.v", "salaries.v"]
  nulled: ["scores.v"]
  scrub: ["tickets.v"]
  deny: ["secrets.v"]
masks:
  hash: {default: hash}
  token: {default: {function: token, value: person}}
  partial: {default: {function: partial, keep_first: 2, keep_last: 2}}
  partial_last: {default: {function: partial, keep_last: 4}}
  email: {default: email}
  year: {default: year}
  redact: {default: redact}
  nulled: {default: "null"}
  scrub: {default: scrub}
  deny: {default: deny}
unclassified: allow
# The fixtures pin how each mask renders in the table scan; late masking (the default,
# which moves a projected mask above the scan) is pinned by tests/adversarial/test_late_masking.py
# and run on every live engine by tests/connectors.
masking: {late: false}
row_filters:
  - id: orders-by-region
    table: orders
    roles: [analyst]
    where: "region = {{ user.region }}"
"""

TABLES: dict[str, dict[str, str]] = {
    "hashed_text": {"id": "INT", "v": "VARCHAR"},
    "hashed_int": {"id": "INT", "v": "INT"},
    "tokens": {"id": "INT", "v": "VARCHAR"},
    "partials": {"id": "INT", "v": "VARCHAR"},
    "cards": {"id": "INT", "v": "VARCHAR"},
    "emails": {"id": "INT", "v": "VARCHAR"},
    "births": {"id": "INT", "v": "DATE"},
    "events": {"id": "INT", "v": "TIMESTAMP"},
    "addresses": {"id": "INT", "v": "VARCHAR"},
    "salaries": {"id": "INT", "v": "INT"},
    "scores": {"id": "INT", "v": "DOUBLE"},
    "tickets": {"id": "INT", "v": "VARCHAR"},
    "secrets": {"id": "INT", "v": "VARCHAR"},
    "orders": {"id": "INT", "region": "VARCHAR", "amount": "DECIMAL(10, 2)"},
}

#: (title, input) in file order; every dialect's file holds exactly these.
CASES: tuple[tuple[str, str], ...] = (
    ("hash on text", "SELECT v FROM hashed_text"),
    ("hash on an integer (hashed as its text)", "SELECT v FROM hashed_int"),
    ("token with a prefix", "SELECT v FROM tokens"),
    ("partial, first 2 and last 2", "SELECT v FROM partials"),
    ("partial, last 4", "SELECT v FROM cards"),
    ("email keeps the domain", "SELECT v FROM emails"),
    ("year on a date", "SELECT v FROM births"),
    ("year on a timestamp", "SELECT v FROM events"),
    ("redact on text", "SELECT v FROM addresses"),
    ("redact on a number is NULL", "SELECT v FROM salaries"),
    ("null", "SELECT v FROM scores"),
    ("scrub replaces PII inside text", "SELECT v FROM tickets"),
    ("deny: a statement that does not read the column scans without it", "SELECT id FROM secrets"),
    ("deny: reading the column is denied", "SELECT v FROM secrets"),
    ("row filter with a bound identity attribute", "SELECT id, amount FROM orders"),
    (
        "row filter and mask in one join",
        "SELECT o.id, h.v FROM orders AS o JOIN hashed_int AS h ON o.id = h.id",
    ),
)


def _profiles() -> list[Profile]:
    return [registry.profiles()[name] for name in registry.BUILTIN]


def rewrite(profile: Profile, text: str) -> str:
    """The governed statement as ``profile`` would send it, or ``DENIED <rules>``."""
    rendered = rendered_rewrite(profile, text)
    return rendered if isinstance(rendered, str) else rendered.sql


def rendered_rewrite(profile: Profile, text: str) -> RenderedSQL | str:
    policy = Policy.from_text(POLICY)
    schema = profile.default_schema or "app"
    rows = [(schema, t, c, d) for t, columns in TABLES.items() for c, d in columns.items()]
    catalog = Catalog.from_rows(rows, default_schema=schema, dialect="duckdb")
    identity = Identity(
        subject="ana",
        display_name="Ana",
        auth_method="local",
        groups=("analysts",),
        attributes={"region": "EMEA"},
    )
    ctx = Context(
        policy=policy,
        identity=identity,
        roles=policy.roles_for(identity),
        connection=policy.connection("db"),
        dialect=profile.dialect,
    )
    plan = build_plan(text, ctx, catalog, {})
    if plan.decision != "allow":
        return f"DENIED {' '.join(plan.rules)}"
    (statement,) = plan.statements
    tree = statement.rewritten
    assert tree is not None and tree.sql(dialect=profile.dialect) == statement.sql
    return profile.render(tree)


def read_fixture(path: Path) -> list[tuple[str, str, str]]:
    """``(title, input, expected)`` triples, sqlglot-fixture style."""
    cases = []
    for block in path.read_text().strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        title = next((ln[8:].strip() for ln in lines if ln.startswith("# title:")), "")
        sql = [ln for ln in lines if not ln.startswith("#")]
        if sql:  # a block of comments only is a header
            text, expected = sql
            cases.append((title, text, expected))
    return cases


def write_fixtures() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for profile in _profiles():
        parts = [
            f"# {profile.title} ({profile.dialect} dialect, {profile.paramstyle} parameters).\n"
            "# Generated by `python -m tests.test_rewrite_fixtures --update`; review diffs."
        ]
        for title, text in CASES:
            parts.append(f"# title: {title}\n{text}\n{rewrite(profile, text)}")
        (FIXTURES / f"{profile.name}.sql").write_text("\n\n".join(parts) + "\n")


def _params() -> list:  # type: ignore[type-arg]
    out = []
    for name in registry.BUILTIN:
        path = FIXTURES / f"{name}.sql"
        for title, text, expected in read_fixture(path) if path.exists() else []:
            out.append(pytest.param(name, text, expected, id=f"{name}: {title}"))
    return out


if os.environ.get("JUPYTER_GOV_UPDATE_FIXTURES"):
    write_fixtures()


def test_every_dialect_has_a_fixture_file_with_every_case() -> None:
    for name in registry.BUILTIN:
        cases = read_fixture(FIXTURES / f"{name}.sql")
        assert [(title, text) for title, text, _ in cases] == list(CASES), name


@pytest.mark.parametrize("name,text,expected", _params())
def test_rewrite_matches_the_golden_fixture(name: str, text: str, expected: str) -> None:
    assert rewrite(registry.profiles()[name], text) == expected


@pytest.mark.parametrize(
    "name,text,expected", [p for p in _params() if not p.values[2].startswith("DENIED")]
)
def test_golden_rewrite_parses_back_in_its_dialect(name: str, text: str, expected: str) -> None:
    profile = registry.profiles()[name]
    dialect = profile.dialect
    parsed = sqlglot.parse_one(_dialect_placeholders(expected, profile), read=dialect)
    assert sqlglot.parse_one(parsed.sql(dialect=dialect), read=dialect) == parsed
    parameters = list(parsed.find_all(exp.Placeholder, exp.Parameter))
    assert bool(parameters) == ("hash" in text or "tokens" in text or "orders" in text)


def _dialect_placeholders(sql: str, profile: Profile) -> str:
    """Driver markers (``%(name)s``) back to the placeholders sqlglot reads in the dialect."""
    if profile.paramstyle != "pyformat":
        return sql
    spell = lambda match: exp.Placeholder(this=match.group(1)).sql(dialect=profile.dialect)  # noqa: E731
    return re.sub(r"%\((\w+)\)s", spell, sql).replace("%%", "%")


# -- the golden SQL runs, and returns the same rows, on every live engine ------------------

KEY = "0f" * 32
ROWS: dict[str, list[tuple[object, ...]]] = {
    "hashed_text": [(1, "alice@example.com")],
    "hashed_int": [(1, 42)],
    "tokens": [(1, "Ada Lovelace")],
    "partials": [(1, "555-123-4567")],
    "cards": [(1, "4111111111111111")],
    "emails": [(1, "bob@corp.io")],
    "births": [(1, "1990-06-15")],
    "events": [(1, "2024-05-17 13:45:10")],
    "addresses": [(1, "1 Main St")],
    "salaries": [(1, 5000)],
    "scores": [(1, 1.5)],
    "tickets": [(1, "write to x@y.com or call 555-123-4567")],
    "secrets": [(1, "hunter2")],
    "orders": [(1, "EMEA", "10.50"), (2, "APAC", "20.00")],
}
LIVE = ("duckdb", "sqlite", "postgres", "mysql")


def _ddl(dialect: str, schema: str | None) -> list[str]:
    out = []
    for table, columns in TABLES.items():
        name = exp.table_(table, db=schema, quoted=True)
        defs = [
            exp.ColumnDef(
                this=exp.to_identifier(c, quoted=True),
                kind=exp.DataType.build("VARCHAR(200)" if t == "VARCHAR" else t),
            )
            for c, t in columns.items()
        ]
        create = exp.Create(this=exp.Schema(this=name, expressions=defs), kind="TABLE")
        values = exp.values([tuple(exp.convert(v) for v in row) for row in ROWS[table]])
        insert = exp.insert(values, name)
        out += [create.sql(dialect=dialect), insert.sql(dialect=dialect)]
    return out


def _normal(value: object) -> object:
    from decimal import Decimal

    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return f"{float(value):g}"
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+[.][0-9]+", value):
        return f"{float(value):g}"  # ADBC hands PostgreSQL NUMERIC over as text
    return None if value is None else str(value)


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Callable[[str, tuple[str, ...]], list[tuple[object, ...]]]]]:
    """A runner per live engine, on the fixture tables in a schema of its own."""
    import sqlite3
    import uuid

    import duckdb

    params = {"g_k1": KEY, "g_user_region": "EMEA"}

    def bound(names: tuple[str, ...]) -> dict[str, str]:
        return {name: params[name] for name in names}

    runners: dict[str, Callable[[str, tuple[str, ...]], list[tuple[object, ...]]]] = {}
    closers: list[Callable[[], None]] = []

    ddb = duckdb.connect()
    for sql in _ddl("duckdb", "main"):
        ddb.execute(sql)
    runners["duckdb"] = lambda sql, names: ddb.execute(
        sql, {n: params[n] for n in names}
    ).fetchall()
    closers.append(ddb.close)

    lite = sqlite3.connect(":memory:")
    for name, (arguments, function) in registry.profiles()["sqlite"].udfs.items():
        lite.create_function(name, arguments, function, deterministic=True)
    for sql in _ddl("sqlite", "main"):
        lite.execute(sql)
    runners["sqlite"] = lambda sql, names: lite.execute(
        sql, {n: params[n] for n in names}
    ).fetchall()
    closers.append(lite.close)

    schema = f"gov_fx_{uuid.uuid4().hex[:8]}"
    try:
        import adbc_driver_postgresql.dbapi as pg

        pgc = pg.connect("postgresql://postgres@127.0.0.1:5432/test")
        cur = pgc.cursor()
        cur.execute(f'CREATE SCHEMA "{schema}"')
        for sql in _ddl("postgres", schema):
            cur.execute(sql)

        def run_pg(sql: str, names: tuple[str, ...]) -> list[tuple[object, ...]]:
            sql = sql.replace('"public".', f'"{schema}".')
            cur.execute(sql, [params[n] for n in names] or None)
            return cur.fetchall()

        runners["postgres"] = run_pg
        closers.append(pgc.close)
        closers.append(pgc.rollback)  # closers run in reverse: the schema never persists
    except Exception:
        pass

    try:
        import pymysql

        my = pymysql.connect(host="127.0.0.1", user="root", charset="utf8mb4", autocommit=True)
        mcur = my.cursor()
        mcur.execute(f"CREATE DATABASE `{schema}`")
        closers.append(my.close)
        closers.append(lambda: mcur.execute(f"DROP DATABASE `{schema}`"))
        for sql in _ddl("mysql", schema):
            mcur.execute(sql)

        def run_my(sql: str, names: tuple[str, ...]) -> list[tuple[object, ...]]:
            mcur.execute(sql.replace("`app`.", f"`{schema}`."), bound(names))
            return list(mcur.fetchall())

        runners["mysql"] = run_my
    except Exception:
        pass

    yield runners
    for close in reversed(closers):
        close()


def _live_params() -> list:  # type: ignore[type-arg]
    return [
        pytest.param(name, text, id=f"{name}: {title}")
        for name in LIVE
        for title, text in CASES
        if not title.startswith("deny: reading")
    ]


@pytest.mark.parametrize("name,text", _live_params())
def test_golden_rewrite_returns_duckdbs_rows_on_every_live_engine(
    name: str,
    text: str,
    engines: dict[str, Callable[[str, tuple[str, ...]], list[tuple[object, ...]]]],
) -> None:
    if name not in engines:
        from tests.conftest import require_server

        require_server(f"{name} server on 127.0.0.1 for the live rewrite fixtures")
    rendered = rendered_rewrite(registry.profiles()[name], text)
    reference = rendered_rewrite(registry.profiles()["duckdb"], text)
    assert not isinstance(rendered, str) and not isinstance(reference, str)
    rows = [tuple(map(_normal, row)) for row in engines[name](rendered.sql, rendered.names)]
    expected = [
        tuple(map(_normal, row)) for row in engines["duckdb"](reference.sql, reference.names)
    ]
    assert sorted(rows, key=repr) == sorted(expected, key=repr)
    assert rows, "every fixture table holds a row the caller may see"


if __name__ == "__main__":
    if "--update" not in sys.argv[1:]:
        sys.exit("usage: python -m tests.test_rewrite_fixtures --update")
    write_fixtures()
    print(f"wrote {len(registry.BUILTIN)} fixture files to {FIXTURES}")
