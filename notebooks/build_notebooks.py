"""Writes the thin notebooks (run after changing this file or an experiment: `make regenerate`).

Experiment notebooks: a title, one parameters cell, a call that runs the grid (with a progress bar),
a call that shows the results. ``quickstart``: the demo grid, then Lookahead in your own Learner.
``your_model``: your own dataset and model (defined in the notebook, in cells tagged ``your-code``)
through the same runs, store and results as the built-in experiments.
The output is deterministic (fixed cell ids, no outputs), so the committed notebooks can be checked
against this generator; ``make regenerate`` keeps a committed notebook's outputs of the cells whose
source is unchanged (the notebooks of ``COMMITTED_WITH_OUTPUTS`` are committed with those of the cpu
study's runs)."""
from functools import partial
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lookahead_fastai.experiments import EXPERIMENTS
from lookahead_fastai.notebook import KERNEL_DISPLAY_NAME, KERNEL_NAME

HERE = Path(__file__).parent
EXPERIMENT_NOTEBOOKS = ["start_off", "imagenette", "paper_cifar", "imagenette_leaderboard", "lr_robustness",
                        "nested_lookahead", "optimizer_state", "optimizer_tour", "optimizers_from_scratch"]
NOTEBOOKS = ["quickstart", "your_model", *EXPERIMENT_NOTEBOOKS]
# committed with the outputs of a run against the committed raw results (reports/data/NAME.jsonl), so that
# a reader sees the study without training it; every other notebook is committed without outputs
COMMITTED_WITH_OUTPUTS = ["lr_robustness"]

PARAMETERS = [  # (assignment, comment); SCALE and SEEDS are filled in per notebook
    ('SCALE = "{scale}"', "smoke (seconds) | cpu (minutes on a laptop) | full (the original protocol, a GPU)"),
    ("SEEDS = {seeds}", "None: the experiment's default for the scale (3 or 5 at cpu)"),
    ("DATA_DIR = None", "None: fastai's data folder (~/.fastai/data), downloading what is missing; "
                        "or a folder holding the datasets"),
    ('WANDB = "disabled"', "offline | online | disabled (see the README's W&B section)"),
    ('STORE = "../runs/results.sqlite"', "the results database: finished runs are not run again"),
]

