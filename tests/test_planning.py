"""`lookahead-fastai plan`: runs, epochs and total epochs of a grid, and device-hours only where a
measured time per image exists (gpu_check's projection section)."""
import json

import pytest

from lookahead_fastai.cli import main
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.planning import cost_plan, format_plan, load_measurements
from lookahead_fastai.registry.datasets import dataset_info


def _model(arch, dataset, size, bs, /, **entry):
    """A projection entry as gpu_check writes it: what it measured in ``config``, as data."""
    return {"config": {"arch": arch, "dataset": dataset, "size": size, "bs": bs}, **entry}


def _loader(dataset, size, augment, /, **entry):
    return {"config": {"dataset": dataset, "size": size, "augment": augment}, **entry}


def _gpu_json(path, configs, mode="full", device="NVIDIA H100 80GB HBM3"):
    path.write_text(json.dumps({"meta": {"mode": mode, "device": "cuda", "device_name": device, "date": "2026-11-26"},
                                "sections": {"projection": {"status": "ok", "result": {"configs": configs}}}}))


def test_runs_and_epochs_follow_the_specs():
    plan = cost_plan("paper_cifar", "full")
    specs = get_experiment("paper_cifar").specs("full")
    assert plan.seeds == 3 and len(plan.rows) == len(specs) == 10
    assert plan.runs == 30 and plan.total_epochs == 30 * 200
    assert plan.hours is None or plan.measured_rows  # hours only from measurements
    state = cost_plan("optimizer_state", "full", seeds=2)
    assert {r.epochs for r in state.rows} == {25}  # sessions 10 + 10 + 5
    assert state.total_epochs == 8 * 2 * 25
    board = cost_plan("imagenette_leaderboard", "full")
    assert board.runs == 20 * 5 and board.total_epochs == 5 * (10 * 5 + 10 * 20)


def test_hours_from_a_measurement_and_only_from_one(tmp_path):
    _gpu_json(tmp_path / "gpu.json", {
        "a": _model("cifar_resnet18", "cifar10", 32, 128, status="ok", bs=128, size=32,
                    train_s_per_image=1e-4, valid_s_per_image=2e-5),
        "b": _model("cifar_resnet18", "cifar100", 32, 128, status="error: boom"),
        "cifar_resnet18 · cifar100 · 32px · bs 128": {"status": "ok", "bs": 128, "size": 32,  # a label is no data
                                                      "train_s_per_image": 1.0, "valid_s_per_image": 1.0},
    })
    _gpu_json(tmp_path / "smoke.json", {  # a smoke file is no measurement, whatever it says
        "b": _model("cifar_resnet18", "cifar100", 32, 128, status="ok", bs=128, size=32,
                    train_s_per_image=1.0, valid_s_per_image=1.0)}, mode="smoke")
    assert set(load_measurements(tmp_path)) == {("cifar_resnet18", "cifar10", 32, 128)}
    plan = cost_plan("paper_cifar", "full", results_dir=tmp_path)
    c10 = [r for r in plan.rows if r.row.endswith("C10")]
    assert len(plan.measured_rows) == len(c10) == 5
    full = dataset_info("cifar10")
    per_epoch = 1e-4 * full.full_train + 2e-5 * full.full_valid
    assert all(r.seconds_per_epoch == pytest.approx(per_epoch) for r in c10)
    assert plan.hours == pytest.approx(5 * 3 * 200 * per_epoch / 3600)
    text = format_plan(plan)
    assert "5 of 10 rows" in text and "NVIDIA H100 80GB HBM3" in text and "not in the total" in text


def test_folder_datasets_are_lower_bounds(tmp_path):
    _gpu_json(tmp_path / "gpu.json", {
        "a": _model("xse_resnext50_mish_sa_maxpool", "imagenette_320", 128, 64, status="ok", bs=64, size=128,
                    train_s_per_image=1e-3, valid_s_per_image=3e-4),
        "b": _model("xse_resnext50_mish_sa_maxpool", "imagewoof_320", 128, 32, status="ok", bs=16, size=128,  # capped
                    train_s_per_image=1e-3, valid_s_per_image=3e-4)})
    plan = cost_plan("imagenette_leaderboard", "full", results_dir=tmp_path)
    measured = plan.measured_rows
    assert len(measured) == 10 and all(r.lower_bound and "Imagenette" in r.row for r in measured)
    assert "lower bounds" in format_plan(plan)


