"""``train``: one spec + one seed -> a fastai Learner trained once -> a record (no storage), and
``fit_and_record``: the same run through the store's lifecycle (claim, resume, epoch rows, finish).

This is the only training loop of the suite (fastai's ``Learner``); notebooks, the CLI and the
executors all come through here.
"""
import os
import time
from contextlib import ExitStack

import torch
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import *  # noqa: F401,F403  (patches fit_one_cycle onto Learner)
from fastai.metrics import accuracy, top_k_accuracy
from fastai.torch_core import set_seed

from .callbacks.lookahead import SlowWeightEvalCallback, StateResetCallback, lookahead_of
from .callbacks.record import EpochRecorder, RunCheckpoint
from .data import build_dataloaders
from .distributed import distributed_callbacks, is_rank_zero, require_accelerate, setup_device
from .experiments import run_stage
from .experiments.spec import RunSpec
from .registry.architectures import build_learner
from .registry.losses import make_loss
from .registry.optimizers import make_opt_func
from .registry.schedules import fit_with_schedule
from .lifecycle import RunHeld, claimed_run, recording_failure, wandb_session
from .store.paths import wandb_dir
from .store import DEFAULT_STORE, opened

__all__ = ["fit_and_record", "train", "RunHeld", "default_device", "run_environment", "DEFAULT_STORE",
           "mixed_precision_mode"]


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def mixed_precision_mode(device, bf16_supported=None):
    """How a run on ``device`` trains in mixed precision: ``"bf16"`` (autocast to bfloat16, no loss
    scaler: bf16 has fp32's range) on a CUDA device that supports it, ``"fp16"`` (fastai's
    ``to_fp16``: float16 autocast with a GradScaler) on an older one, None (fp32) on the CPU.
    ``bf16_supported``: what ``torch.cuda.is_bf16_supported()`` says (asked when None)."""
    if torch.device(device).type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return "bf16" if bf16_supported else "fp16"


def _metrics(n_classes):
    metrics = [accuracy]
    if n_classes > 5:
        metrics.append(top_k_accuracy)  # k=5
    return metrics


def _rename(metrics):
    """fastai names the top-5 metric after its function; reports call it top5."""
    return {("top5" if k == "top_k_accuracy" else k): v for k, v in metrics.items()}


def build_learner_for(spec, seed, data_dir=None, device=None, num_workers=None):
    """The fastai Learner of a spec, seeded; exposed for notebooks (lr_find, plots). ``num_workers``:
    loader worker processes of the PIL data path (None: one per core, as fastai; see data.py)."""
    spec = _as_spec(spec)
    device = device or default_device()
    set_seed(seed, reproducible=True)
    bundle = build_dataloaders(spec.dataset, data_dir=data_dir, bs=spec.bs, n_train=spec.n_train,
                               n_valid=spec.n_valid, size=spec.size, path=spec.data_path, device=device,
                               augment=spec.augment, num_workers=num_workers, holdout=spec.holdout)
    learn = build_learner(spec.arch, bundle.dls, bundle.n_in, bundle.n_out, bundle.size,
                          opt_func=make_opt_func(spec.optimizer, **spec.hyper), loss_func=make_loss(spec.loss),
                          metrics=_metrics(bundle.n_out))
    learn.model.to(device)  # before the optimizer exists, so its state lands on the same device
    precision = mixed_precision_mode(device)
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()
    return learn, bundle


def _spec_callbacks(spec):
    cbs = []
    if spec.state_reset == "epoch":
        cbs.append(StateResetCallback())
    if spec.eval_slow_weights:
        cbs.append(SlowWeightEvalCallback(bn_batches=spec.slow_bn_batches))
    if spec.mixup:
        cbs.append(MixUp(spec.mixup))
    return cbs


def run_environment(device):
    """Where a run trains: machine, device, library versions (kept in its record, shown by reports)."""
    import platform

    import fastai
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {"machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
            "device": f"{device.type}: {name}", "torch": torch.__version__, "fastai": fastai.__version__,
            "python": platform.python_version()}


