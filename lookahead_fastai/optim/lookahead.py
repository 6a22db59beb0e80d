"""Lookahead (Zhang, Lucas, Hinton, Ba 2019): k steps forward, 1 step back.

Pure PyTorch. The wrapper shares the inner optimizer's ``param_groups`` list and ``state`` dict, so
torch LR schedulers and fastai's ``OptimWrapper`` schedules change what the inner optimizer uses.
Lookahead's own state (slow weights, cached inner state, counters) lives outside ``state``, so
fastai's ``clear_state()`` (which replaces ``state``) cannot wipe it.

Per param group: ``la_k`` (sync period) and ``la_alpha`` (slow step). Not ``alpha``: fastai maps
that name to RMSprop's ``sqr_mom``.

What happens to the inner optimizer's state at a sync (``pullback``), for every per-parameter
state tensor shaped like its parameter (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``,
``square_avg``, fastai's ``grad_avg``/``sqr_avg``, ...):

* ``"none"``: kept as it is.
* ``"reset"``: zeroed, and the ``step`` counter set to 0, so Adam-style bias correction starts
  again (keeping ``step`` made seed 000's reset take 3-6x lr steps).
* ``"pullback"``: ``m <- alpha * m + (1 - alpha) * m_cached`` where ``m_cached`` is a *copy* taken
  at the previous sync (zeros before the first); ``step`` is kept, since the interpolated moments
  are as old as the fast ones.
"""
from collections import OrderedDict
from contextlib import contextmanager

import torch
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from ._validate import check_optimizer, check_positive_int, check_pullback, check_unit_interval

__all__ = ["Lookahead"]


def _is_state_buffer(name, value, param):
    return (name != "step" and torch.is_tensor(value) and value.is_floating_point()
            and value.shape == param.shape)


def _lerp_into(targets, sources, weight, foreach):
    """targets <- targets + weight * (sources - targets), in place."""
    if not targets:
        return
    if foreach:
        grouped = _group_tensors_by_device_and_dtype([targets, sources])
        for (tgt, src), _ in grouped.values():
            torch._foreach_lerp_(tgt, src, weight)
    else:
        for tgt, src in zip(targets, sources):
            tgt.lerp_(src, weight)


def _copy_into(targets, sources, foreach):
    if not targets:
        return
    if foreach:
        grouped = _group_tensors_by_device_and_dtype([targets, sources])
        for (tgt, src), _ in grouped.values():
            torch._foreach_copy_(tgt, src)
    else:
        for tgt, src in zip(targets, sources):
            tgt.copy_(src)


def install_optimizer_hooks(optimizer):
    """What ``torch.optim.Optimizer.__init__`` sets up for hooks, for wrappers that cannot call it
    (it would rebuild ``param_groups`` instead of sharing the inner optimizer's)."""
    for name in ("step_pre", "step_post", "state_dict_pre", "state_dict_post",
                 "load_state_dict_pre", "load_state_dict_post"):
        setattr(optimizer, f"_optimizer_{name}_hooks", OrderedDict())
    optimizer._patch_step_function()


# On CPU the sync is memory-bound: doing the lerp and the copy a few MB at a time lets the copy read
# the freshly written slow weights from cache instead of main memory (measured on ResNet-18's
# parameters: the sync's share of an SGD step fell from about 1.2x to about 1.1-1.15x).
_CPU_BLOCK_BYTES = 4 << 20


def _blocks(tensors, block_bytes):
    """Index ranges of consecutive tensors holding about ``block_bytes`` each."""
    start, size = 0, 0
    for i, t in enumerate(tensors):
        n = t.numel() * t.element_size()
        if i > start and size + n > block_bytes:
            yield start, i
            start, size = i, 0
        size += n
    yield start, len(tensors)


def _lerp_then_copy(targets, sources, weight, foreach):
    """targets <- targets + weight * (sources - targets); then sources <- targets, in place."""
    if not targets:
        return
    if not foreach:
        for tgt, src in zip(targets, sources):
            tgt.lerp_(src, weight)
            src.copy_(tgt)
        return
    for (device, _), ((tgt, src), _) in _group_tensors_by_device_and_dtype([targets, sources]).items():
        block_bytes = _CPU_BLOCK_BYTES if device is not None and device.type == "cpu" else float("inf")
        for start, end in _blocks(tgt, block_bytes):
            torch._foreach_lerp_(tgt[start:end], src[start:end], weight)
            torch._foreach_copy_(src[start:end], tgt[start:end])