def test_cli_plan_prints_the_plan_and_rejects_bad_input(capsys):
    assert main(["plan", "paper_cifar", "--scale", "full"]) == 0
    out = capsys.readouterr().out
    assert "paper_cifar at scale full: 10 rows x 3 seeds = 30 runs, 6000 epochs in all" in out
    assert "SGD · C10" in out and "total" in out
    assert main(["plan", "demo", "--scale", "cpu", "--seeds", "2"]) == 0
    assert "8 runs" in capsys.readouterr().out
    assert main(["plan", "demo", "--scale", "huge"]) == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    assert main(["plan", "no_such_experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_pil_rows_take_the_slower_of_model_and_loader(tmp_path):
    """gpu_check's loader section (PIL path, per dataset, size and augmentation): a row whose loader
    is slower than its model is paced by the loader (loader-bound); a faster loader leaves the
    model's time; either way the row is no longer a lower bound. Smoke files are ignored."""
    arch = "xse_resnext50_mish_sa_maxpool"  # the full spec's model (gpu_check keys: arch · dataset · size · bs)
    model = {dataset: _model(arch, dataset, 128, 64, status="ok", bs=64, size=128, train_s_per_image=1e-3,
                             valid_s_per_image=3e-4) for dataset in ("imagenette_320", "imagewoof_320")}
    loader = {"n": _loader("imagenette_320", 128, "rrc_flip", status="ok", size=128, workers=16,
                           train_images_per_s=500.0, valid_images_per_s=2000.0),
              "w": _loader("imagewoof_320", 128, "rrc_flip", status="ok", size=128, workers=16,
                           train_images_per_s=4000.0, valid_images_per_s=8000.0)}
    report = {"meta": {"mode": "full", "device": "cuda", "device_name": "NVIDIA H100", "date": "2026-12-06"},
              "sections": {"projection": {"status": "ok", "result": {"configs": model}},
                           "loader": {"status": "ok", "result": {"configs": loader}}}}
    (tmp_path / "gpu.json").write_text(json.dumps(report))
    smoke = {"meta": {"mode": "smoke"}, "sections": {"loader": {"status": "ok", "result": {"configs": {
        "w": _loader("imagewoof_320", 128, "rrc_flip", status="ok", size=128, workers=2,
                     train_images_per_s=1.0, valid_images_per_s=1.0)}}}}}
    (tmp_path / "smoke.json").write_text(json.dumps(smoke))
    plan = cost_plan("imagenette_leaderboard", "full", results_dir=tmp_path)
    assert len(plan.measured_rows) == 20
    nette = [r for r in plan.rows if "Imagenette" in r.row]
    woof = [r for r in plan.rows if "Imagewoof" in r.row]
    assert len(nette) == len(woof) == 10
    for r in nette:  # loader 2 ms per train image > model 1 ms: the loader sets the pace
        assert r.loader_bound and not r.lower_bound and r.loader.workers == 16
        assert r.seconds_per_epoch == pytest.approx(2e-3 * 9469 + 5e-4 * 3925)
    for r in woof:  # loader 0.25 ms < model 1 ms: the model's time stands
        assert not r.loader_bound and not r.lower_bound
        assert r.seconds_per_epoch == pytest.approx(1e-3 * 9025 + 3e-4 * 3929)
    text = format_plan(plan)
    assert "loader-bound: PIL loader, 16 workers" in text and "10 are loader-bound" in text
    assert "lower bound" not in text


def test_full_sizes_come_from_the_dataset_registry():
    """Every row of a full grid that takes a whole registry dataset is priced at DatasetInfo's
    full sizes (Fashion-MNIST included: lr_robustness's FMNIST rows), shown in the plan; hours stay
    '—' where no timing is measured."""
    plan = cost_plan("lr_robustness", "full", results_dir="/nonexistent")
    specs = {s.name: s for s in get_experiment("lr_robustness").specs("full")}
    fmnist = [r for r in plan.rows if r.row in specs and specs[r.row].dataset == "fashion_mnist"]
    assert fmnist and all(r.n_train is not None and r.n_valid is not None for r in plan.rows)
    info = dataset_info("fashion_mnist")
    confirmation = [r for r in plan.rows if r.stage == "confirmation"]
    assert len(confirmation) == 12 and all(r.runs == 10 for r in confirmation)  # one chosen row per family
    for r in fmnist:
        spec = specs[r.row]
        # three splits: the validation split is held out of the training images
        assert (r.n_train, r.n_valid) == (info.full_train - spec.holdout, spec.holdout) == (50000, 10000)
        assert r.hours is None and r.runs == 3  # the tuning seeds
    text = format_plan(plan)
    assert f"{fmnist[0].n_train}" in text.splitlines()[[r.row for r in plan.rows].index(fmnist[0].row) + 3]


def test_lr_robustness_full_is_priced_on_every_row_once_its_configurations_are_measured(tmp_path):
    """With one timing per configuration lr_robustness's full grid uses (as gpu_check writes them), every
    row has hours, the FMNIST rows included; the price is the sum over rows of runs x epochs x s/epoch."""
    from lookahead_fastai.planning import config_key, on_pil_path
    specs = get_experiment("lr_robustness").specs("full")
    assert not any(on_pil_path(s) for s in specs)  # in-memory tensors: the model's time alone sets the pace
    keys = sorted({config_key(s) for s in specs})
    _gpu_json(tmp_path / "gpu.json", {str(i): _model(*k, status="ok", train_s_per_image=1e-4, valid_s_per_image=2e-5)
                                      for i, k in enumerate(keys)})
    plan = cost_plan("lr_robustness", "full", results_dir=tmp_path)
    # every row on the tuning seeds, and one confirmation row per family (12)
    assert len(plan.measured_rows) == len(plan.rows) == len(specs) + 12 and all(r.hours is not None for r in plan.rows)
    assert {get_experiment("lr_robustness").specs("full")[0].dataset, "fashion_mnist"} <= {s.dataset for s in specs}
    assert plan.hours == pytest.approx(sum(r.hours for r in plan.rows))
    assert "—" not in format_plan(plan).split("\n", 3)[3]


def test_gpu_check_reads_dataset_facts_and_planning_helpers():
    """benchmarks/gpu/gpu_check.py keeps no copy of a dataset fact (full sizes, CIFAR statistics)
    and no copy of planning's helpers: it imports planning's public functions and the registry."""
    import ast
    from pathlib import Path
    source = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "gpu_check.py"
    tree = ast.parse(source.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "lookahead_fastai.planning"
                for a in n.names}
    assert {"spec_sizes", "config_key", "loader_key", "CONFIG_FIELDS", "LOADER_FIELDS"} <= imported
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not {"_spec_sizes", "_config_key", "FULL_SIZES", "CIFAR_MEAN", "CIFAR_STD"} & (defined | assigned)
    facts = {n for info in (dataset_info(d) for d in ("cifar10", "mnist", "imagenette", "imagewoof", "digits"))
             for n in (info.full_train, info.full_valid)} - {10000}  # 10000: too common a number to forbid
    numbers = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))}
    assert not facts & numbers
    stats = {x for s in dataset_info("cifar10").stats for x in s} | {0.4914, 0.4822, 0.2470}
    assert not stats & numbers


