"""What one mask costs per row on each engine, as jupyter-gov renders it.

    python bench/masks.py [--rows 1000000] [--runs 5] [--engines duckdb,postgres,sqlite]

Builds ``--rows`` short texts (phone-like, 15 characters) in each engine and times
``SELECT max(<mask>) FROM t`` against ``SELECT max(v) FROM t``, median of ``--runs``; the
mask is the exact expression :func:`jupyter_gov.masking.mask_expression` renders for that
engine (keyed ``hash``/``token`` with ``masking.digest`` sha256 and md5, ``partial``,
``redact``). Prints one Markdown row per engine and mask: milliseconds and ns per row above
the bare read. PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/test`` (a temporary
table); SQLite runs in memory with the connector's own functions.
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlglot import exp  # noqa: E402

from jupyter_gov.connectors.registry import profiles  # noqa: E402
from jupyter_gov.masking import mask_expression  # noqa: E402
from jupyter_gov.policy import MaskSpec  # noqa: E402

MASKS: list[tuple[str, MaskSpec, str]] = [
    ("token, sha256 (default)", MaskSpec("token"), "sha256"),
    ("token, md5", MaskSpec("token"), "md5"),
    ("hash, sha256 (default)", MaskSpec("hash"), "sha256"),
    ("hash, md5", MaskSpec("hash"), "md5"),
    ("partial (last 4)", MaskSpec("partial", keep_last=4), "sha256"),
    ("redact", MaskSpec("redact"), "sha256"),
]
PG = "postgresql://postgres@127.0.0.1:5432/test"


def value(i: int) -> str:
    return f"{10 + i % 25:02d}-{i % 1000:03d}-{i * 7 % 1000:03d}-{i * 13 % 10000:04d}"


def rendered(dialect: str, spec: MaskSpec, digest: str, key: str) -> str:
    """The mask over column ``v``, with the key inlined as a literal (bench only)."""
    tree = mask_expression(spec, exp.column("v"), exp.DataType.build("TEXT"), "t", dialect, digest)
    for placeholder in tree.find_all(exp.Placeholder):
        placeholder.replace(exp.Literal.string(key))
    return tree.sql(dialect=dialect)


def time_it(run: Callable[[str], Any], sql: str, runs: int) -> float:
    run(sql)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(sql)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def engines(rows: int, wanted: set[str]) -> list[tuple[str, str, Callable[[str], Any]]]:
    out: list[tuple[str, str, Callable[[str], Any]]] = []
    data = [value(i) for i in range(rows)]
    if "duckdb" in wanted:
        import duckdb

        con = duckdb.connect()
        con.execute("CREATE TABLE t AS SELECT unnest($1::VARCHAR[]) AS v", [data])
        out.append(("DuckDB", "duckdb", lambda sql: con.execute(sql).fetchall()))
    if "postgres" in wanted:
        try:
            import psycopg

            pg = psycopg.connect(PG, autocommit=True)
            pg.execute("CREATE TEMPORARY TABLE t (v TEXT)")
            with pg.cursor().copy("COPY t (v) FROM STDIN") as copy:
                for v in data:
                    copy.write_row((v,))
            pg.execute("ANALYZE t")
            out.append(("PostgreSQL", "postgres", lambda sql: pg.execute(sql).fetchall()))
        except Exception as error:
            print(f"PostgreSQL skipped: {error}", file=sys.stderr)
    if "sqlite" in wanted:
        profile = profiles()["sqlite"]
        lite = sqlite3.connect(":memory:")
        for name, (arity, function) in profile.udfs.items():
            lite.create_function(name, arity, function, deterministic=True)
        lite.execute("CREATE TABLE t (v TEXT)")
        lite.executemany("INSERT INTO t VALUES (?)", ((v,) for v in data))
        out.append(("SQLite", "sqlite", lambda sql: lite.execute(sql).fetchall()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", default="duckdb,postgres,sqlite")
    args = parser.parse_args(argv)
    key = secrets.token_hex(32)
    print("| engine | mask | ms | ns/row above the bare read |")
    print("|---|---|---:|---:|")
    for title, dialect, run in engines(args.rows, set(args.engines.split(","))):
        bare = time_it(run, "SELECT max(v) FROM t", args.runs)
        print(f"| {title} | bare read | {bare * 1000:,.0f} | – |", flush=True)
        for label, spec, digest in MASKS:
            sql = f"SELECT max({rendered(dialect, spec, digest, key)}) FROM t"
            spent = time_it(run, sql, args.runs)
            per_row = (spent - bare) / args.rows * 1e9
            print(f"| {title} | {label} | {spent * 1000:,.0f} | {per_row:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
