"""Optimizers: a name and fastai-style hyper-parameters -> an ``opt_func`` for ``Learner``.

Names: ``sgd``, ``adam``, ``adamw``, ``rmsprop`` (torch classes), ``lamb``, ``radam``, ``ranger``
(fastai's), and ``lookahead(NAME)`` / ``nested(NAME)`` around any of them.
Hyper-parameters use one vocabulary for all: ``lr, mom, sqr_mom, eps, wd`` (+ ``nesterov``,
``centered``, ``decouple_wd`` where they apply), and ``k, alpha, pullback`` (+ ``s, h`` for nested).
``ranger`` is Lookahead(RAdam) with fastai's ranger defaults (k=6, alpha=0.5, mom=0.95, wd=0.01,
eps=1e-6), built on our Lookahead so that schedules reach it.
"""
import re
from dataclasses import dataclass
from typing import Callable

import torch
from fastai import optimizer as fastai_opt

from ..fastai_optimizers import AdamNoDebias
from ..opt_funcs import lookahead_opt_func, nested_lookahead_opt_func, torch_opt_func
from ..optim.scratch import ScratchSGD

__all__ = ["INNER_OPTIMIZERS", "WRAPPERS", "make_opt_func", "parse_optimizer_name", "describe_optimizers"]


@dataclass(frozen=True)
class InnerOptimizer:
    name: str
    description: str
    cls: Callable          # torch optimizer class or fastai optimizer function
    translate: Callable    # fastai-style hyper-parameters -> constructor kwargs
    allowed: tuple


def _torch_kwargs(mapping):
    def translate(hp):
        out = {}
        for key, value in hp.items():
            if key in ("mom", "sqr_mom") and "betas" in mapping.values():
                continue
            out[mapping[key]] = value
        if "betas" in mapping.values() and ("mom" in hp or "sqr_mom" in hp):
            out["betas"] = (hp.get("mom", 0.9), hp.get("sqr_mom", 0.999))
        return out
    return translate


def _same(hp):
    return dict(hp)


INNER_OPTIMIZERS = {
    "sgd": InnerOptimizer("sgd", "torch.optim.SGD", torch.optim.SGD,
                          _torch_kwargs({"mom": "momentum", "wd": "weight_decay", "nesterov": "nesterov"}),
                          ("mom", "wd", "nesterov")),
    "adam": InnerOptimizer("adam", "torch.optim.Adam (L2 weight decay)", torch.optim.Adam,
                           _torch_kwargs({"mom": "betas", "sqr_mom": "betas", "eps": "eps", "wd": "weight_decay"}),
                           ("mom", "sqr_mom", "eps", "wd")),
    "adamw": InnerOptimizer("adamw", "torch.optim.AdamW (decoupled weight decay)", torch.optim.AdamW,
                            _torch_kwargs({"mom": "betas", "sqr_mom": "betas", "eps": "eps", "wd": "weight_decay"}),
                            ("mom", "sqr_mom", "eps", "wd")),
    "rmsprop": InnerOptimizer("rmsprop", "torch.optim.RMSprop", torch.optim.RMSprop,
                              _torch_kwargs({"mom": "momentum", "sqr_mom": "alpha", "eps": "eps",
                                             "wd": "weight_decay", "centered": "centered"}),
                              ("mom", "sqr_mom", "eps", "wd", "centered")),
    "lamb": InnerOptimizer("lamb", "fastai Lamb", fastai_opt.Lamb, _same,
                           ("mom", "sqr_mom", "eps", "wd", "decouple_wd")),
    "radam": InnerOptimizer("radam", "fastai RAdam", fastai_opt.RAdam, _same,
                            ("mom", "sqr_mom", "eps", "wd", "decouple_wd", "beta")),
    "fastai_sgd": InnerOptimizer("fastai_sgd", "fastai SGD (decoupled wd by default)", fastai_opt.SGD, _same,
                                 ("mom", "wd", "decouple_wd")),
    "fastai_adam": InnerOptimizer("fastai_adam", "fastai Adam/AdamW", fastai_opt.Adam, _same,
                                  ("mom", "sqr_mom", "eps", "wd", "decouple_wd")),
    "adam_no_debias": InnerOptimizer("adam_no_debias", "fastai stats+steppers Adam without debiasing", AdamNoDebias,
                                     _same, ("mom", "sqr_mom", "eps", "wd", "decouple_wd")),
    "scratch_sgd": InnerOptimizer("scratch_sgd", "the optimizer tour's hand-written SGD-momentum Optimizer",
                                  ScratchSGD, _torch_kwargs({"mom": "momentum", "wd": "weight_decay"}), ("mom", "wd")),
}
RANGER_DEFAULTS = {"k": 6, "alpha": 0.5, "mom": 0.95, "wd": 0.01, "eps": 1e-6}
WRAPPERS = {"lookahead": ("k", "alpha", "pullback"), "nested": ("k", "alpha", "pullback", "s", "h")}
_NAME = re.compile(r"^\s*(?:(?P<wrapper>\w+)\s*\(\s*(?P<inner>\w+)\s*\)|(?P<plain>\w+))\s*$")


