"""Cold plans, A/B: this checkout against another (``../base``: e.g. a worktree of main).

    python bench/cold_plan.py --base ../base [--rounds 21] [--repeat 3] [--clock cpu]
    python bench/cold_plan.py --base ../base --check

Each checkout is imported in its own subprocess. A round takes the 22 TPC-H texts in a
shuffled order and gives each to both sides in turn (who goes first alternates); a side
plans it ``--repeat`` times back to back as ``bench/run.py`` does (the cached plan, then
``session._plans.clear(); session.explain(text)`` timed; identity bob,
``bench/tpch_policy.yaml``). The report gives, per side, the median over the texts of each
text's median (``--clock cpu``: the planning thread's CPU time instead of wall time,
steadier on a shared machine) and of each text's fastest run. Only the schema of TPC-H
is needed (an empty copy is made in a temporary folder). ``--check`` plans a broad corpus
(the 22 texts, and every SQL string literal of the tests, as each demo user, with and
without a row cap) on both sides and compares every plan output byte for byte instead.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TPCH = ROOT / "bench" / ".data" / "tpch-sf1.duckdb"
POLICY = ROOT / "bench" / "tpch_policy.yaml"
DEMO_USERS = ("alice", "bob", "carol", "dave", "eve")
SQL_STARTS = ("select", "with", "insert", "update", "delete", "from", "(select", "values")


def tpch_texts() -> list[str]:
    sys.path.insert(0, str(ROOT / "bench"))
    from run import tpch_extension, tpch_queries

    return [q for _, q in tpch_queries(tpch_extension())]


def test_texts() -> list[str]:
    """Every string literal in tests/ that starts like a statement (a broad corpus)."""
    found: dict[str, None] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        try:
            tree = ast.parse(path.read_text())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.strip()
                if text.lower().startswith(SQL_STARTS) and len(text) < 20_000:
                    found[text] = None
    return list(found)


def empty_tpch(folder: Path, tag: str) -> Path:
    """The TPC-H schema, no rows: a plan reads only the catalog (one file per side: DuckDB
    lets one process at a time open a file for writing)."""
    import duckdb

    source = duckdb.connect(str(TPCH), read_only=True)
    ddl = [r[0] for r in source.execute("SELECT sql FROM duckdb_tables()").fetchall()]
    source.close()
    target = folder / f"tpch-schema-{tag}.duckdb"
    con = duckdb.connect(str(target))
    for statement in ddl:
        con.execute(statement)
    con.close()
    return target


# -- worker side (runs in the checkout under test) ------------------------------------------


def _outputs(plan: Any) -> dict[str, Any]:
    """Every output of a plan, as text, for a byte-for-byte comparison."""
    return {
        "decision": plan.decision,
        "findings": [repr(f) for f in plan.findings],
        "normalized": plan.normalized,
        "fingerprint": plan.fingerprint,
        "error_position": repr(plan.error_position),
        "masked_columns": repr(plan.masked_columns),
        "row_filters": repr(plan.row_filters),
        "audited_sql": plan.audited_sql,
        "rewritten_sql": plan.rewritten_sql,
        "statements": [
            {
                "sql": s.sql,
                "audited_sql": s.audited_sql,
                "params": repr(sorted((k, repr(v)) for k, v in s.internal_params.items())),
                "user_params": repr(s.user_params),
                "positional": repr(s.positional),
                "masked_columns": repr(s.masked_columns),
                "unmasked_tags": repr(sorted(s.unmasked_tags)),
                "exposure": repr(s.exposure),
                "filters": repr(s.filters),
                "placeholders": repr(s.placeholders),
                "kind": s.info.kind,
                "fingerprint": s.info.fingerprint,
                "info_normalized": s.info.normalized,
                "as_written": s.info.expression.sql(),
                "tables": repr([(t.name, t.schema, t.kind) for t in s.info.tables]),
                "functions": repr([name for name, _ in s.info.functions]),
                "rewritten": s.rewritten.sql() if s.rewritten is not None else None,
            }
            for s in plan.statements
        ],
    }


def worker() -> None:
    """Serve commands on stdin: ``round`` (time one cold plan per text), ``check``, ``quit``."""
    os.environ.setdefault("JUPYTER_GOV_HOME", tempfile.mkdtemp(prefix="jupyter-gov-cold-"))
    os.environ.setdefault("JUPYTER_GOV_MASK_KEY", "bench-masking-key-0123456789abcdef")
    import jupyter_gov

    setup = json.loads(sys.stdin.readline())
    os.environ["JUPYTER_GOV_BENCH_DB"] = setup["db"]
    session = jupyter_gov.connect(policy=setup["policy"], identity="bob")
    texts = setup["tpch"]
    clock = time.thread_time if setup.get("clock") == "cpu" else time.perf_counter
    for text in texts:  # warm: imports, the catalog, sqlglot's caches
        session._plans.clear()
        session.explain(text)
    print(json.dumps({"ready": jupyter_gov.__file__}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command.startswith("round"):
            # The texts the driver names (all by default), in its order: shuffled each
            # round, a collection of the cyclic GC lands on a different text each time.
            order = [int(i) for i in command.split()[1:]] or list(range(len(texts)))
            times: list[list[float]] = [[] for _ in texts]
            for index in order:
                for _ in range(setup.get("repeat", 1)):  # as bench/run.py does, back to back
                    session.explain(texts[index])  # the warm plan run.py measures first
                    session._plans.clear()
                    started = clock()
                    session.explain(texts[index])
                    times[index].append(clock() - started)
            print(json.dumps(times), flush=True)
        elif command == "check":
            out: dict[str, Any] = {}
            for text in texts:
                for limit in (None, 10):
                    session._plans.clear()
                    out[f"tpch bob {limit} {text}"] = _outputs(session.explain(text, limit=limit))
            for user in DEMO_USERS:
                demo = jupyter_gov.connect(identity=user)
                for text in setup["tests"]:
                    for limit in (None, 7):  # a row cap wraps the statement
                        key = f"demo {user} {limit} {text}"
                        demo._plans.clear()
                        try:
                            out[key] = _outputs(demo.explain(text, limit=limit))
                        except Exception as error:  # compared like an output
                            out[key] = f"raised {type(error).__name__}: {error}"
                demo.close()
            print(json.dumps(out), flush=True)
        else:
            break


# -- driver side ----------------------------------------------------------------------------


def start(checkout: Path, setup: dict[str, Any]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONHASHSEED="0")  # set reprs alike
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker"],
        cwd=checkout,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin and process.stdout
    process.stdin.write(json.dumps(setup) + "\n")
    process.stdin.flush()
    ready = json.loads(process.stdout.readline())
    print(f"{checkout.name}: {ready['ready']}", file=sys.stderr)
    return process


def ask(process: subprocess.Popen[str], command: str) -> Any:
    assert process.stdin and process.stdout
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required="--worker" not in sys.argv)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=3, help="cold plans per text per turn")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return 0
    with tempfile.TemporaryDirectory(prefix="jupyter-gov-cold-") as folder:
        setup = {
            "policy": str(POLICY),
            "clock": args.clock,
            "repeat": args.repeat,
            "tpch": tpch_texts(),
            "tests": test_texts() if args.check else [],
        }
        sides = {
            name: start(checkout, {**setup, "db": str(empty_tpch(Path(folder), name))})
            for name, checkout in (("base", args.base.resolve()), ("this", ROOT))
        }
        try:
            if args.check:
                return compare({name: ask(p, "check") for name, p in sides.items()})
            times: dict[str, list[list[list[float]]]] = {name: [] for name in sides}
            shuffle = random.Random(0)
            for index in range(args.rounds):
                texts = list(range(len(setup["tpch"])))
                shuffle.shuffle(texts)
                for name in times:
                    times[name].append([[] for _ in texts])
                for turn, text in enumerate(texts):  # each text on both sides in turn
                    for name in list(sides) if (index + turn) % 2 == 0 else reversed(sides):
                        times[name][-1][text] = ask(sides[name], f"round {text}")[text]
        finally:
            for process in sides.values():
                assert process.stdin
                process.stdin.write("quit\n")
                process.stdin.close()
                process.wait()
    report(times)
    return 0


def report(times: dict[str, list[list[list[float]]]]) -> None:
    per_text = {
        name: [
            statistics.median(t for r in rounds for t in r[i]) * 1000 for i in range(len(rounds[0]))
        ]
        for name, rounds in times.items()
    }
    base, this = statistics.median(per_text["base"]), statistics.median(per_text["this"])
    print(f"rounds: {len(times['base'])}, texts: {len(per_text['base'])}")
    print(f"median cold plan: base {base:.3f} ms, this {this:.3f} ms, this/base {this / base:.3f}")
    # The fastest of each text's runs: what a plan costs when nothing else got in the way.
    fastest = {
        name: statistics.median(
            min(t for r in rounds for t in r[i]) * 1000 for i in range(len(rounds[0]))
        )
        for name, rounds in times.items()
    }
    b, t = fastest["base"], fastest["this"]
    print(f"median of each text's fastest: base {b:.3f} ms, this {t:.3f} ms, this/base {t / b:.3f}")
    for i, (b, t) in enumerate(zip(per_text["base"], per_text["this"], strict=True), 1):
        print(f"  Q{i:02d}  {b:6.3f}  {t:6.3f}  {t / b:.3f}")


def compare(outputs: dict[str, dict[str, Any]]) -> int:
    base, this = outputs["base"], outputs["this"]
    differ = [key for key in base if base[key] != this.get(key)]
    print(f"plans compared: {len(base)}; differing: {len(differ)}")
    for key in differ[:10]:
        print(f"--- {key[:200]!r}")
        b, t = base[key], this.get(key)
        if isinstance(b, dict) and isinstance(t, dict):
            for field_name in b:
                if b[field_name] != t.get(field_name):
                    print(f"  {field_name}:")
                    print(f"    base {b[field_name]!r:.400}\n    this {t[field_name]!r:.400}")
        else:
            print(f"  base {b!r:.400}\n  this {t!r:.400}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
