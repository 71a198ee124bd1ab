"""Audit chain throughput: events appended per second to one store, from one process, from
several at once and from threads of one process, and the chain verified after every run.

    python bench/audit.py                         # SQLite and PostgreSQL, the whole table
    python bench/audit.py --events 500            # shorter
    python bench/audit.py --stores sqlite --processes 1,8 --batch 1,2,100 --threads 8

Each writer appends ``--events`` decision-sized events as fast as it can, one commit per
event (``--batch 1``, how a result event is written), per pair (``--batch 2``, how a
statement's attempt and decision are written) or ``append_many`` batches of any size.
Writers are processes (each its own store object and connection, as kernels are) or the
threads of one process sharing one store object (as the gateway's sessions are); on
PostgreSQL the threads' appends are committed together (group commit), and the same run
with it switched off is shown for comparison. The worker processes are started once; the
clock of a run starts when every writer has opened the store and written a first event,
and stops when the last one is done. A PostgreSQL URL gets a throw-away schema
``perf_audit_<random>`` per run, dropped at the end. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_gov.audit import AuditStore  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEADLINE = 600  # seconds: a guard against a hung worker


def _event(worker: int, n: int) -> dict[str, Any]:
    """A decision event the size the engine writes (rules, reasons, masked columns)."""
    return {
        "query_id": f"{worker:02d}{n:010d}",
        "subject": f"user{worker}",
        "issuer": "local",
        "auth_method": "local",
        "roles": ["analyst"],
        "connection": "tpch",
        "statement": "SELECT c_name, sum(l_extendedprice) FROM customer JOIN orders ON ? "
        "GROUP BY c_name",
        "fingerprint": uuid.uuid4().hex,
        "decision": "allow",
        "rules": [],
        "reasons": [],
        "masked_columns": {"c_name": "person_name"},
        "policy_hash": "0" * 64,
    }


def _append(store: Any, writer: int, events: int, batch: int) -> None:
    for n in range(0, events, batch):
        if batch == 1:
            store.append("decision", **_event(writer, n))
        else:  # the last batch may be shorter: exactly ``events`` in all
            size = min(batch, events - n)
            store.append_many([("attempt", _event(writer, n + i)) for i in range(size)])


def _run_writers(conn: Any, url: str, worker: int, job: dict[str, Any]) -> None:
    """One run in this process: open, warm up, report ready, wait for the gun, append."""
    store = AuditStore(url)
    if not job["group"]:
        store._group_commit = False  # the comparison run: one transaction per call
    threads = job["threads"]
    one_at_a_time = threading.Lock()  # so every thread opens its own connection
    ready = threading.Barrier(threads + 1)
    gun = threading.Event()
    spans: list[float] = []

    def writer(t: int) -> None:
        with one_at_a_time:
            store.append("attempt", subject="warm-up")
        ready.wait(timeout=DEADLINE)
        gun.wait(timeout=DEADLINE)
        began = time.perf_counter()
        _append(store, worker * threads + t, job["events"], job["batch"])
        spans.append(time.perf_counter() - began)

    pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait(timeout=DEADLINE)
    conn.send("ready")
    conn.recv()  # the gun
    gun.set()
    for thread in pool:
        thread.join(timeout=DEADLINE)
    conn.send(max(spans))
    store.close()


def _worker(conn: Any, worker: int) -> None:
    """A long-lived benchmark process: runs jobs sent to it until told to stop."""
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            _run_writers(conn, job["url"], worker, job)
        except Exception as error:  # the parent stops the run and says why
            conn.send(f"failed: {type(error).__name__}: {error}")


class Workers:
    """Benchmark processes started once (so no run's clock includes Python's start-up)."""

    def __init__(self, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for w in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, w), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def run(self, url: str, processes: int, **job: Any) -> float:
        """Seconds from the moment every writer is ready to the moment the last is done."""
        pipes = self.pipes[:processes]
        for pipe in pipes:
            pipe.send({"url": url, **job})
        for pipe in pipes:
            answer = pipe.recv() if pipe.poll(DEADLINE) else "failed: no answer"
            if answer != "ready":
                raise RuntimeError(f"a benchmark process did not get ready ({answer})")
        began = time.perf_counter()
        for pipe in pipes:
            pipe.send("go")
        for pipe in pipes:
            answer = pipe.recv() if pipe.poll(DEADLINE) else "failed: no answer"
            if isinstance(answer, str):
                raise RuntimeError(f"a benchmark process did not finish ({answer})")
        return time.perf_counter() - began

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


class Target:
    """A fresh, empty store per run: a SQLite file in a temp dir or a PostgreSQL schema."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.kind = "SQLite" if spec == "sqlite" else "PostgreSQL"
        self.admin: Any = None
        if self.kind == "PostgreSQL":
            import psycopg

            self.admin = psycopg.connect(spec, autocommit=True)
        self.schemas: list[str] = []

    def new_url(self) -> str:
        if self.admin is None:
            home = tempfile.mkdtemp(prefix="perf-audit-")
            return f"sqlite:///{os.path.join(home, 'audit.sqlite')}"
        self.schemas.append(f"perf_audit_{uuid.uuid4().hex[:8]}")
        joiner = "&" if "?" in self.spec else "?"
        return f"{self.spec}{joiner}schema={self.schemas[-1]}"

    def drop(self) -> None:
        if self.admin is not None:
            for schema in self.schemas:
                self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            self.admin.close()


