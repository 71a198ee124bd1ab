"""Backend profiles and their registry: one profile per engine, found by URL scheme."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import EntryPoint

import pytest
from sqlglot import exp

from jupyter_gov import functions, masking
from jupyter_gov.connectors import registry
from jupyter_gov.connectors.base import Catalog
from jupyter_gov.connectors.duckdb import PROFILE as DUCKDB
from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.connectors.profile import MaskDialect, MaskUnsupported, Profile
from jupyter_gov.errors import ConnectionFailed, GovError
from jupyter_gov.masking import mask_expression
from jupyter_gov.policy import Connection, MaskSpec

# PostgreSQL, MySQL/MariaDB and SQLite have live connectors (tests/connectors/), and so has
# Spark SQL through Spark Connect (tests/spark/).
RENDERING_ONLY = {
    "snowflake://acct/db": "Snowflake",
    "bigquery://project/dataset": "BigQuery",
    "trino://h:8080/hive": "Trino",
    "databricks://token@host": "Databricks SQL",
    "redshift://u@h:5439/db": "Amazon Redshift",
}

#: A third-party profile, as a plug-in package would expose it.
PLUGIN = Profile(
    name="clickhouse",
    title="ClickHouse",
    schemes=("clickhouse",),
    dialect="clickhouse",
    paramstyle="pyformat",
    default_schema="default",
    catalog_query="SELECT 1",
)


class _NoSha(MaskDialect):
    def sha256_hex(self, text: exp.Expr) -> exp.Expr:
        raise MaskUnsupported("it has no SHA-256 function")


NO_SHA = replace(PLUGIN, name="nosha", title="NoShaDB", schemes=("nosha",), dialect="tsql",
                 masks=_NoSha())  # fmt: skip


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty registry that loads again, with the entry points a test provides."""
    monkeypatch.setattr(registry, "_by_name", {})
    monkeypatch.setattr(registry, "_by_scheme", {})
    monkeypatch.setattr(registry, "_loaded", False)
    yield


def _plugins(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    points = [EntryPoint(f"p{i}", v, registry.ENTRY_POINT_GROUP) for i, v in enumerate(values)]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)


def test_duckdb_url_opens_through_its_profile() -> None:
    connector = registry.open_connector(Connection("scratch", "duckdb:memory"))
    try:
        assert isinstance(connector, DuckDBConnector)
        assert registry.profile_for_url("duckdb:memory") is DUCKDB
    finally:
        connector.close()


@pytest.mark.parametrize("url,title", sorted(RENDERING_ONLY.items()))
def test_rendering_only_backend_says_in_one_sentence_its_connector_is_not_installed(
    url: str, title: str
) -> None:
    with pytest.raises(ConnectionFailed) as raised:
        registry.open_connector(Connection("warehouse", url))
    message = str(raised.value)
    assert f"the {title} connector is not installed yet" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_misspelt_scheme_suggests_the_closest_known_one() -> None:
    with pytest.raises(registry.UnknownBackend, match="did you mean 'postgres'"):
        registry.open_connector(Connection("pg", "postgress://u@h/db"))


def test_unknown_scheme_error_never_echoes_the_url_and_its_secret() -> None:
    for url in ("oracel://scott:s3cret@h/db", "scott:s3cret"):
        with pytest.raises(registry.UnknownBackend) as raised:
            registry.open_connector(Connection("ora", url))
        assert "s3cret" not in str(raised.value)


def test_driver_suffix_of_a_sqlalchemy_url_is_ignored() -> None:
    assert registry.profile_for_url("mysql+pymysql://u@h/db").name == "mysql"
    assert registry.profile_for_url("postgresql+psycopg://u@h/db").name == "postgres"


def test_every_builtin_profile_answers_each_of_its_schemes_and_its_dialect() -> None:
    found = registry.profiles()
    assert set(registry.BUILTIN) <= set(found)
    for profile in found.values():
        for scheme in profile.schemes:
            assert registry.profile_for_url(f"{scheme}://x") is profile
        assert registry.profile_for_dialect(profile.dialect) is profile


def test_dialect_no_profile_speaks_has_no_profile() -> None:
    assert registry.profile_for_dialect("tsql") is None


