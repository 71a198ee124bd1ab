"""Governed reads of 1M rows with masked columns from PostgreSQL and MariaDB.

Three paths on the same table, in the same run, medians of ``--repeat`` runs after a
warm-up:

- **jupyter-gov**: ``GovernedSession.sql`` (plan cached after the warm-up, masks run on
  the server, Arrow back);
- **raw driver, governed SQL**: the very statement jupyter-gov sends (masks included),
  through the same driver by hand (ADBC ``fetch_arrow_table`` for PostgreSQL; PyMySQL
  ``fetchall`` + column-wise Arrow for MariaDB): the floor for a masked read;
- **raw driver, plain SQL**: ``SELECT *`` with no masks, through the same driver;
- MariaDB only, **connectorx** (Rust, straight to Arrow): the governed SQL and the plain SQL.
  connectorx cannot bind parameters, so the governed statement's values are rendered by
  the connector's own :func:`jupyter_gov.connectors.mysql.spell`, which spells text as a hex
  literal with a charset introducer (``_utf8mb4 X'...'``: only hex digits reach the SQL
  text, nothing to escape) and numbers and dates from their Python values; anything else
  is refused. This is the raw Arrow path
  the issue's "within 1.2x" target is measured against;
- **JupySQL** ``%sql`` on the plain query (it does not mask), materialised with
  ``.DataFrame()`` as a user would, through SQLAlchemy (``pg8000``, ``pymysql``).

Run ``python bench/databases.py [--rows N] [--repeat N]``; a server that is not running is
skipped with its reason. ``bench/run.py --databases`` appends the same section to its report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB = "mysql://root@127.0.0.1:3306"
SCHEMA = "jupyter_gov_bench"
QUERY = "SELECT id, email, ssn, amount FROM people"

POLICY = """
version: 1
name: bench-databases
identity: {provider: local, default_groups: [analysts]}
roles:
  analyst: {groups: [analysts], access: read_only}
connections:
  pg: {url: "%(pg)s"}
  maria: {url: "%(maria)s"}
classifications:
  email: ["people.email"]
  ssn: ["people.ssn"]
masks:
  email: {default: email}
  ssn: {default: {function: partial, keep_last: 4}}
