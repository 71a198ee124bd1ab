"""Late masking answers TPC-H as scan masking does: every query both ways, results compared.

    python bench/late_check.py [--sf 1]

Runs the 22 TPC-H queries as ``bob`` under ``bench/tpch_policy.yaml`` twice, once with
``masking: {late: false}`` (every mask in the scan) and once with late masking, on the
benchmark's database (primary keys declared, as ``bench/run.py`` declares them), and
prints per query whether the rewritten SQL differs ("masks moved": a mask computed above
the scan, or a partial mask narrowed to the prefix the query reads, rule 7 of "Late masking"
in docs/security.md, which TPC-H Q22 is) and whether the two answers are identical (rows in
order). Exit status 1 if any answer differs. A correctness check for the benchmark's own
workload; the specification is ``tests/adversarial/test_late_masking.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0)
    args = parser.parse_args(argv)
    import jupyter_gov
    from jupyter_gov.policy import Policy

    extension = run.tpch_extension()
    data = run.ensure_tpch(args.sf, extension)
    run.ensure_keys(data)
    os.environ.setdefault("JUPYTER_GOV_HOME", tempfile.mkdtemp(prefix="late-check-"))
    base = Policy.load(run.POLICY)
    sessions = {}
    for late in (False, True):
        # One file per session: DuckDB refuses a second in-process open of a locked file.
        os.environ[run.DB_ENV] = str(run.copy_for(data, f"latecheck{int(late)}"))
        data_ = dict(base.data)
        data_["masking"] = {**(data_.get("masking") or {}), "late": late}
        sessions[late] = jupyter_gov.connect(
            policy=Policy(data_),
            identity="bob",
            audit=os.path.join(os.environ["JUPYTER_GOV_HOME"], f"audit-{late}.sqlite"),
        )
        sessions[late].connector()  # opened now, on this session's own copy
    differ = 0
    for number, query in run.tpch_queries(extension):
        scan_sql = sessions[False].explain(query).rewritten_sql
        late_sql = sessions[True].explain(query).rewritten_sql
        scan = sessions[False].sql(query).arrow()
        late = sessions[True].sql(query).arrow()
        same = scan.equals(late)
        differ += not same
        moved = "masks moved" if scan_sql != late_sql else "same SQL"
        verdict = "identical" if same else "DIFFER"
        print(f"Q{number:02d} {moved:11s} rows {late.num_rows:6d} {verdict}")
    for session in sessions.values():
        session.close()
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
