"""A real ``jupyter lab`` with the jupyter-gov extension, and Debian's chromium driving it.

The lab runs as a subprocess on a free port with its own token, config, settings, root
and ``JUPYTER_GOV_HOME`` (so its audit store is the one the test seeds). The prebuilt
labextension is taken from ``jupyter_gov/labextension`` (``cd labextension && jlpm install
&& jlpm build``) or, failing that, from an installed wheel.

Missing chromium, playwright, jupyterlab or the built extension skips these tests with the
reason, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("JUPYTER_GOV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
START_TIMEOUT = 90  # seconds for ``jupyter lab`` to serve


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail under CI=true where everything must be present."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def built_labextension() -> Path | None:
    """The folder holding the prebuilt extension's package.json, fresh build first."""
    candidates = [ROOT / "jupyter_gov" / "labextension"]
    try:
        from jupyter_core.paths import jupyter_path

        candidates += [Path(p) / "jupyter-gov" for p in jupyter_path("labextensions")]
    except ImportError:  # pragma: no cover
        pass
    for candidate in candidates:
        if (candidate / "package.json").is_file() and (candidate / "static").is_dir():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    """A running ``jupyter lab``: where it is, how to sign in, and its files."""

    url: str  # ends with "/"
    token: str
    home: Path  # JUPYTER_GOV_HOME: the audit store is home / "audit.sqlite"
    settings_dir: Path
    process: subprocess.Popen
    log: list[str] = field(default_factory=list)

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.sqlite"

    def lab_url(self) -> str:
        return f"{self.url}lab?token={self.token}"

    def write_settings(self, plugin: str, values: dict) -> None:
        """User settings for ``package:plugin`` as JupyterLab keeps them on disk."""
        package, name = plugin.split(":")
        path = self.settings_dir / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _watch(stream, lines: queue.Queue, log: list[str]) -> None:
    for line in iter(stream.readline, ""):
        log.append(line.rstrip())
        lines.put(line)
    lines.put(None)


def approval_contract_shim(base: Path) -> list[str]:
    """A ``sitecustomize`` giving the lab and its kernels the approvals contract, while the
    branch that adds it is not merged (see ``tests/server/approval_contract.py``)."""
    from tests.server.approval_contract import has_contract

    if has_contract():
        return []
    shim = base / "approval-contract"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "from tests.server.approval_contract import install\ninstall()\n"
    )
    return [str(shim)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter lab`` serving the built extension, with the jupyter-gov server extension."""
    if importlib.util.find_spec("jupyterlab") is None:
        unavailable("jupyterlab is not installed (pip install jupyterlab)")
    extension = built_labextension()
    if extension is None:
        unavailable("the labextension is not built: cd labextension && jlpm install && jlpm build")
    base = tmp_path_factory.mktemp("lab")
    home, root, config = base / "gov-home", base / "root", base / "config"
    settings, workspaces, data, runtime = (
        base / "settings",
        base / "workspaces",
        base / "data",
        base / "runtime",
    )
    extensions = base / "labextensions"
    for folder in (home, root, config, settings, workspaces, data, runtime, extensions):
        folder.mkdir()
    # JupyterLab finds extensions as <dir>/<any name>/package.json: link the build there.
    (extensions / "jupyter-gov").symlink_to(extension, target_is_directory=True)
    # The ipywidgets manager, so the approval widget renders as a widget, not as text.
    widgets = Path(sys.prefix, "share", "jupyter", "labextensions", "@jupyter-widgets")
    if widgets.is_dir():
        (extensions / "@jupyter-widgets").symlink_to(widgets, target_is_directory=True)

    port, token = free_port(), secrets.token_hex(16)
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {"jupyter_gov": True},
                    "ip": "127.0.0.1",
                    "port": port,
                    "port_retries": 0,
                    "open_browser": False,
                    "allow_root": True,  # CI and these machines run as root
                    "root_dir": str(root),
                },
                "IdentityProvider": {"token": token},
                "LabApp": {
                    "labextensions_path": [str(extensions)],
                    "user_settings_dir": str(settings),
                    "workspaces_dir": str(workspaces),
                },
                "GovServer": {"policy": "demo", "user": "dave"},  # approves as dave
            }
        )
    )
    env = {
        **os.environ,
        "JUPYTER_GOV_HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    env.pop("JUPYTER_GOV_POLICY", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [*approval_contract_shim(base), str(ROOT), env.get("PYTHONPATH", "")]
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    log: list[str] = []
    threading.Thread(target=_watch, args=(process.stdout, lines, log), daemon=True).start()
    running = Lab(f"http://127.0.0.1:{port}/", token, home, settings, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(0.1, remaining))
            except queue.Empty:
                line = ""
            if line is None or remaining <= 0:
                tail = "\n".join(log[-30:])
                why = "exited" if line is None else f"did not serve within {START_TIMEOUT} s"
                pytest.fail(f"jupyter lab {why}:\n{tail}")
            if f"127.0.0.1:{port}/lab" in line or f"127.0.0.1:{port}/?token" in line:
                break
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium through Playwright (no browser download)."""
    if importlib.util.find_spec("playwright") is None:
        unavailable(
            "playwright is not installed "
            "(PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 pip install playwright)"
        )
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()
