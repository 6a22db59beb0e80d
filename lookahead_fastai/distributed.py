"""Multi-GPU (DDP) runs: what Lookahead needs under ``DistributedDataParallel``, and the rank-0 guard.

Lookahead under DDP
-------------------
DDP keeps the *fast* weights equal on every rank: at wrapping it broadcasts rank 0's weights (in
place, into the same parameter tensors the optimizer holds), then every step all-reduces the
gradients, so every rank takes the same step. Lookahead's slow weights (and NestedLookahead's
outer slow weights) are created lazily, from the weights at the optimizer's first ``step()``, i.e.
after the wrap; from there every sync is the same arithmetic on the same numbers on every rank. So
they stay identical across ranks even when the optimizer was built before the model was wrapped
and the ranks started from different weights (``tests/test_ddp.py`` checks it).

The one way to break that is to create the copies before the wrap (e.g. calling
``opt.slow_weights(p)`` or ``use_slow_weights()`` on a model that is not wrapped yet, or loading a
rank-local checkpoint): :func:`broadcast_lookahead_state` puts rank 0's slow weights (and
counters) on every rank, and :class:`LookaheadDDPSync` does it at the start of every fit, right
after fastai's ``DistributedTrainer`` wrapped the model. ``fit_and_record(..., distributed=True)``
adds it.

Only rank 0 writes
------------------
In a distributed run every rank trains, but only rank 0 claims the run and writes the results store,
checkpoints, reports and W&B: the other ranks follow it through ``ResultsStore.observe`` (a lease
that reads the store and the checkpoint and writes nothing), so every rank skips the same finished
runs and resumes from the same checkpoint. A DDP sweep should not share its store with another
sweep running at the same time: rank 0 would skip a run the other sweep holds, which the other
ranks cannot know.

Launching: ``torchrun --nproc_per_node 2 -m lookahead_fastai.cli run EXP --distributed`` (or
``accelerate launch -m lookahead_fastai.cli run EXP --distributed``); fastai's ``distrib_ctx``
(which needs ``accelerate``: ``pip install 'lookahead-fastai[distributed]'``) wraps the model in
DDP and splits every batch between the ranks.
"""
import os

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.learner import Recorder
from fastai.torch_core import num_distrib, rank_distrib

from .callbacks.lookahead import lookahead_of
from .optim import Lookahead

__all__ = ["is_rank_zero", "broadcast_lookahead_state", "LookaheadDDPSync", "require_accelerate",
           "setup_device", "distributed_callbacks", "ACCELERATE_INSTALL_HINT"]

ACCELERATE_INSTALL_HINT = "pip install 'lookahead-fastai[distributed]'"


def is_rank_zero():
    """True unless this process is a non-zero rank of a distributed run (``RANK`` set by the launcher)."""
    return rank_distrib() == 0


def _find_lookahead(obj):
    """The Lookahead in ``obj``: a Lookahead, a fastai OptimWrapper around one, or a Learner."""
    if isinstance(obj, Lookahead):
        return obj
    inner = getattr(obj, "opt", None)
    if isinstance(inner, Lookahead):
        return inner
    return lookahead_of(obj)


def broadcast_lookahead_state(optimizer, src=0, group=None):
    """Make every rank's Lookahead weight copies (slow, and outer slow for NestedLookahead) and
    step/sync counters those of rank ``src``. Copies not created yet are created first, from the
    current weights (which DDP has already made equal). A collective: call it on every rank.
    Returns the Lookahead, or None (nothing done) when ``optimizer`` holds none."""
    la = _find_lookahead(optimizer)
    if la is None or not (dist.is_available() and dist.is_initialized()):
        return la
    params = [p for g in la.param_groups for p in g["params"]]
    if not params:
        return la
    with torch.no_grad():
        for copy in la.weight_copies():
            dist.broadcast(copy, src, group=group)
        counters = torch.tensor(la.counters(), dtype=torch.long, device=params[0].device)
        dist.broadcast(counters, src, group=group)
        la.set_counters(counters.tolist())
    return la


class LookaheadDDPSync(Callback):
    """At the start of every fit, after fastai's ``DistributedTrainer`` wrapped the model in DDP,
    give every rank rank 0's Lookahead slow weights (see :func:`broadcast_lookahead_state`)."""
    order = 12  # DistributedTrainer is 11

    def before_fit(self):
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            broadcast_lookahead_state(self.learn)


class WandbSeesUnwrapped(Callback):
    """fastai's ``WandbCallback.before_fit`` (rank 0 only) logs ``learn.gather_args()``, which under
    DDP would inspect the DDP wrapper (its process group has no signature: ValueError) and draw a
    batch from a ``DistributedDL`` on rank 0 alone (a collective the other ranks never join). For
    that moment this callback shows it the unwrapped model and DataLoaders;
    :class:`WandbSeesWrappedAgain` puts the wrapped ones back right after the W&B callbacks."""
    order = Recorder.order + 0.5  # WandbCallback is Recorder.order + 1, LookaheadWandbCallback + 2

    def before_fit(self):
        trainer = getattr(self.learn, "distributed_trainer", None)
        if trainer is None or not hasattr(self.learn.model, "module"):
            self.learn._ddp_wrapped = None
            return
        self.learn._ddp_wrapped = (self.learn.model, self.learn.dls.loaders)
        self.learn.model, self.learn.dls.loaders = self.learn.model.module, list(trainer.old_dls)


class WandbSeesWrappedAgain(Callback):
    order = Recorder.order + 2.5

    def before_fit(self):
        wrapped = getattr(self.learn, "_ddp_wrapped", None)
        if wrapped is not None:
            self.learn.model, self.learn.dls.loaders = wrapped
            self.learn._ddp_wrapped = None


def require_accelerate():
    """fastai's ``distrib_ctx`` / ``DistributedTrainer`` need ``accelerate``."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise ValueError(f"--distributed needs accelerate (fastai's DDP support uses it): "
                         f"{ACCELERATE_INSTALL_HINT}") from None
    _patch_distributed_dl()


def distributed_callbacks(wandb=False):
    """The callbacks ``fit_and_record(distributed=True)`` adds to fastai's ``distrib_ctx``
    (``wandb``: the run logs to W&B)."""
    return [LookaheadDDPSync(), *([WandbSeesUnwrapped(), WandbSeesWrappedAgain()] if wandb else [])]


def setup_device(device=None):
    """In a launched distributed run on GPUs, make this rank's GPU (``LOCAL_RANK``) the current one,
    so that ``cuda`` means it; returns the device name to use."""
    if device in (None, "cuda") and torch.cuda.is_available() and num_distrib() > 0:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        return "cuda"
    return device


def _patch_distributed_dl():
    """fastai 2.8.12's ``DistributedDL`` broadcasts the batch order with a CUDA tensor (NCCL only);
    with the gloo backend (CPU) the tensor has to stay on the CPU."""
    from fastai import distributed as fastai_distributed

    dl_class = fastai_distributed.DistributedDL
    if getattr(dl_class._broadcast, "_lookahead_fastai", False):
        return

    def _broadcast(self, t, rank):
        t = torch.LongTensor(t)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, rank)
        return t.cpu().tolist()

    _broadcast._lookahead_fastai = True
    dl_class._broadcast = _broadcast
