"""PostgreSQL, MariaDB and SQLite report the primary keys they enforce, and only those, so
late masking can move a mask grouped beside its table's key above the aggregate there too.

Each engine gets its own ``keys_<run>`` schema (a MariaDB database, a SQLite file) with:
``keys_people`` (key ``id``), ``keys_visits`` (key ``(day, person_id)``, declared in that
order), ``keys_loose`` (no key) and the view ``keys_people_view``. The demo policy masks
every ``phone`` and ``ssn`` with ``partial`` (keep the last 4), which is not injective: a
GROUP BY on it may move above the aggregate only beside its table's key (docs/security.md,
"Late masking"). Each grouped statement runs under both plans, ``masking: {late: false}``
and the default, and must give the same rows.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml
from sqlglot import exp

from jupyter_gov.connectors import registry
from jupyter_gov.connectors.base import Connector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from jupyter_gov.policy.model import Connection
from tests.conftest import require_server
from tests.connectors.conftest import DEMO_KEYS, MY_SERVER, PG_SERVER
from tests.connectors.loaded import RUN

pytestmark = pytest.mark.server

ENGINES = ("postgres", "mysql", "sqlite")
SCHEMA = f"keys_{RUN}"

#: The tables every engine holds, in portable SQL (integer keys: MariaDB cannot key TEXT).
TABLES = (
    "CREATE TABLE keys_people (id INTEGER PRIMARY KEY, phone VARCHAR(40), city VARCHAR(40))",
    "CREATE TABLE keys_visits (person_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "ssn VARCHAR(40), PRIMARY KEY (day, person_id))",
    "CREATE TABLE keys_loose (id INTEGER, phone VARCHAR(40))",
    "CREATE VIEW keys_people_view AS SELECT id, phone FROM keys_people",
)
#: Phones share their last four digits across people: scan masking and late masking group
#: them differently unless every group is one person.
PEOPLE = [(i, f"555-{i % 3:03d}-1234", ["Oslo", "Lima"][i % 2]) for i in range(1, 9)]
VISITS = [(person, day, f"{person:03d}-{day:02d}-6789") for person in range(1, 9)
          for day in range(1, person % 4 + 2)]  # fmt: skip
LOOSE = [(1, "555-000-1234"), (1, "555-111-1234"), (2, "555-222-1234")]

PEOPLE_BY_KEY = (
    "SELECT p.id, p.phone, count(*) AS n FROM keys_people p "
    "JOIN keys_visits v ON v.person_id = p.id GROUP BY p.id, p.phone"
)
VISITS_BY_COMPOSITE_KEY = (
    "SELECT v.person_id, v.day, v.ssn, count(*) AS n FROM keys_visits v "
    "JOIN keys_people p ON p.city <> '' GROUP BY v.person_id, v.day, v.ssn"
)
VISITS_BY_HALF_THE_KEY = (
    "SELECT v.person_id, v.ssn, count(*) AS n FROM keys_visits v GROUP BY v.person_id, v.ssn"
)
LOOSE_BY_ID = "SELECT l.id, l.phone, count(*) AS n FROM keys_loose l GROUP BY l.id, l.phone"


@dataclass
class Keyed:
    """One engine holding the ``keys_`` tables: its policy URL, connector and a raw runner."""

    name: str
    url: str
    connector: Connector
    run: Callable[[str], Any]  # runs DDL or DML as the server's administrator

    def reopen(self, connector_class: type | None = None) -> Connector:
        """A second connector on the same database (of ``connector_class`` if given)."""
        connection = Connection(name="demo", url=self.url)
        if connector_class is None:
            return registry.profiles()[self.name].open(connection)
        return connector_class(connection)

    def policy(self, late: bool = True) -> Policy:
        data = yaml.safe_load((files("jupyter_gov.policy") / "demo.yaml").read_text())
        data["connections"]["demo"]["url"] = self.url
        data["masking"] = {"late": late}
        return Policy(data)

    def session(self, late: bool = True) -> GovernedSession:
        session = GovernedSession(self.policy(late), "bob")
        session.use_connector("demo", self.connector)
        return session


def _insert_sql(table: str, width: int, style: str) -> str:
    marks = ", ".join(["?" if style == "qmark" else "%s"] * width)
    return f"INSERT INTO {table} VALUES ({marks})"


def _fill(execute: Callable[..., Any], executemany: Callable[..., Any], style: str) -> None:
    for statement in TABLES:
        execute(statement)
    executemany(_insert_sql("keys_people", 3, style), PEOPLE)
    executemany(_insert_sql("keys_visits", 3, style), VISITS)
    executemany(_insert_sql("keys_loose", 2, style), LOOSE)


@contextlib.contextmanager
def _postgres() -> Iterator[Keyed]:
    import psycopg

    admin = psycopg.connect(PG_SERVER, autocommit=True)
    try:
        admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        admin.execute(f"CREATE SCHEMA {SCHEMA}")
        admin.execute(f"SET search_path = {SCHEMA}")
        cursor = admin.cursor()
        _fill(cursor.execute, cursor.executemany, "format")
        url = f"{PG_SERVER}?options=-csearch_path%3D{SCHEMA}"
        connector = registry.profiles()["postgres"].open(Connection(name="demo", url=url))
        keyed = Keyed("postgres", url, connector, admin.execute)
        yield keyed
        keyed.connector.close()
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        admin.close()


@contextlib.contextmanager
def _mysql() -> Iterator[Keyed]:
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    cursor = admin.cursor()
    try:
        cursor.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")
        cursor.execute(f"CREATE DATABASE `{SCHEMA}` CHARACTER SET utf8mb4")
        cursor.execute(f"USE `{SCHEMA}`")
        _fill(cursor.execute, cursor.executemany, "format")
        url = f"{MY_SERVER}/{SCHEMA}"
        connector = registry.profiles()["mysql"].open(Connection(name="demo", url=url))
        keyed = Keyed("mysql", url, connector, cursor.execute)
        yield keyed
        keyed.connector.close()
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")
        admin.close()


@contextlib.contextmanager
def _sqlite(folder: Path) -> Iterator[Keyed]:
    path = folder / "keys.sqlite"
    admin = sqlite3.connect(path, isolation_level=None)
    _fill(admin.execute, admin.executemany, "qmark")
    url = f"sqlite:///{path}"
    connector = registry.profiles()["sqlite"].open(Connection(name="demo", url=url))
    keyed = Keyed("sqlite", url, connector, admin.execute)
    try:
        yield keyed
    finally:
        keyed.connector.close()
        admin.close()


def _require_server(name: str) -> None:
    """Skip (fail when ``CI=true``) if ``name``'s shared server does not answer."""
    try:
        if name == "postgres":
            import psycopg

            psycopg.connect(PG_SERVER, connect_timeout=5).close()
        elif name == "mysql":
            import pymysql

            pymysql.connect(host="127.0.0.1", user="root", connect_timeout=5).close()
    except Exception as error:
        require_server(f"{name} on 127.0.0.1 is not available ({type(error).__name__})")


