"""W&B: the fastai #4173 guard, and offline runs read back with `wandb leet inspect`: how they are
grouped for the dashboard (group, job_type, tags, config) and what they log per batch and epoch."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
from fastai.callback.wandb import WandbCallback

from lookahead_fastai.callbacks.wandb import GuardedWandbCallback, resolve_mode
from lookahead_fastai.runner import build_learner_for, fit_and_record
from lookahead_fastai.store import ResultsStore
from test_runner import tiny_spec

WANDB = str(Path(sys.executable).parent / "wandb")


def inspect(run_dir, *flags):
    proc = subprocess.run([WANDB, "leet", "inspect", "--json", *flags, str(run_dir)], capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stdout


@pytest.mark.slow
def test_unguarded_fastai_callback_raises_and_guarded_one_trains(tmp_path):
    learn, _ = build_learner_for(tiny_spec(epochs=1), 0)
    wandb.init(project="guard-test", mode="offline", dir=str(tmp_path))
    try:
        with learn.no_bar(), learn.no_logging():
            with pytest.raises(TypeError):  # fastai #4173, in WandbCallback.before_fit
                learn.fit(1, 0.01, cbs=WandbCallback(log_preds=False))
            learn.fit(1, 0.01, cbs=GuardedWandbCallback())
        assert learn.recorder.values  # the epoch ran with the guarded callback
    finally:
        wandb.finish()


def test_offline_run_logs_config_hypers_metrics_and_sync_distance(tmp_path):
    spec = tiny_spec(epochs=2)
    record = fit_and_record(spec, 3, store=tmp_path / "w.sqlite", wandb="offline")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = [json.loads(line) for line in inspect(runs[0]).splitlines() if line.startswith("{")]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_group"] == "test/smoke/LA/SGD" and run["job_type"] == "test/smoke"  # see test_runs_grouped...
    assert run["tags"] == ["test", "smoke", "lookahead(sgd)", "digits"] and run["display_name"] == "LA/SGD seed 3"
    config = run["config"]["update"]
    assert config["optimizer"] == "lookahead(sgd)" and config["seed"] == 3 and config["hyper"]["k"] == 3
    assert config["row"] == "LA/SGD" and config["experiment"] == "test" and config["scale"] == "smoke"
    assert config["run_id"] == record["run_id"] and config["lr"] == 0.05 and config["epochs"] == 2

    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    batch_rows = [h for h in history if "lr_0" in h]
    assert len(batch_rows) == 10  # 160 / 32 batches x 2 epochs
    for key in ("lr_0", "mom_0", "la_k_0", "la_alpha_0", "train_loss", "raw_loss"):
        assert all(key in h for h in batch_rows), key
    lrs = [h["lr_0"] for h in batch_rows]
    assert max(lrs) == pytest.approx(0.05, rel=0.05) and lrs[0] < 0.01  # one-cycle reached the Lookahead's inner lr
    assert {h["la_k_0"] for h in batch_rows} == {3}
    distances = [h["fast_slow_distance"] for h in history if "fast_slow_distance" in h]
    assert len(distances) == 3 and all(d > 0 for d in distances)  # syncs after steps 3, 6, 9
    epoch_rows = [h for h in history if "valid_loss" in h]
    assert [h["epoch"] for h in epoch_rows] == [1, 2]  # per-epoch metrics, charted against `epoch`
    with ResultsStore(tmp_path / "w.sqlite") as db:
        stored = [h["accuracy"] for h in db.epochs(record["run_id"])]
    assert [h["accuracy"] for h in epoch_rows] == pytest.approx(stored)  # the same numbers as the store
    assert all(h["valid_loss"] > 0 for h in epoch_rows)
    step_metrics = {r["metric"]["name"]: r["metric"].get("step_metric") for r in records if r["type"] == "metric"}
    assert step_metrics["valid_loss"] == step_metrics["accuracy"] == "epoch"  # x-axis of the epoch charts

    summary = json.loads(inspect(runs[0], "--summary"))["summary"]
    assert summary["final/accuracy"] == pytest.approx(record["final"]["accuracy"])
    assert summary["slow/accuracy"] == pytest.approx(record["slow"]["accuracy"])


def _run_of(run_dir):
    return next(json.loads(line)["run"] for line in inspect(run_dir).splitlines()
                if line.startswith("{") and json.loads(line)["type"] == "run")


@pytest.mark.slow
def test_runs_grouped_by_row_so_charts_show_mean_and_band_over_seeds(tmp_path):
    """W&B draws a group as the mean of its runs with a band: one group per row of the table, the
    seeds its members; one job type per experiment and scale, holding the rows to compare."""
    for spec, seed in ((tiny_spec(epochs=1), 0), (tiny_spec(epochs=1), 1),
                       (tiny_spec(epochs=1, name="SGD", optimizer="sgd", hyper={"mom": 0.9}), 0)):
        fit_and_record(spec, seed, store=tmp_path / "g.sqlite", wandb="offline")
    runs = [_run_of(d) for d in sorted((tmp_path / "wandb").glob("offline-run-*"))]
    by_name = {r["display_name"]: r for r in runs}
    assert set(by_name) == {"LA/SGD seed 0", "LA/SGD seed 1", "SGD seed 0"}
    assert by_name["LA/SGD seed 0"]["run_group"] == by_name["LA/SGD seed 1"]["run_group"] == "test/smoke/LA/SGD"
    assert by_name["SGD seed 0"]["run_group"] == "test/smoke/SGD"
    assert {r["job_type"] for r in runs} == {"test/smoke"}
    assert {r["config"]["update"]["seed"] for r in runs} == {0, 1}
    assert by_name["SGD seed 0"]["tags"] == ["test", "smoke", "sgd", "digits"]


def test_disabled_writes_nothing(tmp_path):
    fit_and_record(tiny_spec(epochs=1), 0, store=tmp_path / "d.sqlite", wandb="disabled")
    assert not (tmp_path / "wandb").exists()


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_mode("online") == "offline"  # no API key configured
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("online") == "online"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="wandb mode must be one of offline, online, disabled"):
        resolve_mode("sometimes")