METADATA = {
    "kernelspec": {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"},
    "language_info": {"name": "python"},
}


def parameters_cell(scale="cpu", seeds=None):
    lines = ['# Parameters (tests put their own values in a cell after this one, e.g. SCALE = "smoke")']
    lines += [f"{code.format(scale=scale, seeds=seeds):<34}# {comment}" for code, comment in PARAMETERS]
    return new_code_cell("\n".join(lines), metadata={"tags": ["parameters"]})


def run_cells(name):
    return [
        new_code_cell(f'from lookahead_fastai.notebook import run_grid, show_results\n\n'
                      f'records = run_grid("{name}", SCALE, SEEDS, store=STORE, data_dir=DATA_DIR, wandb=WANDB)'),
        new_code_cell(f'table, pairs = show_results("{name}", SCALE, store=STORE)'),
    ]


def experiment_cells(name):
    exp = EXPERIMENTS[name]
    doc = __import__(f"lookahead_fastai.experiments.{name}", fromlist=["x"]).__doc__.strip()
    return [
        new_markdown_cell(f"# {name}\n\n{doc}\n\nScales: " + "; ".join(
            f"**{k}**: {v}" for k, v in exp.protocol.items())),
        parameters_cell(),
        *run_cells(name),
    ]


QUICKSTART_INTRO = """# Quickstart: does Lookahead help, and how to use it

**1. The demo grid** (under a minute on two CPU cores): SGD, Lookahead(SGD), AdamW and
Lookahead(AdamW) on scikit-learn's 8x8 digits (embedded, nothing to download), one-cycle schedule,
3 seeds each. The bar shows the grid and the run in training; the table below it fills as runs
finish. Runs already in `STORE` (say, from `make demo`) are not trained again.

**2. Lookahead in your own `Learner`**: `lookahead_opt_func` as the `opt_func`, fastai's schedules
driving the inner optimizer, and validation on the slow weights."""

QUICKSTART_LEARNER = """## Lookahead in your own Learner

`lookahead_opt_func(inner, k=5, alpha=0.5, **inner_kwargs)` makes an `opt_func`:
`Lookahead(inner(params, **inner_kwargs), k, alpha)` under fastai's `OptimWrapper`. `inner` is a torch
optimizer class (`torch.optim.SGD`, `Adam`, `AdamW`, `RMSprop`, ...) or one of fastai's optimizer
functions (`SGD`, `Adam`, `RAdam`, `Lamb`, ...). Any model and DataLoaders work; here a small MLP on the
digits. `lr_find` sweeps the learning rate first (plotted inline)."""

QUICKSTART_FIT = """`fit_one_cycle` schedules the inner SGD's lr and momentum (fastai's own `Lookahead` leaves the lr
at 0.001). The bar and the per-epoch table are fastai's."""

QUICKSTART_SLOW = """The slow weights are the ones the paper evaluates: `SlowWeightEvalCallback` validates on them
and puts the fast weights back afterwards (`Lookahead.use_slow_weights()` does the same in plain
PyTorch). Next: the experiment notebooks (`start_off`, `imagenette`, ...) and the README."""


def quickstart_cells():
    return [
        new_markdown_cell(QUICKSTART_INTRO),
        parameters_cell(scale="cpu", seeds=3),
        *run_cells("demo"),
        new_markdown_cell(QUICKSTART_LEARNER),
        new_code_cell('import torch\n'
                      'from torch import nn\n'
                      'from fastai.vision.all import Learner, accuracy\n'
                      'from lookahead_fastai import lookahead_opt_func\n'
                      'from lookahead_fastai.data import build_dataloaders\n\n'
                      'dls = build_dataloaders("digits", bs=64).dls  # 1,438 train / 359 valid images, 1x8x8\n'
                      'model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n'
                      'learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy,\n'
                      '                opt_func=lookahead_opt_func(torch.optim.SGD, k=5, alpha=0.5, momentum=0.9),\n'
                      '                path="../runs")  # where learn.save() and lr_find\'s temporary checkpoint go\n'
                      'learn.lr_find()'),
        new_markdown_cell(QUICKSTART_FIT),
        new_code_cell('learn.fit_one_cycle(5, 0.1)'),
        new_markdown_cell(QUICKSTART_SLOW),
        new_code_cell('from lookahead_fastai.callbacks.lookahead import SlowWeightEvalCallback\n\n'
                      'learn.validate(cbs=SlowWeightEvalCallback())  # [valid loss, accuracy] on the slow weights'),
    ]


YOUR_MODEL_INTRO = """# Your model and data, through the same machinery

Does Lookahead help *your* training? Define your data and your model (the two functions below stand in
for yours: scikit-learn's 8x8 digits, embedded, and a small MLP), declare the rows to compare, and the
suite runs them over seeds exactly as it runs its own experiments: the same store (finished runs are
not trained again, a killed run resumes exactly), the same paired differences and figures.

- **data**: a function with no required argument returning torch `Dataset`s `(train, valid)` (or
  `(train, valid, test)`) of `(x, y)` items with integer labels, or fastai `DataLoaders`;
- **model**: a function called as `net(n_out=<number of classes>)` returning an `nn.Module`;
- **rows**: an optimizer (a registry name such as `adamw`, `lookahead(adamw)`, or your own), its lr
  and hyper-parameters.

The same experiment as a file is `lookahead-fastai run my_experiment.toml` (see the README)."""

YOUR_MODEL_CODE = """Your code (functions defined at the top level, so the suite names them by their import path,
`__main__:digits`, in the store and in run ids):"""

YOUR_MODEL_EXPERIMENT = """The experiment: `smoke` (a few seconds) and `cpu` (the full digits, under a minute on two CPU
cores) are its scales; `SCALE` picks one."""


def your_model_cells():
    return [
        new_markdown_cell(YOUR_MODEL_INTRO),
        parameters_cell(),
        new_markdown_cell(YOUR_MODEL_CODE),
        new_code_cell('import torch\n'
                      'from sklearn.datasets import load_digits\n'
                      'from torch import nn\n'
                      'from torch.utils.data import TensorDataset\n\n\n'
                      'def digits():\n'
                      '    """Your data: (train, valid) Datasets of (x, y) pairs with integer class labels."""\n'
                      '    x, y = load_digits(return_X_y=True)\n'
                      '    x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)\n'
                      '    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])\n\n\n'
                      'def net(n_out):\n'
                      '    """Your model, for n_out classes (read from the data)."""\n'
                      '    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, n_out))',
                      metadata={"tags": ["your-code"]}),
        new_markdown_cell(YOUR_MODEL_EXPERIMENT),
        new_code_cell('from lookahead_fastai import your_experiment\n'
                      'from lookahead_fastai.notebook import run_grid, show_results\n\n'
                      'experiment = your_experiment(\n'
                      '    "your_model", dataset=digits, arch=net, epochs=5, bs=64, schedule="one_cycle",\n'
                      '    rows=[{"name": "AdamW", "optimizer": "adamw", "lr": 3e-3, "hyper": {"wd": 1e-2}},\n'
                      '          {"name": "LA/AdamW", "optimizer": "lookahead(adamw)", "lr": 3e-3,\n'
                      '           "hyper": {"wd": 1e-2, "k": 5, "alpha": 0.5}}],\n'
                      '    compare=[("LA/AdamW", "AdamW")],\n'
                      '    scales={"smoke": {"epochs": 1, "n_train": 256, "seeds": 1}, "cpu": {"seeds": 3}})\n'
                      'records = run_grid(experiment, SCALE, SEEDS, store=STORE, data_dir=DATA_DIR, wandb=WANDB)'),
        new_code_cell('table, pairs = show_results(experiment, SCALE, store=STORE)'),
    ]


def build(name):
    """The notebook ``name`` as a NotebookNode (cells with fixed ids, no outputs)."""
    own = {"quickstart": quickstart_cells, "your_model": your_model_cells}
    cells = own.get(name, partial(experiment_cells, name))()
    for i, cell in enumerate(cells):
        cell["id"] = f"{name}-{i}"
    return new_notebook(cells=cells, metadata=METADATA)


def write(name, folder=HERE):
    path = Path(folder) / f"{name}.ipynb"
    nbformat.write(build(name), path)
    return path


if __name__ == "__main__":
    for name in NOTEBOOKS:
        print("wrote", write(name))
