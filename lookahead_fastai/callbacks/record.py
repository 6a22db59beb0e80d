"""Per-epoch records and checkpoints for fit_and_record."""
import random
import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback

__all__ = ["EpochRecorder", "EpochCheckpoint", "load_checkpoint"]


class EpochRecorder(Callback):
    """After each epoch, hands ``sink(epoch, metrics)`` a dict of: train_loss (the epoch's mean
    over samples, not fastai's smoothed value), valid_loss, every Learner metric by name, lr (of the
    last parameter group, at the epoch's last batch) and wall time. Epochs skipped on resume
    (``start_epoch``) are not recorded."""
    order = 60  # after Recorder (50), which gathers the validation metrics

    def __init__(self, sink, start_epoch=0):
        self.sink, self.start_epoch = sink, start_epoch

    def before_epoch(self):
        self._start, self._loss_sum, self._count = time.perf_counter(), 0.0, 0

    def after_batch(self):
        if self.training and self.learn.loss is not None:
            n = len(self.learn.yb[0]) if self.learn.yb else 1
            self._loss_sum += self.learn.loss.detach() * n
            self._count += n

    def after_epoch(self):
        if self.epoch < self.start_epoch:
            return
        recorder = self.learn.recorder
        names = [n for n in recorder.metric_names[1:] if n not in ("train_loss", "time")]
        values = recorder.values[-1][1:] if recorder.values else []
        metrics = {"train_loss": float(self._loss_sum / max(self._count, 1))}
        metrics.update({name: float(v) for name, v in zip(names, values) if v is not None})
        metrics["lr"] = float(self.learn.opt.hypers[-1]["lr"])
        metrics["time"] = time.perf_counter() - self._start
        self.sink(self.epoch, metrics)


def _rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class EpochCheckpoint(Callback):
    """Save model + optimizer (with Lookahead's slow weights) and RNG states after every epoch to
    ``directory``, atomically, so a killed run resumes from its last finished epoch."""
    order = 65  # after EpochRecorder wrote the epoch to the store

    def __init__(self, directory, start_epoch=0):
        self.directory, self.start_epoch = Path(directory), start_epoch

    def after_epoch(self):
        if self.epoch < self.start_epoch:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {"model": self.learn.model.state_dict(), "opt": self.learn.opt.state_dict(),
                 "epoch": self.epoch, "rng": _rng_state()}
        tmp = self.directory / "last.pth.tmp"
        torch.save(state, tmp)
        tmp.replace(self.directory / "last.pth")


def load_checkpoint(learn, directory):
    """Restore a checkpoint written by EpochCheckpoint; returns the next epoch to train (0 if none)."""
    path = Path(directory) / "last.pth"
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False, map_location=learn.dls.device)
    learn.model.load_state_dict(state["model"])
    if learn.opt is None:
        learn.create_opt()
    learn.opt.load_state_dict(state["opt"])
    _set_rng_state(state["rng"])
    return state["epoch"] + 1
