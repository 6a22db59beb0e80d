"""LR schedules: name -> how to call fastai's training loop.

Each entry turns ``(learn, epochs, lr, params)`` into a ``learn.fit...`` call. One-cycle is fastai's
``fit_one_cycle``; the others are fastai ``ParamScheduler`` schedules over the training fraction.
``flat_cos`` is fastai's ``fit_flat_cos`` (flat lr, then cosine annealing from ``pct_start``: the
Imagenette leaderboard recipe's schedule), run through ``ParamScheduler`` here because fastai
2.8's ``fit_flat_cos`` drops ``start_epoch`` (a resumed run would start its schedule again).
"""
from dataclasses import dataclass
from typing import Callable

from fastai.callback.schedule import ParamScheduler, SchedCos, SchedLin, combine_scheds

__all__ = ["SCHEDULES", "fit_with_schedule", "lr_schedule_function"]


def step_decay(lr, milestones=(0.3, 0.6, 0.8), factor=0.2):
    """lr x factor after each milestone (fractions of training)."""
    milestones = sorted(milestones)

    def sched(pos):
        return lr * factor ** sum(pos >= m for m in milestones)
    return sched


def cosine(lr, final_div=1e4):
    return SchedCos(lr, lr / final_div)


def warmup_cosine(lr, warmup=0.1, start_div=100, final_div=1e4):
    return combine_scheds([warmup, 1 - warmup], [SchedLin(lr / start_div, lr), SchedCos(lr, lr / final_div)])


def flat_cos(lr, pct_start=0.75, div_final=1e5):
    """fastai's ``fit_flat_cos``: lr flat for ``pct_start`` of training, then cosine down to lr/div_final."""
    from fastai.callback.schedule import combined_cos
    return combined_cos(pct_start, lr, lr, lr / div_final)


def cyclic(lr, cycles=3, base_div=10):
    """Triangular cyclical lr (Smith 2017): ``cycles`` up-and-down cycles between lr/base_div and lr."""
    low = lr / base_div

    def sched(pos):
        phase = (pos * cycles) % 1.0
        return low + (lr - low) * (1 - abs(2 * phase - 1))
    return sched


def constant(lr):
    def sched(pos):
        return lr
    return sched


@dataclass(frozen=True)
class Schedule:
    name: str
    description: str
    lr_function: Callable  # (lr, **params) -> f(pos)
    params: tuple


SCHEDULES = {
    "constant": Schedule("constant", "fixed lr (fastai fit)", constant, ()),
    "step": Schedule("step", "lr x factor at milestones (fractions of training)", step_decay, ("milestones", "factor")),
    "one_cycle": Schedule("one_cycle", "fastai fit_one_cycle (lr and momentum)", None,
                          ("div", "div_final", "pct_start", "moms")),
    "cosine": Schedule("cosine", "cosine annealing from lr", cosine, ("final_div",)),
    "warmup_cosine": Schedule("warmup_cosine", "linear warm-up then cosine", warmup_cosine,
                              ("warmup", "start_div", "final_div")),
    "cyclic": Schedule("cyclic", "triangular cyclical lr", cyclic, ("cycles", "base_div")),
    "flat_cos": Schedule("flat_cos", "fastai fit_flat_cos: flat lr, then cosine (from 75% of training)", flat_cos,
                         ("pct_start", "div_final")),
}


def _check(name, params):
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    unknown = sorted(set(params) - set(SCHEDULES[name].params))
    if unknown:
        raise ValueError(f"schedule {name!r} does not take {', '.join(unknown)}; "
                         f"it takes {', '.join(SCHEDULES[name].params) or 'nothing'}")


def lr_schedule_function(name, lr, **params):
    """The lr as a function of the training fraction (for plots and tests)."""
    _check(name, params)
    if name == "one_cycle":
        from fastai.callback.schedule import combined_cos
        div, div_final, pct = params.get("div", 25.0), params.get("div_final", 1e5), params.get("pct_start", 0.25)
        return combined_cos(pct, lr / div, lr, lr / div_final)
    return SCHEDULES[name].lr_function(lr, **params)


def _per_group(learn, lr):
    """A ``slice(low, high)`` lr as one value per parameter group (fastai's ``set_hyper`` rule)."""
    if not isinstance(lr, slice):
        return lr
    import numpy as np
    from fastcore.basics import even_mults
    if learn.opt is None:
        learn.create_opt()
    n = len(learn.opt.param_lists)
    if lr.start:
        return np.array(even_mults(lr.start, lr.stop, n))
    return np.array([lr.stop / 10] * (n - 1) + [lr.stop])


def fit_with_schedule(learn, epochs, lr, name="constant", params=None, cbs=None, start_epoch=0, reset_opt=False):
    """Train with schedule ``name``; ``lr`` may be a ``slice`` for discriminative learning rates."""
    params = dict(params or {})
    _check(name, params)
    if name == "one_cycle":
        if "moms" in params and params["moms"] is not None:
            params["moms"] = tuple(params["moms"])
        learn.fit_one_cycle(epochs, lr, cbs=cbs, start_epoch=start_epoch, reset_opt=reset_opt, **params)
    elif name == "constant":
        learn.fit(epochs, lr, cbs=cbs, start_epoch=start_epoch, reset_opt=reset_opt)
    else:
        sched = ParamScheduler({"lr": lr_schedule_function(name, _per_group(learn, lr), **params)})
        learn.fit(epochs, lr, cbs=[sched, *(cbs or [])], start_epoch=start_epoch, reset_opt=reset_opt)

