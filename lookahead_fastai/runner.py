"""``fit_and_record``: one spec + one seed -> a fastai Learner trained once -> a record in the store.

This is the only training loop of the suite (fastai's ``Learner``); notebooks, the CLI and the
executors all come through here.
"""
import os
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import *  # noqa: F401,F403  (patches fit_one_cycle onto Learner)
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, top_k_accuracy
from fastai.torch_core import set_seed

from .callbacks.lookahead import SlowWeightEvalCallback, StateResetCallback, lookahead_of
from .callbacks.record import EpochCheckpoint, EpochRecorder, load_checkpoint
from .data import build_dataloaders
from .distributed import ReadOnlyStore, distributed_callbacks, is_rank_zero, require_accelerate, setup_device
from .experiments.spec import RunSpec
from .registry.architectures import build_learner
from .registry.optimizers import make_opt_func
from .registry.schedules import fit_with_schedule
from .store import ResultsStore

__all__ = ["fit_and_record", "default_device", "DEFAULT_STORE"]

DEFAULT_STORE = Path("runs") / "results.sqlite"


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def _metrics(n_classes):
    metrics = [accuracy]
    if n_classes > 5:
        metrics.append(top_k_accuracy)  # k=5
    return metrics


def _rename(metrics):
    """fastai names the top-5 metric after its function; reports call it top5."""
    return {("top5" if k == "top_k_accuracy" else k): v for k, v in metrics.items()}


def build_learner_for(spec, seed, data_dir=None, device=None):
    """The fastai Learner of a spec, seeded; exposed for notebooks (lr_find, plots)."""
    spec = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)
    device = device or default_device()
    set_seed(seed, reproducible=True)
    bundle = build_dataloaders(spec.dataset, data_dir=data_dir, bs=spec.bs, n_train=spec.n_train,
                               n_valid=spec.n_valid, size=spec.size, path=spec.data_path, device=device)
    learn = build_learner(spec.arch, bundle.dls, bundle.n_in, bundle.n_out, bundle.size,
                          opt_func=make_opt_func(spec.optimizer, **spec.hyper), loss_func=CrossEntropyLossFlat(),
                          metrics=_metrics(bundle.n_out))
    learn.model.to(device)  # before the optimizer exists, so its state lands on the same device
    if device == "cuda":
        learn.to_fp16()
    return learn, bundle


def _spec_callbacks(spec):
    cbs = []
    if spec.state_reset != "off":
        cbs.append(StateResetCallback(spec.state_reset))
    if spec.eval_slow_weights:
        cbs.append(SlowWeightEvalCallback())
    if spec.mixup:
        cbs.append(MixUp(spec.mixup))
    return cbs


def fit_and_record(spec, seed, store=None, data_dir=None, device=None, wandb="disabled", checkpoint=True,
                   progress=False, extra_cbs=(), distributed=False):
    """Train ``spec`` with ``seed`` unless the store already holds that run finished; returns the
    run's record (also written to the store).

    Records per epoch: train_loss (epoch mean), valid_loss, accuracy, top5 (more than 5 classes),
    lr, time; at the end the same validation metrics on the slow weights for Lookahead runs.
    A run killed midway resumes from its last epoch checkpoint (runs with sessions restart).

    ``distributed=True``: train with DDP through fastai's ``distrib_ctx`` (in a process started by
    ``torchrun`` or ``accelerate launch``; see distributed.py). In any distributed run only rank 0
    writes the store, checkpoints and W&B; the other ranks train and return the record.
    """
    spec = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)
    own_store = store is None or isinstance(store, (str, os.PathLike))
    store = ResultsStore(store or DEFAULT_STORE) if own_store else store
    try:
        # --- distributed: only rank 0 writes (store, checkpoints, W&B); see distributed.py ---
        writer = is_rank_zero()
        if distributed:
            require_accelerate()
            device = setup_device(device)
        run_store = store if writer else ReadOnlyStore(store)
        wandb = wandb if writer else "disabled"
        # --- end distributed ---
        return _fit_and_record(spec, seed, run_store, data_dir, device, wandb, checkpoint, progress, extra_cbs,
                               distributed, writer)
    finally:
        if own_store:
            store.close()


