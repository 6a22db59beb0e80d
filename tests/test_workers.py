"""Loader workers on the PIL data path (issue 25): folder data loads in worker processes by default,
and the batches -- so the metrics -- do not depend on the number of workers, nor on a kill and
resume in between. Through the CLI (``tests/lifecycle_cli.py``'s ``lifecycle_pil`` experiment:
the CIFAR-10 subset through fastai's PIL item transforms), one thread per process.
"""
import os
import subprocess
import sys

import pytest
import torch
from fastai.torch_core import set_seed

from lookahead_fastai.cli import main
from lookahead_fastai.data import build_dataloaders, check_workers, default_workers, item_seed
from lookahead_fastai.store import ResultsStore
from test_lifecycle import LAUNCHER, TIMEOUT, child_env  # the launcher and its environment, one thread

ROWS = {"PIL SGD", "PIL SGD · mixup"}


def start(cwd, store, workers, data_dir, **env):
    args = ["run", "lifecycle_pil", "--store", str(store), "--data-dir", str(data_dir), "--workers", str(workers)]
    return subprocess.Popen([sys.executable, str(LAUNCHER), *args], cwd=cwd, env=child_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def epochs_by_row(store):
    """{row: [epoch rows without their wall time]} and {row: final record without its time}."""
    with ResultsStore(store, readonly=True) as db:
        runs = db.runs()
        rows = {r["name"]: [{k: v for k, v in e.items() if k != "time"} for e in db.epochs(r["run_id"])]
                for r in runs}
        finals = {r["name"]: (r["status"], {k: v for k, v in (r["record"] or {}).get("final", {}).items()
                                             if k != "time"}) for r in runs}
    return rows, finals


@pytest.mark.slow
def test_workers_killed_and_resumed_equal_uninterrupted_and_any_worker_count(tmp_path, shared_data):
    """Three CLI processes side by side: 2 workers uninterrupted (the reference), 0 workers, and 2
    workers SIGKILLed right after epoch 1's checkpoint of the second row (MixUp); then that store's
    run resumed with 2 workers. Its first row, trained in full before the kill, is the reference's
    rerun with 2 workers; its second row the killed and resumed run."""
    reference = start(tmp_path, tmp_path / "w2.sqlite", 2, shared_data)
    none = start(tmp_path, tmp_path / "w0.sqlite", 0, shared_data)
    killed = start(tmp_path, tmp_path / "killed.sqlite", 2, shared_data, LIFECYCLE_KILL="PIL SGD · mixup@after@1")
    code, out, err = finish(killed)
    assert code == -9, (out, err)  # SIGKILL
    rows, finals = epochs_by_row(tmp_path / "killed.sqlite")
    assert finals["PIL SGD"][0] == "finished" and finals["PIL SGD · mixup"][0] == "running"
    assert [r["epoch"] for r in rows["PIL SGD · mixup"]] == [0, 1]
    code, out, err = finish(start(tmp_path, tmp_path / "killed.sqlite", 2, shared_data))
    assert code == 0, err
    assert "PIL SGD seed 0: accuracy" in out and "(already finished)" in out
    assert "PIL SGD · mixup seed 0: accuracy" in out
    for proc in (reference, none):
        code, out, err = finish(proc)
        assert code == 0, err

    expected, expected_finals = epochs_by_row(tmp_path / "w2.sqlite")
    assert set(expected) == ROWS
    for name in ROWS:
        assert [r["epoch"] for r in expected[name]] == [0, 1, 2]
        assert expected_finals[name][0] == "finished"
    # the epochs differ from each other (training happened), so the equality below is not trivial
    assert len({r["train_loss"] for r in expected["PIL SGD"]}) == 3
    for store in ("killed", "w0"):
        rows, finals = epochs_by_row(tmp_path / f"{store}.sqlite")
        assert rows == expected, store  # ==: every metric of every epoch of both rows
        assert finals == expected_finals, store


@pytest.fixture(scope="module")
def tiny(shared_data):
    def build(workers, bs=16):
        set_seed(0, reproducible=True)
        return build_dataloaders("cifar10", data_dir=shared_data, bs=bs, n_train=64, n_valid=32, path="pil",
                                 num_workers=workers)
    return build


def test_batches_equal_for_0_and_2_workers_and_differ_between_epochs(tiny):
    passes = {}
    for workers in (0, 2):
        dls = tiny(workers).dls
        assert dls.train.fake_l.num_workers == workers and dls.valid.fake_l.num_workers == workers
        passes[workers] = [[x.clone() for x, _ in dls.train] for _ in range(2)]
    zero, two = passes[0], passes[2]
    assert len(zero[0]) == 4  # 64 images, bs 16
    for epoch in range(2):
        assert all(torch.equal(a, b) for a, b in zip(zero[epoch], two[epoch])), epoch
    # a new epoch: new shuffle and new crops/flips (the per-item seeds move with the epoch)
    assert not any(torch.equal(a, b) for a, b in zip(zero[0], zero[1]))


def test_augmentation_draws_do_not_move_the_training_process_rng(tiny):
    dls = tiny(0).dls
    torch.manual_seed(1)
    import random
    random.seed(1)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(1)
    random.seed(1)
    batches = list(dls.train.create_batches(range(32)))  # crops + flips drawn here, in the training process
    assert len(batches) == 2
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_item_seeds_depend_on_epoch_and_index():
    seeds = {item_seed(e, i) for e in range(20) for i in range(200)}
    assert len(seeds) == 20 * 200
    assert all(0 <= s < 2 ** 63 for s in seeds)


def test_default_is_fastais_one_worker_per_core(tiny):
    expected = min(16, len(os.sched_getaffinity(0)))
    assert default_workers() == expected == check_workers(None)
    assert tiny(None).dls.train.fake_l.num_workers == expected
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="num_workers must be a whole number from 0 up"):
            check_workers(bad)


@pytest.mark.parametrize("value, shown", [("-1", "-1"), ("two", "'two'"), ("1.5", "'1.5'"), ("٢", "'٢'")])
def test_cli_rejects_a_bad_worker_count_in_one_line(value, shown, capsys, tmp_path):
    code = main(["run", "demo", "--store", str(tmp_path / "r.sqlite"), "--workers", value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--workers" in err and shown in err, err
    assert not (tmp_path / "r.sqlite").exists()


def test_mixed_precision_choice():
    from lookahead_fastai.runner import mixed_precision_mode
    assert mixed_precision_mode("cpu") is None and mixed_precision_mode(torch.device("cpu"), True) is None
    assert mixed_precision_mode("cuda", bf16_supported=True) == "bf16"
    assert mixed_precision_mode("cuda:0", bf16_supported=False) == "fp16"


@pytest.mark.parametrize("mode", ["bf16", "fp16", None])
def test_learner_gets_the_chosen_precision(mode, monkeypatch):
    from fastai.callback.fp16 import MixedPrecision

    import lookahead_fastai.runner as runner
    from lookahead_fastai.experiments import get_experiment
    monkeypatch.setattr(runner, "mixed_precision_mode", lambda device: mode)
    spec = get_experiment("demo").specs("smoke")[0]
    learn, _ = runner.build_learner_for(spec, 0, device="cpu")
    cbs = [cb for cb in learn.cbs if isinstance(cb, MixedPrecision)]
    if mode is None:
        assert not cbs
    else:
        assert len(cbs) == 1 and cbs[0].amp_mode.value == mode
