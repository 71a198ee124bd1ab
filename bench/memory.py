"""Peak memory of a kernel reading N rows governed vs raw, and cold-plan time against
statement complexity.

    python bench/memory.py --rows 10000000        # peak RSS, each read in a fresh process
    python bench/memory.py --complexity           # cold plan vs number of joined tables

The table has an id, a masked name (``token``), a number and a date. Three paths, each read
in its own fresh interpreter (so nothing another read allocated is counted), interleaved:
*raw* is ``duckdb.connect(file).execute(q).to_arrow_table()``; *engine* is DuckDB's own
``to_arrow_table()`` of the rewritten, masked SQL on the governed connection (what the
masks alone cost); *governed* is ``jupyter_gov.connect(policy).sql(q).arrow()`` as an
analyst. Why per process and why ``VmHWM``: ``ru_maxrss`` is the lifetime peak, which
includes imports and set-up; resetting the kernel's high-water mark
(``/proc/self/clear_refs``) just before the read makes the peak that read's alone.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    import gc, os, resource, sys, time
    mode, path, policy, query = sys.argv[1:5]
    import duckdb, pyarrow
    import jupyter_gov

    def status_kb(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    if mode == "raw":
        con = duckdb.connect(path, read_only=True)
        con.execute("SELECT count(*) FROM people").fetchall()
        run = lambda: con.execute(query).to_arrow_table()
    else:
        session = jupyter_gov.connect(policy=policy, identity="bob")
        session.sql("SELECT count(*) AS n FROM people").arrow()
        if mode == "engine":  # DuckDB's own read of the rewritten (masked) SQL
            statement = session.explain(query).statements[-1]
            params = statement.bind(None, session.keys.params)
            con = session.connector().con
            run = lambda: con.execute(statement.sql, params).to_arrow_table()
        else:
            session.explain(query)  # the plan cached, as for any statement run twice
            run = lambda: session.sql(query).arrow()
    gc.collect()
    before = status_kb("VmRSS")
    try:  # reset the high-water mark, so the peak is this read's alone
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        reset = 1
    except OSError:  # no clear_refs: the lifetime peak (imports and set-up included)
        reset = 0
    started = time.perf_counter()
    table = run()
    elapsed = time.perf_counter() - started
    peak = status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    after = status_kb("VmRSS")
    print("RESULT", table.num_rows, before, peak, after, table.nbytes, elapsed, reset)
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


MODES = ("raw", "engine", "governed")
MODE_LABELS = {
    "raw": "raw DuckDB, plain `SELECT`",
    "engine": "DuckDB's own read of the governed (masked) SQL",
    "governed": "governed `session.sql(q).arrow()`",
}


@dataclass
class Read:
    """One read in a fresh process; memory in KiB, time in seconds."""

    rows: int
    before: int  # RSS just before the read
    peak: int  # high-water RSS during the read
    after: int  # RSS with the result still held
    nbytes: int  # the Arrow result's buffers
    seconds: float
    reset: bool  # False: ``peak`` is the process's lifetime peak (no /proc/self/clear_refs)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def read_once(mode: str, path: Path, policy: Path, env: dict[str, str], query: str) -> Read:
    """Run one read in a new interpreter, so no earlier allocation is counted."""
    out = subprocess.run(
        [sys.executable, "-c", READER, mode, str(path), str(policy), query],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # DuckDB's progress bar shares stdout (and lines, through carriage returns)
    fields = out.stdout.rsplit("RESULT ", 1)[1].split()[:8]
    rows, before, peak, after, nbytes = (int(f) for f in fields[:5])
    return Read(rows, before, peak, after, nbytes, float(fields[5]), fields[6] == "1")


def measure(rows: int, runs: int, dump: dict[str, Any] | None = None) -> list[str]:
    """Peak RSS of raw, engine-only and governed reads, interleaved, median of ``runs``."""
    path = ensure_table(rows)
    home = tempfile.mkdtemp(prefix="jupyter-gov-memory-")
    policy = Path(home) / "policy.yaml"
    policy.write_text(POLICY)
    env = {**os.environ, "JUPYTER_GOV_HOME": home, "JUPYTER_GOV_BENCH_DB": str(path)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    query = "SELECT id, name, amount, day FROM people"
    reads: dict[str, list[Read]] = {mode: [] for mode in MODES}
    for index in range(runs):
        for mode in MODES:  # interleaved, so load on the machine hits every path alike
            reads[mode].append(read_once(mode, path, policy, env, query))
            last = reads[mode][-1]
            print(
                f"run {index + 1}/{runs} {mode}: +{last.growth / 1024:,.0f} MB peak, "
                f"{last.nbytes / 2**20:,.0f} MB result, {last.seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    if dump is not None:
        dump["memory"] = {mode: [vars(r) for r in rs] for mode, rs in reads.items()}
    reset = all(r.reset for rs in reads.values() for r in rs)
    lines = [
        f"Peak memory reading {rows:,} rows (`{query}`; `name` token-masked when governed), "
        f"each read in a fresh Python process, interleaved, median of {runs}. *Peak above "
        "baseline* is the process's high-water RSS during the read "
        + (
            "(`VmHWM`, reset through `/proc/self/clear_refs` just before it) "
            if reset
            else "(lifetime `ru_maxrss`: `/proc/self/clear_refs` was not writable) "
        )
        + "minus its RSS just before it, with the connection open and warmed up; *held* is "
        "the RSS with the result still referenced, minus the same baseline.",
        "",
        "| path | rows | result (Arrow) MB | peak above baseline MB | peak above baseline "
        "minus result MB | held MB | baseline RSS MB | read s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, rs in reads.items():
        nbytes = statistics.median(r.nbytes for r in rs) / 2**20
        growth = statistics.median(r.growth for r in rs) / 1024
        lines.append(
            f"| {MODE_LABELS[mode]} | {rs[0].rows:,} | {nbytes:,.0f} | {growth:,.0f} | "
            f"{growth - nbytes:,.0f} | "
            f"{statistics.median(r.after - r.before for r in rs) / 1024:,.0f} | "
            f"{statistics.median(r.before for r in rs) / 1024:,.0f} | "
            f"{statistics.median(r.seconds for r in rs):.2f} |"
        )
    return lines


def complexity(runs: int) -> list[str]:
    """Cold plan time, and the governance work of a cached run, for a SELECT joining k
    copies of a masked table (k = 1..16): what grows with the statement, not the data."""
    path = ensure_table(1000)
    home = tempfile.mkdtemp(prefix="jupyter-gov-memory-")
    policy = Path(home) / "policy.yaml"
    policy.write_text(POLICY)
    os.environ["JUPYTER_GOV_HOME"] = home
    os.environ["JUPYTER_GOV_BENCH_DB"] = str(path)
    sys.path.insert(0, str(ROOT))
    import jupyter_gov

    session = jupyter_gov.connect(policy=str(policy), identity="bob")
    connector = session.connector()
    execute = connector.execute
    inside = [0.0]

    def timed_execute(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    connector.execute = timed_execute  # type: ignore[method-assign]
    lines = [
        "Statement size against planning and governance work: a SELECT joining k aliases of "
        "the masked table (1,000 rows), median of "
        f"{runs}. *Cold plan*: parse, qualify, decide, rewrite on an emptied plan cache. "
        "*Work, cached plan*: `session.sql(q).arrow()` wall time minus the time in DuckDB, "
        "with the plan cached (what every later run of the statement pays). The minimum is "
        "given too: on a loaded machine a median can still include a stall of the process.",
        "",
        "| tables joined | SQL bytes | cold plan ms | ms per table | cold plan, min ms "
        "| work, cached plan ms | work, cached plan, min ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in (1, 2, 4, 8, 16):
        joins = " ".join(f"JOIN people p{i} ON p{i}.id = p0.id" for i in range(1, k))
        cols = ", ".join(f"p{i}.name AS n{i}, p{i}.amount AS a{i}" for i in range(k))
        sql = f"SELECT {cols} FROM people p0 {joins} WHERE p0.amount > 10"
        times, work = [], []
        for _ in range(runs):
            session._plans.clear()
            started = time.perf_counter()
            session.explain(sql)
            times.append(time.perf_counter() - started)
            inside[0] = 0.0
            started = time.perf_counter()
            session.sql(sql).arrow()
            work.append(time.perf_counter() - started - inside[0])
        ms = statistics.median(times) * 1000
        lines.append(
            f"| {k} | {len(sql)} | {ms:.2f} | {ms / k:.2f} | {min(times) * 1000:.2f} | "
            f"{statistics.median(work) * 1000:.2f} | {min(work) * 1000:.2f} |"
        )
    session.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--complexity", action="store_true", help="only the cold-plan table")
    parser.add_argument("--json", type=Path, default=None, help="also dump every read here")
    args = parser.parse_args(argv)
    dump: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.complexity:
        lines = complexity(max(args.runs, 7))
    else:
        lines = measure(args.rows, args.runs, dump)
    print("\n".join(lines))
    if args.json:
        dump["report"] = lines
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
