"""Binder's postBuild, replayed in a fresh virtual environment: both extensions end up enabled."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.server


def test_postbuild_installs_and_enables_both_extensions(tmp_path):
    if shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Node.js is needed to build the labextension in CI")
        pytest.skip("Node.js is not installed; the labextension cannot be built")
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(env_dir),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("PYTHONPATH", None)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_DIR", None)
    source = tmp_path / "repo"
    _copy_sources(source)
    result = subprocess.run(
        ["bash", "binder/postBuild"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listing = subprocess.run(
        [str(bin_dir / "jupyter"), "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "jupyter_gov" in listing.stdout + listing.stderr
    labext = subprocess.run(
        [str(bin_dir / "jupyter"), "labextension", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "jupyter-gov" in labext.stdout + labext.stderr


_SKIP = {".venv", "node_modules", ".git", "__pycache__", ".yarn", ".pytest_cache", ".data"}


def _copy_sources(target: Path) -> None:
    """Copy the repository as a fresh clone has it: tracked files only, no builds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:  # not a git checkout (an sdist): copy, minus builds and caches
        shutil.copytree(ROOT, target, ignore=_not_sources)
        return
    for name in filter(None, listed.stdout.split("\0")):
        origin = ROOT / name
        if origin.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / name)


def _not_sources(directory: str, names: list[str]) -> set[str]:
    """What a clone would not have: builds, caches and environments."""
    skipped = {n for n in names if n in _SKIP or n.endswith(".pyc")}
    if Path(directory).name == "jupyter_gov":
        skipped.add("labextension")  # the build output: postBuild must build it again
    if Path(directory).name == "labextension":
        skipped.add("lib")
    return skipped
