"""fit_and_record and the store together: records, skipping, resume after a kill, data paths."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from fastai.callback.core import Callback

from lookahead_fastai.experiments import RunSpec, get_experiment
from lookahead_fastai.runner import fit_and_record
from lookahead_fastai.store import ResultsStore


def tiny_spec(**overrides):
    base = dict(experiment="test", name="LA/SGD", dataset="digits", arch="mlp", optimizer="lookahead(sgd)",
                lr=0.05, hyper={"mom": 0.9, "k": 3}, epochs=3, bs=32, scale="smoke", n_train=160, n_valid=80,
                schedule="one_cycle")
    base.update(overrides)
    return RunSpec(**base)


def test_record_has_per_epoch_metrics_and_slow_weights(tmp_path):
    store_path = tmp_path / "r.sqlite"
    record = fit_and_record(tiny_spec(), seed=0, store=store_path)
    assert record["epochs"] == 3 and record["n_train"] == 160 and record["n_valid"] == 80
    for key in ("train_loss", "valid_loss", "accuracy", "top5", "lr", "time"):
        assert key in record["final"], key
    assert set(record["slow"]) == {"valid_loss", "accuracy", "top5"}
    with ResultsStore(store_path) as store:
        epochs = store.epochs(record["run_id"])
        assert [e["epoch"] for e in epochs] == [0, 1, 2]
        assert store.status(record["run_id"]) == "finished"
        # one-cycle: lr rises then falls
        assert epochs[0]["lr"] > epochs[2]["lr"]
    assert record["best_accuracy"] == max(e["accuracy"] for e in epochs)


def test_train_loss_is_the_epoch_mean_not_fastai_smoothed(tmp_path):
    seen = []

    class BatchLosses(Callback):
        def after_batch(self):
            if self.training:
                seen.append((self.learn.loss.item(), len(self.learn.yb[0])))

    record = fit_and_record(tiny_spec(epochs=1, optimizer="sgd", hyper={"mom": 0.9}), 0, store=tmp_path / "s.sqlite",
                            extra_cbs=[BatchLosses()])
    mean = sum(loss * n for loss, n in seen) / sum(n for _, n in seen)
    assert record["final"]["train_loss"] == pytest.approx(mean, rel=1e-5)
    assert record["slow"] is None


def test_same_seed_same_result_and_rerun_is_skipped(tmp_path, monkeypatch):
    spec = tiny_spec(epochs=2)
    first = fit_and_record(spec, 1, store=tmp_path / "a.sqlite")
    again = fit_and_record(spec, 1, store=tmp_path / "b.sqlite")
    assert first["final"]["valid_loss"] == again["final"]["valid_loss"]  # seeded end to end

    import lookahead_fastai.runner as runner

    def must_not_train(*a, **k):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(runner, "build_learner_for", must_not_train)
    skipped = fit_and_record(spec, 1, store=tmp_path / "a.sqlite")
    assert skipped == first


def test_failed_run_is_recorded_and_redone(tmp_path):
    class Boom(Callback):
        order = 99  # after epoch 0 was recorded and checkpointed

        def after_epoch(self):
            raise RuntimeError("boom")

    store_path = tmp_path / "f.sqlite"
    spec = tiny_spec(epochs=2)
    with pytest.raises(RuntimeError, match="boom"):
        fit_and_record(spec, 0, store=store_path, extra_cbs=[Boom()])
    run_id = spec.run_id(0)
    with ResultsStore(store_path) as store:
        assert store.status(run_id) == "failed"
        assert "boom" in store.runs("test")[0]["error"]
    record = fit_and_record(spec, 0, store=store_path)
    assert record["epochs"] == 2  # resumed from the epoch-0 checkpoint, with epoch 0 kept
    with ResultsStore(store_path) as store:
        assert [e["epoch"] for e in store.epochs(run_id)] == [0, 1]


KILL_AFTER_EPOCH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from fastai.callback.core import Callback
    from test_runner import tiny_spec
    from lookahead_fastai.runner import fit_and_record

    class Kill(Callback):
        order = 99  # after the epoch's record and checkpoint
        def after_epoch(self):
            if self.epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    fit_and_record(tiny_spec(epochs=4), 0, store={store!r}, extra_cbs=[Kill()])
""")


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_epoch_checkpoint(tmp_path):
    store_path = tmp_path / "k.sqlite"
    script = KILL_AFTER_EPOCH.format(tests=os.path.dirname(__file__), store=str(store_path))
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    spec = tiny_spec(epochs=4)
    run_id = spec.run_id(0)
    with ResultsStore(store_path) as store:
        assert store.status(run_id) == "running"
        assert [e["epoch"] for e in store.epochs(run_id)] == [0, 1]
        assert (store.checkpoint_dir(run_id) / "last.pth").exists()

    trained_epochs = []

    class Count(Callback):
        def after_train(self):
            trained_epochs.append(self.epoch)

    record = fit_and_record(spec, 0, store=store_path, extra_cbs=[Count()])
    assert trained_epochs == [2, 3]  # resumed, not redone
    with ResultsStore(store_path) as store:
        assert [e["epoch"] for e in store.epochs(run_id)] == [0, 1, 2, 3]
        assert not (store.checkpoint_dir(run_id) / "last.pth").exists()
    assert record["epochs"] == 4
    # the resumed schedule continued where it was: epoch 3's lr is the uninterrupted run's
    fresh = fit_and_record(spec, 0, store=tmp_path / "fresh.sqlite")
    assert record["final"]["lr"] == pytest.approx(fresh["final"]["lr"])


