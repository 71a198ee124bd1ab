"""Run a notebook in a real kernel and print what a user would see, cell by cell.

``make demo`` and ``jupyter-gov demo`` use this: it executes the notebook headlessly
with nbclient and prints each cell's source and its plain-text outputs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_RULE = "─" * 78


def run_notebook(path: str | Path, timeout: int = 300, kernel: str = "python3") -> int:
    """Execute ``path``; print sources and outputs; return 0 if every cell ran."""
    import nbformat
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.exists():
        print(f"jupyter-gov: notebook {path} does not exist.", file=sys.stderr)
        return 2
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
    )
    print(f"Running {path} in a real kernel ...", flush=True)
    status = 0
    try:
        # The kernel's own stderr is start-up chatter; cell errors come back as outputs.
        client.execute(stderr=subprocess.DEVNULL)
    except CellExecutionError as error:
        print(f"jupyter-gov: a cell failed: {str(error).splitlines()[0]}", file=sys.stderr)
        status = 1
    except (NoSuchKernel, RuntimeError, OSError, TimeoutError) as error:
        print(
            f"jupyter-gov: could not run a {kernel!r} kernel ({error}); install ipykernel in "
            "this environment (make install does).",
            file=sys.stderr,
        )
        return 1
    for index, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "code":
            continue
        print(_RULE)
        label = f"In [{cell.get('execution_count') or index}]: "
        print(label + cell.source.replace("\n", "\n" + " " * len(label)))
        for output in cell.get("outputs", []):
            text = _output_text(output)
            if text:
                print(text.rstrip())
    print(_RULE)
    print("Done." if status == 0 else "Stopped at a failing cell.")
    return status


def _output_text(output: dict) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            return data.get("text/plain", "[widget]")
        return data.get("text/plain", "")
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    return ""
