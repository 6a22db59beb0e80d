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

A parameter that stops receiving gradients between two syncs (``requires_grad=False``, or
``grad is None``, e.g. fastai's ``freeze``) is still in its group, so the next sync moves it as the
paper's update says: phi <- phi + alpha (theta - phi), theta <- phi, with theta where its last inner
step left it. From then on theta = phi, so later syncs leave it where it is.

Group values (``la_k``, ``la_alpha``) are checked when a group is added and again at every step, so
a value changed by hand or by a schedule (``la_k = 0``, ``la_alpha = nan``) raises an error naming
the group before the inner optimizer moves anything.
"""
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext

import torch
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from ._validate import (check_non_negative_int, check_optimizer, check_positive_int, check_pullback,
                        check_unit_interval)
from .batchnorm import recomputed_bn

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


class _Checkpoints:
    """Lookahead's checkpoints: ``state_dict`` / ``load_state_dict`` with every field checked before
    anything changes. A part of :class:`Lookahead` (its only user), kept apart from the stepping."""

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
        """Load a state dict saved by ``state_dict()``, or one of a plain inner optimizer.

        Everything is checked first (the inner part: group count, group sizes, Lookahead values in
        the groups, state indices; the ``lookahead`` entry: its keys, ``pullback``, one counter
        entry per group, copy and cache indices within the parameters, tensors shaped like their
        parameter); a bad field raises ``ValueError`` naming it, and the optimizer is left exactly
        as it was.

        A state dict without a ``lookahead`` entry (the inner optimizer's own, e.g. saved before
        switching to Lookahead) loads too: the inner state and hyper-parameters are restored, the
        groups keep their current ``la_*`` values when the saved ones have none, the counters start
        at 0, the pullback cache is empty, and the slow weights start again from the parameters as
        they are at the next step (or at the next ``slow_weights``/``use_slow_weights`` call), so
        load the model's weights before stepping.
        """
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        loaded = self._checked_state_dict(state_dict)
        inner = self.optimizer
        old_groups, old_state = inner.param_groups, inner.state
        try:
            inner.load_state_dict({"state": state_dict["state"], "param_groups": state_dict["param_groups"]})
        except BaseException:
            inner.param_groups, inner.state = old_groups, old_state
            raise
        self.pullback, self._group_counters, self._copies, self._cached_state = loaded
        self._needs_copies = True
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def _checked_state_dict(self, state_dict):
        """Check ``state_dict`` against this optimizer and return what loading it installs:
        (pullback, counters, copies, cached state). Changes nothing; raises ValueError naming the
        first bad field."""
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict has no {key!r} entry")
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)):
            raise ValueError(f"state_dict['param_groups'] must be a list, got {type(saved_groups).__name__}")
        if len(saved_groups) != len(groups):
            raise ValueError(f"state_dict['param_groups'] has {len(saved_groups)} groups, this optimizer has "
                             f"{len(groups)}")
        saved_ids = []
        for i, (group, saved) in enumerate(zip(groups, saved_groups)):
            where = f"state_dict['param_groups'][{i}]"
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"{where} must be a dict with a 'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{where}['params'] has {len(saved['params'])} parameters, this optimizer's "
                                 f"group {i} has {len(group['params'])}")
            saved_ids.extend(saved["params"])
            self._check_group({**group, **saved}, where, error=ValueError)
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise ValueError(f"state_dict['state'] must be a dict, got {type(state).__name__}")
        known = set(saved_ids)
        for key in state:
            if key not in known:
                raise ValueError(f"state_dict['state'] has an entry for parameter {key!r}, which no group of "
                                 f"state_dict['param_groups'] lists")
        params = [p for g in groups for p in g["params"]]
        if "lookahead" not in state_dict:  # a plain inner optimizer's state dict
            return (self.pullback, [self._new_counters() for _ in groups],
                    {name: {} for name in self._weight_copies}, {})
        return self._checked_lookahead_entry(state_dict["lookahead"], params, len(groups))

    # long: every field of a saved entry checked in one pass, in the order load_state_dict's docstring lists them
    def _checked_lookahead_entry(self, saved, params, n_groups):
        where = "state_dict['lookahead']"
        if not isinstance(saved, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(saved).__name__}")
        expected = {"pullback", "groups", "copies", "cached_state"}
        missing, unexpected = expected - set(saved), set(saved) - expected
        if missing or unexpected:
            raise ValueError(f"{where} has keys {sorted(map(str, saved))}: "
                             + "; ".join(filter(None, [missing and f"missing {sorted(missing)}",
                                                       unexpected and f"unexpected {sorted(map(str, unexpected))}"])))
        try:
            pullback = check_pullback(saved["pullback"])
        except ValueError as e:
            raise ValueError(f"{where}['pullback']: {e}") from None

        counters = saved["groups"]
        if not isinstance(counters, (list, tuple)) or len(counters) != n_groups:
            found = f"{len(counters)} entries" if isinstance(counters, (list, tuple)) else type(counters).__name__
            raise ValueError(f"{where}['groups'] must have one entry per param group ({n_groups}), got {found}")
        loaded_counters = []
        for i, c in enumerate(counters):
            if not isinstance(c, Mapping) or set(c) != {"steps", "syncs"}:
                raise ValueError(f"{where}['groups'][{i}] must be a dict with keys 'steps' and 'syncs', got {c!r}")
            for key in ("steps", "syncs"):
                try:
                    check_non_negative_int(key, c[key])
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{where}['groups'][{i}]['{key}']: {e}") from None
            loaded_counters.append({"steps": c["steps"], "syncs": c["syncs"]})

        def index_of(i, field):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(params):
                raise ValueError(f"{field}: parameter index {i!r} is not one of this optimizer's "
                                 f"{len(params)} parameters (0 to {len(params) - 1})")
            return i

        def tensor_for(i, t, field):
            p = params[i]
            if not torch.is_tensor(t) or not t.is_floating_point():
                raise ValueError(f"{field} must be a floating point tensor, got {type(t).__name__}"
                                 + (f" of {t.dtype}" if torch.is_tensor(t) else ""))
            if t.shape != p.shape:
                raise ValueError(f"{field} has shape {tuple(t.shape)}, its parameter has {tuple(p.shape)}")
            return t

        copies = saved["copies"]
        if not isinstance(copies, Mapping) or set(copies) != set(self._weight_copies):
            names = sorted(map(str, copies)) if isinstance(copies, Mapping) else type(copies).__name__
            raise ValueError(f"{where}['copies'] must hold {list(self._weight_copies)} for {type(self).__name__}, "
                             f"got {names}")
        checked_copies = {}
        for name in self._weight_copies:
            field = f"{where}['copies'][{name!r}]"
            if not isinstance(copies[name], Mapping):
                raise ValueError(f"{field} must be a dict of parameter index -> tensor")
            checked_copies[name] = {index_of(i, field): tensor_for(i, t, f"{field}[{i}]")
                                    for i, t in copies[name].items()}

        # slow weights (and every other copy) are made for all parameters of the groups at their first
        # step: a group that has stepped has a copy of each of its parameters, or the state dict lost one
        first = 0
        for i, group in enumerate(self.param_groups):
            indices = range(first, first + len(group["params"]))
            first += len(group["params"])
            if not loaded_counters[i]["steps"]:
                continue
            for name, c in checked_copies.items():
                lacking = [j for j in indices if j not in c]
                if lacking:
                    raise ValueError(f"{where}['copies'][{name!r}] has no copy of parameter {lacking[0]}, though its "
                                     f"group {i} has taken {loaded_counters[i]['steps']} steps")

        cached = saved["cached_state"]
        field = f"{where}['cached_state']"
        if not isinstance(cached, Mapping):
            raise ValueError(f"{field} must be a dict of parameter index -> {{state name: tensor}}")
        checked_cache = {}
        for i, entry in cached.items():
            index_of(i, field)
            if not isinstance(entry, Mapping):
                raise ValueError(f"{field}[{i}] must be a dict of state name -> tensor")
            checked_cache[i] = {n: tensor_for(i, t, f"{field}[{i}][{n!r}]") for n, t in entry.items()}

        # the copies this optimizer will own: cloned (and moved) now, so that nothing fails later
        loaded_copies = {name: {params[i]: t.to(device=params[i].device, dtype=params[i].dtype).clone()
                                for i, t in c.items()} for name, c in checked_copies.items()}
        loaded_cache = {params[i]: {n: t.to(device=params[i].device).clone() for n, t in c.items()}
                        for i, c in checked_cache.items()}
        return pullback, loaded_counters, loaded_copies, loaded_cache


class Lookahead(_Checkpoints, torch.optim.Optimizer):
    """Wrap ``optimizer`` so that every ``k`` inner steps the weights move ``alpha`` of the way
    from the slow weights towards the fast ones, and the fast weights restart from there.

    ``foreach=True`` does the sync with ``torch._foreach_*`` kernels grouped by device and dtype;
    ``False`` uses a per-tensor loop (same numbers, for checking).
    """

    # names of per-parameter weight copies kept by this class, saved by state_dict
    _weight_copies = ("slow",)
    # the per-group values this class reads, and their checks
    _group_checks = {"la_k": check_positive_int, "la_alpha": check_unit_interval}

    def __init__(self, optimizer, k=5, alpha=0.5, pullback="none", foreach=True):
        self.optimizer = check_optimizer(optimizer)
        check_positive_int("k", k)
        alpha = check_unit_interval("alpha", alpha)
        self.pullback = check_pullback(pullback)
        self.foreach = bool(foreach)
        self._group_defaults = {"la_k": k, "la_alpha": alpha, **self._extra_group_defaults()}
        self.defaults = {**optimizer.defaults, **self._group_defaults}
        # torch.optim.Optimizer.__init__ would rebuild param_groups; set up its hooks by hand.
        install_optimizer_hooks(self)
        self._sync_hooks = []
        self._copies = {name: {} for name in self._weight_copies}  # name -> {param: tensor}
        self._cached_state = {}  # param -> {state name: copy at the previous sync}
        for i, group in enumerate(self.param_groups):
            self._check_group(self._with_defaults(group), f"param group {i}")
        for group in self.param_groups:
            self._init_group(group)
        self._group_counters = [self._new_counters() for _ in self.param_groups]
        self._needs_copies = True
        # loading a state dict straight into the inner optimizer keeps the groups' Lookahead values
        self.optimizer.register_load_state_dict_pre_hook(self._keep_group_values)

    def _extra_group_defaults(self):
        """Per-group defaults of subclasses (NestedLookahead's ``nla_s``, ``nla_h``)."""
        return {}

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
        # torch's Optimizer.__getstate__ drops hooks: a copied inner optimizer needs ours again
        if self._keep_group_values not in self.optimizer._optimizer_load_state_dict_pre_hooks.values():
            self.optimizer.register_load_state_dict_pre_hook(self._keep_group_values)

    def __repr__(self):
        return (f"{type(self).__name__}({self.optimizer!r}, k={self.defaults['la_k']}, "
                f"alpha={self.defaults['la_alpha']}, pullback={self.pullback!r})")

    # --- per-group values -----------------------------------------------------------------------
    @staticmethod
    def _new_counters():
        return {"steps": 0, "syncs": 0}

    def _with_defaults(self, group):
        return {**self._group_defaults, **group}

    def _check_group(self, group, where, error=None):
        """Check the Lookahead values of ``group``; an error names ``where`` and the key. ``error``
        forces one exception type (load_state_dict raises ValueError for every bad field)."""
        for key, check in self._group_checks.items():
            try:
                check(key, group[key])
            except (TypeError, ValueError) as e:
                raise (error or type(e))(f"{where}: {e}") from None

    def _init_group(self, group):
        for key, value in self._group_defaults.items():
            group.setdefault(key, value)

    def _check_groups_for_step(self):
        """At every step: groups added to the inner optimizer directly get their counters (and
        slow weights at this step); keys dropped by hand get the defaults; every value is checked."""
        groups = self.param_groups
        if len(groups) != len(self._group_counters):
            if len(groups) < len(self._group_counters):
                raise RuntimeError(f"the inner optimizer has {len(groups)} param groups, Lookahead counted "
                                   f"{len(self._group_counters)}: groups cannot be removed")
            self._group_counters.extend(self._new_counters() for _ in range(len(groups) - len(self._group_counters)))
            self._needs_copies = True
        for i, group in enumerate(groups):
            for key, value in self._group_defaults.items():
                if key not in group:
                    group[key] = value
            self._check_group(group, f"param group {i}")

    def _keep_group_values(self, optimizer, state_dict):
        """Pre-hook of the inner optimizer's ``load_state_dict``: a saved group without Lookahead
        values (a plain optimizer's checkpoint) takes them from the group it replaces."""
        saved = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
        if not isinstance(saved, (list, tuple)):
            return None
        current = optimizer.param_groups
        filled, changed = [], False
        for i, group in enumerate(saved):
            if isinstance(group, Mapping) and any(key not in group for key in self._group_defaults):
                source = current[i] if i < len(current) else {}
                group = {**{key: source.get(key, value) for key, value in self._group_defaults.items()}, **group}
                changed = True
            filled.append(group)
        return {**state_dict, "param_groups": filled} if changed else None

    def add_param_group(self, param_group):
        """Add a group to the inner optimizer, after checking its Lookahead values (missing ones
        take the defaults); a bad value raises before anything is added. The group's slow weights
        start from its weights at its first step."""
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        self._check_group(self._with_defaults(param_group), "param_group")
        for key, value in self._group_defaults.items():
            param_group.setdefault(key, value)
        self.optimizer.add_param_group(param_group)
        self._group_counters.append(self._new_counters())
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

    def weight_copies(self):
        """Every weight copy kept (the slow weights; NestedLookahead's outer slow ones too), one
        tensor per parameter per copy in a fixed order, created from the current weights where
        missing: what a distributed run makes equal across ranks, in place."""
        self._ensure_copies()
        params = [p for g in self.param_groups for p in g["params"]]
        return [c for name in self._weight_copies for c in self._copies_for(name, params)]

    def counters(self):
        """``[[steps, syncs], ...]``, one per param group: where each group stands in its cycle."""
        return [[c["steps"], c["syncs"]] for c in self._group_counters]

    def set_counters(self, counters):
        """Set each group's ``[steps, syncs]`` (what :meth:`counters` returns, e.g. on another rank)."""
        counters = [[int(steps), int(syncs)] for steps, syncs in counters]
        if len(counters) != len(self._group_counters):
            raise ValueError(f"{len(counters)} counters for {len(self._group_counters)} param groups")
        for c, (steps, syncs) in zip(self._group_counters, counters):
            c["steps"], c["syncs"] = steps, syncs

    def slow_weights(self, param):
        """The slow weight of ``param`` (its current value before the first step)."""
        self._ensure_copies()
        return self._copies_for("slow", [param])[0]

    @contextmanager
    def use_slow_weights(self, *, model=None, bn_loader=None, bn_batches=None):
        """Within the block the model holds the slow weights; the fast ones come back after it
        (also when the block raises). For evaluating as the paper's authors recommend.

        BatchNorm: by default the running statistics are the ones gathered by the fast weights.
        With ``model`` and ``bn_loader`` (training batches) they are recomputed for the slow weights
        over ``bn_batches`` batches of it (all of it if None), as ``torch.optim.swa_utils.update_bn``
        does; after the block the fast weights' statistics come back bit for bit, and the random
        generators (torch, Python, NumPy, the loader's) are where they were, so training goes on
        unchanged. See ``lookahead_fastai.optim.batchnorm.recomputed_bn``.
        """
        if (model is None) != (bn_loader is None):
            raise ValueError("recomputing BatchNorm statistics needs both model= and bn_loader=")
        if bn_loader is None and bn_batches is not None:
            raise ValueError("bn_batches needs bn_loader= (and model=)")
        if bn_batches is not None:
            check_positive_int("bn_batches", bn_batches)
        self._ensure_copies()
        params = [p for g in self.param_groups for p in g["params"]]
        with torch.no_grad():
            fast_backup = [p.detach().clone() for p in params]
            _copy_into(params, self._copies_for("slow", params), self.foreach)
        try:
            with (recomputed_bn(model, bn_loader, bn_batches) if bn_loader is not None else nullcontext()):
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
        self._check_groups_for_step()
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