@pytest.mark.parametrize("optimizer,lr,hyper,reset", [
    ("lookahead(adamw)", 3e-3, {"k": 3, "pullback": "reset"}, "off"), ("adamw", 3e-3, {}, "epoch"),
    ("nested(sgd)", 0.1, {"mom": 0.9, "k": 2, "s": 2}, "off"), ("ranger", 0.03, {}, "off"),
    ("lamb", 0.01, {}, "off"), ("rmsprop", 1e-3, {}, "epoch")])
def test_optimizers_and_state_resets_train(tmp_path, optimizer, lr, hyper, reset):
    store_path = tmp_path / "o.sqlite"
    record = fit_and_record(tiny_spec(optimizer=optimizer, hyper=hyper, state_reset=reset, epochs=3, lr=lr,
                                      schedule="step", schedule_params={"milestones": [0.7], "factor": 0.2},
                                      eval_slow_weights=optimizer != "adamw"),
                            0, store=store_path)
    with ResultsStore(store_path) as store:
        losses = [e["train_loss"] for e in store.epochs(record["run_id"])]
    assert losses[-1] < losses[0]
    assert record["final"]["accuracy"] > 0.3  # 10 classes: chance is 0.1


def test_reset_at_sync_is_the_lookahead_pullback_mode(tmp_path):
    from lookahead_fastai.callbacks.lookahead import lookahead_of
    seen = {}

    class Peek(Callback):
        def after_fit(self):
            seen["pullback"] = lookahead_of(self.learn).pullback

    fit_and_record(tiny_spec(epochs=1, hyper={"mom": 0.9, "k": 5, "alpha": 0.5, "pullback": "reset"}), 0,
                   store=tmp_path / "p.sqlite", extra_cbs=[Peek()])
    assert seen["pullback"] == "reset"


def test_mixup_and_sessions(tmp_path):
    spec = tiny_spec(optimizer="adam", hyper={}, mixup=0.4, lr=1e-3, epochs=1,
                     sessions=({"epochs": 1, "lr": 1e-3}, {"epochs": 2, "lr": 1e-3, "schedule": "one_cycle",
                                                          "reset_opt": True}))
    record = fit_and_record(spec, 0, store=tmp_path / "m.sqlite")
    assert record["epochs"] == 3


@pytest.mark.parametrize("path", ["tensor", "pil"])
def test_cifar10_subset_trains_through_both_data_paths(tmp_path, shared_data, path):
    spec = tiny_spec(dataset="cifar10", arch="small_cnn", n_train=200, n_valid=100, epochs=1, data_path=path, bs=50)
    record = fit_and_record(spec, 0, store=tmp_path / "c.sqlite", data_dir=shared_data)
    assert record["n_train"] == 200 and record["n_valid"] == 100 and record["dataset"] == "cifar10"
    assert "cifar10_subset" in record["data"]


def test_mnist_subset_trains(tmp_path, shared_data):
    spec = tiny_spec(dataset="mnist", n_train=300, n_valid=100, epochs=1)
    record = fit_and_record(spec, 0, store=tmp_path / "mn.sqlite", data_dir=shared_data)
    assert record["final"]["accuracy"] > 0.3


def test_torchvision_resnet_through_cnn_learner(tmp_path, shared_data):
    spec = tiny_spec(dataset="cifar10", arch="resnet18", n_train=64, n_valid=32, epochs=1, bs=32)
    record = fit_and_record(spec, 0, store=tmp_path / "rn.sqlite", data_dir=shared_data)
    assert record["epochs"] == 1


