"""Unattended runs: a notebook executed headlessly as a service identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from jupyter_gov.unattended import PipelineNeedsApproval

from .conftest import SERVICE_TOKEN

ROOT = Path(__file__).resolve().parents[2]
BULK_EMAILS = "SELECT email FROM customers"


@pytest.fixture
def service_env(monkeypatch, agents_policy_file, gov_home) -> dict[str, str]:
    env = {
        "JUPYTER_GOV_AUTH_MODE": "service",
        "JUPYTER_GOV_SERVICE": "nightly-churn",
        "JUPYTER_GOV_SERVICE_TOKEN": SERVICE_TOKEN,
        "JUPYTER_GOV_POLICY": str(agents_policy_file),
        "JUPYTER_GOV_AUDIT_STORE": str(gov_home / "pipeline-audit.sqlite"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def approve_as_dave(policy_file: Path, store: str, request_id: str) -> None:
    for key in ("JUPYTER_GOV_AUTH_MODE", "JUPYTER_GOV_SERVICE", "JUPYTER_GOV_SERVICE_TOKEN"):
        os.environ.pop(key, None)
    dave = GovernedSession(Policy.load(policy_file), "dave", audit=store)
    dave.approve(request_id, "nightly export reviewed")


def test_service_run_hitting_an_approval_rule_fails_fast_naming_the_request(
    service_env, agents_policy_file, demo_connector
):
    session = GovernedSession()
    session.use_connector("demo", demo_connector)
    with pytest.raises(PipelineNeedsApproval) as needed:
        session.sql(BULK_EMAILS)
    request_id = needed.value.request_id
    assert request_id in str(needed.value) and "nightly-churn" in str(needed.value)
    assert session.approvals.get(request_id).state == "pending"
    with pytest.raises(PipelineNeedsApproval) as again:  # a re-run files no second request
        session.sql(BULK_EMAILS)
    assert again.value.request_id == request_id
    approve_as_dave(agents_policy_file, service_env["JUPYTER_GOV_AUDIT_STORE"], request_id)
    for key, value in service_env.items():
        os.environ[key] = value
    assert session.sql(BULK_EMAILS).rows == 10_000  # the re-run after approval proceeds
    with pytest.raises(PipelineNeedsApproval):  # and the approval was used up
        session.sql(BULK_EMAILS)


def run_notebook(
    tmp_path: Path, cells: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "pipeline.ipynb"
    nbformat.write(notebook, path)
    return subprocess.run(
        [sys.executable, "-m", "nbconvert", "--execute", "--to", "notebook", "--stdout", str(path)],
        cwd=tmp_path,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_nbconvert_execute_as_a_service_is_audited_as_the_service(tmp_path, service_env):
    ran = run_notebook(
        tmp_path,
        [
            "import jupyter_gov\nsession = jupyter_gov.connect()",
            "print(session.sql('SELECT count(*) AS n FROM orders').rows)",
        ],
        service_env,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    events = AuditStore(service_env["JUPYTER_GOV_AUDIT_STORE"]).events(limit=10)
    results = [e for e in events if e["kind"] == "result"]
    assert len(results) == 1
    assert (results[0]["subject"], results[0]["identity_kind"]) == ("nightly-churn", "service")


def test_nbconvert_run_needing_approval_fails_with_the_request_id(tmp_path, service_env):
    ran = run_notebook(
        tmp_path,
        ["import jupyter_gov\nsession = jupyter_gov.connect()", f"session.sql({BULK_EMAILS!r})"],
        service_env,
    )
    assert ran.returncode != 0
    store = AuditStore(service_env["JUPYTER_GOV_AUDIT_STORE"])
    requests = [e for e in store.events(limit=50) if e["kind"] == "approval_requested"]
    assert len(requests) == 1
    request_id = (
        requests[0]["detail"]["approval_id"]
        if isinstance(requests[0]["detail"], dict)
        else __import__("json").loads(requests[0]["detail"])["approval_id"]
    )
    assert f"needs approval request {request_id}" in ran.stderr + ran.stdout
