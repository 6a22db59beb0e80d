"""Your own model and data (issue 22): a user package written to a temporary folder (a dataset, a
model, an optimizer of its own, a TOML file) through the CLI at a tiny size, killed once and resumed
exactly, reported; the same experiment from Python; the your_model notebook at smoke scale; every bad
input as one line and exit 2 with nothing written to the store.

The CLI processes run tests/lifecycle_cli.py (``python -m lookahead_fastai.cli`` with its kill hook,
``LIFECYCLE_KILL=RUN_ID@after@EPOCH``) in the user's folder, one thread each, so that runs are
bit-for-bit comparable across processes."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from nbclient import NotebookClient
from notebook_tools import html, inject_parameters, outputs, read
from test_lifecycle import LAUNCHER, TIMEOUT, by_name, child_env, launch
from torch import nn
from torch.utils.data import TensorDataset

from lookahead_fastai import cli
from lookahead_fastai.experiments import Experiment, RunSpec, SpecError
from lookahead_fastai.experiments.yours import load_experiment, your_experiment
from lookahead_fastai.registry.user import load_dataset
from lookahead_fastai.results.report import write_report
from lookahead_fastai.store import ResultsStore
from lookahead_fastai.sweep import plan, run_experiment

PACKAGE = "yourpkg_t22"  # a name no other test imports: this process keeps it in sys.modules
FILES = {
    "__init__.py": "",
    "data.py": '''
        import torch
        from torch.utils.data import TensorDataset


        def blobs():
            """3 Gaussian blobs in 2-D: 192 train and 96 valid points."""
            g = torch.Generator().manual_seed(0)
            centres = torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
            y = torch.arange(288) % 3
            x = centres[y] + 1.2 * torch.randn(288, 2, generator=g)
            return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])
        ''',
    "models.py": '''
        from torch import nn


        def net(n_out):
            return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, n_out))
        ''',
    "optim.py": '''
        import torch


        class SignSGD(torch.optim.Optimizer):
            """Steps by the sign of a momentum buffer (state a checkpoint must carry)."""

            def __init__(self, params, lr=0.01, momentum=0.0):
                super().__init__(params, dict(lr=lr, momentum=momentum))

            @torch.no_grad()
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                            buf.mul_(group["momentum"]).add_(p.grad)
                            p.add_(buf.sign(), alpha=-group["lr"])
        ''',
    "bad.py": '''
        def raises():
            raise RuntimeError("disk on fire")


        def a_list():
            return [1, 2, 3]


        def a_string(n_out):
            return "resnet"


        def float_labels():
            import torch
            from torch.utils.data import TensorDataset
            return TensorDataset(torch.zeros(4, 2), torch.zeros(4)), TensorDataset(torch.zeros(2, 2), torch.zeros(2))


        class NotAnOptimizer:
            pass
        ''',
}
TOML = f'''
name = "yours_t22"
description = "a user package: blobs, a BatchNorm MLP, Adam, Lookahead(Adam), Lookahead(its own SignSGD)"
dataset = "{PACKAGE}.data:blobs"
arch = "{PACKAGE}.models:net"
epochs = 4
bs = 32
seeds = 2
schedule = "one_cycle"

[[rows]]
name = "Adam"
optimizer = "adam"
lr = 1e-2

[[rows]]
name = "LA/Adam"
optimizer = "lookahead(adam)"
lr = 1e-2
hyper = {{ k = 5, alpha = 0.5 }}

[[rows]]
name = "LA/SignSGD"
optimizer = "lookahead({PACKAGE}.optim:SignSGD)"
lr = 1e-2
hyper = {{ momentum = 0.9, k = 5, alpha = 0.5 }}

[[compare]]
rows = ["LA/Adam", "Adam"]
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A user's folder: the package and my_experiment.toml, as a newcomer would write them."""
    folder = tmp_path_factory.mktemp("user")
    (folder / PACKAGE).mkdir()
    for name, text in FILES.items():
        (folder / PACKAGE / name).write_text(textwrap.dedent(text).lstrip())
    (folder / "my_experiment.toml").write_text(TOML.lstrip())
    return folder