@pytest.mark.parametrize("field,value,match", [
    ("dataset", "svhn", "spec field 'dataset'"),
    ("arch", "vgg", "spec field 'arch'"),
    ("optimizer", "adamax", "spec field 'optimizer'"),
    ("lr", -1.0, "spec field 'lr'"),
    ("epochs", 0, "spec field 'epochs'"),
    ("scale", "huge", "spec field 'scale'"),
    ("schedule", "poly", "spec field 'schedule'"),
    ("state_reset", "always", "spec field 'state_reset'"),
    ("hyper", {"momentum": 0.9}, "spec field 'hyper'"),
    ("schedule_params", {"gamma": 2}, "spec field 'schedule_params'"),
])
def test_bad_spec_fields_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        tiny_spec(**{field: value})


def test_spec_from_dict_names_unknown_and_missing_fields():
    d = tiny_spec().to_dict()
    assert RunSpec.from_dict(d) == tiny_spec()
    with pytest.raises(ValueError, match="spec field 'colour': unknown field"):
        RunSpec.from_dict({**d, "colour": "red"})
    d.pop("lr")
    with pytest.raises(ValueError, match="spec field 'lr': missing"):
        RunSpec.from_dict(d)
    with pytest.raises(ValueError, match="state_reset.*pullback"):  # one meaning only: the wrapper's pullback
        tiny_spec(optimizer="sgd", hyper={}, state_reset="sync")


def test_demo_experiment_declares_all_scales():
    exp = get_experiment("demo")
    for scale in ("smoke", "cpu", "full"):
        names = [s.name for s in exp.specs(scale)]
        assert names == ["SGD", "LA/SGD", "AdamW", "LA/AdamW"]


@pytest.mark.parametrize("arch", ["cifar_resnet18", "small_cnn", "resnet34", "resnet50"])
def test_every_architecture_builds_a_learner_with_the_right_output(arch):
    from fastai.data.core import DataLoaders

    from lookahead_fastai.data import BatchAugment, TensorDataLoader
    from lookahead_fastai.registry.architectures import build_learner
    x = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(8) % 4
    dl = TensorDataLoader(x, y, BatchAugment([0.5] * 3, [0.25] * 3), bs=4)
    learn = build_learner(arch, DataLoaders(dl, dl), n_in=3, n_out=4, size=32, loss_func=torch.nn.CrossEntropyLoss())
    xb, _ = dl.one_batch()
    learn.model.eval()
    with torch.no_grad():
        assert learn.model(xb).shape == (4, 4)
    if arch == "cifar_resnet18":  # the paper's stem: 3x3 conv, stride 1, no max-pool
        stem = learn.model[0]
        assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in learn.model.modules())


def test_every_experiment_declares_valid_specs_at_every_scale():
    from lookahead_fastai.experiments import EXPERIMENTS
    for name, exp in EXPERIMENTS.items():
        for scale in ("smoke", "cpu", "full"):
            specs = exp.specs(scale)
            assert specs and all(s.scale == scale and s.experiment == name for s in specs)
            names = [s.name for s in specs]
            assert len(set(names)) == len(names), (name, scale)  # rows are distinguishable in reports
            ids = {s.run_id(0) for s in specs}
            assert len(ids) == len(specs)
        for row, versus in exp.comparisons:  # every comparison names declared rows
            declared = {s.name for scale in ("smoke", "cpu", "full") for s in exp.specs(scale)}
            assert versus in declared or row not in declared, (name, row, versus)


def test_data_paths_experiment_runs_both_paths(tmp_path, shared_data):
    from lookahead_fastai.sweep import run_experiment
    records = run_experiment("data_paths", "smoke", 1, store=tmp_path / "d.sqlite", data_dir=shared_data)
    assert [r["name"] for r in records] == ["tensor path", "PIL path"]
    assert all(r["n_train"] == 256 for r in records)


# --- three splits (RunSpec.holdout) ------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 1.0, 1.5, -0.1, True, "10%"])
def test_a_bad_holdout_is_named(value):
    with pytest.raises(ValueError, match="spec field 'holdout'"):
        tiny_spec(holdout=value)