def commit_latency(target: Target, commits: int = 300) -> float:
    """Median seconds of one durable single-row commit on the server (a throw-away table).

    Why: an append holds the chain's lock until its commit is durable (the next writer
    reads the head it wrote), so one writer's events per commit / this latency bounds what
    any number of writers can append one commit at a time.
    """
    assert target.admin is not None
    table = f"perf_commit_{uuid.uuid4().hex[:8]}"
    target.admin.execute(f"CREATE TABLE {table} (x INTEGER)")
    try:
        times = []
        for _ in range(commits):
            started = time.perf_counter()
            target.admin.execute(f"INSERT INTO {table} VALUES (1)")  # autocommit: durable
            times.append(time.perf_counter() - started)
    finally:
        target.admin.execute(f"DROP TABLE {table}")
    return statistics.median(times)


def _runs(args: argparse.Namespace, kind: str) -> list[dict[str, Any]]:
    """Every run of the table for one kind of store, in the order they are printed."""
    runs = [
        {"processes": p, "threads": 1, "batch": b, "group": True}
        for b in _ints(args.batch)
        for p in _ints(args.processes)
    ]
    for t in _ints(args.threads):
        for b in (b for b in _ints(args.batch) if b <= 2):
            runs.append({"processes": 1, "threads": t, "batch": b, "group": True})
            if kind == "PostgreSQL":
                runs.append({"processes": 1, "threads": t, "batch": b, "group": False})
    return runs


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip() and int(x) > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        "--store",  # the earlier name, still in docs/benchmarks.md's re-run commands
        default=f"sqlite,{POSTGRES}",
        help="comma-separated: 'sqlite' and/or URLs",
    )
    parser.add_argument("--processes", default="1,8", help="process counts, e.g. 1,8")
    parser.add_argument("--threads", default="8", help="thread counts in one process; 0: none")
    parser.add_argument("--events", type=int, default=1000, help="events per writer")
    parser.add_argument("--batch", default="1,2,100", help="events per commit, e.g. 1,2,100")
    args = parser.parse_args(argv)
    specs = [s.strip() for s in args.stores.split(",") if s.strip()]
    workers = Workers(max(_ints(args.processes) or [1]))
    print(
        "| store | writers | events/commit | events | events/s (all writers) | "
        "events/s (per writer) | chain |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    try:
        for spec in specs:
            target = Target(spec)
            try:
                for run in _runs(args, target.kind):
                    _print_run(target, workers, run, args.events)
            finally:
                target.drop()
    finally:
        workers.stop()
    return 0


def measure(target: Target, workers: Workers, run: dict[str, Any], events: int) -> dict[str, Any]:
    """One run on a fresh store: events/s over every writer, and whether the chain is whole."""
    url = target.new_url()
    AuditStore(url).close()  # tables and functions exist before the race
    wall = workers.run(
        url,
        run["processes"],
        events=events,
        batch=run["batch"],
        threads=run["threads"],
        group=run["group"],
    )
    store = AuditStore(url)
    report = store.verify()
    store.close()
    writers_count = run["processes"] * run["threads"]
    total = writers_count * events
    expected = total + writers_count  # the warm-up events too
    ok = report.ok and report.rows == expected
    if run["threads"] > 1:
        label = f"{run['threads']} threads, 1 process"
        if target.kind == "PostgreSQL":
            label += ", group commit" if run["group"] else ", one commit per call"
    else:
        label = f"{run['processes']} process{'es' if run['processes'] > 1 else ''}"
    chain = f"valid, {report.rows} rows" if ok else f"BROKEN ({report.rows} rows of {expected})"
    return {"label": label, "total": total, "rate": total / wall, "per_writer": events / wall,
            "valid": ok, "chain": chain}  # fmt: skip


def _print_run(target: Target, workers: Workers, run: dict[str, Any], events: int) -> None:
    m = measure(target, workers, run, events)
    print(
        f"| {target.kind} | {m['label']} | {run['batch']} | {m['total']} | {m['rate']:,.0f} | "
        f"{m['per_writer']:,.0f} | {m['chain']} |",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
