"""Golden plans: every output of the plan of each TPC-H query, byte for byte.

``tests/fixtures/plans/tpch.json`` holds the 22 query texts of DuckDB's tpch extension, the
TPC-H schema, and what ``build_plan`` makes of each text as bob under
``bench/tpch_policy.yaml`` (names, addresses and phones masked; late masking on), with and
without a row cap: the SQL sent, the audit's literal-free SQL, the normalized text and its
fingerprint, findings, masked columns, row filters, placeholders and exposure. Work on the
planner's speed must leave every one of them as it is.

Regenerate only after a deliberate change to what plans say, and review the diff::

    python -m tests.test_plan_golden --update
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.connectors.base import Catalog
from jupyter_gov.guardrails import Context
from jupyter_gov.identity import Identity
from jupyter_gov.plan import Plan, build_plan
from jupyter_gov.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "plans" / "tpch.json"
POLICY = ROOT / "bench" / "tpch_policy.yaml"
LIMITS = (None, 10)


def _context() -> Context:
    policy = Policy.from_text(POLICY.read_text())
    identity = Identity(
        subject="bob", display_name="Bob", auth_method="local", groups=("analysts",)
    )
    return Context(
        policy=policy,
        identity=identity,
        roles=policy.roles_for(identity),
        connection=policy.connection("tpch"),
        dialect="duckdb",
    )


def outputs(plan: Plan) -> dict[str, Any]:
    """Every output of a plan, in a form that compares across processes (sets sorted)."""
    return {
        "decision": plan.decision,
        "findings": [[f.verdict, f.rule, f.reason, f.statement] for f in plan.findings],
        "normalized": plan.normalized,
        "fingerprint": plan.fingerprint,
        "masked_columns": plan.masked_columns,
        "row_filters": plan.row_filters,
        "statements": [
            {
                "sql": s.sql,
                "audited_sql": s.audited_sql,
                "info_normalized": s.info.normalized,
                "info_fingerprint": s.info.fingerprint,
                "as_written": s.info.expression.sql(dialect="duckdb"),
                "tables": [[t.name, t.schema, t.kind] for t in s.info.tables],
                "masked_columns": s.masked_columns,
                "unmasked_tags": sorted(s.unmasked_tags),
                "filters": list(s.filters),
                "placeholders": list(s.placeholders),
                "internal_params": sorted(s.internal_params),
                "exposure": {
                    "rows": s.exposure.rows,
                    "per_row": dict(sorted(s.exposure.per_row.items())),
                    "unbounded": sorted(s.exposure.unbounded),
                    "fixed": dict(sorted(s.exposure.fixed.items())),
                    "tags": {k: sorted(v) for k, v in sorted(s.exposure.tags.items())},
                    "results": sorted(name for name, _ in s.exposure.results),
                },
            }
            for s in plan.statements
        ],
    }


def plan_of(text: str, limit: int | None, schema: list[list[str]]) -> Plan:
    catalog = Catalog.from_rows([tuple(row) for row in schema], default_schema="main")  # type: ignore[misc]
    return build_plan(text, _context(), catalog, {}, limit=limit)


def _fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def _cases() -> list[Any]:
    if not FIXTURE.exists():
        return []
    return [
        pytest.param(case, id=f"Q{case['query']:02d} limit {case['limit']}")
        for case in _fixture()["cases"]
    ]


@pytest.mark.parametrize("case", _cases())
def test_plan_matches_the_golden_one(case: dict[str, Any]) -> None:
    plan = plan_of(case["text"], case["limit"], _fixture()["schema"])
    assert outputs(plan) == case["expected"]


def test_every_tpch_query_has_a_golden_plan_with_and_without_a_row_cap() -> None:
    cases = _fixture()["cases"]
    assert sorted((c["query"], c["limit"] or 0) for c in cases) == [
        (n, limit or 0) for n in range(1, 23) for limit in LIMITS
    ]


def update() -> None:
    """Rewrite the fixture from the TPC-H texts and schema of the bench's database."""
    import duckdb

    sys.path.insert(0, str(ROOT / "bench"))
    from run import DATA, tpch_extension, tpch_queries

    con = duckdb.connect(str(DATA / "tpch-sf1.duckdb"), read_only=True)
    schema = con.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall()
    con.close()
    schema = [list(row) for row in schema]
    cases = [
        {
            "query": number,
            "limit": limit,
            "text": text,
            "expected": outputs(plan_of(text, limit, schema)),
        }
        for number, text in tpch_queries(tpch_extension())
        for limit in LIMITS
    ]
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({"schema": schema, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__" and "--update" in sys.argv:
    update()
