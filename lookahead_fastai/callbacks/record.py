"""Per-epoch records and exact-resume checkpoints for ``runner.train``."""
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback

from ..checkpoint import rng_state, save_checkpoint, set_rng_state

__all__ = ["EpochRecorder", "RunCheckpoint", "load_optimizer_state"]


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


class RunCheckpoint(Callback):
    """Exact resume of a run: after every epoch, writes (atomically, as data only) everything that
    decides the rest of the run to ``directory``; given ``resume`` (a checkpoint read back), puts
    all of it back at the start of the fit, so the epochs after it equal a run never interrupted.

    Saved: model, optimizer (Lookahead's slow weights, cached state and counters), every RNG
    (torch, CUDA, numpy, Python, each DataLoader's own), the GradScaler, the epoch reached (the
    schedules' position: fastai computes them from it), the per-epoch metrics so far, the seconds
    spent, the state of any callback with ``checkpoint_state()`` / ``load_checkpoint_state()``, and
    ``owner``'s binding (``owner``: the run's lease; it records each checkpoint's digest in the store
    before the file replaces the last one). Without an owner the binding is None: no store resumes it.
    """
    order = 65  # after_epoch: after EpochRecorder (60) handed the epoch to the store; before_fit:
    # after MixedPrecision (10, makes the GradScaler) and DistributedTrainer (11, wraps the model)

    def __init__(self, directory=None, history=None, resume=None, owner=None):
        self.directory = None if directory is None else Path(directory)
        self.owner = owner
        self.history, self.resume = history if history is not None else [], resume
        self.base_seconds = float(resume.get("seconds", 0.0)) if resume else 0.0

    def _loaders(self):
        return [getattr(dl, "dl", dl) for dl in self.learn.dls.loaders]  # fastai's DistributedDL wraps one

    def _model(self):
        return getattr(self.learn.model, "module", self.learn.model)  # DDP wraps the model

    def _stateful(self):
        return {type(cb).__name__: cb for cb in self.learn.cbs if hasattr(cb, "checkpoint_state")}

    def before_fit(self):
        self._started = time.perf_counter()
        state = self.resume
        if state is None:
            return
        self._model().load_state_dict(state["model"])
        load_optimizer_state(self.learn.opt, state["opt"])
        scaler = getattr(self.learn, "scaler", None)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        for name, cb in self._stateful().items():
            cb.load_checkpoint_state(state["callbacks"][name])
        set_rng_state(state["rng"], self._loaders())

    def after_epoch(self):
        if self.directory is None or (self.resume is not None and self.epoch <= self.resume["epoch"]):
            return
        scaler = getattr(self.learn, "scaler", None)
        cuda = self.learn.dls.device is not None and torch.device(self.learn.dls.device).type == "cuda"
        owner = self.owner
        save_checkpoint(self.directory, {
            "binding": owner.checkpoint_binding if owner is not None else None,
            "epoch": self.epoch, "history": self.history, "model": self._model().state_dict(),
            "opt": self.learn.opt.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
            "callbacks": {name: cb.checkpoint_state() for name, cb in self._stateful().items()},
            "rng": rng_state(self._loaders(), cuda=cuda),
            "seconds": self.base_seconds + time.perf_counter() - self._started},
            before_replace=owner.record_checkpoint if owner is not None else None)


def load_optimizer_state(opt, state):
    """Load a plain (``to_plain``) optimizer state dict: fastai's own optimizers keep ``hypers`` as
    a fastcore ``L``, which a checkpoint stores as a list."""
    if "hypers" in state and hasattr(opt, "param_lists"):
        from fastcore.foundation import L
        state = {**state, "hypers": L(state["hypers"])}
    opt.load_state_dict(state)