@pytest.fixture(scope="module", params=ENGINES)
def keyed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Keyed]:
    """Each engine in turn, holding the ``keys_`` tables."""
    _require_server(request.param)
    if request.param == "sqlite":
        maker = _sqlite(tmp_path_factory.mktemp("keys"))
    else:
        maker = {"postgres": _postgres, "mysql": _mysql}[request.param]()
    with maker as found:
        yield found


def _keys(keyed: Keyed, table: str) -> tuple[tuple[str, ...], ...]:
    entry = keyed.connector.catalog(refresh=True).get(table)
    assert entry is not None, table
    return entry.keys


def _sorted_rows(session: GovernedSession, sql: str) -> list[tuple[Any, ...]]:
    return sorted(session.sql(sql).fetchall(), key=repr)


def _masked_outside(sql: str, dialect: str, column: str) -> bool:
    """Whether the outermost SELECT computes ``column``'s output (a mask over the raw value)
    rather than passing on a value already masked in the scan."""
    tree = sqlglot.parse_one(sql, read=dialect)
    assert isinstance(tree, exp.Select)
    for projection in tree.expressions:
        if projection.alias_or_name.lower() == column:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            return not isinstance(inner, exp.Column)
    raise AssertionError(f"no output {column!r} in {sql}")


# -- what the catalog reports ---------------------------------------------------------------


