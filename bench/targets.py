"""Issue 10's targets, every one measured in one run on this machine, side by side.

    python bench/targets.py                       # ~10 min on 2 quiet cores
    python bench/targets.py --write               # also write both tables in docs/benchmarks.md
    python bench/targets.py --repeat 5 --frames-rows 1000000 --audit-events 1000

One command, in this order, nothing else running: TPC-H SF 1 raw vs governed (the 22
queries interleaved, ``bench/run.py``), the same 22 answers under scan and late masking
(``bench/late_check.py``), frames vs DuckDB's own (``bench/frames.py``), and the audit
chain's throughput from 1 and 8 processes on SQLite and, when it answers, PostgreSQL
(``bench/audit.py``). Cold plans come from the TPC-H run (``session.explain`` on an
emptied plan cache). SF 10 and the 10M-row peak memory take longer than the rest
together: they are read from ``bench/results/`` (written by ``bench/run.py --sf 10`` and
``bench/memory.py``), with their dates, unless ``--sf10`` / ``--memory`` re-run them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from sections import replace_section  # noqa: E402

BEGIN = "<!-- targets:begin (bench/targets.py --write) -->"
END = "<!-- targets:end -->"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Target:
    """One row of the table: what the issue asks, what this run measured, met or not."""

    what: str
    target: str
    measured: str
    met: bool | None  # None: reported, no target to meet

    def row(self) -> str:
        verdict = {True: "met", False: "**missed**", None: "–"}[self.met]
        return f"| {self.what} | {self.target} | {self.measured} | {verdict} |"


def log(message: str) -> None:
    print(f"[targets {datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a bench script in its own interpreter (each starts from a cold process)."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, text=True, capture_output=True, check=False
    )


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    low, _, high = statistics.quantiles(values, n=4)
    return high - low


def tpch(repeat: int, sf: float, out: Path, report: Path | None = None) -> list[Target]:
    """The 22 queries, interleaved raw/governed; totals, the worst query, cold plans.

    ``report``: where bench/run.py writes its own section (docs/benchmarks.md with
    ``--write``, so the per-query table there comes from this same run)."""
    log(f"TPC-H SF {sf:g}, {repeat} interleaved rounds ...")
    report = report or out / f"tpch-sf{sf:g}.md"
    data = out / f"tpch-sf{sf:g}.json"
    scrub = [] if report.name == "benchmarks.md" else ["--no-scrub"]  # the doc keeps it
    done = _python(
        "bench/run.py", "--sf", f"{sf:g}", "--repeat", str(repeat), *scrub,
        "--jupysql", "", "--output", str(report), "--json", str(data),
    )  # fmt: skip
    if done.returncode != 0 or not data.exists():
        raise SystemExit(f"bench/run.py failed:\n{done.stderr[-2000:]}")
    queries = [q for q in json.loads(data.read_text())["tpch"] if not q["error"]]
    raw = {q["number"]: _median(q["raw"]) for q in queries}
    governed = {q["number"]: _median(q["governed"]) for q in queries}
    ratios = {n: governed[n] / raw[n] for n in raw}
    total = sum(governed.values()) / sum(raw.values())
    worst = max(ratios, key=ratios.__getitem__)
    over = sorted(n for n, r in ratios.items() if r > 1.10)
    cold = _median([_median(q["cold_plan"]) for q in queries]) * 1000
    work = _median([_median([g - i for g, i in zip(q["governed"], q["inside"], strict=True)])
                    for q in queries]) * 1000  # fmt: skip
    # Interquartile range over the median: unlike max - min it does not grow with the
    # number of runs (short queries get up to 4x --repeat).
    spread = _median([_iqr(q["raw"]) / _median(q["raw"]) for q in queries])
    scale = f"SF {sf:g}, {len(queries)} queries, medians of {repeat} or more runs"
    return [
        Target(f"TPC-H {scale}: governed / raw, total", "≤ 1.02x", f"{total:.3f}x",
               total <= 1.02),
        Target("TPC-H: the slowest query against its raw time", "≤ 1.10x",
               f"Q{worst:02d} {ratios[worst]:.3f}x"
               + (f" (above: {', '.join(f'Q{n:02d}' for n in over)})" if over else ""),
               not over),
        Target("TPC-H: governance work per statement (median)", "–", f"{work:.2f} ms", None),
        Target("TPC-H: spread of raw times, interquartile range / median (median)", "–",
               f"{spread:.0%}", None),
        Target("Cold plan, median over the 22 texts", "< 3 ms", f"{cold:.2f} ms", cold < 3),
    ]  # fmt: skip


def late_check(sf: float) -> list[Target]:
    log("TPC-H answers under scan and late masking ...")
    done = _python("bench/late_check.py", "--sf", f"{sf:g}")
    lines = [line for line in done.stdout.splitlines() if re.match(r"Q\d\d ", line)]
    same = sum("identical" in line for line in lines)
    return [
        Target(
            "Late masking answers as scan masking (TPC-H)",
            "identical",
            f"{same} of {len(lines)} identical",
            done.returncode == 0 and same == len(lines) > 0,
        )
    ]


def frames(rows: int, repeat: int) -> list[Target]:
    log(f"frames, {rows:,} rows, {repeat} rounds ...")
    import frames as bench_frames

    table, _ = bench_frames.run(rows, repeat)
    return [
        Target(f"`{name}` vs DuckDB's own, {rows:,} rows", "≤ 1.05x",
               f"{governed / own:.2f}x ({own:,.0f} / {governed:,.0f} ms)",
               governed / own <= 1.05)
        for name, own, governed in table
    ]  # fmt: skip


def audit(events: int, postgres: str | None) -> list[Target]:
    """The chain from 1 and 8 processes (kernels) and 8 threads of one process (the
    gateway's sessions), one event, a pair (a statement's attempt and decision) or a batch
    of 100 per commit, each run on a fresh store and verified."""
    import audit as bench_audit

    specs = ["sqlite"] + ([postgres] if postgres and _reachable(postgres) else [])
    runs = [
        {"processes": p, "threads": 1, "batch": b, "group": True}
        for b in (1, 2, 100)
        for p in (1, 8)
    ] + [{"processes": 1, "threads": 8, "batch": b, "group": True} for b in (1, 2)]
    workers = bench_audit.Workers(8)
    rows = []
    try:
        for spec in specs:
            target = bench_audit.Target(spec)
            try:
                if target.admin is not None:
                    latency = bench_audit.commit_latency(target)
                    rows.append(
                        Target(
                            f"{target.kind}: one durable commit of one row on this server "
                            "(bounds one writer at a time: events per commit / latency)",
                            "reported",
                            f"{latency * 1e6:,.0f} µs: at most {1 / latency:,.0f} commits/s",
                            None,
                        )
                    )
                for run in runs:
                    log(f"audit: {target.kind}, {run} ...")
                    m = bench_audit.measure(target, workers, run, events)
                    per = "event" if run["batch"] == 1 else f"{run['batch']} events"
                    rows.append(
                        Target(
                            f"Audit chain, {target.kind}, {m['label']}, {per} per commit",
                            "≥ 5,000 events/s, chain valid",
                            f"{m['rate']:,.0f} events/s, chain {m['chain']}",
                            m["rate"] >= 5000 and m["valid"],
                        )
                    )
            finally:
                target.drop()
    finally:
        workers.stop()
    return rows


def _reachable(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception as error:  # any failure: report without PostgreSQL
        log(f"PostgreSQL at {url} not reachable ({type(error).__name__}); SQLite only")
        return False


def scale(rerun: bool, out: Path) -> list[Target]:
    """SF 10 against SF 1: governance should not grow with data size."""
    path = ROOT / "bench" / "results" / "sf10.json"
    if rerun:
        log("TPC-H SF 10, 3 rounds, no warm-up (about 15 minutes) ...")
        path = out / "sf10.json"
        _python(
            "bench/run.py", "--sf", "10", "--repeat", "3", "--no-warmup", "--no-scrub",
            "--jupysql", "", "--output", str(out / "sf10.md"), "--json", str(path),
        )  # fmt: skip
    if not path.exists():
        return [Target("TPC-H SF 10", "reported", "not run (`--sf10`)", None)]
    data = json.loads(path.read_text())
    queries = [q for q in data["tpch"] if not q["error"] and q["governed"]]
    raw = sum(_median(q["raw"]) for q in queries)
    governed = sum(_median(q["governed"]) for q in queries)
    work = _median([_median([g - i for g, i in zip(q["governed"], q["inside"], strict=True)])
                    for q in queries]) * 1000  # fmt: skip
    date = data["machine"].get("date", "an earlier run")
    when = "this run" if rerun else f"`{path.relative_to(ROOT)}`, {date}"
    return [
        Target(f"TPC-H SF 10 ({len(queries)} queries; {when}): governed / raw, total",
               "reported", f"{governed / raw:.3f}x, work {work:.2f} ms per statement", None)
    ]  # fmt: skip


def memory(rerun: bool) -> list[Target]:
    path = ROOT / "bench" / "results" / "memory-10m.json"
    if rerun:
        log("peak memory, 10M rows, 3 fresh processes per path ...")
        path = Path(tempfile.mkdtemp(prefix="targets-memory-")) / "memory.json"
        _python("bench/memory.py", "--rows", "10000000", "--runs", "3", "--json", str(path))
    if not path.exists():
        return [Target("Peak memory, 10M-row read", "reported", "not run (`--memory`)", None)]
    data = json.loads(path.read_text())
    return [Target("Peak memory, 10M-row governed read vs raw", "reported",
                   _memory_summary(data), None)]  # fmt: skip


def _memory_summary(data: Any) -> str:
    """Median peak above the baseline per path, in MB, from bench/memory.py's JSON (KiB)."""
    parts = []
    for name, reads in data["memory"].items():
        peak = _median([(r["peak"] - r["before"]) / 1024 for r in reads])
        parts.append(f"{name} {peak:,.0f} MB")
    return "peak above baseline: " + ", ".join(parts)


