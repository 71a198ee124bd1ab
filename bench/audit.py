"""Audit chain throughput: events appended per second to one store, from one process and
from several at once, and the chain verified afterwards.

    python bench/audit.py                                   # SQLite file, 1 and 8 processes
    python bench/audit.py --store postgresql://postgres@127.0.0.1:5432/test --processes 8

Each process appends ``--events`` decision-sized events as fast as it can, one commit per
event (``--batch 1``, how a result event is written) or per pair (``--batch 2``, how a
statement's attempt and decision are written), or ``append_many`` batches of any size. The
clock starts once every process has connected and written a first event. A PostgreSQL URL
gets a throw-away schema ``perf_audit_<random>``, dropped at the end. Prints one Markdown
table row per run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_gov.audit import AuditStore  # noqa: E402


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


def _work(url: str, worker: int, events: int, batch: int, ready: Any, start: Any, out: Any) -> None:
    store = AuditStore(url)
    store.append("attempt", subject="warm-up")  # connect outside the timed part
    ready.put(worker)
    start.wait()
    began = time.perf_counter()
    for n in range(0, events, batch):
        if batch == 1:
            store.append("decision", **_event(worker, n))
        else:
            store.append_many([("attempt", _event(worker, n + i)) for i in range(batch)])
    out.put(time.perf_counter() - began)
    store.close()


def run(url: str, processes: int, events: int, batch: int) -> tuple[float, float, bool, int]:
    """Events/s over the whole run (wall time of the slowest process), median per process."""
    ctx = mp.get_context("spawn")
    start, ready, out = ctx.Event(), ctx.Queue(), ctx.Queue()
    workers = [
        ctx.Process(target=_work, args=(url, w, events, batch, ready, start, out))
        for w in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:  # every worker imported, connected and warm before the gun
        ready.get(timeout=600)
    began = time.perf_counter()
    start.set()
    spans = [out.get(timeout=600) for _ in workers]
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join()
    report = AuditStore(url).verify()
    total = processes * events
    return total / wall, events / statistics.median(spans), report.ok, report.rows


def _postgres_schema(base: str) -> tuple[str, Any]:
    import psycopg

    schema = f"perf_audit_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(base, autocommit=True)
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}schema={schema}", (admin, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temp file) or a URL")
    parser.add_argument("--processes", default="1,8", help="process counts to run, e.g. 1,8")
    parser.add_argument("--events", type=int, default=2000, help="events per process")
    parser.add_argument("--batch", default="1,2", help="events per commit, e.g. 1,2")
    args = parser.parse_args(argv)
    print(
        "| store | processes | events/commit | events | events/s (all) | events/s "
        "(per process) | chain |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for batch in (int(b) for b in args.batch.split(",")):
        for processes in (int(p) for p in args.processes.split(",")):
            cleanup = None
            if args.store == "sqlite":
                home = tempfile.mkdtemp(prefix="perf-audit-")
                url, kind = f"sqlite:///{os.path.join(home, 'audit.sqlite')}", "SQLite"
            else:
                url, cleanup = _postgres_schema(args.store)
                kind = "PostgreSQL"
            try:
                rate, per, ok, rows = run(url, processes, args.events, batch)
            finally:
                if cleanup is not None:
                    admin, schema = cleanup
                    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    admin.close()
            chain = f"valid, {rows} rows" if ok else "BROKEN"
            print(
                f"| {kind} | {processes} | {batch} | {processes * args.events} | "
                f"{rate:,.0f} | {per:,.0f} | {chain} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
