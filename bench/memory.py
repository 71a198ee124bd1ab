"""Peak memory of a kernel reading N rows governed vs raw, and cold-plan time against
statement complexity.

    python bench/memory.py --rows 10000000        # peak RSS, each read in a fresh process
    python bench/memory.py --complexity           # cold plan vs number of joined tables

The table has an id, a masked name (``token``), a number and a date. *Raw* is
``duckdb.connect(file).execute(q).to_arrow_table()``; *governed* is
``jupyter_gov.connect(policy).sql(q).arrow()`` as an analyst. Peak RSS is the process's
``ru_maxrss``, measured after the imports and the read, minus the same process's RSS before
the read (both in one fresh interpreter, so nothing earlier is counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"

POLICY = """
version: 1
name: memory-bench
identity: {provider: local, default_groups: [analysts], users: {bob: {groups: [analysts]}}}
roles:
  analyst: {groups: [analysts], access: read_only}
connections:
  db: {url: "duckdb:///${JUPYTER_GOV_BENCH_DB}", default: true}
classifications:
  person_name: ["people.name"]
masks:
  person_name: {default: token}
unclassified: allow
"""

READER = textwrap.dedent(
    """
    import os, resource, sys, time
    mode, path, policy, query = sys.argv[1:5]
    import duckdb, pyarrow
    import jupyter_gov
    def rss_kb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    if mode == "raw":
        con = duckdb.connect(path, read_only=True)
        run = lambda: con.execute(query).to_arrow_table()
    else:
        session = jupyter_gov.connect(policy=policy, identity="bob")
        session.sql("SELECT 1 AS warm")
        run = lambda: session.sql(query).arrow()
    before = rss_kb()
    started = time.perf_counter()
    table = run()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT", table.num_rows, before, peak, table.nbytes, elapsed)
    """
)


def ensure_table(rows: int) -> Path:
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"people-{rows}.duckdb"
    if not path.exists():
        con = duckdb.connect(str(path))
        con.execute(
            "CREATE TABLE people AS SELECT i AS id, 'Person#' || lpad(i::VARCHAR, 9, '0') AS name,"
            " i * 0.5 AS amount, DATE '2020-01-01' + (i % 1000)::INTEGER AS day"
            f" FROM range({rows}) r(i)"
        )
        con.close()
    return path


def measure(rows: int, runs: int) -> list[str]:
    path = ensure_table(rows)
    home = tempfile.mkdtemp(prefix="jupyter-gov-memory-")
    policy = Path(home) / "policy.yaml"
    policy.write_text(POLICY)
    env = {**os.environ, "JUPYTER_GOV_HOME": home, "JUPYTER_GOV_BENCH_DB": str(path)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    query = "SELECT id, name, amount, day FROM people"
    results: dict[str, list[tuple[int, int, int, int, float]]] = {"raw": [], "governed": []}
    for _ in range(runs):
        for mode in ("raw", "governed"):
            out = subprocess.run(
                [sys.executable, "-c", READER, mode, str(path), str(policy), query],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            # DuckDB's progress bar shares stdout (and lines, through carriage returns)
            n, before, peak, nbytes, elapsed = out.stdout.rsplit("RESULT ", 1)[1].split()[:5]
            results[mode].append((int(n), int(before), int(peak), int(nbytes), float(elapsed)))
    lines = [
        f"Peak memory reading {rows:,} rows (`{query}`; `name` token-masked when governed), "
        f"each read in a fresh process, median of {runs}:",
        "",
        "| path | rows | result (Arrow) MB | peak RSS above the pre-read baseline MB | "
        "peak RSS MB | read s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, runs_ in results.items():

        def med(i: int, runs_: list = runs_) -> float:
            return statistics.median(r[i] for r in runs_)

        lines.append(
            f"| {mode} | {runs_[0][0]:,} | {med(3) / 2**20:,.0f} | "
            f"{(med(2) - med(1)) / 1024:,.0f} | {med(2) / 1024:,.0f} | {med(4):.2f} |"
        )
    return lines


def complexity(runs: int) -> list[str]:
    """Cold plan time for a SELECT joining k copies of a masked table (k = 1..16)."""
    path = ensure_table(1000)
    home = tempfile.mkdtemp(prefix="jupyter-gov-memory-")
    policy = Path(home) / "policy.yaml"
    policy.write_text(POLICY)
    os.environ["JUPYTER_GOV_HOME"] = home
    os.environ["JUPYTER_GOV_BENCH_DB"] = str(path)
    sys.path.insert(0, str(ROOT))
    import jupyter_gov

    session = jupyter_gov.connect(policy=str(policy), identity="bob")
    lines = [
        "Cold plan (parse, qualify, decide, rewrite; plan cache emptied) against statement "
        f"size: a SELECT joining k aliases of the masked table, median of {runs}:",
        "",
        "| tables joined | SQL bytes | cold plan ms | ms per table |",
        "|---:|---:|---:|---:|",
    ]
    for k in (1, 2, 4, 8, 16):
        joins = " ".join(f"JOIN people p{i} ON p{i}.id = p0.id" for i in range(1, k))
        cols = ", ".join(f"p{i}.name AS n{i}, p{i}.amount AS a{i}" for i in range(k))
        sql = f"SELECT {cols} FROM people p0 {joins} WHERE p0.amount > 10"
        times = []
        for _ in range(runs):
            session._plans.clear()
            started = time.perf_counter()
            session.explain(sql)
            times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        lines.append(f"| {k} | {len(sql)} | {ms:.2f} | {ms / k:.2f} |")
    session.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--complexity", action="store_true", help="only the cold-plan table")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = complexity(max(args.runs, 7)) if args.complexity else measure(args.rows, args.runs)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(lines, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