def test_the_catalog_lists_a_single_column_primary_key(keyed: Keyed) -> None:
    assert _keys(keyed, "keys_people") == (("id",),)


def test_the_catalog_lists_a_composite_key_in_its_declared_order(keyed: Keyed) -> None:
    assert _keys(keyed, "keys_visits") == (("day", "person_id"),)


def test_a_table_without_a_primary_key_lists_none(keyed: Keyed) -> None:
    assert _keys(keyed, "keys_loose") == ()


def test_a_view_lists_no_key(keyed: Keyed) -> None:
    assert _keys(keyed, "keys_people_view") == ()


def test_the_catalog_version_changes_when_only_a_key_changes(keyed: Keyed) -> None:
    """A plan cached for one version relied on the keys of that version."""
    keyed.run("CREATE TABLE keys_later (id INTEGER NOT NULL, phone VARCHAR(40))")
    try:
        before = keyed.connector.catalog(refresh=True).version
        keyed.run("DROP TABLE keys_later")
        keyed.run("CREATE TABLE keys_later (id INTEGER NOT NULL PRIMARY KEY, phone VARCHAR(40))")
        after = keyed.connector.catalog(refresh=True)
        assert after.get("keys_later").keys == (("id",),)  # type: ignore[union-attr]
        assert after.version != before
    finally:
        keyed.run("DROP TABLE keys_later")


def test_a_failure_to_read_keys_leaves_the_catalog_keyless_and_is_logged(
    keyed: Keyed, caplog: pytest.LogCaptureFixture
) -> None:
    """No key is the safe default (masks stay in the scan); the connection stays usable."""

    class Broken(type(keyed.connector)):  # type: ignore[misc]
        keys_query = "SELECT no_such_column FROM keys_no_such_table"

    connector = keyed.reopen(Broken)
    try:
        with caplog.at_level(logging.DEBUG, logger="jupyter_gov.connectors.dbapi"):
            catalog = connector.catalog()
        assert catalog.get("keys_people").columns  # type: ignore[union-attr]
        assert all(not entry.keys for entry in catalog.tables.values())
        assert any("Could not read the primary keys" in r.getMessage() for r in caplog.records)
        session = GovernedSession(keyed.policy(), "bob")
        session.use_connector("demo", connector)
        assert len(session.sql("SELECT id FROM keys_people").fetchall()) == len(PEOPLE)
    finally:
        connector.close()


# -- late masking on each engine --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "column"),
    [(PEOPLE_BY_KEY, "phone"), (VISITS_BY_COMPOSITE_KEY, "ssn")],
    ids=["single_key", "composite_key"],
)
def test_a_mask_grouped_beside_its_tables_key_moves_above_the_aggregate(
    keyed: Keyed, sql: str, column: str
) -> None:
    keyed.connector.catalog(refresh=True)
    scan = keyed.session(late=False).explain(sql).rewritten_sql
    late = keyed.session(late=True).explain(sql).rewritten_sql
    assert not _masked_outside(scan, keyed.connector.dialect, column)
    assert _masked_outside(late, keyed.connector.dialect, column)


@pytest.mark.parametrize(
    "sql", [PEOPLE_BY_KEY, VISITS_BY_COMPOSITE_KEY], ids=["single_key", "composite_key"]
)
def test_late_masking_beside_a_key_answers_as_scan_masking(keyed: Keyed, sql: str) -> None:
    keyed.connector.catalog(refresh=True)
    late = _sorted_rows(keyed.session(late=True), sql)
    assert late == _sorted_rows(keyed.session(late=False), sql)
    assert len(late) > 1


@pytest.mark.parametrize(
    "sql", [VISITS_BY_HALF_THE_KEY, LOOSE_BY_ID], ids=["half_the_key", "no_key"]
)
def test_a_mask_grouped_without_a_whole_key_stays_in_the_scan(keyed: Keyed, sql: str) -> None:
    keyed.connector.catalog(refresh=True)
    scan = keyed.session(late=False).explain(sql).rewritten_sql
    assert keyed.session(late=True).explain(sql).rewritten_sql == scan


# -- keys an engine declares but does not enforce for every row read: never used ------------------


def _only(name: str) -> pytest.MarkDecorator:
    """A test of one engine's rule: ``keyed`` is that engine alone."""
    return pytest.mark.parametrize("keyed", [name], indirect=True)