unclassified: allow
"""


@dataclass
class Timing:
    engine: str
    rows: int
    medians: dict[str, float] = field(default_factory=dict)  # path -> seconds
    skipped: str = ""


def _median(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: plan cache, connection, server caches
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def load_postgres(rows: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(PG, autocommit=True) as con, con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{SCHEMA}'")
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {SCHEMA}.people")
            if cur.fetchone()[0] == rows:
                return
            cur.execute(f"DROP TABLE {SCHEMA}.people")
        cur.execute(
            f"CREATE TABLE {SCHEMA}.people AS SELECT g AS id, "
            "'user' || g || '@example.com' AS email, "
            "lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-' || "
            "lpad((g % 10000)::text, 4, '0') AS ssn, (g % 100000) / 100.0 AS amount "
            f"FROM generate_series(1, {rows}) AS g"
        )


def load_mariadb(rows: int) -> None:
    import pymysql

    con = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
        cur.execute(
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{SCHEMA}' AND table_name = 'people'"
        )
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {SCHEMA}.people")
            if cur.fetchone()[0] == rows:
                con.close()
                return
            cur.execute(f"DROP TABLE {SCHEMA}.people")
        cur.execute(
            f"CREATE TABLE {SCHEMA}.people AS SELECT seq AS id, "
            "CONCAT('user', seq, '@example.com') AS email, "
            "CONCAT(LPAD(seq % 1000, 3, '0'), '-', LPAD(seq % 100, 2, '0'), '-', "
            "LPAD(seq % 10000, 4, '0')) AS ssn, CAST((seq % 100000) / 100.0 AS DECIMAL(10,2)) "
            f"AS amount FROM {SCHEMA}.seq_1_to_{rows}"
        )
    con.close()


def _connectorx(url: str, sql: str, params: dict[str, Any]) -> Callable[[], Any]:
    """connectorx on a pyformat statement, its values spelt as the connector spells them."""
    import connectorx as cx

    from jupyter_gov.connectors.mysql import spell

    text = spell(sql, params)

    def run() -> Any:
        return cx.read_sql(url, text, return_type="arrow")

    return run


def _jupysql(url: str, query: str) -> Callable[[], Any]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sql")
    shell.run_line_magic("config", "SqlMagic.displaylimit = 0")
    shell.run_line_magic("config", "SqlMagic.autopandas = False")
    shell.run_line_magic("sql", url)

    def run() -> Any:
        with contextlib.redirect_stdout(io.StringIO()):  # "Running query in ..." lines
            return shell.run_line_magic("sql", query).DataFrame()

    return run


def bench_engine(name: str, rows: int, repeat: int, with_jupysql: bool) -> Timing:
    from jupyter_gov.engine import GovernedSession
    from jupyter_gov.policy import Policy

    timing = Timing(name, rows)
    pg_url = f"{PG}?options=-csearch_path%3D{SCHEMA}"
    maria_url = f"{MARIADB}/{SCHEMA}"
    try:
        (load_postgres if name == "pg" else load_mariadb)(rows)
    except Exception as error:  # a server that is not running: its section is skipped
        timing.skipped = f"{name} server not available ({type(error).__name__})"
        return timing
    policy = Policy.from_text(POLICY % {"pg": pg_url, "maria": maria_url})
    session = GovernedSession(policy, "bench")
    governed = lambda: session.sql(QUERY, connection=name).arrow()  # noqa: E731
    plan = session.explain(QUERY, connection=name)
    statement = plan.statements[0]
    values = {**statement.internal_params, **session._masking_keys()}
    values = {k: v for k, v in values.items() if k in statement.placeholders}
    connector = session.connector(name)
    from jupyter_gov.connectors.dbapi import prepare

    prepared = prepare(connector.profile, statement.sql)
    plain = f"SELECT id, email, ssn, amount FROM {SCHEMA}.people"
    if name == "pg":
        import adbc_driver_postgresql.dbapi as adbc

        raw = adbc.connect(PG, autocommit=True)

        def raw_run(sql: str, params: Sequence[Any] | None) -> Any:
            with raw.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetch_arrow_table()

        jupysql_url = "postgresql+pg8000://postgres@127.0.0.1:5432/test"
    else:
        import pymysql

        from jupyter_gov.connectors.dbapi import to_arrow

        raw = pymysql.connect(host="127.0.0.1", user="root", database=SCHEMA)

        def raw_run(sql: str, params: Any) -> Any:
            with raw.cursor() as cur:
                cur.execute(sql, params)
                got = cur.fetchall()
                names = [d[0] for d in cur.description]
            return to_arrow(got, names, [None] * len(names))

        jupysql_url = f"mysql+pymysql://root@127.0.0.1:3306/{SCHEMA}"
    bound = [values[n] for n in prepared.names]
    if name == "maria":
        bound = dict(zip(prepared.names, bound))  # PyMySQL's pyformat
    timing.medians["jupyter-gov"] = _median(governed, repeat)
    timing.medians["raw driver, governed SQL"] = _median(
        lambda: raw_run(prepared.sql, bound or None), repeat
    )
    timing.medians["raw driver, plain SQL"] = _median(lambda: raw_run(plain, None), repeat)
    if name == "maria":
        try:
            cx_url = f"mysql://root@127.0.0.1:3306/{SCHEMA}"
            timing.medians["connectorx (Arrow), governed SQL"] = _median(
                _connectorx(cx_url, prepared.sql, values), repeat
            )
            timing.medians["connectorx (Arrow), plain SQL"] = _median(
                _connectorx(cx_url, plain, {}), repeat
            )
        except ImportError:
            timing.skipped = "connectorx is not installed (pip install 'jupyter-gov[bench]')"
    if with_jupysql:
        try:
            timing.medians["JupySQL %sql (unmasked), DataFrame"] = _median(
                _jupysql(jupysql_url, plain), repeat
            )
        except Exception as error:  # not installed, or its driver is missing
            timing.skipped = f"JupySQL: {type(error).__name__}: {str(error)[:120]}"
    raw.close()
    session.close()
    return timing


def render(timings: Sequence[Timing], repeat: int) -> list[str]:
    lines = [
        "## PostgreSQL and MariaDB: 1M rows with masked columns",
        "",
        f"`python bench/databases.py`: `{QUERY}` (`email` masked `email`, `ssn` masked "
        f"`partial`), median of {repeat} runs after a warm-up; Arrow unless said.",
        "",
        "| Engine | Rows | Path | Median | vs jupyter-gov |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for t in timings:
        if not t.medians:
            lines.append(f"| {t.engine} | {t.rows:,} | skipped: {t.skipped} | | |")
            continue
        gov = t.medians["jupyter-gov"]
        for path, seconds in t.medians.items():
            lines.append(
                f"| {t.engine} | {t.rows:,} | {path} | {seconds * 1000:,.0f} ms | "
                f"{seconds / gov:.2f}x |"
            )
        if t.skipped:
            lines.append(f"| {t.engine} | | {t.skipped} | | |")
    lines.append("")
    return lines


def run(rows: int, repeat: int, with_jupysql: bool = True) -> list[str]:
    timings = [bench_engine(name, rows, repeat, with_jupysql) for name in ("pg", "maria")]
    return render(timings, repeat)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-jupysql", action="store_true")
    args = parser.parse_args(argv)
    import os
    import tempfile

    os.environ.setdefault("JUPYTER_GOV_HOME", tempfile.mkdtemp(prefix="jupyter-gov-bench-"))
    print("\n".join(run(args.rows, args.repeat, not args.no_jupysql)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