def train(spec, seed, *, data_dir=None, device=None, resume=None, checkpoint_dir=None, checkpoint_owner=None,
          on_epoch=None, wandb_run=None, progress=False, extra_cbs=(), distributed=False, num_workers=None):
    """Train ``spec`` with ``seed`` through fastai's Learner and return its record; knows nothing
    of storage.

    ``resume``: a checkpoint (``checkpoint.read_checkpoint``) to continue from: the run goes on
    from the epoch after it, with every state that decides the rest restored, so its metrics equal
    those of a run never interrupted. ``checkpoint_dir``: write such a checkpoint there after every
    epoch (None: none), bound to ``checkpoint_owner`` (the run's lease: see ``RunCheckpoint``).
    ``on_epoch(epoch, metrics)`` is called after each epoch trained here.
    Runs with sessions (several fits) neither resume nor checkpoint: they restart.
    ``num_workers``: loader workers of the PIL data path (None: one per core); the metrics do not
    depend on it.
    """
    spec = _as_spec(spec)
    learn, bundle = build_learner_for(spec, seed, data_dir=data_dir, device=device, num_workers=num_workers)
    learn.create_opt()
    if spec.sessions:
        resume = checkpoint_dir = None
    history = [dict(row) for row in resume["history"]] if resume else []
    start_epoch = resume["epoch"] + 1 if resume else 0
    offset = [0]  # epochs of the earlier sessions

    def sink(epoch, metrics):
        metrics = _rename(metrics)
        epoch += offset[0]
        history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    started = time.perf_counter()
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
            run_cbs = [EpochRecorder(sink, start_epoch)]
            if resume is not None or checkpoint_dir is not None:
                run_cbs.append(RunCheckpoint(checkpoint_dir, history, resume, owner=checkpoint_owner))
            fit_with_schedule(learn, spec.epochs, _lr(spec, spec.lr), spec.schedule, spec.schedule_params,
                              cbs=[*run_cbs, *cbs], start_epoch=start_epoch)
        slow, final_test = _final_scores(learn, spec, bundle.test)
    seconds = time.perf_counter() - started + (resume or {}).get("seconds", 0.0)
    record = _make_record(spec, seed, spec.run_id(seed), history, slow, seconds, bundle)
    if final_test is not None:  # three splits: the test numbers beside the validation ones, never read to choose
        record["final"].update(final_test)
        record["n_test"], record["holdout"] = bundle.n_test, dict(bundle.holdout)
    return record


def fit_and_record(spec, seed, store=None, data_dir=None, device=None, wandb="disabled", checkpoint=True,
                   progress=False, extra_cbs=(), distributed=False, on_claim=None, num_workers=None):
    """Train ``spec`` with ``seed`` unless the store already holds that run finished; returns the
    run's record (also written to the store).

    The run's life is the store's (:meth:`ResultsStore.claim`, through ``lifecycle``): claimed by this process (another
    process holding it live: :class:`RunHeld`), resumed from its last epoch checkpoint when an
    earlier attempt was killed or failed, each epoch's metrics written as it ends, then finished
    (checkpoint dropped) or failed (checkpoint kept for the next attempt).

    Records per epoch: train_loss (epoch mean), valid_loss, accuracy, top5 (more than 5 classes),
    lr, time; at the end the same validation metrics on the slow weights for Lookahead runs, and
    where the run trained (``env``: machine, device, torch and fastai versions).

    ``distributed=True``: train with DDP through fastai's ``distrib_ctx`` (in a process started by
    ``torchrun`` or ``accelerate launch``; see distributed.py). Only rank 0 writes the store,
    checkpoints and W&B; the other ranks follow the store read-only (same skip, same resume point).

    ``on_claim(state)``: called with the store's answer (``"claimed"``, ``"finished"``, ``"held"``
    or ``"observed"``) before anything else; e.g. a sweep tells a run finished meanwhile by another
    process sharing the store from one this process trained.

    ``num_workers``: loader worker processes of the PIL data path (None: one per core available, as
    fastai; 0: none). Not part of the run's identity: any number gives the same metrics, and a run
    killed with one number resumes exactly with another.
    """
    spec = _as_spec(spec)
    with opened(store) as store:  # a path: opened here, for this run
        writer = is_rank_zero()
        if distributed:
            require_accelerate()
            device = setup_device(device)
        with claimed_run(store, spec, seed, writer=writer, on_claim=on_claim) as lease:  # held: RunHeld
            if lease.state == "finished":
                return lease.record
            resumable = checkpoint and not spec.sessions
            resume = lease.resume_point(resumable, epochs=spec.epochs)
            # the failure is recorded first, then W&B finished as failed; a run that trained: W&B, then the store
            with wandb_session(wandb if writer else "disabled", spec, seed, wandb_dir(store.path)) as wb, \
                    recording_failure(lease):
                wb.record = train(spec, seed, data_dir=data_dir, device=device, resume=resume,
                                  checkpoint_dir=lease.checkpoint_dir if resumable and writer else None,
                                  checkpoint_owner=lease if resumable and writer else None,
                                  on_epoch=lease.log_epoch, wandb_run=wb.run, progress=progress,
                                  extra_cbs=extra_cbs, distributed=distributed, num_workers=num_workers)
            lease.finish(wb.record)
            return wb.record


