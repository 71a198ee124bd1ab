"""A test run killed before it dropped its schemas on the shared servers leaves them behind;
the next run's load drops those whose process is gone, and only those."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.connectors.conftest import stale_schemas


def _last_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_schemas_of_a_run_whose_process_is_gone_are_stale():
    gone = _last_pid()
    names = [f"jupyter_gov_demo_{gone}_a1b2c3", f"jupyter_gov_analytics_{gone}_a1b2c3"]
    assert stale_schemas(names) == names


def test_the_schemas_of_a_live_run_are_kept():
    alive = os.getpid()
    assert stale_schemas([f"jupyter_gov_demo_{alive}_a1b2c3"]) == []


def test_other_schemas_are_never_touched():
    gone = _last_pid()
    names = ["jupyter_gov_demo", f"keys_{gone}_a1b2c3", f"jupyter_gov_demo_{gone}", "public"]
    assert stale_schemas(names) == []