def test_every_registry_dataset_declares_its_full_sizes():
    """A dataset added to the registry says how big it is, or `plan --scale full` could not price it."""
    from lookahead_fastai.registry.datasets import DATASETS
    missing = [name for name, info in DATASETS.items() if not (info.full_train and info.full_valid)]
    assert missing == []


def test_a_holdout_is_priced_as_validated_every_epoch_out_of_the_training_split():
    from lookahead_fastai.experiments import RunSpec
    from lookahead_fastai.planning import spec_sizes
    spec = dict(experiment="t", name="a", dataset="fashion_mnist", arch="mlp", optimizer="sgd", lr=0.1, epochs=1,
                bs=32, scale="smoke")
    assert spec_sizes(RunSpec(**spec)) == (60000, 10000)
    assert spec_sizes(RunSpec(**spec, holdout=5000)) == (55000, 5000)
    assert spec_sizes(RunSpec(**spec, holdout=0.1, n_train=2000)) == (2000, 6000)


def test_a_timing_whose_config_is_no_number_is_an_entry_of_no_known_form():
    from lookahead_fastai.planning import CONFIG_FIELDS, entry_key
    good = {"config": {"arch": "cifar_resnet18", "dataset": "cifar10", "size": 32, "bs": 128}}
    assert entry_key(good, CONFIG_FIELDS) == ("cifar_resnet18", "cifar10", 32, 128)
    for bad in (None, "x"):
        assert entry_key({"config": {**good["config"], "bs": bad}}, CONFIG_FIELDS) is None  # was TypeError / ValueError
