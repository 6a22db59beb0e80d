"""Test launcher for tests/test_lifecycle.py: ``python tests/lifecycle_cli.py ARGS`` is
``python -m lookahead_fastai.cli ARGS`` (run through ``runpy``, as ``-m`` does) plus, for tests only:

* a ``lifecycle`` experiment: small digits runs built from demo's rows with ``dataclasses.replace``:
  ``SGD``, ``LA/SGD`` (Lookahead k=5 over 6 batches an epoch, so syncs straddle epoch ends) and
  ``SGD · mixup`` (fastai MixUp 0.4), 5 epochs of one-cycle;
* a ``lifecycle_pil`` experiment: data_paths' ``PIL path`` row (CIFAR-10 subset through fastai's
  PIL item transforms: zero-pad, random crop, flip) on 192 / 64 images, 3 epochs, without and with
  MixUp (its loader workers are the CLI's ``--workers``);
* ``LIFECYCLE_KILL="ROW@after@EPOCH"``: this process SIGKILLs itself right after the checkpoint of
  that epoch of that row is on disk (``@before@``: after the epoch's row is in the store, right
  before its checkpoint is written); ROW may also be a run id, of any experiment (a TOML file's);
* ``LIFECYCLE_TRAINED=FILE``: the run_id of every run this process starts training is appended to FILE;
* ``LIFECYCLE_READY=FILE`` / ``LIFECYCLE_GO=FILE``: once imported, create READY, then wait for GO
  (so that several processes start their sweeps at the same moment).

Nothing here is in the package: the hooks wrap its functions from the outside.
"""
import dataclasses
import os
import runpy
import signal
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

import lookahead_fastai.callbacks.record as record_module  # noqa: E402
import lookahead_fastai.runner as runner_module  # noqa: E402
from lookahead_fastai.experiments import EXPERIMENTS, Experiment  # noqa: E402
from lookahead_fastai.experiments.data_paths import build as data_paths_build  # noqa: E402
from lookahead_fastai.experiments.demo import build as demo_build  # noqa: E402

EPOCHS = 5


def build(scale):
    demo = {s.name: s for s in demo_build("cpu")}  # small CNN with BatchNorm, one-cycle, bs 64
    small = dict(experiment="lifecycle", scale=scale, n_train=384, n_valid=128, epochs=EPOCHS)
    return [dataclasses.replace(demo["SGD"], **small),
            dataclasses.replace(demo["LA/SGD"], **small),
            dataclasses.replace(demo["SGD"], name="SGD · mixup", mixup=0.4, **small)]


EXPERIMENTS["lifecycle"] = Experiment(
    name="lifecycle", description="tests only: SGD, LA/SGD, SGD with MixUp on 384 digits, 5 epochs",
    baseline="SGD", build=build, default_seeds={"smoke": 1, "cpu": 1, "full": 1})

PIL_EPOCHS = 3


def build_pil(scale):
    pil = next(s for s in data_paths_build("smoke") if s.data_path == "pil")  # small CNN, SGD one-cycle
    small = dict(experiment="lifecycle_pil", scale=scale, n_train=192, n_valid=64, bs=32, epochs=PIL_EPOCHS)
    return [dataclasses.replace(pil, name="PIL SGD", **small),
            dataclasses.replace(pil, name="PIL SGD · mixup", mixup=0.4, **small)]


EXPERIMENTS["lifecycle_pil"] = Experiment(
    name="lifecycle_pil", description="tests only: SGD with and without MixUp on 192 CIFAR-10 images through "
                                      "the PIL path, 3 epochs",
    baseline="PIL SGD", build=build_pil, default_seeds={"smoke": 1, "cpu": 1, "full": 1})

kill = os.environ.get("LIFECYCLE_KILL")
if kill:
    row, when, epoch = kill.split("@")
    kill_run_ids = {spec.run_id(seed) for make in (build, build_pil) for spec in make("smoke") + make("cpu")
                    if spec.name == row for seed in range(3)} | {row}
    original_save = record_module.save_checkpoint

    def save_checkpoint(directory, state, *args, **kwargs):
        hit = Path(directory).name in kill_run_ids and state["epoch"] == int(epoch)
        print(f"lifecycle_cli: checkpoint {Path(directory).name} epoch {state['epoch']}"
              f"{' (killing)' if hit else ''}", file=sys.stderr, flush=True)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        original_save(directory, state, *args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    record_module.save_checkpoint = save_checkpoint

trained = os.environ.get("LIFECYCLE_TRAINED")
if trained:
    original_train = runner_module.train

    def train(spec, seed, **kwargs):
        with open(trained, "a") as fh:
            fh.write(f"{spec.run_id(seed)}\n")
        return original_train(spec, seed, **kwargs)

    runner_module.train = train

if os.environ.get("LIFECYCLE_READY"):
    Path(os.environ["LIFECYCLE_READY"]).touch()
    go = Path(os.environ["LIFECYCLE_GO"])
    deadline = time.monotonic() + 600
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)

sys.argv = ["lookahead-fastai", *sys.argv[1:]]
runpy.run_module("lookahead_fastai.cli", run_name="__main__", alter_sys=True)
