"""Writes the thin notebooks (run once after changing this file: python notebooks/build_notebooks.py).
Each notebook: a title, one parameters cell, a call to the sweep, a call to show the results."""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lookahead_fastai.experiments import EXPERIMENTS

HERE = Path(__file__).parent
NOTEBOOKS = ["start_off", "imagenette", "nested_lookahead", "optimizer_state", "optimizer_tour",
             "optimizers_from_scratch"]

PARAMETERS = '''# Parameters (the tests run every notebook with SCALE = "smoke")
SCALE = "cpu"                    # smoke | cpu | full
SEEDS = None                     # None: the experiment's default for the scale (3 at cpu)
DATA_DIR = "../../shared/data"   # folder holding the datasets (offline copies), or None to download
WANDB = "disabled"               # offline | online | disabled
STORE = "../runs/results.sqlite" # the results database (finished runs are not run again)'''


def build(name):
    exp = EXPERIMENTS[name]
    doc = __import__(f"lookahead_fastai.experiments.{name}", fromlist=["x"]).__doc__.strip()
    cells = [
        new_markdown_cell(f"# {name}\n\n{doc}\n\nScales: " + "; ".join(
            f"**{k}**: {v}" for k, v in exp.protocol.items())),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(f'from lookahead_fastai.sweep import run_experiment\n\n'
                      f'records = run_experiment("{name}", SCALE, SEEDS, store=STORE, data_dir=DATA_DIR, wandb=WANDB)\n'
                      f'print(f"{{len(records)}} runs")'),
        new_code_cell(f'from lookahead_fastai.notebook import show_results\n\n'
                      f'table, pairs = show_results("{name}", SCALE, store=STORE)'),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    for name in NOTEBOOKS:
        build(name)
        print("wrote", HERE / f"{name}.ipynb")
