"""The AI-preprocessing story notebook runs top to bottom: a person, a pipeline and an agent."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytest.importorskip("sklearn", reason="scikit-learn is not installed")
pytest.importorskip("papermill", reason="papermill is not installed")
pytest.importorskip("mcp", reason="the mcp extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def test_story_notebook_audit_distinguishes_person_pipeline_and_agent(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel and its children import this tree
    monkeypatch.setenv("STORY_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / "ai-preprocessing.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    text = "\n".join(
        output.get("text") or output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "masked identifiers join: 10,000 of 10,000 rows" in text
    assert "raw e-mail addresses left in the text: 0" in text
    assert "held-out accuracy" in text
    assert "papermill run as nightly-churn: ok" in text
    assert "decision: allow" in text
    assert "identities in the audit: agent, service, user" in text
    assert "audit chain ok" in text
