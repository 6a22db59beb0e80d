"""Experiments declared as data: one module per experiment, each exposing ``EXPERIMENT``."""
from importlib import import_module

from .spec import SCALES, Experiment, RunSpec, SpecError

__all__ = ["EXPERIMENTS", "get_experiment", "Experiment", "RunSpec", "SpecError", "SCALES"]

_MODULES = ["demo", "start_off", "imagenette", "nested_lookahead", "optimizer_state", "optimizer_tour",
            "optimizers_from_scratch", "data_paths", "paper_cifar", "imagenette_leaderboard", "lr_robustness"]
EXPERIMENTS = {m: import_module(f".{m}", __name__).EXPERIMENT for m in _MODULES}


def get_experiment(name):
    if name not in EXPERIMENTS:
        raise SpecError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
