"""Helpers for the notebook tests: parameters injected papermill-style, outputs read back."""
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def smoke_parameters(store, data_dir, seeds=1, wandb="disabled"):
    return (f'SCALE = "smoke"\nSEEDS = {seeds!r}\nDATA_DIR = {str(data_dir)!r}\nWANDB = {wandb!r}\n'
            f'STORE = {str(store)!r}')


def read(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "one parameters cell"
    return cells[0]


def inject_parameters(nb, source):
    """As papermill does: a cell tagged ``injected-parameters`` right after the parameters cell, so
    the notebook's own defaults stay as a user sees them."""
    index = nb.cells.index(parameters_cell(nb))
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell["id"] = "injected-parameters"
    nb.cells.insert(index + 1, cell)
    return nb


def with_parameters(name, source, folder):
    """Notebook ``name`` with ``source`` injected, written to ``folder``; returns its path."""
    path = Path(folder) / f"{name}.ipynb"
    nbformat.write(inject_parameters(read(name), source), path)
    return path


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def html(outs):
    return "".join(o.get("data", {}).get("text/html", "") for o in outs if "data" in o)


def has_image(outs):
    return any("image/png" in o.get("data", {}) for o in outs if "data" in o)


def markdown(outs):
    return "".join(o.get("data", {}).get("text/markdown", "") for o in outs if "data" in o)
