"""Every notebook in notebooks/ runs top to bottom, and is committed clean.

The test runs each notebook at its small settings with the overrides in `SMOKE` (fewer steps
and pairs: the code paths of the small run at a fraction of its time), injected as a cell right
after the cell tagged "parameters", as papermill does.

Each notebook is executed with nbclient in a fresh kernel of *this* interpreter (the generic
`python3` kernelspec that pip installs runs whatever `python` is first on PATH, which need not be
the virtualenv), with its working directory set to a temporary folder, on CPU, with a
non-interactive matplotlib backend. New notebooks are picked up automatically.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel import kernelspec
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "jaxmm-notebook-tests"
CELL_TIMEOUT_S = 900


# Test-only settings per notebook, on top of its parameters cell (the small settings are what
# a reader runs; these only shorten the smoke run).
SMOKE = {
    "interactions": {
        "NUM_TRAIN_PAIRS": 300,
        "MAX_TEST_PAIRS": 200,
        "STEPS": 4,
    },
    "tuple_disturbing": {"NUM_TRAIN_PAIRS": 500, "MAX_TEST_PAIRS": 300, "STEPS": 20},
    "estimator_bounds": {
        "STEPS_PER_LEVEL": 40,
        "CAP_STEPS_PER_LEVEL": 30,
        "DIM_STEPS_PER_LEVEL": 30,
        "CMI_STEPS": 100,
    },
}


def _with_smoke_settings(nb, name):
    """`nb` with SMOKE[name] assigned in a new cell after the "parameters" cell."""
    (index,) = [
        i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    names = set(SMOKE.get(name, {}))
    undefined = names - set(_assigned_names(nb.cells[index].source))
    assert not undefined, f"{name}: SMOKE sets {sorted(undefined)}, not in its parameters cell"
    source = "\n".join(f"{k} = {v!r}" for k, v in SMOKE.get(name, {}).items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


def _assigned_names(source):
    return [
        t.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    ]


def _ids(paths):
    return [p.stem for p in paths]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec pointing at sys.executable, found first through JUPYTER_PATH."""
    prefix = tmp_path_factory.mktemp("kernel")
    kernelspec.install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(
        [str(prefix / "share" / "jupyter"), env.get("JUPYTER_PATH", "")]
    ).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env["MPLBACKEND"] = "Agg"
    spec = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    argv = spec.get_kernel_spec(KERNEL_NAME).argv
    assert argv[0] == sys.executable, f"kernelspec runs {argv[0]}, tests run {sys.executable}"
    return env


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', expected 1"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path, tmp_path, kernel_env, monkeypatch):
    # The kernel manager resolves kernel names through JUPYTER_PATH of *this* process.
    monkeypatch.setenv("JUPYTER_PATH", kernel_env["JUPYTER_PATH"])
    nb = _with_smoke_settings(nbformat.read(path, as_version=4), path.stem)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute(env=kernel_env)
    except CellExecutionError as e:  # the message holds the cell source and its traceback
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
