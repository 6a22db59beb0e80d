"""Optimizers: a name and fastai-style hyper-parameters -> an ``opt_func`` for ``Learner``.

Names: ``sgd``, ``adam``, ``adamw``, ``rmsprop`` (torch classes), ``lamb``, ``radam``,
``fastai_sgd``, ``fastai_adam``, ``fastai_rmsprop`` (fastai's), ``ranger``, and ``lookahead(NAME)`` /
``nested(NAME)`` around any of them; ``fastai_ranger`` is fastai's own ``ranger`` (its ``Lookahead``
over its ``RAdam``, a native fastai optimizer, untouched: the Imagenette leaderboard's optimizer).
Hyper-parameters use one vocabulary for all: ``lr, mom, sqr_mom, eps, wd`` (+ ``nesterov``,
``centered``, ``decouple_wd`` where they apply), and ``k, alpha, pullback`` (+ ``s, h`` for nested).
``ranger`` is Lookahead(RAdam) with fastai's ranger defaults (k=6, alpha=0.5, mom=0.95, wd=0.01,
eps=1e-6), built on our Lookahead so that schedules reach it.
"""
import inspect
import re
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from fastai import optimizer as fastai_opt

from ..fastai_optimizers import AdamNoDebias
from ..opt_funcs import lookahead_opt_func, nested_lookahead_opt_func, torch_opt_func
from ..optim.scratch import ScratchSGD
from .user import UserCodeError, check_import_path, is_import_path, optimizer_kind

__all__ = ["INNER_OPTIMIZERS", "WRAPPERS", "RANGER_DEFAULTS", "make_opt_func", "parse_optimizer_name",
           "describe_optimizers", "optimizer_parts", "OptimizerParts"]


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
    "fastai_rmsprop": InnerOptimizer("fastai_rmsprop", "fastai RMSProp (decoupled wd by default, as fastai v1 "
                                     "applied to torch's RMSprop)", fastai_opt.RMSProp, _same,
                                     ("mom", "sqr_mom", "eps", "wd", "decouple_wd")),
    "adam_no_debias": InnerOptimizer("adam_no_debias", "fastai stats+steppers Adam without debiasing", AdamNoDebias,
                                     _same, ("mom", "sqr_mom", "eps", "wd", "decouple_wd")),
    "scratch_sgd": InnerOptimizer("scratch_sgd", "the optimizer tour's hand-written SGD-momentum Optimizer",
                                  ScratchSGD, _torch_kwargs({"mom": "momentum", "wd": "weight_decay"}), ("mom", "wd")),
}
# fastai.optimizer.ranger's defaults: our "ranger" (Lookahead(RAdam)) and fastai's own take the same
RANGER_DEFAULTS = {"k": 6, "alpha": 0.5, "mom": 0.95, "wd": 0.01, "eps": 1e-6}
# fastai's own ranger (fastai.optimizer.ranger): its Lookahead (k, alpha) around its RAdam
FASTAI_RANGER = "fastai_ranger"
_FASTAI_RANGER_KEYS = ("k", "alpha", "mom", "sqr_mom", "eps", "wd", "beta", "decouple_wd")
WRAPPERS = {"lookahead": ("k", "alpha", "pullback"), "nested": ("k", "alpha", "pullback", "s", "h")}
_INNER = r"[\w.]+:[\w.]+|\w+"  # a registry name, or a user's own "module:callable" (registry/user.py)
_NAME = re.compile(rf"^\s*(?:(?P<wrapper>\w+)\s*\(\s*(?P<inner>{_INNER})\s*\)|(?P<plain>{_INNER}))\s*$")


def describe_optimizers():
    rows = [(name, o.description) for name, o in INNER_OPTIMIZERS.items()]
    rows.append(("ranger", "Lookahead(RAdam) with fastai's ranger defaults, on our Lookahead"))
    rows.append((FASTAI_RANGER, "fastai's own ranger: its Lookahead over its RAdam (native fastai optimizer)"))
    rows += [(f"{w}(NAME)", f"{w.capitalize()} around any of the above") for w in WRAPPERS]
    return rows


def parse_optimizer_name(name):
    """``'lookahead(sgd)'`` -> ``('lookahead', 'sgd')``; ``'adam'`` -> ``(None, 'adam')``."""
    m = _NAME.match(str(name))
    if not m:
        raise ValueError(f"optimizer name {name!r} is not NAME or WRAPPER(NAME)")
    wrapper, inner = (m["wrapper"], m["inner"]) if m["wrapper"] else (None, m["plain"])
    if wrapper is not None and wrapper not in WRAPPERS:
        raise ValueError(f"unknown optimizer wrapper {wrapper!r}; choose one of {', '.join(WRAPPERS)}")
    if is_import_path(inner):
        try:
            check_import_path(inner, "optimizer")  # the form only: a spec never imports code
        except UserCodeError:
            raise ValueError(f"optimizer {inner!r} is not 'module:callable' (e.g. 'mypkg.optim:MyOptimizer')") from None
        return wrapper, inner
    if inner == FASTAI_RANGER:
        if wrapper:
            raise ValueError("fastai_ranger is already fastai's Lookahead(RAdam); wrap radam instead")
        return None, FASTAI_RANGER  # not our Lookahead: no state reset at syncs, no slow-weight swap
    if inner == "ranger":
        if wrapper:
            raise ValueError("ranger is already Lookahead(RAdam); use lookahead(radam) or nested(radam)")
        return "lookahead", "ranger"
    if inner not in INNER_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {inner!r}; choose one of {', '.join([*INNER_OPTIMIZERS, 'ranger'])} "
                         f"or 'module:callable'")
    return wrapper, inner


