"""The researchers' notebooks: committed without outputs, and each runs top to bottom.

Each notebook is executed by nbclient in a real Jupyter kernel (this virtual environment's
``python3`` kernel), from the ``notebooks/`` folder as a researcher would open it, with
``CURATOR_NB_SMALL=1`` so it works on small data. A cell that raises fails the test with the
cell's traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = ("dedup_inspection", "fleet_embedding_map", "strategy_comparison")
CELL_TIMEOUT_S = 240
SHUTDOWN_WAIT_S = 60
RUN_TIMEOUT_S = 280  # under pytest-timeout's 300 s


def _notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _read(path: Path) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads(path.read_text())
    return notebook


def stale_cells(notebook: dict[str, Any]) -> list[str]:
    """Where a notebook carries results of a run: outputs, execution counts, timing metadata."""
    found = []
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has execution_count {cell['execution_count']}")
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {i} has execution timing metadata")
    return found


def test_the_expected_notebooks_are_committed() -> None:
    names = {path.stem for path in _notebook_paths()}
    assert set(EXPECTED) <= names, f"missing: {sorted(set(EXPECTED) - names)}"


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    import nbformat

    notebook = _read(path)
    nbformat.validate(notebook)
    assert stale_cells(notebook) == [], f"{path.name}: clear outputs before committing"


def test_stale_cells_finds_outputs_and_counts() -> None:
    clean = {"cells": [{"cell_type": "code", "source": "1 + 1", "outputs": [], "metadata": {}}]}
    assert stale_cells(clean) == []
    output = {"output_type": "execute_result", "data": {"text/plain": "2"}, "execution_count": 3}
    run = {"cells": [{**clean["cells"][0], "execution_count": 3, "outputs": [output]}]}
    assert stale_cells(run) == ["cell 0 has 1 output(s)", "cell 0 has execution_count 3"]
    timed = {
        "cells": [{**clean["cells"][0], "metadata": {"execution": {"shell.execute_reply": 1}}}]
    }
    assert stale_cells(timed) == ["cell 0 has execution timing metadata"]


@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_listed_in_the_readme(path: Path) -> None:
    assert path.name in (NOTEBOOKS / "README.md").read_text()
    assert path.name in (ROOT / "docs" / "notebooks.md").read_text()


# Executes a notebook in a child process, so that the kernel client's sockets (which nbclient
# leaves to the garbage collector) never raise ResourceWarnings inside the test process.
RUNNER = """
import sys
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

source, target, cwd, timeout, wait = sys.argv[1:]
notebook = nbformat.read(source, as_version=4)
# time for the kernel's exit handlers (the fleet notebook stops its server processes)
kernel = KernelManager(kernel_name="python3", shutdown_wait_time=float(wait))
client = NotebookClient(
    notebook, km=kernel, timeout=int(timeout), resources={"metadata": {"path": cwd}}
)
client.execute()
nbformat.write(notebook, target)
"""


@pytest.mark.integration
@pytest.mark.parametrize("path", _notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_NB_")}
    env.update(
        CURATOR_NB_SMALL="1",
        TMPDIR=str(tmp_path),  # whatever a failed run leaves lands here
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    executed = tmp_path / path.name
    before = set(NOTEBOOKS.iterdir())
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), str(executed), str(NOTEBOOKS),
         str(CELL_TIMEOUT_S), str(SHUTDOWN_WAIT_S)],
        capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, f"{path.name} failed:\n{done.stderr[-4000:]}"
    notebook = _read(executed)
    images = [
        output
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell["outputs"]
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} drew no plot"
    written = sorted(p.name for p in set(NOTEBOOKS.iterdir()) - before)
    assert written == [], f"{path.name} wrote {written} into notebooks/"
