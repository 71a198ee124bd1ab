"""Overhead benchmark: TPC-H raw vs governed vs JupySQL, and in-database scrub vs presidio.

Run ``.venv/bin/python bench/run.py`` (SF 1, 5 repetitions; writes docs/benchmarks.md) or
``--quick`` for a smoke run at SF 0.1 that writes bench/results/benchmarks-quick.md.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
from sections import replace_section

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / ".data"
POLICY = BENCH / "tpch_policy.yaml"
DB_ENV = "JUPYTER_GOV_BENCH_DB"
TARGET_RATIO = 1.02
#: No single query above this governed / raw ratio (issue 10).
TARGET_QUERY_RATIO = 1.10
TARGET_WORK_MS = 2.0
JUPYSQL_QUERIES = (1, 3, 6, 10, 18)

_started = time.perf_counter()


def log(message: str) -> None:
    """Print a progress line with the elapsed time."""
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000.0


# -- data ---------------------------------------------------------------------------------


def tpch_extension() -> Path:
    """The tpch extension binary shipped by the ``duckdb-extension-tpch`` wheel."""
    try:
        import duckdb_extension_tpch
    except ImportError:
        sys.exit("duckdb-extension-tpch is not installed: pip install -e '.[bench]'")
    root = Path(duckdb_extension_tpch.__file__).parent
    found = sorted(root.rglob("tpch.duckdb_extension"))
    if not found:
        sys.exit(f"No tpch.duckdb_extension file under {root}.")
    return found[-1]


def tpch_queries(extension: Path) -> list[tuple[int, str]]:
    """The 22 query texts from ``tpch_queries()`` (an in-memory connection, no data)."""
    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{extension}'")
        rows = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    finally:
        con.close()
    return [(int(n), str(q)) for n, q in rows]


def ensure_tpch(sf: float, extension: Path) -> Path:
    """Generate TPC-H at scale ``sf`` into bench/.data once; later runs reuse the file."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"tpch-sf{sf:g}.duckdb"
    if path.exists():
        log(f"TPC-H SF {sf:g}: reusing {path.relative_to(ROOT)}")
        return path
    log(f"TPC-H SF {sf:g}: generating with dbgen (about 20 s per unit of SF on 2 cores) ...")
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    try:
        con.execute(f"LOAD '{extension}'")
        con.execute(f"CALL dbgen(sf={sf})")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    partial.rename(path)
    log(f"TPC-H SF {sf:g}: wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.0f} MB)")
    return path


#: TPC-H's primary keys (the specification's, section 1.4.2), declared on both the raw and
#: the governed side: a GROUP BY on a customer's key then lets late masking mask the
#: customer's other columns after the aggregate (docs/security.md, "Late masking").
PRIMARY_KEYS = {
    "region": "r_regionkey",
    "nation": "n_nationkey",
    "part": "p_partkey",
    "supplier": "s_suppkey",
    "partsupp": "ps_partkey, ps_suppkey",
    "customer": "c_custkey",
    "orders": "o_orderkey",
    "lineitem": "l_orderkey, l_linenumber",
}


