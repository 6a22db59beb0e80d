"""`lookahead-fastai plan`: runs, epochs and total epochs of a grid, and device-hours only where a
measured time per image exists (gpu_check's projection section)."""
import json

import pytest

from lookahead_fastai.cli import main
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.planning import cost_plan, format_plan, load_measurements


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
        "cifar_resnet18 · cifar10 · 32px · bs 128": {"status": "ok", "bs": 128, "size": 32,
                                                     "train_s_per_image": 1e-4, "valid_s_per_image": 2e-5},
        "cifar_resnet18 · cifar100 · 32px · bs 128": {"status": "error: boom"},
    })
    _gpu_json(tmp_path / "smoke.json", {  # a smoke file is no measurement, whatever it says
        "cifar_resnet18 · cifar100 · 32px · bs 128": {"status": "ok", "bs": 128, "size": 32,
                                                      "train_s_per_image": 1.0, "valid_s_per_image": 1.0}},
              mode="smoke")
    assert set(load_measurements(tmp_path)) == {("cifar_resnet18", "cifar10", 32, 128)}
    plan = cost_plan("paper_cifar", "full", results_dir=tmp_path)
    c10 = [r for r in plan.rows if r.row.endswith("C10")]
    assert len(plan.measured_rows) == len(c10) == 5
    per_epoch = 1e-4 * 50000 + 2e-5 * 10000
    assert all(r.seconds_per_epoch == pytest.approx(per_epoch) for r in c10)
    assert plan.hours == pytest.approx(5 * 3 * 200 * per_epoch / 3600)
    text = format_plan(plan)
    assert "5 of 10 rows" in text and "NVIDIA H100 80GB HBM3" in text and "not in the total" in text


def test_folder_datasets_are_lower_bounds(tmp_path):
    _gpu_json(tmp_path / "gpu.json", {
        "xse_resnext50_mish_sa_maxpool · imagenette_320 · 128px · bs 64": {"status": "ok", "bs": 64, "size": 128,
                                                            "train_s_per_image": 1e-3, "valid_s_per_image": 3e-4},
        "xse_resnext50_mish_sa_maxpool · imagewoof_320 · 128px · bs 32": {"status": "ok", "bs": 16, "size": 128,  # capped: skipped
                                                           "train_s_per_image": 1e-3, "valid_s_per_image": 3e-4}})
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
    model = {f"{arch} · {dataset} · 128px · bs 64": {"status": "ok", "bs": 64, "size": 128,
                                                     "train_s_per_image": 1e-3, "valid_s_per_image": 3e-4}
             for dataset in ("imagenette_320", "imagewoof_320")}
    loader = {"imagenette_320 · 128px · rrc_flip": {"status": "ok", "size": 128, "workers": 16,
                                                    "train_images_per_s": 500.0, "valid_images_per_s": 2000.0},
              "imagewoof_320 · 128px · rrc_flip": {"status": "ok", "size": 128, "workers": 16,
                                                   "train_images_per_s": 4000.0, "valid_images_per_s": 8000.0}}
    report = {"meta": {"mode": "full", "device": "cuda", "device_name": "NVIDIA H100", "date": "2026-12-06"},
              "sections": {"projection": {"status": "ok", "result": {"configs": model}},
                           "loader": {"status": "ok", "result": {"configs": loader}}}}
    (tmp_path / "gpu.json").write_text(json.dumps(report))
    smoke = {"meta": {"mode": "smoke"}, "sections": {"loader": {"status": "ok", "result": {"configs": {
        "imagewoof_320 · 128px · rrc_flip": {"status": "ok", "size": 128, "workers": 2,
                                             "train_images_per_s": 1.0, "valid_images_per_s": 1.0}}}}}}
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