def test_holdout_is_opt_in_and_leaves_the_identity_of_other_specs_alone():
    assert "holdout" not in tiny_spec().identity() and tiny_spec(holdout=None).run_id(0) == tiny_spec().run_id(0)
    assert tiny_spec(holdout=0.1).identity()["holdout"] == 0.1 and tiny_spec(holdout=0.1).run_id(0) != tiny_spec().run_id(0)
    with pytest.raises(ValueError, match="spec field 'holdout'.*built-in dataset"):
        tiny_spec(dataset="tests.mine:load", holdout=100)


def test_a_holdout_on_the_pil_path_holds_out_the_same_kind_of_split(tmp_path, shared_data):
    """CIFAR-10 from its folders (fastai's DataBlock): validation is a fixed stratified part of train/,
    the test split is test/ (n_valid: a sample), scored once at the end."""
    from lookahead_fastai.data import build_dataloaders
    kw = dict(data_dir=shared_data, bs=50, n_train=200, n_valid=100, path="pil", num_workers=0, holdout=300)
    a, b = build_dataloaders("cifar10", **kw), build_dataloaders("cifar10", **{**kw, "n_train": 100})
    held = [str(f) for f in a.dls.valid.items]
    assert held == [str(f) for f in b.dls.valid.items] and len(held) == 300  # fixed, whatever n_train
    assert all("/train/" in f for f in held) and not set(held) & {str(f) for f in a.dls.train.items}
    assert all("/test/" in str(f) for f in a.test.items) and a.n_test == 100 and a.holdout["size"] == 300
    from collections import Counter
    counts = Counter(f.split("/")[-2] for f in held)
    full = Counter(f.parent.name for f in (shared_data / "cifar10_subset" / "train").rglob("*.png"))
    assert sum(full.values()) == 5085
    assert all(abs(counts[c] - 300 * n / 5085) <= 1 for c, n in full.items()), counts  # stratified
    spec = tiny_spec(dataset="cifar10", arch="small_cnn", n_train=200, n_valid=100, epochs=1, data_path="pil",
                     bs=50, holdout=300)
    record = fit_and_record(spec, 0, store=tmp_path / "c.sqlite", data_dir=shared_data, num_workers=0)
    assert record["n_valid"] == 300 and record["n_test"] == 100 and record["n_train"] == 200
    assert {"test_accuracy", "test_loss"} <= set(record["final"]) and record["holdout"]["of"] == 5085


def _no_time(final):
    return {k: v for k, v in final.items() if k != "time"}


@pytest.mark.parametrize("eval_slow", [False, True])
def test_a_run_with_a_holdout_validates_on_it_and_scores_the_test_split_once_at_the_end(tmp_path, eval_slow):
    """Every epoch and ``final`` read the held-out validation split; the test split is scored once, after
    training, on the weights ``final`` was validated on (Lookahead's slow ones with eval_slow_weights), and
    the record states the split. A failed run resumed from its checkpoint gives the same numbers."""
    spec = tiny_spec(holdout=0.1, eval_slow_weights=eval_slow, epochs=2)
    record = fit_and_record(spec, 0, store=tmp_path / "h.sqlite")
    assert record["n_valid"] == 144 and record["n_test"] == 80 and record["n_train"] == 160
    assert record["holdout"] == {"size": 144, "seed": 20261206, "of": 1438}
    for key in ("accuracy", "valid_loss", "top5", "test_accuracy", "test_loss", "test_top5"):
        assert key in record["final"] and key in record["slow"], key
    with ResultsStore(tmp_path / "h.sqlite") as store:
        epochs = store.epochs(record["run_id"])
    assert not any(k.startswith("test_") for e in epochs for k in e)  # per epoch: validation only
    assert record["best_accuracy"] == max(e["accuracy"] for e in epochs)
    if eval_slow:  # final validated on the slow weights: its test numbers are the slow weights' too
        assert _no_time(record["slow"]) == {k: v for k, v in record["final"].items()
                                            if k in record["slow"]}
    # without a holdout the same spec validates on the test split: its valid numbers are the test numbers
    plain = fit_and_record(tiny_spec(eval_slow_weights=eval_slow, epochs=2, n_valid=None), 0, store=tmp_path / "p.sqlite")
    assert "test_accuracy" not in plain["final"] and "holdout" not in plain and plain["n_valid"] == 359

    class Boom(Callback):
        order = 99

        def after_epoch(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit_and_record(spec, 0, store=tmp_path / "r.sqlite", extra_cbs=[Boom()])
    resumed = fit_and_record(spec, 0, store=tmp_path / "r.sqlite")
    assert _no_time(resumed["final"]) == _no_time(record["final"]) and resumed["slow"] == record["slow"]