#: SQLite tables whose declared key may hold NULL (rowid tables, not NOT NULL, not the rowid
#: itself), and whose key never does.
SQLITE_NULLABLE_KEYS = {
    "keys_text_key": "CREATE TABLE keys_text_key (code TEXT PRIMARY KEY, phone TEXT)",
    "keys_int_key": "CREATE TABLE keys_int_key (code INT PRIMARY KEY, phone TEXT)",
    "keys_desc_key": "CREATE TABLE keys_desc_key (code INTEGER PRIMARY KEY DESC, phone TEXT)",
    "keys_pair_key": "CREATE TABLE keys_pair_key (code INTEGER NOT NULL, part TEXT, "
    "phone TEXT, PRIMARY KEY (code, part))",
}
SQLITE_NEVER_NULL_KEYS = {
    "keys_not_null_key": "CREATE TABLE keys_not_null_key (code TEXT NOT NULL PRIMARY KEY, "
    "phone TEXT)",
    "keys_without_rowid": "CREATE TABLE keys_without_rowid (code TEXT PRIMARY KEY, phone TEXT) "
    "WITHOUT ROWID",
    "keys_strict": "CREATE TABLE keys_strict (code TEXT PRIMARY KEY, phone TEXT) STRICT",
}


@_only("sqlite")
@pytest.mark.parametrize("table", SQLITE_NULLABLE_KEYS)
def test_sqlite_does_not_use_a_primary_key_that_may_hold_null(keyed: Keyed, table: str) -> None:
    """SQLite lets these keys hold NULL in several rows (its documented historical bug), and
    GROUP BY makes one group of them: the masked column beside it would split that group
    under late masking and not under scan masking."""
    keyed.run(SQLITE_NULLABLE_KEYS[table])
    try:
        assert _keys(keyed, table) == ()
    finally:
        keyed.run(f"DROP TABLE {table}")


@_only("sqlite")
@pytest.mark.parametrize("table", SQLITE_NEVER_NULL_KEYS)
def test_sqlite_uses_a_primary_key_that_is_never_null(keyed: Keyed, table: str) -> None:
    keyed.run(SQLITE_NEVER_NULL_KEYS[table])
    try:
        assert _keys(keyed, table) == (("code",),)
    finally:
        keyed.run(f"DROP TABLE {table}")


#: Two rows share a NULL "key" and phones that mask alike; a third has a key.
NULL_KEY_ROWS = (
    "INSERT INTO keys_text_key VALUES (NULL, '555-000-1234'), (NULL, '555-111-1234'), "
    "('a', '555-222-1234')"
)
NULL_KEY_GROUPED = (
    "SELECT k.code, k.phone, count(*) AS n FROM keys_text_key k GROUP BY k.code, k.phone"
)


@pytest.fixture
def null_keyed(keyed: Keyed) -> Iterator[Keyed]:
    """SQLite holding ``keys_text_key``, whose declared key holds NULL twice."""
    keyed.run(SQLITE_NULLABLE_KEYS["keys_text_key"])
    keyed.run(NULL_KEY_ROWS)
    keyed.connector.catalog(refresh=True)
    yield keyed
    keyed.run("DROP TABLE keys_text_key")
    keyed.connector.catalog(refresh=True)


@_only("sqlite")
def test_a_mask_grouped_beside_a_key_that_holds_null_stays_in_the_scan(null_keyed: Keyed) -> None:
    """Scan masking makes one group of the two NULL-keyed rows (their phones mask alike)."""
    late, scan = null_keyed.session(late=True), null_keyed.session(late=False)
    assert (
        late.explain(NULL_KEY_GROUPED).rewritten_sql == scan.explain(NULL_KEY_GROUPED).rewritten_sql
    )
    assert _sorted_rows(late, NULL_KEY_GROUPED) == [
        ("a", "********1234", 1),
        (None, "********1234", 2),
    ]


