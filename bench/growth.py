"""How governance cost grows with data size: TPC-H runs at several scale factors, side by side.

    python bench/growth.py bench/results/sf0.1.json bench/results/sf1.json bench/results/sf10.json

Reads the ``--json`` dumps of ``bench/run.py`` and prints one Markdown table with a column
per scale factor. Why a separate script: each scale factor is its own run (SF 10 takes the
better part of an hour), and the comparison should be computed the same way every time,
from the raw timings rather than copied from three reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Query = dict[str, Any]


def _med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _work(q: Query) -> list[float]:
    return [g - i for g, i in zip(q["governed"], q["inside"])]


def _ratio(queries: Sequence[Query], key: str = "governed") -> float:
    raw = sum(_med(q["raw"]) for q in queries)
    return sum(_med(q[key]) for q in queries) / raw if raw else float("nan")


def column(dump: dict[str, Any]) -> dict[str, str]:
    """The figures of one run, formatted, by row label."""
    ok = [q for q in dump["tpch"] if q.get("error") is None]
    plain = [q for q in ok if not q["masked"]]
    masked = [q for q in ok if q["masked"]]
    work = [_med(_work(q)) for q in ok]
    raw = [_med(q["raw"]) for q in ok]
    over = [q for q in ok if _med(q["governed"]) / _med(q["raw"]) > 1.10]
    return {
        "timed runs per query, interleaved": dump["args"]["repeat"]
        + (
            " after one warm-up" if dump["args"].get("warmup", "True") == "True" else ", no warm-up"
        ),
        "queries allowed and run": f"{len(ok)} of {len(dump['tpch'])}",
        "total of per-query medians, raw": f"{sum(raw):,.2f} s",
        "median query, raw": f"{_med(raw) * 1000:,.1f} ms",
        "governed / raw, total": f"**{_ratio(ok):.3f}x**",
        f"governed / raw, the {len(plain)} queries reading no masked column": (
            f"{_ratio(plain):.3f}x"
        ),
        f"governed / raw, the {len(masked)} queries reading masked columns": (
            f"{_ratio(masked):.3f}x"
        ),
        "time in DuckDB, governed SQL / raw (total)": f"{_ratio(ok, 'inside'):.3f}x",
        "queries above 1.10x": ", ".join(
            f"Q{q['number']:02d} {_med(q['governed']) / _med(q['raw']):.2f}" for q in over
        )
        or "none",
        "median governance work per statement": f"**{_med(work) * 1000:.2f} ms**",
        "largest per-query median work": f"{max(work) * 1000:.2f} ms",
        "of which audit writes (median)": f"{_med([_med(q['audit']) for q in ok]) * 1000:.2f} ms",
        "median work / median raw query time": f"{_med(work) / _med(raw):.2%}",
        "median cold plan": f"{_med([_med(q['cold_plan']) for q in ok]) * 1000:.2f} ms",
        "run-to-run spread of raw times, (max − min) / median, median over queries": (
            f"{_med([(max(q['raw']) - min(q['raw'])) / _med(q['raw']) for q in ok]):.0%}"
        ),
    }


def table(dumps: Sequence[dict[str, Any]]) -> list[str]:
    """One row per figure, one column per scale factor, in the order given."""
    columns = [column(d) for d in dumps]
    head = " | ".join(f"SF {float(d['args']['sf']):g}" for d in dumps)
    lines = [f"| | {head} |", "|---|" + "---:|" * len(dumps)]
    labels: list[str] = []
    for col in columns:
        labels += [label for label in col if label not in labels]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(c.get(label, "–") for c in columns) + " |")
    return lines


def per_query_work(dumps: Sequence[dict[str, Any]]) -> list[str]:
    """Median governance work and ratio per query at each scale factor."""
    get: Callable[[dict[str, Any], int], Query | None] = lambda d, n: next(  # noqa: E731
        (q for q in d["tpch"] if q["number"] == n and q.get("error") is None), None
    )
    sfs = [f"SF {float(d['args']['sf']):g}" for d in dumps]
    lines = [
        "| Query | " + " | ".join(f"work {s} ms" for s in sfs) + " | "
        + " | ".join(f"ratio {s}" for s in sfs) + " |",
        "|---:|" + "---:|" * (2 * len(dumps)),
    ]  # fmt: skip
    for number in sorted({q["number"] for d in dumps for q in d["tpch"]}):
        found = [get(d, number) for d in dumps]
        works = [f"{_med(_work(q)) * 1000:.2f}" if q else "–" for q in found]
        ratios = [f"{_med(q['governed']) / _med(q['raw']):.3f}" if q else "–" for q in found]
        lines.append(f"| Q{number:02d} | " + " | ".join(works + ratios) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/run.py --json dumps")
    parser.add_argument("--per-query", action="store_true", help="also the per-query table")
    args = parser.parse_args(argv)
    dumps = [json.loads(path.read_text()) for path in args.runs]
    lines = table(dumps)
    if args.per_query:
        lines += ["", *per_query_work(dumps)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
