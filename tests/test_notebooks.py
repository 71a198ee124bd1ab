"""The quickstart notebook runs top to bottom in a real kernel and shows what it promises."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    return notebook


def plain_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
    return texts


def test_quickstart_runs_and_shows_masks_denials_and_a_valid_audit():
    text = "\n".join(plain_outputs(execute("quickstart.ipynb")))
    assert "masked: credit_card → partial (last 4 kept), email → email" in text
    assert "[deny-drop] DROP statements are not allowed" in text
    assert "[file-read] read_csv() reads files" in text
    assert "row filters: orders-by-region" in text
    assert "<CREDIT_CARD>" in text or "<EMAIL_ADDRESS>" in text or "<PHONE_NUMBER>" in text
    assert "audit chain ok" in text


def test_identity_notebook_runs_and_validates_each_provider_config():
    text = "\n".join(plain_outputs(execute("identity.ipynb")))
    assert "via local (unverified)" in text
    assert "Carol [carol]" in text
    assert "'provider': 'jupyterhub'" in text
    assert "msal policy ok" in text


def test_approvals_notebook_walks_the_request_and_approval_round_trip():
    text = "\n".join(plain_outputs(execute("approvals.ipynb")))
    assert "pending" in text
    assert "approved request" in text
    assert "APPROVED" in text or "USED" in text
    assert "cancelled" in text
    assert "different statement" in text and "is used, not approved" in text
    assert "approval_requested alice" in text and "approval_approved dave" in text
    assert "audit chain ok" in text


def _servers_down() -> str | None:
    """Why the databases notebook cannot run here (None: PostgreSQL and MariaDB answer)."""
    try:
        import adbc_driver_postgresql.dbapi as adbc
        import pymysql

        adbc.connect("postgresql://postgres@127.0.0.1:5432/test").close()
        pymysql.connect(host="127.0.0.1", user="root", connect_timeout=3).close()
    except Exception as error:
        return f"PostgreSQL or MariaDB on 127.0.0.1 is not available ({type(error).__name__})"
    return None


def test_databases_notebook_governs_duckdb_postgres_mariadb_and_spark_side_by_side(
    monkeypatch, request
):
    from jupyter_gov.connectors.spark_local import missing
    from tests.conftest import require_server

    down = _servers_down()
    if down:
        require_server(down)
    # the kernel imports the jupyter_gov under test, not whichever one is installed
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOKS.parent))
    spark_missing = missing()
    if spark_missing is None:  # the test session's one Spark Connect server
        monkeypatch.setenv("JUPYTER_GOV_NB_SPARK", request.getfixturevalue("spark_server"))
    elif os.environ.get("CI") == "true":
        require_server(spark_missing)  # a failure in CI
    else:
        monkeypatch.delenv("JUPYTER_GOV_NB_SPARK", raising=False)
    text = "\n".join(plain_outputs(execute("databases.ipynb")))
    assert "1000 customers in PostgreSQL" in text
    assert text.count("masked: email → email, full_name → token, ssn → partial") >= 2
    assert "on pg" in text and "on maria" in text and "on scratch" in text
    if spark_missing is None:
        assert "1000 customers in Spark" in text
        assert text.count("masked: email → email, full_name → token, ssn → partial") >= 3
        assert "on lake" in text
        assert "reflect" in text and text.count("✖ denied") >= 2
    else:  # without Java the Spark cells say why they did not run, and the rest runs
        assert "Spark cells skipped" in text
    assert "row filters: orders-by-region" in text
    assert "pg_read_file" in text and "✖ denied" in text
    assert "[unknown-table]" in text  # carol cannot read bob's saved result
    assert "audit chain ok" in text


def test_evidence_notebook_notifies_streams_saves_with_provenance_and_reports(monkeypatch):
    """notebooks/evidence.ipynb: webhook notice, OTLP stream, lineage, provenance, report.

    Needs the audit sinks and approval notifications (``jupyter_gov.audit.sinks``,
    ``jupyter_gov.notify``) next to lineage, provenance and the report.
    """
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/evidence.ipynb")  # as Jupyter sets it
    text = "\n".join(plain_outputs(execute("evidence.ipynb")))
    assert "webhook /approvals received:" in text
    assert "statement: SELECT customer_id, email" in text and "'consumer'" not in text
    assert "approved by Dave" in text and "chain intact" in text
    assert "contents ALTERED" in text
    assert "exit code 0" in text and "exit code 1" in text
    assert "contiguous: True" in text
    assert "hash links unbroken: True; last hash matches the store's head: True" in text
    assert "OpenLineage COMPLETE job notebooks/evidence.ipynb#cell-" in text
    assert "inputs: ['duckdb://demo/main.customers']" in text
    assert "Chain intact" in text and "| bob | demo | email | unmasked | 1 | 40 |" in text


def test_gateway_notebook_starts_a_gateway_and_queries_through_it(monkeypatch):
    # the kernel and the gateway it starts import the jupyter_gov under test
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOKS.parent))
    monkeypatch.delenv("JUPYTER_GOV_MASK_KEY")  # a user's kernel has none; the gateway does
    text = "\n".join(plain_outputs(execute("gateway.ipynb")))
    assert "jupyter-gov gateway listening on grpc://127.0.0.1:" in text
    assert "masking key in this kernel: False" in text
    assert "service notebook (analyst; service-token) · on demo" in text
    assert "masked: email → email" in text and "full_name → token" in text
    assert "[deny-drop]" in text and "✖ denied" in text
    assert "segments as a DuckDB relation" in text
    assert "GatewaySession allow" in text
    assert "refused: Service 'notebook' could not sign in to the gateway" in text
    assert "jupyter-gov pgwire listening on 127.0.0.1:" in text  # gateway serve --pg-listen
    assert "psql-style client: ***@" in text  # the PostgreSQL door masks as the Flight one
    assert "audit chain ok" in text
    assert "gateway stopped" in text