@_only("sqlite")
def test_trusting_a_key_that_holds_null_would_split_a_group(null_keyed: Keyed) -> None:
    """Why such a key is not read: were it in the catalog, late masking would group by the raw
    phones and show two rows where scan masking shows one (and tell that they differ)."""
    catalog = null_keyed.connector.catalog()
    trusting = replace(catalog.tables["keys_text_key"], keys=(("code",),))
    catalog.tables["keys_text_key"] = catalog.tables["main.keys_text_key"] = trusting
    late = null_keyed.session(late=True)
    assert late.explain(NULL_KEY_GROUPED).rewritten_sql != (
        null_keyed.session(late=False).explain(NULL_KEY_GROUPED).rewritten_sql
    )
    assert _sorted_rows(late, NULL_KEY_GROUPED) == [
        ("a", "********1234", 1),
        (None, "********1234", 1),
        (None, "********1234", 1),
    ]


@_only("postgres")
def test_postgres_does_not_use_the_key_of_a_table_with_inheritance_children(
    keyed: Keyed,
) -> None:
    """A SELECT from the parent reads its children's rows, which its key's index does not
    cover: the same key value can come back twice."""
    keyed.run("CREATE TABLE keys_parent (id INTEGER PRIMARY KEY, phone TEXT)")
    keyed.run("CREATE TABLE keys_child () INHERITS (keys_parent)")
    keyed.run("INSERT INTO keys_parent VALUES (1, '555-000-1234')")
    keyed.run("INSERT INTO keys_child VALUES (1, '555-111-1234')")
    try:
        assert _keys(keyed, "keys_parent") == ()
    finally:
        keyed.run("DROP TABLE keys_parent CASCADE")


@_only("postgres")
def test_postgres_does_not_use_a_deferrable_key(keyed: Keyed) -> None:
    """Duplicates may exist until the transaction commits (PostgreSQL's own planner does not
    trust such a key for GROUP BY either)."""
    keyed.run("CREATE TABLE keys_deferred (id INTEGER PRIMARY KEY DEFERRABLE, phone TEXT)")
    try:
        assert _keys(keyed, "keys_deferred") == ()
    finally:
        keyed.run("DROP TABLE keys_deferred")


@_only("postgres")
def test_postgres_uses_the_key_of_a_partitioned_table(keyed: Keyed) -> None:
    """A partitioned table's key holds across its partitions (it includes the partition key)."""
    keyed.run(
        "CREATE TABLE keys_parts (id INTEGER, year INTEGER, phone TEXT, "
        "PRIMARY KEY (id, year)) PARTITION BY RANGE (year)"
    )
    keyed.run(
        "CREATE TABLE keys_parts_2025 PARTITION OF keys_parts FOR VALUES FROM (2025) TO (2026)"
    )
    try:
        assert _keys(keyed, "keys_parts") == (("id", "year"),)
        assert _keys(keyed, "keys_parts_2025") == (("id", "year"),)
    finally:
        keyed.run("DROP TABLE keys_parts")


@_only("mysql")
def test_mysql_does_not_use_the_key_of_a_merge_table(keyed: Keyed) -> None:
    """A MERGE table's key is declared over rows that other tables hold and check each on
    their own: the same key comes back from two of them."""
    for name in ("keys_merge_a", "keys_merge_b"):
        keyed.run(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, phone VARCHAR(40)) ENGINE=MyISAM")
        keyed.run(f"INSERT INTO {name} VALUES (1, '555-000-1234')")
    keyed.run(
        "CREATE TABLE keys_merged (id INTEGER PRIMARY KEY, phone VARCHAR(40)) "
        "ENGINE=MRG_MyISAM UNION=(keys_merge_a, keys_merge_b)"
    )
    try:
        assert _keys(keyed, "keys_merge_a") == (("id",),)
        assert _keys(keyed, "keys_merged") == ()
    finally:
        keyed.run("DROP TABLE keys_merged, keys_merge_a, keys_merge_b")


def test_the_live_demo_declares_its_keys_on_every_engine_that_reads_them(engine):
    """The shared demo (tests/connectors/conftest.py) is keyed, so the live suites run the
    key rule of late masking on every engine but Spark, which has no keys."""
    catalog = engine.connector.catalog()
    keys = {name: catalog.get(name).keys for name in DEMO_KEYS}
    if engine.name == "spark":
        assert keys == {name: () for name in DEMO_KEYS}
    else:
        assert keys == {name: ((key,),) for name, key in DEMO_KEYS.items()}
