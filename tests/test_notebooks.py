"""Every notebook in notebooks/ runs top to bottom in a fresh kernel.

The committed notebooks are jupytext percent scripts (``notebooks/*.py``); each is read with
jupytext and executed with nbclient in a kernel of this very interpreter (the project's venv),
from an empty temporary directory. Any cell error fails the test with the cell's traceback.
A new notebook is picked up without touching this file; the ones listed in `EXPECTED` must
also show what they are for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

# About 40 s on 2 idle cores, nearly all of it the threshold-tuning simulation.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
KERNEL = "canary-stats-notebook-test"
#: Per-cell limit: only a hung kernel should ever reach it.
CELL_TIMEOUT = 300

#: Run in the kernel before the notebook: any file opened for writing inside the repository
#: or the working directory fails the cell that opened it, naming the file. (An audit hook
#: sees every open() of the kernel, whatever other processes do to the checkout meanwhile.)
NO_WRITES = """
import os, sys

def _refuse_writes(event, args, _roots=(os.path.realpath({root!r}), os.getcwd())):
    if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path, mode, flags = args
    if isinstance(mode, str):
        writes = any(c in mode for c in "wax+")
    else:
        writes = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
    full = os.path.realpath(os.fsdecode(path))
    if writes and "__pycache__" not in full and any(
        full == r or full.startswith(r + os.sep) for r in _roots
    ):
        raise PermissionError(f"a notebook must not write files; it opened {{full}}")

sys.addaudithook(_refuse_writes)
del _refuse_writes
"""

#: Per notebook: texts it must print or display, and how many figures it must draw.
EXPECTED: dict[str, tuple[tuple[str, ...], int]] = {
    "quickstart": (("decision: rollback", "task_success_rate violates", "first rollback at"), 1),
    "threshold_tuning": (("recommended:", "false rollback %", "power % success"), 2),
    "release_review": (
        ("the effect sizes agree with the weekly report", "postmortem of", "crossed the limit"),
        3,
    ),
}


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec running this interpreter, so no user-wide Jupyter setup is involved."""
    root = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(str(root / KERNEL))
    return root


def _texts(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All printed and displayed text of the executed notebook, and its number of figures."""
    parts: list[str] = []
    figures = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream" and out["name"] == "stdout":
                parts.append(out["text"])
            data: dict[str, Any] = out.get("data", {})
            parts.append(str(data.get("text/plain", "")) + str(data.get("text/html", "")))
            figures += "image/png" in data
    return "\n".join(parts), figures


def _execute(path: Path, workdir: Path, kernels: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(path, fmt="py:percent")
    nb.cells.insert(0, nbformat.v4.new_code_cell(NO_WRITES.format(root=str(ROOT))))
    km = KernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    client = NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(cleanup_kc=True)  # we made the kernel manager: shut it down here
    return nb


def test_notebooks_found() -> None:
    assert {p.stem for p in NOTEBOOKS} >= set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path, kernels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Headless and the same everywhere, whatever backend the developer's shell selects: the
    # inline backend renders figures into the outputs, where they are counted below.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    nb = _execute(path, tmp_path, kernels)

    text, figures = _texts(nb)
    needed, min_figures = EXPECTED.get(path.stem, ((), 0))
    for snippet in needed:
        assert snippet in text, f"{path.name} did not show {snippet!r}"
    assert figures >= min_figures, f"{path.name} drew {figures} figures, expected {min_figures}"
    # The audit hook watches the kernel; its worker processes must not leave files here either.
    assert list(tmp_path.iterdir()) == []