def markdown(targets: list[Target], started: datetime.datetime, load: str) -> str:
    import duckdb

    finished = datetime.datetime.now(datetime.UTC)
    return "\n".join(
        [
            BEGIN,
            "### Every target, one run (`python bench/targets.py --write`)",
            "",
            f"{started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC, commit {_commit()}, "
            f"{os.cpu_count()} cores, duckdb {duckdb.__version__}, load average (1/5/15 min) "
            f"{load} at the start and {_load()} at the end. Ratios are interleaved within "
            "the run; the audit rows take events from every process at once.",
            "",
            "| measure | target | measured | |",
            "|---|---|---|---|",
            *(t.row() for t in targets),
            END,
        ]
    )


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True
    )
    return done.stdout.strip() or "unknown"


def write(section: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    replaced = replace_section(text, BEGIN, END, section)
    if replaced is not None:
        text = replaced
    else:
        anchor = "## Issue 10:"
        head, _, rest = text.partition(anchor)
        line, _, body = rest.partition("\n")
        text = f"{head}{anchor}{line}\n\n{section}\n{body}" if rest else f"{text}\n{section}\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--repeat", type=int, default=9, help="interleaved TPC-H rounds (9)")
    parser.add_argument("--frames-rows", type=int, default=1_000_000)
    parser.add_argument("--frames-repeat", type=int, default=7)
    parser.add_argument("--audit-events", type=int, default=2000, help="per process")
    parser.add_argument("--postgres", default=POSTGRES, help="'' to skip PostgreSQL")
    parser.add_argument("--sf10", action="store_true", help="re-run SF 10 (about 15 min)")
    parser.add_argument("--memory", action="store_true", help="re-run the 10M-row memory read")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    load = _load()
    with tempfile.TemporaryDirectory(prefix="targets-") as tmp:
        out = Path(tmp)
        doc = ROOT / "docs" / "benchmarks.md" if args.write and args.sf == 1 else None
        targets = tpch(args.repeat, args.sf, out, doc)
        targets += late_check(args.sf)
        targets += frames(args.frames_rows, args.frames_repeat)
        targets += audit(args.audit_events, args.postgres or None)
        targets += scale(args.sf10, out)
        targets += memory(args.memory)
    section = markdown(targets, started, load)
    print(section)
    if args.write:
        write(section)
    return 0 if all(t.met is not False for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