def _as_spec(spec):
    return spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)


def _lr(spec, lr):
    return slice(lr / spec.lr_mult, lr) if spec.lr_mult != 1 else lr


def _validate(learn, dl=None):
    values = learn.validate(dl=dl)
    names = ["valid_loss"] + [m.name for m in learn.metrics]
    return _rename({n: float(v) for n, v in zip(names, values)})


def _test_scores(learn, test):
    """The test split scored once on the weights the model holds now: ``test_loss``, ``test_accuracy``
    (``test_top5``), named apart from the validation metrics so that no choice reads them by mistake."""
    scores = _validate(learn, test)
    return {"test_loss" if k == "valid_loss" else f"test_{k}": v for k, v in scores.items()}


def _final_scores(learn, spec, test):
    """After training: (the validation metrics on Lookahead's slow weights, None for other optimizers;
    with three splits (``test`` a loader) the test metrics on the weights ``record["final"]`` was
    validated on, else None). The slow metrics then hold their own test metrics too. Those weights are
    the slow ones (BatchNorm recomputed as ``slow_bn_batches`` says) when the spec validates on slow
    weights every epoch (``eval_slow_weights``), else the fast ones."""
    slow = final_test = None
    la = lookahead_of(learn)
    if la is not None:
        bn = dict(model=learn.model, bn_loader=learn.dls.train, bn_batches=spec.slow_bn_batches) \
            if spec.slow_bn_batches else {}
        with la.use_slow_weights(**bn):
            slow = _validate(learn)
            if test is not None:
                slow.update(_test_scores(learn, test))
        if test is not None and spec.eval_slow_weights:
            final_test = {k: v for k, v in slow.items() if k.startswith("test_")}
    if test is not None and final_test is None:
        final_test = _test_scores(learn, test)
    return slow, final_test


def _make_record(spec, seed, run_id, history, slow, seconds, bundle):
    final = dict(history[-1]) if history else {}
    final.pop("epoch", None)
    accuracies = [h["accuracy"] for h in history if "accuracy" in h]
    device = bundle.dls.device
    return {
        "run_id": run_id, "experiment": spec.experiment, "name": spec.name, "seed": seed, "scale": spec.scale,
        "dataset": spec.dataset, "n_train": bundle.n_train, "n_valid": bundle.n_valid, "data": bundle.path,
        "epochs": len(history), "final": final,
        "best_accuracy": max(accuracies) if accuracies else None,
        "slow": slow, "seconds": seconds, "device": str(device), "env": run_environment(device),
        **({"stage": stage} if (stage := run_stage(spec, seed)) else {}),  # declared stages: the run's kept with it
    }
