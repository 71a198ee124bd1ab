"""What keeping the plan pure costs: the one copy ``plan._rewrite`` makes of each statement,
against the cold plan it is part of, in one process (medians; ratios, not absolute times).

    python bench/plan_copy.py [--runs 31]

A SELECT joining k aliases of the demo's masked ``customers`` table, k = 1, 4, 16, planned
by bob (masks, late masking) on an emptied plan cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(runs: int) -> list[str]:
    os.environ.setdefault("JUPYTER_GOV_HOME", tempfile.mkdtemp(prefix="jupyter-gov-plan-"))
    import jupyter_gov
    from jupyter_gov import plan as planner

    session = jupyter_gov.connect(identity="bob")
    lines = [
        f"Cold plan vs the rewrite's copy of the statement, median of {runs}:",
        "",
        "| tables joined | cold plan ms | copy ms | copy / cold plan |",
        "|---:|---:|---:|---:|",
    ]
    for k in (1, 4, 16):
        joins = " ".join(f"JOIN customers c{i} ON c{i}.customer_id = c0.customer_id"
                         for i in range(1, k))  # fmt: skip
        cols = ", ".join(f"c{i}.email AS e{i}, c{i}.city AS t{i}" for i in range(k))
        sql = f"SELECT {cols} FROM customers c0 {joins} WHERE c0.customer_id > 10"
        cold, copy = [], []
        for _ in range(runs):
            session._plans.clear()
            started = time.perf_counter()
            plan = session.explain(sql)
            cold.append(time.perf_counter() - started)
            info = plan.statements[0].info
            started = time.perf_counter()
            planner._own_copy(info)
            copy.append(time.perf_counter() - started)
        c, o = statistics.median(cold) * 1000, statistics.median(copy) * 1000
        lines.append(f"| {k} | {c:.2f} | {o:.3f} | {o / c:.1%} |")
    session.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args(argv)
    print("\n".join(measure(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