class Lookahead(torch.optim.Optimizer):
    """Wrap ``optimizer`` so that every ``k`` inner steps the weights move ``alpha`` of the way
    from the slow weights towards the fast ones, and the fast weights restart from there.

    ``foreach=True`` does the sync with ``torch._foreach_*`` kernels grouped by device and dtype;
    ``False`` uses a per-tensor loop (same numbers, for checking).
    """

    # names of per-parameter weight copies kept by this class, saved by state_dict
    _weight_copies = ("slow",)

    def __init__(self, optimizer, k=5, alpha=0.5, pullback="none", foreach=True):
        self.optimizer = check_optimizer(optimizer)
        check_positive_int("k", k)
        alpha = check_unit_interval("alpha", alpha)
        self.pullback = check_pullback(pullback)
        self.foreach = bool(foreach)
        self._group_defaults = {"la_k": k, "la_alpha": alpha}
        self.defaults = {**optimizer.defaults, **self._group_defaults}
        # torch.optim.Optimizer.__init__ would rebuild param_groups; set up its hooks by hand.
        install_optimizer_hooks(self)
        self._sync_hooks = []
        self._copies = {name: {} for name in self._weight_copies}  # name -> {param: tensor}
        self._cached_state = {}  # param -> {state name: copy at the previous sync}
        self._group_counters = []
        for group in self.param_groups:
            self._init_group(group)
        self._needs_copies = True

    # --- the inner optimizer's containers, shared, never copied ---------------------------------
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.optimizer.param_groups = value

    @property
    def state(self):
        return self.optimizer.state

    @state.setter
    def state(self, value):
        self.optimizer.state = value

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._patch_step_function()

    def __repr__(self):
        return (f"{type(self).__name__}({self.optimizer!r}, k={self.defaults['la_k']}, "
                f"alpha={self.defaults['la_alpha']}, pullback={self.pullback!r})")

    def _init_group(self, group):
        for key, value in self._group_defaults.items():
            group.setdefault(key, value)
        check_positive_int("k", group["la_k"])
        check_unit_interval("alpha", group["la_alpha"])
        self._group_counters.append({"steps": 0, "syncs": 0})

    def add_param_group(self, param_group):
        """Add a group to the inner optimizer; its slow weights start from its weights at its
        first step."""
        self.optimizer.add_param_group(param_group)
        self._init_group(self.param_groups[-1])
        self._needs_copies = True

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # --- slow weights ---------------------------------------------------------------------------
    def _ensure_copies(self):
        """Create the weight copies of parameters that have none yet, from their current values:
        called before an inner step, so slow weights start at theta_0 as in the paper."""
        if not self._needs_copies:
            return
        with torch.no_grad():
            for copies in self._copies.values():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p not in copies:
                            copies[p] = p.detach().clone(memory_format=torch.preserve_format)
        self._needs_copies = False

    def _copies_for(self, name, params):
        """The copies of ``params``, moved to the parameter's device and dtype if it has moved."""
        copies = self._copies[name]
        out = []
        for p in params:
            c = copies[p]
            if c.device != p.device or c.dtype != p.dtype:
                c = copies[p] = c.to(device=p.device, dtype=p.dtype)
            out.append(c)
        return out

    def slow_weights(self, param):
        """The slow weight of ``param`` (its current value before the first step)."""
        self._ensure_copies()
        return self._copies_for("slow", [param])[0]

    @contextmanager
    def use_slow_weights(self):
        """Within the block the model holds the slow weights; the fast ones come back after it
        (also when the block raises). For evaluating as the paper's authors recommend."""
        self._ensure_copies()
        params = [p for g in self.param_groups for p in g["params"]]
        with torch.no_grad():
            fast_backup = [p.detach().clone() for p in params]
            _copy_into(params, self._copies_for("slow", params), self.foreach)
        try:
            yield self
        finally:
            with torch.no_grad():
                _copy_into(params, fast_backup, self.foreach)

    def register_sync_hook(self, hook):
        """``hook(optimizer, group_index, fast_params, slow_weights)`` runs just before each sync of
        a group (e.g. to log the distance between fast and slow weights). Returns a remover."""
        self._sync_hooks.append(hook)

        class _Handle:
            def remove(_):
                if hook in self._sync_hooks:
                    self._sync_hooks.remove(hook)
        return _Handle()

    # --- the step ---------------------------------------------------------------------------------
    def step(self, closure=None):
        self._ensure_copies()
        loss = self.optimizer.step(closure)
        with torch.no_grad():
            for index, (group, counters) in enumerate(zip(self.param_groups, self._group_counters)):
                counters["steps"] += 1
                if counters["steps"] >= group["la_k"]:
                    counters["steps"] = 0
                    counters["syncs"] += 1
                    self._sync_group(index, group)
        return loss

    def _sync_group(self, index, group):
        params = group["params"]
        slow = self._copies_for("slow", params)
        for hook in self._sync_hooks:
            hook(self, index, params, slow)
        _lerp_then_copy(slow, params, group["la_alpha"], self.foreach)  # phi += alpha (theta - phi); theta = phi
        self._apply_state_policy(params, group["la_alpha"])

    def _apply_state_policy(self, params, alpha):
        if self.pullback == "none":
            return
        buffers, cached = [], []
        for p in params:
            param_state = self.state.get(p)
            if not param_state:
                continue
            for name, value in param_state.items():
                if _is_state_buffer(name, value, p):
                    buffers.append(value)
                    if self.pullback == "pullback":
                        cache = self._cached_state.setdefault(p, {})
                        if name not in cache or cache[name].shape != value.shape:
                            cache[name] = torch.zeros_like(value)
                        elif cache[name].device != value.device or cache[name].dtype != value.dtype:
                            cache[name] = cache[name].to(device=value.device, dtype=value.dtype)
                        cached.append(cache[name])
            if self.pullback == "reset" and "step" in param_state:
                step = param_state["step"]
                if torch.is_tensor(step):
                    step.zero_()
                else:
                    param_state["step"] = type(step)(0)
        if self.pullback == "reset":
            if buffers:
                if self.foreach:
                    for (bufs,), _ in _group_tensors_by_device_and_dtype([buffers]).values():
                        torch._foreach_zero_(bufs)
                else:
                    for b in buffers:
                        b.zero_()
        else:
            # m <- alpha * m + (1 - alpha) * m_cached, then m_cached <- copy(m)
            _lerp_then_copy(buffers, cached, 1.0 - alpha, self.foreach)

    # --- checkpoints ------------------------------------------------------------------------------
    def _param_index(self):
        return {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}

    def state_dict(self):
        """The inner optimizer's state dict plus a ``lookahead`` entry (slow weights, cached
        state, counters): plain tensors, ints and strings, loadable with ``weights_only=True``."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        inner = self.optimizer.state_dict()
        index = self._param_index()
        lookahead = {
            "pullback": self.pullback,
            "groups": [dict(c) for c in self._group_counters],
            "copies": {name: {index[p]: t for p, t in copies.items() if p in index}
                       for name, copies in self._copies.items()},
            "cached_state": {index[p]: dict(c) for p, c in self._cached_state.items() if p in index},
        }
        state_dict = {"state": inner["state"], "param_groups": inner["param_groups"], "lookahead": lookahead}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict):
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if "lookahead" not in state_dict:
            raise ValueError("state_dict has no 'lookahead' entry: it was not saved by a Lookahead optimizer")
        self.optimizer.load_state_dict({"state": state_dict["state"], "param_groups": state_dict["param_groups"]})
        saved = state_dict["lookahead"]
        check_pullback(saved["pullback"])
        self.pullback = saved["pullback"]
        params = [p for g in self.param_groups for p in g["params"]]
        self._group_counters = [dict(c) for c in saved["groups"]]
        for name in self._weight_copies:
            self._copies[name] = {params[i]: t.to(device=params[i].device, dtype=params[i].dtype).clone()
                                  for i, t in saved["copies"][name].items()}
        self._cached_state = {params[i]: {n: t.to(device=params[i].device).clone() for n, t in c.items()}
                              for i, c in saved["cached_state"].items()}
        self._needs_copies = True
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

