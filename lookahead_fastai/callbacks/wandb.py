"""Weights & Biases logging: fastai's ``WandbCallback`` with a guard for fastai #4173, plus the
Lookahead-specific keys.

fastai 2.8.12's ``WandbCallback.before_fit`` formats ``learn.gather_args()`` with
``_format_config``, which calls fastcore's ``init_args`` on every value and raises ``TypeError`` on
plain floats and ints with fastcore 2.2.x (fastai issue #4173). ``GuardedWandbCallback`` runs
fastai's ``before_fit`` with a formatter that falls back to ``repr`` for the values that raise, so
everything else fastai's callback does (per-batch ``train_loss``, ``raw_loss`` and every optimizer
hyper-parameter as ``{name}_{group}`` -- ``lr_0``, ``mom_0``, ``la_k_0``, ``la_alpha_0`` --, per-epoch
Recorder metrics) keeps working.

``LookaheadWandbCallback`` adds, at each Lookahead sync, ``fast_slow_distance``: the L2 norm of
(fast - slow) over all parameters, measured just before the sync.
"""
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import wandb
from fastai.callback import wandb as fastai_wandb
from fastai.callback.core import Callback
from fastai.callback.wandb import WandbCallback

from .lookahead import lookahead_of

__all__ = ["GuardedWandbCallback", "LookaheadWandbCallback", "WandbRun", "open_wandb_run", "resolve_mode",
           "run_layout", "WANDB_MODES"]

WANDB_MODES = ("offline", "online", "disabled")
PROJECT = "lookahead-fastai"


def _plain(value):
    """A value W&B can store in a config: primitives, lists and dicts of them, else its repr."""
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    if isinstance(value, torch.Tensor):  # e.g. a DataLoader's in-memory dataset: describe, don't dump
        return f"tensor(shape={list(value.shape)}, dtype={value.dtype})"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def _safe_format_config(config):
    """fastai's ``_format_config`` without the #4173 TypeError, and with only plain values."""
    for key, value in config.items():
        try:
            value = fastai_wandb._format_config_value(value) if not isinstance(value, dict) else value
        except TypeError:  # fastai #4173: init_args() on plain values
            pass
        config[key] = _plain(value)
    return config


@contextmanager
def _guarded_format_config():
    original = fastai_wandb._format_config
    fastai_wandb._format_config = _safe_format_config
    try:
        yield
    finally:
        fastai_wandb._format_config = original


class GuardedWandbCallback(WandbCallback):
    """fastai's WandbCallback, safe from fastai #4173. Prediction tables are off by default (they
    need item-based DataLoaders)."""

    def __init__(self, log=None, log_preds=False, **kwargs):
        super().__init__(log=log, log_preds=log_preds, **kwargs)

    def before_fit(self):
        with _guarded_format_config():
            super().before_fit()


class LookaheadWandbCallback(Callback):
    """Logs ``fast_slow_distance`` at each Lookahead sync, at fastai's W&B step."""
    order = WandbCallback.order + 1

    def before_fit(self):
        self._distances, self._handle = [], None
        la = lookahead_of(self.learn)
        if la is not None:
            self._handle = la.register_sync_hook(self._on_sync)

    def _on_sync(self, optimizer, group_index, fast, slow):
        diffs = torch._foreach_sub(list(fast), list(slow))
        self._distances.append(torch.stack(torch._foreach_norm(diffs)).pow(2).sum())

    def after_batch(self):
        if self._distances and wandb.run is not None:
            distance = float(sum(self._distances).sqrt())
            wandb_cb = getattr(self.learn, "guarded_wandb", None)
            step = getattr(wandb_cb, "_wandb_step", None)
            wandb.log({"fast_slow_distance": distance}, **({"step": step} if step is not None else {}))
        self._distances = []

    def after_fit(self):
        if self._handle is not None:
            self._handle.remove()


def _has_api_key():
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_mode(mode):
    """``online`` falls back to ``offline`` when no API key is configured."""
    if mode not in WANDB_MODES:
        raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
    if mode == "online" and not _has_api_key():
        return "offline"
    return mode


# per-epoch metrics (fastai's Recorder names), charted against ``epoch`` rather than the batch step
EPOCH_METRICS = ("valid_loss", "accuracy", "top_k_accuracy", "top5")


def run_layout(spec, seed, run_id):
    """How a run is filed in W&B, so that its grouped charts show each row's mean and band over seeds:

    - ``group`` ``<experiment>/<scale>/<row>``: one group per row of the experiment's table, its runs
      the seeds (W&B draws a group as its mean line and a min-max or std band);
    - ``job_type`` ``<experiment>/<scale>``: one experiment table; filter on it to compare its rows;
    - ``tags``: experiment, scale, optimizer, dataset;
    - ``name`` ``<row> seed <seed>``; ``config``: the run's spec (``experiment``, ``scale``,
      ``optimizer``, ``dataset``, ``lr``, ``hyper``...) plus ``row``, ``seed`` and ``run_id`` (the
      store's id of the run), so that any of them can group or filter runs too."""
    return dict(group=f"{spec.experiment}/{spec.scale}/{spec.name}", job_type=f"{spec.experiment}/{spec.scale}",
                tags=list(dict.fromkeys([spec.experiment, spec.scale, spec.optimizer, spec.dataset])),
                name=f"{spec.name} seed {seed}",
                config={**spec.to_dict(), "row": spec.name, "seed": seed, "run_id": run_id})


class WandbRun:
    """One W&B run for one training run, filed as :func:`run_layout` says; ``callbacks`` go to the
    Learner; ``finish`` writes the summary."""

    def __init__(self, mode, spec, seed, run_id, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=PROJECT, mode=mode, dir=str(directory), reinit="finish_previous",
                              **run_layout(spec, seed, run_id))
        self.run.define_metric("epoch")
        for name in EPOCH_METRICS:
            self.run.define_metric(name, step_metric="epoch")
        self.callbacks = [GuardedWandbCallback(), LookaheadWandbCallback()]

    @property
    def directory(self):
        return Path(self.run.dir).parent

    def finish(self, record=None):
        if record is not None:
            summary = {f"final/{k}": v for k, v in record["final"].items()}
            if record.get("slow"):
                summary.update({f"slow/{k}": v for k, v in record["slow"].items()})
            summary["best_accuracy"] = record.get("best_accuracy")
            self.run.summary.update(summary)
        self.run.finish(exit_code=0 if record is not None else 1)


def open_wandb_run(mode, spec, seed, run_id, directory):
    """A WandbRun, or None when ``mode`` is ``disabled``."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    return WandbRun(mode, spec, seed, run_id, directory)
