"""Every notebook runs top to bottom at smoke scale, and holds no logic of its own."""
import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["start_off", "imagenette", "nested_lookahead", "optimizer_state", "optimizer_tour", "optimizers_from_scratch"]


def _smoke_parameters(store, data_dir):
    return (f'SCALE = "smoke"\nSEEDS = 1\nDATA_DIR = {str(data_dir)!r}\nWANDB = "disabled"\n'
            f'STORE = {str(store)!r}')


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_smoke_scale(name, tmp_path, shared_data):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "one parameters cell"
    for key in ("SCALE", "SEEDS", "DATA_DIR", "WANDB", "STORE"):
        assert key in params[0].source
    params[0].source = _smoke_parameters(tmp_path / "results.sqlite", shared_data)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs if "data" in o)
    assert "final accuracy" in html and "mean difference" in html  # the two tables
    assert any("image/png" in o.get("data", {}) for o in outputs if "data" in o)  # the curves


@pytest.mark.parametrize("name", NAMES)
def test_notebook_holds_no_logic(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) <= 3
    for source in code:
        logic = [type(n).__name__ for n in ast.walk(ast.parse(source))
                 if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.Lambda, ast.If))]
        assert not logic, (name, logic)
        assert "lookahead_fastai" in source or "SCALE" in source