def ensure_keys(path: Path) -> None:
    """Declare TPC-H's primary keys on the generated file once (DuckDB enforces them)."""
    con = duckdb.connect(str(path))
    try:
        declared = {
            str(row[0])
            for row in con.execute(
                "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        }
        missing = [t for t in PRIMARY_KEYS if t not in declared]
        if missing:
            log(f"declaring primary keys on {', '.join(missing)} ...")
            for table in missing:
                con.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({PRIMARY_KEYS[table]})")
            con.execute("CHECKPOINT")
    finally:
        con.close()


def copy_for(source: Path, tag: str) -> Path:
    """A byte-identical copy: DuckDB refuses a second in-process open with another config."""
    target = source.with_name(f"{source.stem}.{tag}.duckdb")
    shutil.copyfile(source, target)
    return target


# -- TPC-H --------------------------------------------------------------------------------


@dataclass
class QueryResult:
    """Timings (seconds) and outcome of one TPC-H query."""

    number: int
    raw: list[float] = field(default_factory=list)
    governed: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)  # time in the connector's execute
    audit: list[float] = field(default_factory=list)  # time in the audit writes (2 commits)
    jupysql: list[float] = field(default_factory=list)
    cold_plan: list[float] = field(default_factory=list)
    warm_plan: list[float] = field(default_factory=list)
    audit_rewrite: list[float] = field(default_factory=list)
    raw_rows: int = 0
    governed_rows: int | None = None
    masked: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    rounds: int = 0  # timed rounds (short queries get more: see rounds_for)

    @property
    def work(self) -> list[float]:
        """Governance work per run: governed wall time minus time inside the connector."""
        return [g - i for g, i in zip(self.governed, self.inside)]


class Timed:
    """Wraps a bound method and adds the time spent in it to ``total``."""

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target = target
        self.total = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.target(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - started


class JupySQL:
    """A JupySQL ``%%sql`` runner in a headless IPython shell, on its own file copy."""

    def __init__(self, path: Path) -> None:
        os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")
        os.environ.setdefault("PLOOMBER_VERSION_CHECK_DISABLED", "true")
        import sqlalchemy
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        with contextlib.redirect_stdout(io.StringIO()):  # "toml not installed" notice
            self.shell.extension_manager.load_extension("sql")
        for setting in ("displaycon = False", "feedback = 0", "autopandas = False"):
            self.shell.run_line_magic("config", f"SqlMagic.{setting}")
        self.shell.user_ns["bench_engine"] = sqlalchemy.create_engine(
            f"duckdb:///{path}", connect_args={"read_only": True}
        )
        self.shell.run_line_magic("sql", "bench_engine --alias tpch")

    def run(self, query: str) -> int:
        """Run a query and fetch every row (``%%sql`` fetches lazily otherwise)."""
        result = self.shell.run_cell_magic("sql", "", query)
        if result is None:
            raise RuntimeError("JupySQL returned no result (see its output above)")
        result.fetchall()
        return len(result)

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.shell.run_line_magic("sql", "--close tpch")


#: Short queries get more rounds (up to ``MAX_ROUNDS_FACTOR`` times ``--repeat``) so that
#: each query is sampled for at least this long: a 10 ms query's median over 9 runs moves
#: by more than the governance work it is meant to show.
MIN_SAMPLE_S = 1.0
MAX_ROUNDS_FACTOR = 4


def rounds_for(warm_s: float, repeat: int) -> int:
    """Timed rounds for a query whose warm-up took ``warm_s`` (at least ``repeat``)."""
    wanted = math.ceil(MIN_SAMPLE_S / warm_s) if warm_s > 0 else repeat
    return max(repeat, min(wanted, repeat * MAX_ROUNDS_FACTOR))


def run_tpch(
    data: Path,
    queries: Sequence[tuple[int, str]],
    repeat: int,
    jupysql_queries: Sequence[int],
    home: Path,
    warmup: bool = True,
    progress: Callable[[list[QueryResult]], None] | None = None,
) -> tuple[list[QueryResult], list[MaskCost]]:
    """Interleave raw / governed (/ JupySQL) per query: one warm-up (unless ``warmup`` is
    False: at SF 10 a warm-up round costs as much as a timed one), then ``repeat`` rounds."""
    import jupyter_gov
    from jupyter_gov import engine
    from jupyter_gov.errors import GovError

    governed_path = copy_for(data, "governed")
    os.environ[DB_ENV] = str(governed_path)
    raw = duckdb.connect(str(data), read_only=True)
    session = jupyter_gov.connect(policy=POLICY, identity="bob", audit=str(home / "audit.sqlite"))
    connector = session.connector()
    inside = Timed(connector.execute)
    connector.execute = inside  # type: ignore[method-assign]
    appends = Timed(session.audit.append)
    session.audit.append = appends  # type: ignore[method-assign]
    together = Timed(session.audit.append_many)  # attempt + decision in one commit
    session.audit.append_many = together  # type: ignore[method-assign]
    jupysql = JupySQL(copy_for(data, "jupysql")) if jupysql_queries else None
    normalized_rewrite: Callable[[Any], str] | None = getattr(engine, "_normalized_rewrite", None)

    def run_raw(query: str) -> tuple[float, int]:
        started = time.perf_counter()
        table = raw.execute(query).to_arrow_table()
        return time.perf_counter() - started, table.num_rows

    def run_governed(query: str) -> tuple[float, float, float, int]:
        inside.total = appends.total = together.total = 0.0
        started = time.perf_counter()
        table = session.sql(query).arrow()
        audited = appends.total + together.total
        return time.perf_counter() - started, inside.total, audited, table.num_rows

    def run_jupysql(query: str) -> float:
        assert jupysql is not None
        started = time.perf_counter()
        jupysql.run(query)
        return time.perf_counter() - started

    results: list[QueryResult] = []
    masks: list[MaskCost] = []
    # Once per session, untimed: the first statement that binds a value (a mask's key) makes
    # DuckDB's Python binding import pandas (seconds on a loaded machine); without a
    # warm-up round that import would land in the first masked query's time.
    session.sql("SELECT c_name FROM customer LIMIT 1").arrow()
    raw.execute("SELECT c_name FROM customer LIMIT 1").to_arrow_table()
    try:
        for number, query in queries:
            result = QueryResult(number)
            results.append(result)
            with_jupysql = jupysql is not None and number in jupysql_queries
            warm = 0.0
            if warmup:
                warm, result.raw_rows = run_raw(query)
            try:
                plan = session.explain(query)
                if plan.decision != "allow":
                    raise GovError(f"{plan.decision}: rules {plan.rules}: {' '.join(plan.reasons)}")
                result.masked = dict(plan.masked_columns)
                if warmup:
                    *_, result.governed_rows = run_governed(query)
            except Exception as error:  # denied or failed: record it, keep benchmarking
                result.error = f"{type(error).__name__}: {error}"
                log(f"Q{number:02d} governed FAILED: {result.error}")
            if with_jupysql and warmup:
                run_jupysql(query)

            result.rounds = rounds_for(warm, repeat) if warmup else repeat
            for round_ in range(result.rounds):
                # The order alternates, so neither path always runs second (on the caches
                # and the data the other one just warmed).
                for path in ("governed", "raw") if round_ % 2 else ("raw", "governed"):
                    if path == "raw":
                        elapsed, result.raw_rows = run_raw(query)
                        result.raw.append(elapsed)
                        continue
                    if result.error is not None:
                        continue
                    try:
                        wall, spent, audited, result.governed_rows = run_governed(query)
                    except Exception as error:  # record it, keep benchmarking
                        result.error = f"{type(error).__name__}: {error}"
                        log(f"Q{number:02d} governed FAILED: {result.error}")
                    else:
                        result.governed.append(wall)
                        result.inside.append(spent)
                        result.audit.append(audited)
                if with_jupysql:
                    result.jupysql.append(run_jupysql(query))
            if result.error is None:
                for _ in range(repeat):
                    started = time.perf_counter()
                    plan = session.explain(query)  # cached: what every .sql() pays first
                    result.warm_plan.append(time.perf_counter() - started)
                    if normalized_rewrite is not None:
                        started = time.perf_counter()
                        normalized_rewrite(plan)
                        result.audit_rewrite.append(time.perf_counter() - started)
                    session._plans.clear()  # a fresh cache: parse, qualify, decide, rewrite
                    started = time.perf_counter()
                    session.explain(query)
                    result.cold_plan.append(time.perf_counter() - started)
            log(_progress_line(result))
            if progress is not None:  # a long run (SF 10) stopped early keeps what it measured
                progress(results)
        masks = _mask_costs(raw, session, inside, repeat)
    finally:
        raw.close()
        session.close()
        if jupysql is not None:
            jupysql.close()
    return results, masks


@dataclass
class MaskCost:
    """What one mask costs inside DuckDB, over every row of its table."""

    column: str
    mask: str
    rows: int
    raw: float
    governed: float

    @property
    def ns_per_row(self) -> float:
        return (self.governed - self.raw) / self.rows * 1e9 if self.rows else float("nan")


def _mask_costs(raw: Any, session: Any, inside: Timed, repeat: int) -> list[MaskCost]:
    """``max(col)`` over a whole table, raw vs governed (time inside DuckDB)."""
    costs = []
    for table, column in (
        ("customer", "c_name"),
        ("customer", "c_address"),
        ("customer", "c_phone"),
    ):
        query = f"SELECT max({column}) AS m FROM {table}"
        rows = int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        label = session.explain(query).masked_columns.get(column, "none")
        raw_times, governed_times = [], []
        for index in range(repeat + 1):
            started = time.perf_counter()
            raw.execute(query).to_arrow_table()
            raw_time = time.perf_counter() - started
            inside.total = 0.0
            session.sql(query)
            if index:  # the first round warms up
                raw_times.append(raw_time)
                governed_times.append(inside.total)
        cost = MaskCost(f"{table}.{column}", label, rows, _med(raw_times), _med(governed_times))
        costs.append(cost)
        log(f"mask cost {cost.column} ({cost.mask}): {cost.ns_per_row:.0f} ns/row")
    return costs


def _progress_line(result: QueryResult) -> str:
    raw = ms(statistics.median(result.raw))
    if result.error is not None:
        return f"Q{result.number:02d} raw {raw:8.2f} ms   governed: failed"
    line = (
        f"Q{result.number:02d} raw {raw:8.2f} ms   governed "
        f"{ms(statistics.median(result.governed)):8.2f} ms   work "
        f"{ms(statistics.median(result.work)):5.2f} ms   cold plan "
        f"{ms(statistics.median(result.cold_plan)):5.2f} ms"
    )
    if result.jupysql:
        line += f"   jupysql {ms(statistics.median(result.jupysql)):8.2f} ms"
    return line


# -- scrub vs presidio --------------------------------------------------------------------

_WORDS = (
    "order delivery refund invoice account please asap thanks customer reported issue "
    "with the package arrived late damaged box support agent called back about billing "
    "question escalated resolved pending review shipment tracking number warehouse"
).split()
_FIRST = ("anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "iris", "jon")
_LAST = ("smith", "garcia", "müller", "rossi", "dubois", "nowak", "khan", "lee", "silva")
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "shop.example.co.uk")


def synthetic_texts(count: int, seed: int = 20240601, size: int = 200) -> list[str]:
    """Deterministic ~``size``-character support notes holding emails, phones and cards."""
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        parts = [f"Ticket {index}:"]
        if rng.random() < 0.8:
            name = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{rng.randint(1, 99)}"
            parts.append(f"customer wrote from {name}@{rng.choice(_DOMAINS)}")
        if rng.random() < 0.6:
            area, exchange, line = (
                rng.randint(200, 999),
                rng.randint(200, 999),
                rng.randint(0, 9999),
            )
            phone = rng.choice(
                (
                    f"+1 ({area}) {exchange}-{line:04d}",
                    f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                    f"{area}-{exchange}-{line:04d}",
                )
            )
            parts.append(f"call back on {phone}")
        if rng.random() < 0.4:
            groups = [f"{rng.randint(0, 9999):04d}" for _ in range(4)]
            parts.append(f"card on file {rng.choice((' ', '-', '')).join(groups)}")
        text = " ".join(parts) + "."
        while len(text) < size:
            text += " " + rng.choice(_WORDS)
        texts.append(text[:size].rstrip())
    return texts


def regex_spans(text: str, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> list[Any]:
    """presidio ``RecognizerResult`` spans, entity by entity in the scrub order, no overlaps."""
    from presidio_anonymizer.entities import RecognizerResult

    taken: list[tuple[int, int]] = []
    spans = []
    for entity, pattern in patterns:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            spans.append(RecognizerResult(entity, start, end, 1.0))
    return spans


@dataclass
class ScrubResult:
    """Values per second of each way of scrubbing the same texts, one entry per run."""

    values: int
    duckdb_all: list[float] = field(default_factory=list)
    duckdb_one: list[float] = field(default_factory=list)
    presidio: list[float] = field(default_factory=list)  # anonymize, spans given
    presidio_re: list[float] = field(default_factory=list)  # re spans + anonymize
    agree: int = 0
    spans: float = 0.0  # entities per text
    sql: str = ""


def run_scrub(count: int, runs: int) -> ScrubResult:
    """The engine's ``scrub`` mask in DuckDB vs presidio-anonymizer's replace operator."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig
    from sqlglot import exp

    from jupyter_gov import masking

    texts = synthetic_texts(count)
    log(f"scrub: {count:,} texts of ~{statistics.mean(map(len, texts)):.0f} characters")
    sql_expr = masking.scrub_expression(exp.column("t"), masking.DEFAULT_SCRUB)
    out = ScrubResult(values=count, sql=sql_expr.sql(dialect="duckdb"))
    query = f"SELECT {out.sql} AS t FROM texts"
    con = duckdb.connect()
    con.execute("CREATE TABLE texts AS SELECT unnest($1::VARCHAR[]) AS t", [texts])
    patterns = [(e, re.compile(masking.SCRUB_PATTERNS[e])) for e in masking.DEFAULT_SCRUB]
    engine = AnonymizerEngine()
    operators = {"DEFAULT": OperatorConfig("replace")}
    all_spans = [regex_spans(t, patterns) for t in texts]
    out.spans = sum(map(len, all_spans)) / count
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]

    def duckdb_rate(n_threads: int) -> float:
        con.execute(f"SET threads = {n_threads}")
        started = time.perf_counter()
        con.execute(query).to_arrow_table()
        return count / (time.perf_counter() - started)

    def presidio_rate(with_detection: bool) -> float:
        started = time.perf_counter()
        for text, spans in zip(texts, all_spans):
            if with_detection:
                spans = regex_spans(text, patterns)
            engine.anonymize(text, spans, operators=operators)
        return count / (time.perf_counter() - started)

    scrubbed = con.execute(query).to_arrow_table().column("t").to_pylist()
    out.agree = sum(
        engine.anonymize(t, s, operators=operators).text == d
        for t, s, d in zip(texts, all_spans, scrubbed)
    )
    duckdb_rate(threads)  # warm-up
    for run in range(runs):
        out.duckdb_all.append(duckdb_rate(threads))
        out.duckdb_one.append(duckdb_rate(1))
        out.presidio.append(presidio_rate(False))
        out.presidio_re.append(presidio_rate(True))
        log(
            f"scrub run {run + 1}/{runs}: duckdb {out.duckdb_all[-1]:,.0f}/s "
            f"(1 thread {out.duckdb_one[-1]:,.0f}/s), presidio {out.presidio[-1]:,.0f}/s "
            f"(with re detection {out.presidio_re[-1]:,.0f}/s)"
        )
    con.execute(f"SET threads = {threads}")
    con.close()
    return out


# -- report -------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    return "unknown"


def machine_info() -> dict[str, str]:
    """What the numbers depend on: CPU, Python, library versions, sqlglotc."""
    import sqlglot.parser

    compiled = Path(sqlglot.parser.__file__ or "").suffix in (".so", ".pyd")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "sqlglot": _version("sqlglot"),
        "sqlglotc": (
            f"{_version('sqlglotc')} (compiled parser in use)"
            if compiled
            else f"{_version('sqlglotc')} (pure-Python sqlglot in use)"
        ),
        "jupyter-gov": f"{_version('jupyter-gov')} (commit {_git_commit()})",
        "jupysql": _version("jupysql"),
        "presidio-anonymizer": _version("presidio-anonymizer"),
    }


def _med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio_text(results: Sequence[QueryResult]) -> str:
    """The total ratio as ``1.004x``; a dash when no query is in the group."""
    return f"{_ratio(results):.3f}x" if results else "–"


def _ratio(results: Sequence[QueryResult]) -> float:
    raw = sum(_med(r.raw) for r in results)
    return sum(_med(r.governed) for r in results) / raw if raw else float("nan")


def _ns(cost: MaskCost) -> str:
    """Nanoseconds per row, or "≈ 0" when within 5% of the raw time (noise)."""
    if abs(cost.governed - cost.raw) < 0.05 * cost.raw:
        return "≈ 0 ns"
    return f"{cost.ns_per_row:.0f} ns"


def _fmt(seconds: float) -> str:
    return f"{ms(seconds):.2f}"


@dataclass
class Summary:
    """Totals and medians over the queries that ran through the engine (seconds)."""

    raw_total: float
    governed_total: float
    inside_total: float
    work: float
    audit: float
    warm: float
    rewrite: float | None
    cold: float
    spread: float  # run-to-run spread of the raw times, relative

    @property
    def ratio(self) -> float:
        return self.governed_total / self.raw_total if self.raw_total else float("nan")

    @property
    def other(self) -> float:
        return self.work - self.audit - self.warm - (self.rewrite or 0.0)

    @classmethod
    def of(cls, results: Sequence[QueryResult]) -> Summary:
        ok = [r for r in results if r.error is None]
        rewrites = [_med(r.audit_rewrite) for r in ok if r.audit_rewrite]
        return cls(
            raw_total=sum(_med(r.raw) for r in ok),
            governed_total=sum(_med(r.governed) for r in ok),
            inside_total=sum(_med(r.inside) for r in ok),
            work=_med([_med(r.work) for r in ok]),
            audit=_med([_med(r.audit) for r in ok]),
            warm=_med([_med(r.warm_plan) for r in ok]),
            rewrite=_med(rewrites) if rewrites else None,
            cold=_med([_med(r.cold_plan) for r in ok]),
            spread=_med([(max(r.raw) - min(r.raw)) / _med(r.raw) for r in ok]),
        )


def render_report(
    args: argparse.Namespace,
    info: dict[str, str],
    tpch: list[QueryResult],
    masks: list[MaskCost],
    scrub: ScrubResult | None,
) -> str:
    """The Markdown report, with the measured numbers and a short interpretation."""
    summary = Summary.of(tpch)
    failed = [r for r in tpch if r.error is not None]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `bench/run.py` ({' '.join(sys.argv[1:]) or 'defaults'}) on {info['date']}."
        " Re-run with `make bench`; `bench/README.md` describes the method.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items() if k != "date"),
        "",
        f"## TPC-H SF {args.sf:g}: raw DuckDB vs governed",
        "",
        f"The {len(tpch)} TPC-H queries from DuckDB's `tpch_queries()`, each "
        + ("run once to warm up and then " if args.warmup else "run (no warm-up round) ")
        + f"{args.repeat} times interleaved, the order alternating (raw, governed; governed, "
        f"raw; ...), a query under {1000 * MIN_SAMPLE_S / args.repeat:.0f} ms more often (up to "
        f"{MAX_ROUNDS_FACTOR * args.repeat} rounds) so each is sampled for about "
        f"{MIN_SAMPLE_S:g} s; medians in ms. "
        "*Raw* is a plain read-only `duckdb.connect()` fetching Arrow; *governed* is "
        "`session.sql(q).arrow()` as user `bob` (role analyst) under `bench/tpch_policy.yaml`, "
        "which masks customer and supplier names (token), addresses (redact) and phones "
        "(partial, last 4). *In DuckDB* is the time inside the connector's `execute` (the "
        "rewritten, masked SQL, fetched as Arrow). *Work* is the governance work: governed wall "
        "time minus time in DuckDB (plan-cache lookup, binding, the audit writes: attempt "
        "and decision in one commit, then the result; audit bookkeeping). Masks a query only "
        "projects are computed after its joins and filters (`masking: {late: true}`). "
        "*Cold plan* is `session.explain()` on an emptied plan cache (parse, "
        "qualify, guardrails, rewrite), which only the first run of a statement pays.",
        "",
        "| Query | raw | governed | ratio | in DuckDB | work | of which audit | cold plan "
        "| rows raw/gov | masked columns |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in tpch:
        if r.error is not None:
            lines.append(
                f"| Q{r.number:02d} | {_fmt(_med(r.raw))} | failed | | | | | | {r.raw_rows}/– | |"
            )
            continue
        rows = f"{r.raw_rows}/{r.governed_rows}"
        if r.raw_rows != r.governed_rows:
            rows += " †"
        lines.append(
            f"| Q{r.number:02d} | {_fmt(_med(r.raw))} | {_fmt(_med(r.governed))} | "
            f"{_med(r.governed) / _med(r.raw):.3f} | {_fmt(_med(r.inside))} | "
            f"{_fmt(_med(r.work))} | {_fmt(_med(r.audit))} | {_fmt(_med(r.cold_plan))} | "
            f"{rows} | {', '.join(sorted(r.masked)) or '–'} |"
        )
    s = summary
    plain = [r for r in tpch if r.error is None and not r.masked]
    masked = [r for r in tpch if r.error is None and r.masked]
    verdict_ratio = "met" if s.ratio <= TARGET_RATIO else "**missed**"
    over = [r for r in tpch if r.error is None and _ratio([r]) > TARGET_QUERY_RATIO]
    verdict_work = "met" if s.work <= TARGET_WORK_MS / 1000 else "**missed**"
    lines += [
        "",
        "### Summary",
        "",
        "| | measured | target |",
        "|---|---:|---:|",
        f"| total of per-query medians, raw | {_fmt(s.raw_total)} ms | |",
        f"| total of per-query medians, governed | {_fmt(s.governed_total)} ms | |",
        f"| governed / raw (total) | **{s.ratio:.3f}x** | ≤ {TARGET_RATIO:.2f}x: {verdict_ratio} |",
        f"| queries above {TARGET_QUERY_RATIO:.2f}x | "
        + (", ".join(f"Q{r.number:02d} {_ratio([r]):.3f}x" for r in over) or "none")
        + f" | none: {'met' if not over else '**missed**'} |",
        f"| governed / raw (total), the {len(plain)} queries that read no masked column "
        f"| {_ratio_text(plain)} | |",
        f"| governed / raw (total), the {len(masked)} queries that read masked columns "
        f"| {_ratio_text(masked)} | |",
        f"| total in DuckDB, governed SQL / raw | {s.inside_total / s.raw_total:.3f}x | |",
        f"| run-to-run spread of raw times, (max − min) / median, median over queries "
        f"| {s.spread:.1%} | |",
        f"| median governance work per query | **{_fmt(s.work)} ms** | ≤ {TARGET_WORK_MS:.0f} ms: "
        f"{verdict_work} |",
        f"| of which: audit writes (2 commits, 3 events) | {_fmt(s.audit)} ms | |",
        f"| of which: cached plan lookup (`explain`) | {_fmt(s.warm)} ms | |",
    ]
    if s.rewrite is not None:
        lines.append(
            "| of which: re-parsing and normalizing the rewritten SQL for the audit "
            f"(`engine._normalized_rewrite`, timed alone) | {_fmt(s.rewrite)} ms | |"
        )
    lines += [
        f"| of which: the rest (binding, events, result object) | {_fmt(s.other)} ms | |",
        f"| median cold plan (parse + qualify + decide + rewrite) | {_fmt(s.cold)} ms | |",
        "",
        'The "of which" lines are medians over queries, so they add up only roughly.',
        "",
    ]
    if any(r.error is None and r.raw_rows != r.governed_rows for r in tpch):
        lines += [
            "† Different row counts are expected where a query filters or groups on a masked "
            "column: masks apply at read, so predicates see masked values (TPC-H Q22 filters "
            "on `substring(c_phone, 1, 2)`, which the partial mask replaces with `*`).",
            "",
        ]
    if masks:
        lines += [
            "### What the masks cost inside DuckDB",
            "",
            "`SELECT max(col) FROM customer`, raw vs governed (time in DuckDB), "
            f"medians of {args.repeat} runs: a mask is evaluated on every row the table scan "
            "produces, before joins and aggregates reduce them.",
            "",
            "| column | mask | rows | raw ms | governed ms | per row |",
            "|---|---|---:|---:|---:|---:|",
            *(
                f"| {m.column} | {m.mask} | {m.rows:,} | {_fmt(m.raw)} | {_fmt(m.governed)} | "
                f"{_ns(m)} |"
                for m in masks
            ),
            "",
        ]
    lines += ["### Denied or failed queries", ""]
    if failed:
        lines += [f"- Q{r.number:02d}: {r.error}" for r in failed]
    else:
        lines.append(f"None: all {len(tpch)} queries were allowed and ran through the engine.")
    lines.append("")
    lines += _jupysql_section(tpch)
    if scrub is not None:
        lines += _scrub_section(scrub)
    lines += _interpretation(summary, tpch, masks, scrub)
    return "\n".join(lines) + "\n"


def _jupysql_section(tpch: list[QueryResult]) -> list[str]:
    subset = [r for r in tpch if r.jupysql and r.error is None]
    if not subset:
        return []
    lines = [
        "## Governed vs raw vs JupySQL",
        "",
        "The same runs, for a few queries also through JupySQL's `%%sql` in a headless IPython "
        "`InteractiveShell` (duckdb-engine SQLAlchemy URL on a read-only copy of the file, all "
        "rows fetched), interleaved raw, governed, JupySQL; medians in ms.",
        "",
        "| Query | raw | governed | JupySQL | governed/raw | JupySQL/raw | governed/JupySQL |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in subset:
        raw, gov, jup = _med(r.raw), _med(r.governed), _med(r.jupysql)
        lines.append(
            f"| Q{r.number:02d} | {_fmt(raw)} | {_fmt(gov)} | {_fmt(jup)} | {gov / raw:.3f} | "
            f"{jup / raw:.3f} | {gov / jup:.3f} |"
        )
    raw_t = sum(_med(r.raw) for r in subset)
    gov_t = sum(_med(r.governed) for r in subset)
    jup_t = sum(_med(r.jupysql) for r in subset)
    lines += [
        f"| total | {_fmt(raw_t)} | {_fmt(gov_t)} | {_fmt(jup_t)} | {gov_t / raw_t:.3f} | "
        f"{jup_t / raw_t:.3f} | {gov_t / jup_t:.3f} |",
        "",
    ]
    return lines


def _scrub_section(scrub: ScrubResult) -> list[str]:
    duck, one = _med(scrub.duckdb_all), _med(scrub.duckdb_one)
    pres, pres_re = _med(scrub.presidio), _med(scrub.presidio_re)
    return [
        "## Masking free text: in-database `scrub` vs presidio",
        "",
        f"{scrub.values:,} deterministic synthetic texts of about 200 characters holding emails, "
        f"phone numbers and card numbers ({scrub.spans:.2f} per text). *scrub* is the engine's "
        "mask (`jupyter_gov.masking.scrub_expression`: nested `regexp_replace` calls) run in "
        "DuckDB over a table of the texts, fetched as Arrow. *presidio* is "
        '`AnonymizerEngine().anonymize(text, spans, operators={"DEFAULT": '
        'OperatorConfig("replace")})` with the spans found by Python `re` using '
        "`jupyter_gov.masking.SCRUB_PATTERNS`, timed without and with that detection. "
        f"Values per second, median of {len(scrub.presidio)} runs.",
        "",
        "| | values/s | vs presidio (spans given) |",
        "|---|---:|---:|",
        f"| scrub in DuckDB, default threads ‡ | {duck:,.0f} | {duck / pres:.1f}x |",
        f"| scrub in DuckDB, 1 thread | {one:,.0f} | {one / pres:.1f}x |",
        f"| presidio anonymize, spans given | {pres:,.0f} | 1.0x |",
        f"| presidio anonymize + `re` detection | {pres_re:,.0f} | {pres_re / pres:.2f}x |",
        "",
        "‡ DuckDB splits work by row groups of 122,880 rows, so up to that many values run on "
        "one thread whatever the setting.",
        "",
        f"Both produce the same text for {scrub.agree:,} of {scrub.values:,} values. The SQL:",
        "",
        "```sql",
        scrub.sql,
        "```",
        "",
    ]


def _interpretation(
    s: Summary, tpch: Sequence[QueryResult], masks: Sequence[MaskCost], scrub: ScrubResult | None
) -> list[str]:
    ok = [r for r in tpch if r.error is None]
    db_ratio = s.inside_total / s.raw_total if s.raw_total else float("nan")
    worst = sorted(ok, key=lambda r: _med(r.inside) - _med(r.raw), reverse=True)[:3]
    plain = [r for r in ok if not r.masked]
    masked = [r for r in ok if r.masked]
    lines = ["## Interpretation", ""]
    lines.append(
        f"- End to end, governed TPC-H takes {s.ratio:.3f}x the raw time "
        f"({'within' if s.ratio <= TARGET_RATIO else 'above'} the {TARGET_RATIO:.2f}x target). "
        f"The {len(plain)} queries that read no masked column take {_ratio_text(plain)}: the "
        "per-statement governance work below, plus noise (raw times alone vary by "
        f"{s.spread:.0%} from run to run on this machine). The {len(masked)} that read masked "
        f"columns take {_ratio_text(masked)}, because the masks cost time inside DuckDB "
        f"({db_ratio:.3f}x raw overall); the largest differences are "
        + ", ".join(
            f"Q{r.number:02d} ({ms(_med(r.inside) - _med(r.raw)):+.2f} ms"
            + (f", masks {', '.join(sorted(r.masked))})" if r.masked else ")")
            for r in worst
        )
        + "."
    )
    if masks:
        dearest = max(masks, key=lambda m: m.ns_per_row)
        lines.append(
            f"- The {dearest.mask} mask on {dearest.column} costs about "
            f"{_ns(dearest)} per row in DuckDB "
            f"({_fmt(dearest.governed - dearest.raw)} ms over {dearest.rows:,} rows). A mask "
            "the query only projects is computed after its joins and filters (late masking); "
            "one it filters, orders or groups on (non-injective masks) runs in the scan, for "
            "every row of the table even when a join or filter later keeps only a handful"
            + "".join(
                f" (Q18 returns {r.raw_rows} rows; the customer table has {dearest.rows:,})"
                for r in tpch
                if r.number == 18
            )
            + "; the others cost "
            + ", ".join(f"{_ns(m)} ({m.mask})" for m in masks if m is not dearest)
            + " per row."
        )
    parts = [
        f"- The median governance work per query is {_fmt(s.work)} ms "
        f"({'within' if s.work <= TARGET_WORK_MS / 1000 else 'above'} the "
        f"{TARGET_WORK_MS:.0f} ms target): the hash-chained SQLite audit writes (2 commits) take "
        f"{_fmt(s.audit)} ms and the cached plan lookup {_fmt(s.warm)} ms."
    ]
    if s.rewrite is not None:
        parts.append(
            f" `GovernedSession.sql()` re-parses and normalizes the rewritten SQL for the "
            f"audit's decision event on every call, even when the plan is cached: "
            f"{_fmt(s.rewrite)} ms, the largest share. Computing it once per plan would leave "
            f"about {_fmt(s.work - s.rewrite)} ms."
        )
    lines.append("".join(parts))
    lines.append(
        f"- A cold plan (the first run of a statement text) costs {_fmt(s.cold)} ms median; "
        "later runs of the same text, parameter types, identity, policy and catalog hit the "
        "plan cache."
    )
    with_jupysql = [r for r in ok if r.jupysql]
    if with_jupysql:
        raw = sum(_med(r.raw) for r in with_jupysql)
        jup = sum(_med(r.jupysql) for r in with_jupysql)
        lines.append(
            f"- On the queries also run through JupySQL, JupySQL takes {jup / raw:.3f}x raw "
            f"and governed {_ratio(with_jupysql):.3f}x: JupySQL fetches rows as Python tuples "
            "through SQLAlchemy, the engine fetches Arrow; the engine's extra cost is its "
            "masks and audit, JupySQL's its row conversion."
        )
    if scrub is not None:
        factor = _med(scrub.duckdb_one) / _med(scrub.presidio)
        lines.append(
            f"- Scrubbing in the database on one thread is {factor:.0f}x faster than "
            "presidio-anonymizer given the spans, and needs no Python round trip per value; "
            "presidio's analyzer finds more kinds of entity (with checksums, context words), "
            "which these regular expressions do not attempt. presidio's cost grows with the "
            "number of entities per text (each span is validated and replaced in Python)."
        )
    lines.append("")
    return lines


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=None, help="TPC-H scale factor (1)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per query (5)")
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="no warm-up round per query (SF 10 on a loaded machine)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: SF 0.1, 2 runs, 10k scrub values"
    )
    parser.add_argument(
        "--jupysql",
        default=",".join(map(str, JUPYSQL_QUERIES)),
        help="TPC-H query numbers also run through JupySQL ('' to skip)",
    )
    parser.add_argument(
        "--queries",
        default="",
        help="only these TPC-H query numbers, in this order (default: all 22)",
    )
    parser.add_argument("--scrub-values", type=int, default=None, help="texts to scrub (100k)")
    parser.add_argument("--no-scrub", action="store_true", help="skip the scrub benchmark")
    parser.add_argument(
        "--databases",
        action="store_true",
        help="also read 1M masked rows from PostgreSQL and MariaDB (bench/databases.py)",
    )
    parser.add_argument("--output", type=Path, default=None, help="report path")
    parser.add_argument("--json", type=Path, default=None, help="also dump raw timings here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sf = args.sf if args.sf is not None else (0.1 if quick else 1.0)
    args.repeat = args.repeat if args.repeat is not None else (2 if quick else 5)
    if args.scrub_values is None:
        args.scrub_values = 10_000 if quick else 100_000
    if args.output is None:
        args.output = (
            BENCH / "results" / "benchmarks-quick.md" if quick else ROOT / "docs" / "benchmarks.md"
        )
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


#: The part of a report file this script owns; the rest (other benchmarks' sections,
#: written by hand or by other scripts) is kept when the report is written again.
BEGIN = "<!-- tpch:begin (bench/run.py) -->"
END = "<!-- tpch:end -->"


def write_report(path: Path, report: str) -> None:
    """Write ``report`` between this script's markers in ``path``, keeping everything else.

    docs/benchmarks.md holds every benchmark's section, so it is never overwritten whole; a
    file of its own (``--output bench/results/...``) without the markers is replaced.
    """
    section = f"{BEGIN}\n{report.rstrip()}\n{END}"
    text = path.read_text() if path.exists() else ""
    replaced = replace_section(text, BEGIN, END, section)
    if replaced is not None:
        text = replaced
    elif text.strip() and path.resolve() == (ROOT / "docs" / "benchmarks.md").resolve():
        sys.exit(
            f"{path} has no {BEGIN} marker: refusing to overwrite what else it holds; "
            "add the markers around the part bench/run.py writes or pass --output."
        )
    else:
        text = section + "\n"  # a new file, or a whole earlier report of this script
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@contextlib.contextmanager
def isolated_home() -> Iterator[Path]:
    """A throw-away JUPYTER_GOV_HOME (audit store, masking key) for the run."""
    previous = os.environ.get("JUPYTER_GOV_HOME")
    with tempfile.TemporaryDirectory(prefix="jupyter-gov-bench-") as home:
        os.environ["JUPYTER_GOV_HOME"] = home
        try:
            yield Path(home)
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_GOV_HOME", None)
            else:
                os.environ["JUPYTER_GOV_HOME"] = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write the report."""
    args = parse_args(argv)
    info = machine_info()
    log(
        f"machine: {info['cpu']}; python {info['python']}; duckdb {info['duckdb']}; "
        f"sqlglot {info['sqlglot']}; sqlglotc {info['sqlglotc']}"
    )
    extension = tpch_extension()
    queries = tpch_queries(extension)
    if args.queries.strip():  # a long run (SF 10) can put the queries it must have first
        texts = dict(queries)
        queries = [(int(n), texts[int(n)]) for n in args.queries.split(",") if n.strip()]
    data = ensure_tpch(args.sf, extension)
    ensure_keys(data)
    wanted = [int(n) for n in args.jupysql.split(",") if n.strip()]
    missing = [m for m in ("sql", "duckdb_engine") if importlib.util.find_spec(m) is None]
    if wanted and missing:
        log("JupySQL comparison skipped: install jupysql and duckdb-engine (the [bench] extra)")
        wanted = []
    log(
        f"TPC-H: {len(queries)} queries, {int(args.warmup)} warm-up + {args.repeat} runs each, "
        "JupySQL on "
        f"{', '.join(f'Q{n}' for n in wanted) or 'none'}"
    )

    def partial_dump(done: list[QueryResult]) -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            dump = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": info}
            dump.update(partial=True, tpch=[vars(r) for r in done])
            args.json.write_text(json.dumps(dump, indent=1, default=str))

    with isolated_home() as home:
        tpch, masks = run_tpch(
            data, queries, args.repeat, wanted, home, args.warmup, progress=partial_dump
        )
    runs = max(3, min(args.repeat, 5))
    scrub = None if args.no_scrub else run_scrub(args.scrub_values, runs)
    report = render_report(args, info, tpch, masks, scrub)
    if args.databases:  # optional: needs the servers; each one that is down is skipped
        from databases import run as run_databases

        with isolated_home():
            report += "\n" + "\n".join(run_databases(1_000_000, args.repeat)) + "\n"
    write_report(args.output, report)
    log(f"wrote {args.output}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        dump = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": info,
            "tpch": [vars(r) for r in tpch],
            "masks": [vars(m) for m in masks],
            "scrub": vars(scrub) if scrub else None,
        }
        args.json.write_text(json.dumps(dump, indent=1, default=str))
    print(report.split("### Denied")[0].split("### Summary")[-1])
    return 1 if any(r.error for r in tpch) else 0


if __name__ == "__main__":
    sys.exit(main())