def test_plugin_profile_is_found_through_the_entry_point_group(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plugins(monkeypatch, "test_profiles:PLUGIN")
    assert registry.profile_for_url("clickhouse://h/db") is PLUGIN
    with pytest.raises(ConnectionFailed, match="ClickHouse connector is not installed yet"):
        registry.open_connector(Connection("ch", "clickhouse://h/db"))


def test_plugin_cannot_take_over_the_duckdb_scheme(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    impostor = replace(PLUGIN, name="evil", schemes=("duckdb",), lockdown={})
    monkeypatch.setattr("test_profiles.IMPOSTOR", impostor, raising=False)
    _plugins(monkeypatch, "test_profiles:IMPOSTOR")
    with pytest.warns(UserWarning, match="would take over duckdb"):
        assert registry.profile_for_url("duckdb:demo") is DUCKDB


def test_broken_plugin_is_ignored_with_a_warning_and_duckdb_still_opens(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plugins(monkeypatch, "no_such_module_anywhere:PROFILE", "test_profiles:RENDERING_ONLY")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert registry.profile_for_url("duckdb:demo") is DUCKDB
    assert len(caught) == 2 and all(
        "ignored the connector plug-in" in str(w.message) for w in caught
    )


def test_duckdb_profile_references_the_allow_lists_it_declares() -> None:
    assert DUCKDB.functions is functions.DIALECT_FUNCTIONS["duckdb"]
    assert {"read_csv", "read_parquet", "glob"} <= DUCKDB.file_readers  # guardrails read these


def test_duckdb_connection_has_every_lockdown_setting_its_profile_declares() -> None:
    connector = DuckDBConnector("scratch", "duckdb:memory")
    try:
        for setting, declared in DUCKDB.lockdown.items():
            actual = connector.con.execute(f"SELECT current_setting('{setting}')").fetchone()[0]
            assert actual == declared, setting
    finally:
        connector.close()


def test_catalog_types_are_read_in_the_engine_dialect() -> None:
    rows = [("test", "t", "flag", "tinyint(1)"), ("test", "t", "body", "longtext")]
    catalog = Catalog.from_rows(rows, default_schema="test", dialect="mysql")
    columns = catalog.get("t").columns
    assert columns["body"].is_type(*exp.DataType.TEXT_TYPES)
    assert columns["flag"].this == exp.DataType.Type.TINYINT


@pytest.mark.parametrize(
    "style,expected,names",
    [
        ("dollar", "$g_k1 || $g_k1 || $u_x", ("g_k1", "u_x")),
        ("dollar_numeric", "$1 || $2 || $3", ("g_k1", "g_k1", "u_x")),
        ("qmark", "? || ? || ?", ("g_k1", "g_k1", "u_x")),
        ("named", ":g_k1 || :g_k1 || :u_x", ("g_k1", "u_x")),
        ("pyformat", "%(g_k1)s || %(g_k1)s || %(u_x)s", ("g_k1", "u_x")),
    ],
)
def test_profile_renders_placeholders_in_its_paramstyle(
    style: str, expected: str, names: tuple[str, ...]
) -> None:
    profile = replace(DUCKDB, paramstyle=style)
    expression = exp.DPipe(
        this=exp.DPipe(this=exp.Placeholder(this="g_k1"), expression=exp.Placeholder(this="g_k1")),
        expression=exp.Placeholder(this="u_x"),
    )
    rendered = profile.render(exp.select(expression))
    assert rendered.sql == f"SELECT {expected}"
    assert rendered.names == names


def test_pyformat_rendering_doubles_literal_percent_signs() -> None:
    profile = registry.profiles()["mysql"]
    tree = exp.select(exp.Literal.string("50%")).where(
        exp.EQ(this=exp.column("a"), expression=exp.Placeholder(this="g_user_region"))
    )
    assert profile.render(tree).sql == "SELECT '50%%' WHERE a = %(g_user_region)s"


def test_mask_in_a_dialect_no_profile_speaks_names_the_mask_and_the_dialect() -> None:
    with pytest.raises(MaskUnsupported, match="The hash mask cannot be rendered in the 'tsql'"):
        mask_expression(MaskSpec("hash"), exp.column("c"), exp.DataType.build("TEXT"), "t", "tsql")


def test_mask_an_engine_cannot_spell_names_the_mask_and_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.profiles()
    monkeypatch.setitem(registry._by_name, "nosha", NO_SHA)
    with pytest.raises(GovError) as raised:
        mask_expression(MaskSpec("token"), exp.column("c"), exp.DataType.build("TEXT"), "t", "tsql")
    assert str(raised.value).startswith("The token mask cannot be rendered for NoShaDB")
    partial = MaskSpec("partial", keep_last=4)
    assert mask_expression(partial, exp.column("c"), exp.DataType.build("TEXT"), "t", "tsql")


@pytest.fixture
def nosha_session(session_for, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Bob on the demo data, through a connection whose dialect only the NoShaDB profile speaks."""
    from importlib.resources import files

    from jupyter_gov.policy import Policy

    registry.profiles()
    monkeypatch.setitem(registry._by_name, "nosha", NO_SHA)
    text = (files("jupyter_gov.policy") / "demo.yaml").read_text()
    text = text.replace('url: "duckdb:demo"', 'url: "duckdb:demo"\n    dialect: tsql')
    return session_for("bob", Policy.from_text(text))


def test_reading_a_column_whose_mask_the_engine_cannot_render_is_denied_at_plan_time(
    nosha_session,  # type: ignore[no-untyped-def]
) -> None:
    plan = nosha_session.explain("SELECT full_name FROM customers")
    assert plan.decision == "deny"
    assert plan.rules == ["mask-unsupported"]
    assert plan.reasons[0].startswith("The token mask cannot be rendered for NoShaDB")


def test_unrenderable_mask_is_never_sent_even_as_sql(nosha_session) -> None:  # type: ignore[no-untyped-def]
    plan = nosha_session.explain("SELECT customer_id, email FROM customers")
    assert plan.decision == "allow"  # full_name is not read: it is projected as a typed NULL
    assert "SHA" not in plan.rewritten_sql.upper()


# -- the same masked value on every engine ------------------------------------------------

KEY = "5f1c0e7a9b3d2c4e6f8a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566"
TEXTS = (
    "alice@example.com",
    "José Müller-Ñúñez",
    "123-45-6789",
    "ab",
    "",
    "no at sign",
    "Call +1 (555) 123-4567 or mail bob.smith@corp.io; card 4111 1111 1111 1111, ssn 123-45-6789",
    "bob@corp.io\nssn:123-45-6789\tcard:4111-1111-1111-1111\rend",
    None,
)
CASES: dict[str, tuple[MaskSpec, str, tuple[object, ...]]] = {
    "hash text": (MaskSpec("hash"), "VARCHAR", TEXTS),
    "hash int": (MaskSpec("hash"), "INT", (42, -7, 0, None)),
    "token text": (MaskSpec("token", value="person"), "VARCHAR", TEXTS),
    "partial 2+2": (MaskSpec("partial", keep_first=2, keep_last=2), "VARCHAR", TEXTS),
    "partial last 4": (MaskSpec("partial", keep_last=4), "VARCHAR", TEXTS),
    "email": (MaskSpec("email"), "VARCHAR", TEXTS),
    "year date": (MaskSpec("year"), "DATE", ("2024-05-17", "1999-12-31", None)),
    "year timestamp": (MaskSpec("year"), "TIMESTAMP", ("2024-05-17 13:45:10", None)),
    "redact text": (MaskSpec("redact"), "VARCHAR", TEXTS),
    "redact int": (MaskSpec("redact"), "INT", (42, None)),
    "null int": (MaskSpec("null"), "INT", (42, None)),
    "deny text": (MaskSpec("deny"), "VARCHAR", ("secret", None)),
    "scrub": (MaskSpec("scrub"), "VARCHAR", TEXTS),
}


def _literal(value: object, type_name: str, dialect: str) -> exp.Expr:
    dtype = exp.DataType.build(type_name)
    if value is None:
        return exp.cast(exp.null(), dtype)
    literal = exp.convert(value)
    # SQLite has no date types: its dates are ISO text, which is what a typed cast would mangle.
    return literal if dialect == "sqlite" else exp.cast(literal, dtype)


def _masked_values(engine: str, run, case: str) -> list[str | None]:  # type: ignore[no-untyped-def]
    """One row, a column per value: ``SELECT mask(v1) AS v0, mask(v2) AS v1, ...``."""
    spec, type_name, values = CASES[case]
    profile = registry.profiles()[engine]
    dtype = exp.DataType.build(type_name)
    columns = [
        exp.alias_(
            mask_expression(spec, _literal(value, type_name, profile.dialect), dtype, "ssn",
                            profile.dialect),
            f"v{index}",
        )
        for index, value in enumerate(values)
    ]  # fmt: skip
    rendered = profile.render(exp.select(*columns))
    row = run(rendered.sql, [KEY for _ in rendered.names])
    return [None if value is None else str(value) for value in row]


def _duckdb_runner():  # type: ignore[no-untyped-def]
    import duckdb

    con = duckdb.connect()

    def run(sql: str, params: list[str]) -> object:
        return con.execute(sql, {"g_k1": KEY} if params else None).fetchone()

    return run


@pytest.fixture(scope="module")
def duckdb_values() -> dict[str, list[str | None]]:
    run = _duckdb_runner()
    return {case: _masked_values("duckdb", run, case) for case in CASES}


@pytest.fixture(scope="module")
def sqlite_run() -> Iterator:  # type: ignore[type-arg]
    import sqlite3

    con = sqlite3.connect(":memory:")
    for name, (arguments, function) in registry.profiles()["sqlite"].udfs.items():
        con.create_function(name, arguments, function, deterministic=True)
    yield lambda sql, params: con.execute(sql, {"g_k1": KEY} if params else {}).fetchone()
    con.close()


@pytest.fixture(scope="module")
def postgres_run() -> Iterator:  # type: ignore[type-arg]
    from tests.conftest import require_server

    try:
        import adbc_driver_postgresql.dbapi as pg

        con = pg.connect("postgresql://postgres@127.0.0.1:5432/test")
    except Exception:
        require_server("PostgreSQL at 127.0.0.1:5432 (user postgres, db test)")
    cursor = con.cursor()

    def run(sql: str, params: list[str]) -> object:
        cursor.execute(sql, params or None)
        return cursor.fetchone()

    yield run
    cursor.close()
    con.close()


@pytest.fixture(scope="module")
def mariadb_run() -> Iterator:  # type: ignore[type-arg]
    from tests.conftest import require_server

    try:
        import pymysql

        con = pymysql.connect(
            host="127.0.0.1", port=3306, user="root", database="test", charset="utf8mb4"
        )
    except Exception:
        require_server("MariaDB at 127.0.0.1:3306 (user root, db test)")
    cursor = con.cursor()

    def run(sql: str, params: list[str]) -> object:
        cursor.execute(sql, {"g_k1": KEY})  # pyformat: always a mapping, so %% is unescaped
        return cursor.fetchone()

    yield run
    cursor.close()
    con.close()


# Spark's masks are compared with these values on a live Spark Connect server in
# tests/spark/test_spark_masks.py (one server for the whole session).


@pytest.mark.parametrize("case", sorted(CASES))
def test_sqlite_masks_return_the_same_values_as_duckdb(
    case: str,
    sqlite_run,
    duckdb_values: dict[str, list[str | None]],  # type: ignore[no-untyped-def]
) -> None:
    assert _masked_values("sqlite", sqlite_run, case) == duckdb_values[case]


@pytest.mark.server
@pytest.mark.parametrize("case", sorted(CASES))
def test_postgres_masks_return_the_same_values_as_duckdb(
    case: str,
    postgres_run,
    duckdb_values: dict[str, list[str | None]],  # type: ignore[no-untyped-def]
) -> None:
    assert _masked_values("postgres", postgres_run, case) == duckdb_values[case]


@pytest.mark.server
@pytest.mark.parametrize("case", sorted(CASES))
def test_mariadb_masks_return_the_same_values_as_duckdb(
    case: str,
    mariadb_run,
    duckdb_values: dict[str, list[str | None]],  # type: ignore[no-untyped-def]
) -> None:
    assert _masked_values("mysql", mariadb_run, case) == duckdb_values[case]


def test_hash_is_a_keyed_sha256_in_lower_case_hex_on_duckdb(
    duckdb_values: dict[str, list[str | None]],
) -> None:
    import hashlib

    expected = hashlib.sha256((KEY + "alice@example.com").encode()).hexdigest()
    assert duckdb_values["hash text"][0] == expected


# -- the wrong SQL each dialect used to get ------------------------------------------------


def _render(mask: MaskSpec, dialect: str, type_name: str = "VARCHAR") -> str:
    masked = mask_expression(mask, exp.column("c"), exp.DataType.build(type_name), "t", dialect)
    return masked.sql(dialect=dialect)


def test_mysql_scrub_passes_no_flags_mysql_would_read_as_a_position() -> None:
    import sqlglot

    tree = sqlglot.parse_one(_render(MaskSpec("scrub"), "mysql"), read="mysql")
    calls = [f for f in tree.find_all(exp.Func) if f.sql("mysql").startswith("REGEXP_REPLACE")]
    assert calls and all(len(list(f.iter_expressions())) == 3 for f in calls)


def test_postgres_scrub_passes_the_global_flag_exactly_once() -> None:
    sql = _render(MaskSpec("scrub"), "postgres")
    assert "'gg'" not in sql and sql.count(", 'g')") == len(masking.DEFAULT_SCRUB)


def test_postgres_hash_digests_the_utf8_bytes_of_the_text() -> None:
    assert "ENCODE(SHA256(CONVERT_TO(" in _render(MaskSpec("hash"), "postgres")


@pytest.mark.parametrize(
    "mask,type_name",
    [
        (MaskSpec("hash"), "VARCHAR"),
        (MaskSpec("token"), "INT"),
        (MaskSpec("partial", keep_first=1, keep_last=2), "VARCHAR"),
        (MaskSpec("scrub"), "VARCHAR"),
        (MaskSpec("year"), "DATE"),
    ],
)
def test_sqlite_masks_call_no_function_sqlite_lacks(mask: MaskSpec, type_name: str) -> None:
    import re

    sql = _render(mask, "sqlite", type_name).upper()
    called = set(re.findall(r"\b([A-Z_0-9]+)\(", sql))
    assert not called & {"SHA2", "SHA256", "REGEXP_REPLACE", "REPEAT", "LEFT", "RIGHT", "TRUNC",
                         "DATE_TRUNC"}  # fmt: skip
