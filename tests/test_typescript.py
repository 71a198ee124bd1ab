"""The sidebar's TypeScript passes its jest tests (labextension/test: the typed service
module, the Report and Policy tabs' rendering, the loading tab, the DOM helpers).

They run here so that ``make test`` runs them: the install (``pip install -e .``) runs
``jlpm install`` in labextension/, which brings jest. Without node or that install they
are skipped with the reason, except when CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).resolve().parents[1] / "labextension"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def test_the_sidebars_typescript_passes_its_jest_tests() -> None:
    node = shutil.which("node")
    jlpm = shutil.which("jlpm", path=str(Path(sys.executable).parent)) or shutil.which("jlpm")
    if node is None or jlpm is None:
        _unavailable("node and jlpm (JupyterLab's yarn) are needed for the jest tests")
    if not (LABEXTENSION / "node_modules" / ".bin" / "jest").exists():
        _unavailable("jest is not installed: cd labextension && jlpm install")
    run = subprocess.run(
        [str(jlpm), "jest", "--ci"],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FORCE_COLOR": "0"},
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
