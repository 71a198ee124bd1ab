"""Gateway mode vs in-kernel: masked rows through Arrow Flight, per-query latency, load.

Run: ``PYTHONPATH=. python bench/gateway.py [--rows 1000000] [--clients 8] [--queries 500]``.
It prints a Markdown section for docs/benchmarks.md. Side by side in one run, interleaved,
medians: the same policy, the same service principal, the same DuckDB file; *in-kernel* is
``GovernedSession.sql(q).arrow()`` in this process, *gateway* is the same call on a
:class:`~jupyter_gov.connectors.gateway.GatewaySession` against ``jupyter-gov gateway serve``
started on loopback (plain gRPC; TLS adds the handshake once per connection).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jupyter_gov.audit import AuditStore  # noqa: E402
from jupyter_gov.connectors.gateway import GatewaySession  # noqa: E402
from jupyter_gov.engine import GovernedSession  # noqa: E402
from jupyter_gov.identity.base import PRINCIPAL_ISSUER, SERVICE_AUTH, Identity  # noqa: E402
from jupyter_gov.identity.service import token_digest  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
BIG = "SELECT id, full_name, email, amount FROM people"
SMALL = "SELECT count(*) AS n FROM people WHERE id < :i"


def make_data(folder: Path, rows: int) -> Path:
    path = folder / "people.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        f"""CREATE TABLE people AS SELECT i AS id, 'Person ' || i AS full_name,
            'person' || i || '@example.com' AS email, (i % 1000) * 1.5 AS amount
            FROM range({rows}) t(i)"""
    )
    con.close()
    return path


def make_policy(folder: Path, data: Path) -> Path:
    policy = {
        "version": 1,
        "name": "gateway-bench",
        "identity": {"provider": "local"},
        "roles": {"analyst": {"access": "read_only"}},
        "connections": {"people": {"url": f"duckdb:///{data}", "default": True, "read_only": True}},
        "classifications": {"email": ["people.email"], "person_name": ["people.full_name"]},
        "masks": {"email": {"default": "email"}, "person_name": {"default": "token"}},
        "unclassified": "allow",
        "services": {
            "bench": {
                "token_sha256": token_digest(SECRET),
                "roles": ["analyst"],
            }
        },
    }
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def start(policy: Path, home: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "JUPYTER_GOV_HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_gov.cli", "gateway", "serve", "--policy", str(policy)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the gateway did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency", type=int, default=300, help="small queries per side")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--queries", type=int, default=500, help="per client")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="jupyter-gov-gateway-bench-"))
    home = folder / "home"
    home.mkdir()
    os.environ["JUPYTER_GOV_HOME"] = str(home)
    os.environ.setdefault("JUPYTER_GOV_MASK_KEY", secrets.token_hex(32))
    policy = make_policy(folder, make_data(folder, args.rows))
    process, address = start(policy, home)
    try:
        return report(args, policy, address, home)
    finally:
        process.terminate()
        process.wait(10)


def report(args: argparse.Namespace, policy: Path, address: str, home: Path) -> int:
    identity = Identity(
        subject="bench",
        display_name="service bench",
        auth_method=SERVICE_AUTH,
        issuer=PRINCIPAL_ISSUER,
        verified=True,
        kind="service",
    )
    local = GovernedSession(str(policy), identity, audit=f"sqlite:///{home}/kernel-audit.sqlite")
    remote = GatewaySession(address, f"service:bench:{SECRET}")
    for session in (local, remote):  # warm: plan cache, connector, first Flight channel
        assert session.sql(BIG).arrow().num_rows == args.rows
        session.sql(SMALL, {"i": 1})
    big: dict[str, list[float]] = {"in-kernel": [], "gateway": []}
    for _ in range(args.repeat):
        big["in-kernel"].append(timed(lambda: local.sql(BIG).arrow()))
        big["gateway"].append(timed(lambda: remote.sql(BIG).arrow()))
    small: dict[str, list[float]] = {"in-kernel": [], "gateway": []}
    for i in range(args.latency):
        small["in-kernel"].append(timed(lambda i=i: local.sql(SMALL, {"i": i})))
        small["gateway"].append(timed(lambda i=i: remote.sql(SMALL, {"i": i})))

    def client(number: int) -> tuple[list[float], list[str]]:
        session = GatewaySession(address, f"service:bench:{SECRET}")
        latencies, ids = [], []
        for i in range(args.queries):
            started = time.perf_counter()
            result = session.sql(SMALL, {"i": number * args.queries + i})
            latencies.append((time.perf_counter() - started) * 1000)
            ids.append(result.query_id)
        session.close()
        return latencies, ids

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        outcomes = list(pool.map(client, range(args.clients)))
    wall = time.perf_counter() - started
    load = [x for lat, _ in outcomes for x in lat]
    ids = {q for _, qs in outcomes for q in qs}
    store = AuditStore(f"sqlite:///{home}/audit.sqlite")
    events = store.events(limit=10_000_000)
    kinds = Counter((e["query_id"], e["kind"]) for e in events if e.get("query_id") in ids)
    once = len(kinds) == 3 * len(ids) and set(kinds.values()) == {1}
    chain = store.verify().ok
    store.close()

    kernel_big, gateway_big = statistics.median(big["in-kernel"]), statistics.median(big["gateway"])
    kernel_small = statistics.median(small["in-kernel"])
    gateway_small = statistics.median(small["gateway"])
    lines = [
        "## Gateway mode: through Arrow Flight vs in-kernel",
        "",
        f"Written by `bench/gateway.py --rows {args.rows} --clients {args.clients} "
        f"--queries {args.queries}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}); "
        "the gateway runs in its own process on loopback (plain gRPC), the same policy, "
        "service principal and DuckDB file on both sides; interleaved runs, medians.",
        "",
        "| measure | in-kernel | gateway | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| {args.rows:,} masked rows (email, token), ms, median of {args.repeat} "
        f"| {kernel_big:.1f} | {gateway_big:.1f} | {gateway_big / kernel_big:.2f} | ≤ 1.3 |",
        f"| governance latency per small query, median ms ({args.latency} each) "
        f"| {kernel_small:.2f} | {gateway_small:.2f} | {gateway_small / kernel_small:.2f} | – |",
        f"| same, p99 ms | {percentile(small['in-kernel'], 0.99):.2f} "
        f"| {percentile(small['gateway'], 0.99):.2f} | – | – |",
        "",
        f"Load: {args.clients} concurrent clients × {args.queries} queries against one gateway: "
        f"p50 {percentile(load, 0.5):.2f} ms, p99 {percentile(load, 0.99):.2f} ms per query, "
        f"{len(load) / wall:,.0f} queries/s overall; every query's attempt, decision and result "
        f"in the audit exactly once: {'yes' if once else 'NO'}; chain valid: "
        f"{'yes' if chain else 'NO'}.",
    ]
    print("\n".join(lines))
    local.close()
    remote.close()
    return 0 if once and chain else 1


if __name__ == "__main__":
    sys.exit(main())
