"""Frames from a governed DuckDB result vs DuckDB's own, on the same rewritten query.

``.venv/bin/python bench/frames.py [--rows 1000000] [--repeat 5] [--write]``

One table with a text column and a keyed-hash masked e-mail column; the governed side
runs ``session.sql(q).df()`` / ``.pl()`` / ``.to_arrow_table()`` (planning from the cache,
three audit appends, the stream and its count included); DuckDB's own side runs the
rewritten SQL the plan produced, with the same bound values, on the same connection:
``con.execute(sql, params).df()`` / ``.pl()`` / ``.to_arrow_table()``. Each repetition
runs every variant once, interleaved, so load on the machine hits both sides alike; the
table reports medians and their ratio. ``--write`` replaces the "Frames" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sections import replace_section  # noqa: E402

from jupyter_gov.engine import GovernedSession  # noqa: E402
from jupyter_gov.policy import Policy  # noqa: E402

BEGIN = "<!-- frames:begin (bench/frames.py --write) -->"
END = "<!-- frames:end -->"
QUERY = "SELECT id, note, amount, email FROM events"


def build(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE events AS SELECT range AS id, "
        "'note ' || range || ' about order ' || (range * 7919 % 100003) AS note, "
        "(range % 1000) * 1.25::DOUBLE AS amount, "
        "'user' || range || '@example.com' AS email FROM range(?)",
        [rows],
    )
    con.close()


def policy(path: Path) -> Policy:
    return Policy(
        {
            "version": 1,
            "name": "frames-bench",
            "identity": {
                "provider": "local",
                "users": {"bob": {"display_name": "Bob", "groups": ["analysts"]}},
            },
            "roles": {"analyst": {"groups": ["analysts"], "access": "read_only"}},
            "connections": {
                "bench": {"url": f"duckdb:///{path}", "read_only": True, "default": True}
            },
            "classifications": {"email": ["events.email"]},
            "masks": {"email": {"default": "hash"}},
            "unclassified": "allow",
        }
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(rows: int, repeat: int) -> tuple[list[tuple[str, float, float]], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_GOV_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("JUPYTER_GOV_MASK_KEY", "frames-bench-key-0123456789abcdefghij")
        db = Path(tmp) / "frames.duckdb"
        build(db, rows)
        session = GovernedSession(policy(db), "bob")
        plan = session.explain(QUERY)
        statement = plan.statements[-1]
        sql = statement.sql
        params = statement.bind(None, session.keys.params)
        con = session.connector("bench").con  # the same locked-down connection
        variants: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            ".df()": (
                lambda: con.execute(sql, params).df(),
                lambda: session.sql(QUERY).df(),
            ),
            ".pl()": (
                lambda: con.execute(sql, params).pl(),
                lambda: session.sql(QUERY).pl(),
            ),
            ".to_arrow_table()": (
                lambda: con.execute(sql, params).to_arrow_table(),
                lambda: session.sql(QUERY).to_arrow_table(),
            ),
        }
        for own, governed in variants.values():  # warm: plan cache, page cache
            assert len(own()) == len(governed()) == rows
        samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
        for _ in range(repeat):
            for name, (own, governed) in variants.items():
                for fn, out in ((own, samples[name][0]), (governed, samples[name][1])):
                    started = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - started)
        session.close()
    table = [(name, median_ms(o), median_ms(g)) for name, (o, g) in samples.items()]
    meta = {"rows": rows, "repeat": repeat, "sql": sql}
    return table, meta


def markdown(table: list[tuple[str, float, float]], meta: dict[str, Any]) -> str:
    import pandas
    import polars
    import pyarrow

    lines = [
        BEGIN,
        "## Frames: a governed DuckDB result vs DuckDB's own",
        "",
        f"`bench/frames.py`: {meta['rows']:,} rows (an integer, a double, a free-text column "
        "and an e-mail masked with a keyed hash), medians of "
        f"{meta['repeat']} interleaved repetitions in one run on {platform.machine()} "
        f"({os.cpu_count()} cores, shared), duckdb {duckdb.__version__}, pyarrow "
        f"{pyarrow.__version__}, pandas {pandas.__version__}, polars {polars.__version__}. "
        "Governed: `session.sql(q).<frame>()` (cached plan, three audit appends, the stream "
        "and its count). DuckDB's own: the plan's rewritten SQL with the same bound values on "
        "the same connection. Target: at most 1.05x.",
        "",
        "| frame | DuckDB's own (ms) | governed (ms) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, own, governed in table:
        lines.append(f"| `{name}` | {own:,.1f} | {governed:,.1f} | {governed / own:.2f}x |")
    lines += [
        "",
        "The governed side reads DuckDB's Arrow stream (`to_arrow_reader`) once, keeps the "
        "batches, and builds the frame from them: `.to_arrow_table()` and `.pl()` are "
        "zero-copy over those batches; `.df()` is Arrow's `to_pandas`, which with pandas 3's "
        "Arrow-backed strings wraps the text columns instead of copying them, faster here "
        "than DuckDB's own `.df()`. The machine is shared by other jobs: absolute times "
        "vary from run to run, the interleaved ratios much less.",
        END,
    ]
    return "\n".join(lines)


def write(section: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    replaced = replace_section(text, BEGIN, END, section)
    doc.write_text(replaced if replaced is not None else f"{text.rstrip()}\n\n{section}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    table, meta = run(args.rows, args.repeat)
    section = markdown(table, meta)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