def _fit_and_record(spec, seed, store, data_dir, device, wandb, checkpoint, progress, extra_cbs,
                    distributed=False, writer=True):
    spec_dict = spec.to_dict()
    run_id = spec.run_id(seed)
    if store.is_finished(run_id):
        return next(r["record"] for r in store.runs(spec.experiment) if r["run_id"] == run_id)
    resumable = checkpoint and not spec.sessions
    # a run killed (running) or failed midway resumes from its last checkpoint: keep the epochs before it
    earlier_epochs = store.epochs(run_id) if store.status(run_id) in ("running", "failed") else []
    learn, bundle = build_learner_for(spec, seed, data_dir=data_dir, device=device)
    learn.create_opt()
    ckpt_dir = store.checkpoint_dir(run_id)
    start_epoch = load_checkpoint(learn, ckpt_dir) if resumable else 0
    store.start_run(run_id, spec.experiment, spec.name, seed, spec_dict)
    for row in earlier_epochs:
        if row["epoch"] < start_epoch:
            store.log_epoch(run_id, row["epoch"], {k: v for k, v in row.items() if k != "epoch"})

    history = [dict(row) for row in earlier_epochs if row["epoch"] < start_epoch]
    offset = [0]  # epochs of the earlier sessions

    def sink(epoch, metrics):
        metrics = _rename(metrics)
        epoch += offset[0]
        store.log_epoch(run_id, epoch, metrics)
        history.append({"epoch": epoch, **metrics})

    wandb_run = None
    if wandb != "disabled":
        from .callbacks.wandb import open_wandb_run  # imports wandb only when asked for
        wandb_run = open_wandb_run(wandb, spec, seed, run_id, Path(store.path).parent)
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            if not progress:
                stack.enter_context(learn.no_bar())
                stack.enter_context(learn.no_logging())
            cbs = [*_spec_callbacks(spec), *(wandb_run.callbacks if wandb_run else []), *extra_cbs]
            if distributed:  # DDP (fastai's DistributedTrainer), then rank 0's slow weights everywhere
                stack.enter_context(learn.distrib_ctx(cpu=learn.dls.device.type == "cpu"))  # cpu: gloo
                cbs.extend(distributed_callbacks(wandb=wandb_run is not None))
            if spec.sessions:
                for session in spec.sessions:
                    fit_with_schedule(learn, session["epochs"], _lr(spec, session.get("lr", spec.lr)),
                                      session.get("schedule", spec.schedule), session.get("schedule_params"),
                                      cbs=[EpochRecorder(sink), *cbs], reset_opt=session.get("reset_opt", False))
                    offset[0] += session["epochs"]
            else:
                recorder_cbs = [EpochRecorder(sink, start_epoch)]
                if resumable and writer:  # every rank resumes from rank 0's checkpoint
                    recorder_cbs.append(EpochCheckpoint(ckpt_dir, start_epoch))
                fit_with_schedule(learn, spec.epochs, _lr(spec, spec.lr), spec.schedule, spec.schedule_params,
                                  cbs=[*recorder_cbs, *cbs], start_epoch=start_epoch)
            slow = None
            la = lookahead_of(learn)
            if la is not None:
                with la.use_slow_weights():
                    slow = _validate(learn)
    except BaseException as e:  # a failed run is recorded, then the error goes on
        store.fail_run(run_id, f"{type(e).__name__}: {e}")
        if wandb_run is not None:
            wandb_run.finish(None)
        raise
    record = _make_record(spec, seed, run_id, history, slow, time.perf_counter() - started, bundle)
    if wandb_run is not None:
        wandb_run.finish(record)
    store.finish_run(run_id, record)
    store.drop_checkpoint(run_id)
    return record


def _lr(spec, lr):
    return slice(lr / spec.lr_mult, lr) if spec.lr_mult != 1 else lr


def _validate(learn):
    values = learn.validate()
    names = ["valid_loss"] + [m.name for m in learn.metrics]
    return _rename({n: float(v) for n, v in zip(names, values)})


def _make_record(spec, seed, run_id, history, slow, seconds, bundle):
    final = dict(history[-1]) if history else {}
    final.pop("epoch", None)
    accuracies = [h["accuracy"] for h in history if "accuracy" in h]
    return {
        "run_id": run_id, "experiment": spec.experiment, "name": spec.name, "seed": seed, "scale": spec.scale,
        "dataset": spec.dataset, "n_train": bundle.n_train, "n_valid": bundle.n_valid, "data": bundle.path,
        "epochs": len(history), "final": final,
        "best_accuracy": max(accuracies) if accuracies else None,
        "slow": slow, "seconds": seconds, "device": str(bundle.dls.device),
    }