def _resolve(name, hyper):
    """``(wrapper, inner, hyper)`` of optimizer ``name``: ``ranger`` as Lookahead around ``radam``
    over :data:`RANGER_DEFAULTS`, every other name as parsed; ``lr`` left out of ``hyper``."""
    wrapper, inner = parse_optimizer_name(name)
    hyper = {k: v for k, v in dict(hyper or {}).items() if k != "lr"}
    if inner == "ranger":
        return wrapper, "radam", {**RANGER_DEFAULTS, **hyper}
    return wrapper, inner, hyper


def make_opt_func(name, **hyper):
    """The ``opt_func`` for ``name`` with ``hyper`` (``lr`` is ignored here: fastai passes it)."""
    wrapper, inner_name, hyper = _resolve(name, hyper)
    if is_import_path(inner_name):  # a user's own: its hyper-parameters go to it as they are named
        cls, _ = optimizer_kind(inner_name)
        wrapper_hp = {k: v for k, v in hyper.items() if k in WRAPPERS.get(wrapper, ())}
        inner_hp = {k: v for k, v in hyper.items() if k not in wrapper_hp}
        make = {"lookahead": lookahead_opt_func, "nested": nested_lookahead_opt_func}.get(wrapper)
        return make(cls, **wrapper_hp, **inner_hp) if make else torch_opt_func(cls, **inner_hp)
    if inner_name == FASTAI_RANGER:
        unknown = sorted(set(hyper) - set(_FASTAI_RANGER_KEYS))
        if unknown:
            raise ValueError(f"optimizer {name!r} does not take {', '.join(unknown)}; "
                             f"it takes {', '.join(sorted({'lr', *_FASTAI_RANGER_KEYS}))}")
        return partial(fastai_opt.ranger, **hyper)  # fastai's Learner takes a fastai optimizer as it is
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


@dataclass(frozen=True)
class OptimizerParts:
    """An optimizer as a comparison sees it: the wrapper (None, ``lookahead``, ``nested``), whose
    implementation (``ours`` or ``fastai``), the inner optimizer, and the effective hyper-parameters
    of each (declared values over the constructors' defaults, in the fastai vocabulary)."""
    wrapper: str | None
    implementation: str | None
    inner: str
    inner_hyper: dict
    wrapper_hyper: dict


def _inner_defaults(inner):
    """The inner optimizer's default hyper-parameters in the fastai vocabulary (mom, sqr_mom, eps, wd...)."""
    opt = INNER_OPTIMIZERS[inner]
    signature = inspect.signature(opt.cls.__init__ if isinstance(opt.cls, type) else opt.cls)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    out = {}
    for key in opt.allowed:
        if key in defaults:
            out[key] = defaults[key]
            continue
        translated = opt.translate({key: 0})  # the constructor's name for this key
        for torch_key in translated:
            if torch_key == "betas" and "betas" in defaults:
                out[key] = defaults["betas"][0 if key == "mom" else 1]
            elif torch_key in defaults:
                out[key] = defaults[torch_key]
    return out


_WRAPPER_DEFAULTS = {"lookahead": {"k": 5, "alpha": 0.5, "pullback": "none"},
                     "nested": {"k": 5, "alpha": 0.5, "pullback": "none", "s": 5, "h": 0.5}}


def optimizer_parts(name, hyper=None):
    """:class:`OptimizerParts` of optimizer ``name`` with ``hyper``: what a like-for-like comparison
    holds equal (inner optimizer and its effective hyper-parameters) and what it varies (the wrapper)."""
    wrapper, inner, hyper = _resolve(name, hyper)
    implementation = "ours" if wrapper else None
    if is_import_path(inner):  # a user's own: its declared hyper-parameters (its defaults are its own)
        wrapper_keys = WRAPPERS.get(wrapper, ())
        return OptimizerParts(wrapper, implementation, inner, {k: v for k, v in hyper.items() if k not in wrapper_keys},
                              {**_WRAPPER_DEFAULTS.get(wrapper, {}),
                               **{k: v for k, v in hyper.items() if k in wrapper_keys}})
    if inner == FASTAI_RANGER:
        wrapper, implementation, inner = "lookahead", "fastai", "radam"
        hyper = {**RANGER_DEFAULTS, **hyper}
    wrapper_keys = WRAPPERS.get(wrapper, ("k", "alpha") if implementation == "fastai" else ())
    wrapper_hyper = {**_WRAPPER_DEFAULTS.get(wrapper, {}), **{k: v for k, v in hyper.items() if k in wrapper_keys}}
    if implementation == "fastai":
        wrapper_hyper.pop("pullback", None)
    inner_hyper = {**_inner_defaults(inner), **{k: v for k, v in hyper.items() if k not in wrapper_keys}}
    return OptimizerParts(wrapper, implementation, inner, inner_hyper, wrapper_hyper)
