"""W&B: the fastai #4173 guard, and an offline run read back with `wandb leet inspect`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
from fastai.callback.wandb import WandbCallback

from lookahead_fastai.callbacks.wandb import GuardedWandbCallback, resolve_mode
from lookahead_fastai.runner import build_learner_for, fit_and_record
from test_runner import tiny_spec

WANDB = str(Path(sys.executable).parent / "wandb")


def inspect(run_dir, *flags):
    proc = subprocess.run([WANDB, "leet", "inspect", "--json", *flags, str(run_dir)], capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stdout


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
    assert run["run_group"] == "test" and "lookahead(sgd)" in run["tags"]
    config = run["config"]["update"]
    assert config["optimizer"] == "lookahead(sgd)" and config["seed"] == 3 and config["hyper"]["k"] == 3

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
    assert len(epoch_rows) == 2 and all("accuracy" in h for h in epoch_rows)

    summary = json.loads(inspect(runs[0], "--summary"))["summary"]
    assert summary["final/accuracy"] == pytest.approx(record["final"]["accuracy"])
    assert summary["slow/accuracy"] == pytest.approx(record["slow"]["accuracy"])


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