@pytest.mark.slow
def test_your_package_through_the_cli_killed_resumed_and_reported(user_dir):
    reference = subprocess.Popen([sys.executable, str(LAUNCHER), "run", "my_experiment.toml", "--store", "ref.sqlite"],
                                 cwd=user_dir, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    try:
        experiment = load_experiment(user_dir / "my_experiment.toml")  # reads the file, imports nothing
        victim = next(s for s in experiment.specs("full") if s.name == "LA/SignSGD").run_id(0)
        args = ("run", "my_experiment.toml", "--store", "killed.sqlite")  # no --scale: the file's one scale
        killed = launch(*args, cwd=user_dir, LIFECYCLE_KILL=f"{victim}@after@1")
        assert killed.returncode == -9, killed.stderr  # SIGKILL after epoch 1's checkpoint of LA/SignSGD seed 0
        assert "yours_t22 at scale full: 6 runs (3 rows x 2 seeds)" in killed.stdout
        before = by_name(user_dir / "killed.sqlite")
        run, epochs = before["LA/SignSGD"]
        assert [e["epoch"] for e in epochs] == [0, 1] and run["status"] == "running"
        resumed = launch(*args, cwd=user_dir)
        assert resumed.returncode == 0, resumed.stderr
        assert "LA/SignSGD seed 0: accuracy" in resumed.stdout and "Adam seed 0: accuracy" in resumed.stdout
        assert "LA/Adam seed 0: accuracy" in resumed.stdout and "(already finished)" in resumed.stdout
        ref_out, ref_err = reference.communicate(timeout=TIMEOUT)
        assert reference.returncode == 0, ref_err
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    runs, ref_runs = by_name(user_dir / "killed.sqlite"), by_name(user_dir / "ref.sqlite")
    assert len(runs) == 3  # by row name: the seeds below
    with ResultsStore(user_dir / "killed.sqlite", readonly=True) as db, \
            ResultsStore(user_dir / "ref.sqlite", readonly=True) as ref:
        assert sorted(r["run_id"] for r in db.runs()) == sorted(r["run_id"] for r in ref.runs())
        for run in db.runs():
            assert run["status"] == "finished"
            rows = [{k: v for k, v in e.items() if k != "time"} for e in db.epochs(run["run_id"])]
            ref_rows = [{k: v for k, v in e.items() if k != "time"} for e in ref.epochs(run["run_id"])]
            assert [e["epoch"] for e in rows] == [0, 1, 2, 3]
            assert rows == ref_rows, run["name"]  # ==: every metric of every epoch, the killed run's too
            record, ref_record = run["record"], ref.record(run["run_id"])
            assert record["slow"] == ref_record["slow"] and record["dataset"] == f"{PACKAGE}.data:blobs"
            assert (record["n_train"], record["n_valid"]) == (192, 96)
    assert runs["LA/SignSGD"][0]["record"]["slow"] is not None  # our Lookahead around the user's optimizer

    report = launch("report", "my_experiment.toml", "--store", "killed.sqlite", cwd=user_dir)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == "wrote reports/yours_t22.md"  # under the current directory
    text = (user_dir / "reports" / "yours_t22.md").read_text()
    assert text.startswith("# yours_t22: a user package")
    assert "| LA/SignSGD | 2 |" in text and "| Adam | 2 |" in text  # the summary table, over 2 seeds
    assert "| LA/Adam | Adam | 2 | like-for-like | wrapper |" in text  # the declared comparison, paired
    assert "![curves](yours_t22_full.png)" in text and (user_dir / "reports" / "yours_t22_full.png").stat().st_size

    elsewhere = user_dir / "elsewhere"  # the package cannot be imported from here: export never imports it
    elsewhere.mkdir()
    export = subprocess.run([sys.executable, "-m", "lookahead_fastai.cli", "store", "export",
                             str(user_dir / "my_experiment.toml"), "--store", str(user_dir / "killed.sqlite")],
                            cwd=elsewhere, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert export.returncode == 0, export.stderr
    lines = (elsewhere / "reports" / "data" / "yours_t22.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {json.loads(line)["spec"]["arch"] for line in lines} == {f"{PACKAGE}.models:net"}


def test_plan_of_a_file_needs_no_scale(user_dir, monkeypatch, capsys):
    monkeypatch.chdir(user_dir)
    assert cli.main(["plan", "my_experiment.toml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("yours_t22 at scale full: 3 rows x 2 seeds = 6 runs, 24 epochs in all")
    assert cli.main(["plan", "my_experiment.toml", "--scale", "smoke"]) == 2
    assert "--scale smoke: my_experiment.toml declares the scale full" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# from Python: the same Experiment, the same run ids, the same report
# ------------------------------------------------------------------------------------------------
def digits_small():
    """Top-level, so the suite names it by its import path (test_yours:digits_small)."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:384], dtype=torch.float32) / 16, torch.tensor(y[:384])
    return TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:])


def digits_dataloaders():
    from fastai.data.core import DataLoaders
    train, valid = digits_small()
    return DataLoaders.from_dsets(train, valid, bs=32, shuffle=True, drop_last=True)


def mlp(n_out):
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, n_out))


ROWS = [{"name": "SGD", "optimizer": "sgd", "lr": 0.1, "hyper": {"mom": 0.9}},
        {"name": "LA/SGD", "optimizer": "lookahead(sgd)", "lr": 0.1, "hyper": {"mom": 0.9, "k": 5, "alpha": 0.5}}]


def test_the_python_path_is_the_same_experiment_with_the_same_report(tmp_path, monkeypatch):
    experiment = your_experiment("yours_py_t22", dataset=digits_small, arch=mlp, rows=ROWS,
                                 compare=[("LA/SGD", "SGD")], epochs=2, bs=32, seeds=2)
    assert isinstance(experiment, Experiment) and experiment.scales == ("full",) and experiment.baseline == "SGD"
    specs = experiment.specs("full")
    assert all(isinstance(s, RunSpec) for s in specs)
    assert {(s.dataset, s.arch) for s in specs} == {("test_yours:digits_small", "test_yours:mlp")}
    # the same experiment written as a file: the same specs, so the same run ids (the import path is the spec)
    toml = tmp_path / "same.toml"
    toml.write_text('name = "yours_py_t22"\ndataset = "test_yours:digits_small"\narch = "test_yours:mlp"\n'
                    'epochs = 2\nbs = 32\nseeds = 2\n'
                    '[[rows]]\nname = "SGD"\noptimizer = "sgd"\nlr = 0.1\nhyper = { mom = 0.9 }\n'
                    '[[rows]]\nname = "LA/SGD"\noptimizer = "lookahead(sgd)"\nlr = 0.1\n'
                    'hyper = { mom = 0.9, k = 5, alpha = 0.5 }\n[[compare]]\nrows = ["LA/SGD", "SGD"]\n')
    assert [s.run_id(0) for s in load_experiment(toml).specs("full")] == [s.run_id(0) for s in specs]

    store = tmp_path / "r.sqlite"
    records = run_experiment(experiment, store=store)  # no scale: its one
    assert [(r["name"], r["seed"]) for r in records] == [("SGD", 0), ("LA/SGD", 0), ("SGD", 1), ("LA/SGD", 1)]
    assert all(r["final"]["accuracy"] > 0.2 for r in records) and records[1]["slow"] is not None  # chance: 0.1
    assert all(job.finished for job in plan(experiment, store=store))  # a rerun trains nothing
    path = write_report(store, experiment, out_dir=tmp_path / "reports")
    text = path.read_text()
    assert path.name == "yours_py_t22.md" and "| LA/SGD | SGD | 2 | like-for-like | wrapper |" in text
    assert (tmp_path / "reports" / "yours_py_t22_full.png").exists()


def test_a_dataset_may_return_fastai_dataloaders(tmp_path):
    data = load_dataset("test_yours:digits_dataloaders")
    assert data.dls is not None and data.n_classes == 10
    experiment = your_experiment("yours_dls_t22", dataset=digits_dataloaders, arch=mlp, rows=ROWS[:1], epochs=1,
                                 bs=32, seeds=1)
    (record,) = run_experiment(experiment, store=tmp_path / "r.sqlite")
    assert record["n_train"] == 256 and record["n_valid"] == 128 and record["final"]["accuracy"] > 0.2


# ------------------------------------------------------------------------------------------------
# bad input: one line, exit 2, no store
# ------------------------------------------------------------------------------------------------
def _edit(old, new):
    assert old in TOML
    return TOML.replace(old, new, 1)


BAD = [
    (_edit(f"{PACKAGE}.data:blobs", "nopkg_t22.data:blobs"),
     f"spec field 'dataset': nopkg_t22.data:blobs: no module named 'nopkg_t22' in the current directory"),
    (_edit(f"{PACKAGE}.models:net", f"{PACKAGE}.models:resnet"),
     f"spec field 'arch': {PACKAGE}.models:resnet: module '{PACKAGE}.models' has no attribute 'resnet'"),
    (_edit(f"{PACKAGE}.data:blobs", f"{PACKAGE}.bad:raises"),
     f"spec field 'dataset': {PACKAGE}.bad:raises() raised RuntimeError: disk on fire"),
    (_edit(f"{PACKAGE}.data:blobs", f"{PACKAGE}.bad:a_list"),
     f"spec field 'dataset': {PACKAGE}.bad:a_list() returned a list of 3 (int, int, int); expected fastai "
     f"DataLoaders or a tuple of torch Datasets"),
    (_edit(f"{PACKAGE}.data:blobs", f"{PACKAGE}.bad:float_labels"),
     f"spec field 'dataset': {PACKAGE}.bad:float_labels: the label of item 0 of the train set is a torch.float32 "
     f"tensor of shape (), not a class index"),
    (_edit(f"{PACKAGE}.models:net", f"{PACKAGE}.bad:a_string"),
     f"spec field 'arch': {PACKAGE}.bad:a_string(n_out=3) returned a str, not a torch.nn.Module"),
    (_edit(f"lookahead({PACKAGE}.optim:SignSGD)", f"lookahead({PACKAGE}.optim:Nope)"),
     f"spec field 'optimizer': {PACKAGE}.optim:Nope: module '{PACKAGE}.optim' has no attribute 'Nope'"),
    (_edit(f"lookahead({PACKAGE}.optim:SignSGD)", f"{PACKAGE}.bad:NotAnOptimizer"),
     f"spec field 'optimizer': {PACKAGE}.bad:NotAnOptimizer is the class NotAnOptimizer, not a "
     f"torch.optim.Optimizer subclass"),
    (_edit(f"lookahead({PACKAGE}.optim:SignSGD)", f"{PACKAGE}.bad:raises"),
     f"spec field 'optimizer': {PACKAGE}.bad:raises(params, lr=0.01) raised TypeError"),
    (_edit("bs = 32", "bs = 32\nbatch = 64"), "bad.toml: unknown key 'batch'; known keys are arch,"),
    (_edit("lr = 1e-2\n", "lr = 1e-2\nlearning_rate = 1\n"), "bad.toml, rows[0]: unknown key 'learning_rate'"),
    (_edit('rows = ["LA/Adam", "Adam"]', 'rows = ["LA/Adam", "Adam"]\nversus = "x"'),
     "bad.toml, compare[0]: unknown key 'versus'"),
    (_edit('name = "LA/Adam"', 'name = "Adam"'), "bad.toml: row name 'Adam' is declared twice"),
    (_edit('rows = ["LA/Adam", "Adam"]', 'rows = ["LA/Adam", "SGD"]'),
     "bad.toml, compare[0]: 'SGD' names no row; rows are Adam, LA/Adam, LA/SignSGD"),
    (_edit('lr = 1e-2\n', 'lr = -1\n'), "bad.toml, row 'Adam': spec field 'lr': must be a positive number"),
    ("name = 'x'\n[[rows]\n", "bad.toml: not a TOML file: "),
    (_edit('name = "yours_t22"', 'name = "demo"'), "experiment name 'demo' is a built-in experiment's"),
]


CALLED = ("raised", "returned", "is the class", "label of item")  # found by calling the code: run does, plan does not
CASES = [(command, toml, message) for command in ("run", "plan") for toml, message in BAD
         if command == "run" or not any(word in message for word in CALLED)]


@pytest.mark.parametrize("command, toml, message", CASES,
                         ids=[f"{c}-{BAD.index((t, m))}" for c, t, m in CASES])
def test_bad_input_is_one_line_and_exit_2_with_nothing_stored(command, toml, message, user_dir, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(user_dir)
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    store = tmp_path / "results.sqlite"
    extra = ["--store", str(store)] if command == "run" else []
    assert cli.main([command, str(bad), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err.replace(str(tmp_path) + "/", ""), err
    assert not store.exists() and not (tmp_path / "runs").exists()


def test_a_file_that_is_not_there_or_not_text(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nothere.toml"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "nothere.toml: no such file" in capsys.readouterr().err
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    assert cli.main(["run", str(tmp_path / "binary.toml"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "binary.toml: not a TOML file (not UTF-8 text)" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()


def test_a_callable_without_an_importable_name_is_refused_from_python():
    with pytest.raises(SpecError, match="has no importable name: define it with def or class at the top level"):
        your_experiment("yours_bad_t22", dataset=digits_small, arch=lambda n_out: mlp(n_out), rows=ROWS, epochs=1,
                        bs=32)


# ------------------------------------------------------------------------------------------------
# the notebook
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_your_model_notebook_at_smoke_scale(tmp_path):
    nb = inject_parameters(read("your_model"), f'SCALE = "smoke"\nSTORE = {str(tmp_path / "r.sqlite")!r}')
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    shown = html(outs)
    assert "final accuracy" in shown and "mean difference" in shown  # the report's two tables
    assert any("image/png" in o.get("data", {}) for o in outs)  # its curves
    with ResultsStore(tmp_path / "r.sqlite", readonly=True) as db:
        runs = db.runs("your_model")
    assert sorted((r["name"], r["record"]["dataset"], r["record"]["n_train"]) for r in runs) == [
        ("AdamW", "__main__:digits", 256), ("LA/AdamW", "__main__:digits", 256)]  # the notebook's own data


@pytest.mark.slow
def test_the_readme_example_is_a_complete_experiment(tmp_path, monkeypatch, capsys):
    """The README's section, followed as written: its two files and its TOML in a fresh folder."""
    import re
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own model and data\n")[1].split("\n## ")[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    data, models, toml = [text for kind, text in blocks if kind in ("python", "toml")][:3]
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "data.py").write_text(data)
    (tmp_path / "mypkg" / "models.py").write_text(models)
    (tmp_path / "my_experiment.toml").write_text(toml)
    monkeypatch.chdir(tmp_path)
    try:
        assert cli.main(["plan", "my_experiment.toml"]) == 0
        assert "my_digits at scale full: 2 rows x 3 seeds = 6 runs, 30 epochs in all" in capsys.readouterr().out
        experiment = load_experiment("my_experiment.toml")
        jobs = plan(experiment, store=tmp_path / "runs" / "results.sqlite")  # imports, calls and checks the code
        assert [(j.spec.name, j.seed) for j in jobs][:2] == [("Adam", 0), ("LA/Adam", 0)]
        assert load_dataset("mypkg.data:load").n_classes == 10
    finally:
        for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
            del sys.modules[name]


def test_a_file_without_compare_compares_each_row_with_the_first(user_dir, tmp_path):
    """As the README says: without [[compare]], the baseline is the first row and each row meets it."""
    toml = tmp_path / "no_compare.toml"
    toml.write_text(TOML.lstrip().split("[[compare]]")[0])
    experiment = load_experiment(toml)
    assert experiment.baseline == "Adam" and not experiment.comparisons
    from lookahead_fastai.results.compare import _comparison_pairs
    names = [s.name for s in experiment.specs(experiment.scales[0])]
    assert _comparison_pairs(experiment, names) == [("LA/Adam", "Adam"), ("LA/SignSGD", "Adam")]
