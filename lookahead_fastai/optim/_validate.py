"""Argument checks shared by the optimizers: each error names the argument and what is allowed."""
from numbers import Real

import torch

PULLBACK_MODES = ("none", "reset", "pullback")


def check_optimizer(optimizer):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer instance (e.g. torch.optim.SGD(model.parameters(), lr=0.1)), "
            f"got {type(optimizer).__name__}")
    return optimizer


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int (1, 2, 3, ...), got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (1, 2, 3, ...), got {value}")
    return value


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r} of type {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0 (0 disables it), got {value}")
    return value


def check_unit_interval(name, value):
    """A step fraction in (0, 1]."""
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, Real)):  # float: fast path
        raise TypeError(f"{name} must be a real number in (0, 1], got {value!r} of type {type(value).__name__}")
    if not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return float(value)


def check_pullback(value):
    if value not in PULLBACK_MODES:
        raise ValueError(f"pullback must be one of {', '.join(repr(m) for m in PULLBACK_MODES)}, got {value!r}")
    return value