def describe_optimizers():
    rows = [(name, o.description) for name, o in INNER_OPTIMIZERS.items()]
    rows.append(("ranger", "Lookahead(RAdam) with fastai's ranger defaults, on our Lookahead"))
    rows += [(f"{w}(NAME)", f"{w.capitalize()} around any of the above") for w in WRAPPERS]
    return rows


def parse_optimizer_name(name):
    """``'lookahead(sgd)'`` -> ``('lookahead', 'sgd')``; ``'adam'`` -> ``(None, 'adam')``."""
    m = _NAME.match(str(name))
    if not m:
        raise ValueError(f"optimizer name {name!r} is not NAME or WRAPPER(NAME)")
    wrapper, inner = (m["wrapper"], m["inner"]) if m["wrapper"] else (None, m["plain"])
    if inner == "ranger":
        if wrapper:
            raise ValueError("ranger is already Lookahead(RAdam); use lookahead(radam) or nested(radam)")
        return "lookahead", "ranger"
    if inner not in INNER_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {inner!r}; choose one of {', '.join([*INNER_OPTIMIZERS, 'ranger'])}")
    if wrapper is not None and wrapper not in WRAPPERS:
        raise ValueError(f"unknown optimizer wrapper {wrapper!r}; choose one of {', '.join(WRAPPERS)}")
    return wrapper, inner


def make_opt_func(name, **hyper):
    """The ``opt_func`` for ``name`` with ``hyper`` (``lr`` is ignored here: fastai passes it)."""
    wrapper, inner_name = parse_optimizer_name(name)
    hyper = {k: v for k, v in hyper.items() if k != "lr"}
    if inner_name == "ranger":
        hyper = {**RANGER_DEFAULTS, **hyper}
        inner_name = "radam"
    inner = INNER_OPTIMIZERS[inner_name]
    wrapper_keys = WRAPPERS.get(wrapper, ())
    wrapper_hp = {k: v for k, v in hyper.items() if k in wrapper_keys}
    inner_hp = {k: v for k, v in hyper.items() if k not in wrapper_keys}
    unknown = sorted(set(inner_hp) - set(inner.allowed))
    if unknown:
        allowed = sorted({"lr", *inner.allowed, *wrapper_keys})
        raise ValueError(f"optimizer {name!r} does not take {', '.join(unknown)}; it takes {', '.join(allowed)}")
    kwargs = inner.translate(inner_hp)
    if wrapper == "lookahead":
        return lookahead_opt_func(inner.cls, **wrapper_hp, **kwargs)
    if wrapper == "nested":
        return nested_lookahead_opt_func(inner.cls, **wrapper_hp, **kwargs)
    return torch_opt_func(inner.cls, **kwargs)
