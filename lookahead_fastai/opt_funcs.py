"""fastai glue: ``opt_func`` factories that put our Lookahead under fastai's ``OptimWrapper``.

``lookahead_opt_func(torch.optim.SGD, momentum=0.9)`` or ``lookahead_opt_func(fastai.optimizer.Adam)``
returns a function ``opt_func(params, **kwargs) -> OptimWrapper`` for ``Learner(opt_func=...)``.
Because our Lookahead shares the inner optimizer's ``param_groups``, ``fit_one_cycle`` and every
other fastai schedule reach the torch-level ``lr`` and ``momentum``/``betas`` (fastai's own
``Lookahead(OptimWrapper(...))`` leaves them untouched).

fastai's own optimizers (``SGD``, ``Adam``, ``RAdam``, ``Lamb``, ...) are not torch optimizers;
``FastaiOptimizerAdapter`` gives one the torch interface (real ``param_groups`` dicts, ``state``,
closures, ``add_param_group``, ``state_dict``) so that the same Lookahead wraps it.
"""
from collections import defaultdict
from functools import partial

import torch
from fastai.optimizer import OptimWrapper
from fastcore.foundation import L

from .optim import Lookahead, NestedLookahead
from .optim.lookahead import install_optimizer_hooks
from .optim._validate import check_non_negative_int, check_positive_int, check_pullback, check_unit_interval

__all__ = ["FastaiOptimizerAdapter", "lookahead_opt_func", "nested_lookahead_opt_func", "torch_opt_func"]


class FastaiOptimizerAdapter(torch.optim.Optimizer):
    """A fastai ``Optimizer`` seen as a ``torch.optim.Optimizer``.

    ``param_groups`` are real dicts (``params`` plus the fastai hyper-parameters) and are the very
    dicts the fastai optimizer reads as its ``hypers``; ``state`` is the fastai optimizer's state.
    """

    def __init__(self, fastai_opt):
        if not (hasattr(fastai_opt, "param_lists") and hasattr(fastai_opt, "hypers") and hasattr(fastai_opt, "cbs")):
            raise TypeError(f"fastai_opt must be a fastai.optimizer.Optimizer, got {type(fastai_opt).__name__}")
        self.fastai_opt = fastai_opt
        self.defaults = dict(fastai_opt.hypers[0])
        install_optimizer_hooks(self)
        self.param_groups = [{"params": list(params), **hyper}
                             for params, hyper in zip(fastai_opt.param_lists, fastai_opt.hypers)]

    @property
    def param_groups(self):
        return self._param_groups

    @param_groups.setter
    def param_groups(self, groups):
        self._param_groups = groups
        self.fastai_opt.param_lists = L(L(g["params"]) for g in groups)
        self.fastai_opt.hypers = L(groups)  # fastai passes every hyper as a kwarg; 'params' is ignored

    @property
    def state(self):
        return self.fastai_opt.state

    @state.setter
    def state(self, value):
        self.fastai_opt.state = value

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        # torch's load_state_dict installs the loaded groups and state through here
        state = dict(state)
        for name in ("param_groups", "state"):
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)
        self._patch_step_function()

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self.param_groups = self._param_groups

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.zero_()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.fastai_opt.step()
        return loss


class _FastaiOptimWrapper(OptimWrapper):
    """``OptimWrapper`` over a fastai optimizer seen through :class:`FastaiOptimizerAdapter`.

    A Learner marks parameters in ``opt.state``: ``do_wd=False`` on BatchNorm and bias (unless
    ``wd_bn_bias``), ``force_train``. ``OptimWrapper`` keeps them in a dict of its own, which a
    torch optimizer never reads; here they land in the fastai optimizer's state, where its
    weight-decay step reads them, and survive ``clear_state`` -- as when fastai uses the optimizer
    natively (without this, BatchNorm and bias were decayed, unlike fastai's own ``ranger``)."""
    _keep_on_clear = ("do_wd", "force_train")  # fastai Optimizer's

    @property
    def state(self):
        return self.opt.state

    @state.setter
    def state(self, value):  # OptimWrapper.__init__ assigns a dict of its own: the inner state is the state
        pass

    def clear_state(self):
        kept = {p: {k: s[k] for k in self._keep_on_clear if k in s} for p, s in self.opt.state.items()}
        self.opt.state = defaultdict(dict, {p: s for p, s in kept.items() if s})


def _is_torch_optimizer_class(inner):
    return isinstance(inner, type) and issubclass(inner, torch.optim.Optimizer)


def _as_groups(params):
    """fastai splitters give a flat list of parameters or a list of lists (one per group)."""
    params = list(params)
    if params and isinstance(params[0], (list, tuple, L)):
        return [list(group) for group in params]
    return [params]


def _build_inner(inner, groups, kwargs):
    """The inner optimizer as a torch optimizer, and the hp_map OptimWrapper should use."""
    if _is_torch_optimizer_class(inner):
        return inner([{"params": g} for g in groups], **kwargs), None  # None: fastai's pytorch_hp_map
    return FastaiOptimizerAdapter(inner(groups, **kwargs)), {}  # fastai names already


def _wrapped_opt_func(inner, wrap, inner_kwargs):
    if not callable(inner):
        raise TypeError(f"inner must be a torch.optim.Optimizer class or a fastai optimizer function, got {inner!r}")

    def opt_func(params, **kwargs):
        optimizer, hp_map = _build_inner(inner, _as_groups(params), {**inner_kwargs, **kwargs})
        wrapper = OptimWrapper if hp_map is None else _FastaiOptimWrapper  # hp_map {}: a fastai optimizer
        return wrapper(opt=wrap(optimizer), hp_map=hp_map)

    opt_func.__name__ = f"{getattr(wrap, 'func', wrap).__name__}_{getattr(inner, '__name__', 'opt')}"
    return opt_func


def _identity(optimizer):
    return optimizer


def torch_opt_func(inner, **inner_kwargs):
    """An ``opt_func`` for a plain inner optimizer, built the same way as the Lookahead ones, so a
    comparison differs only by the wrapper."""
    return _wrapped_opt_func(inner, _identity, inner_kwargs)


def lookahead_opt_func(inner, k=5, alpha=0.5, pullback="none", **inner_kwargs):
    """An ``opt_func`` for ``Learner``: ``Lookahead(inner(params, **inner_kwargs), k, alpha, pullback)``
    under fastai's ``OptimWrapper``."""
    check_positive_int("k", k)
    check_unit_interval("alpha", alpha)
    check_pullback(pullback)
    return _wrapped_opt_func(inner, partial(Lookahead, k=k, alpha=alpha, pullback=pullback), inner_kwargs)


def nested_lookahead_opt_func(inner, k=5, alpha=0.5, s=5, h=0.5, pullback="none", **inner_kwargs):
    """Like ``lookahead_opt_func`` with ``NestedLookahead``."""
    check_positive_int("k", k)
    check_unit_interval("alpha", alpha)
    check_non_negative_int("s", s)
    check_unit_interval("h", h)
    check_pullback(pullback)
    return _wrapped_opt_func(inner, partial(NestedLookahead, k=k, alpha=alpha, s=s, h=h, pullback=pullback),
                             inner_kwargs)
