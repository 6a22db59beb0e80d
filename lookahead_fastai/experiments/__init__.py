"""Experiments declared as data: one module per experiment, each exposing ``EXPERIMENT``; a user's
own (a TOML file or Python, ``experiments/yours.py``) is the same ``Experiment``, findable by name
in the process that declared it."""
from importlib import import_module

from .spec import SCALES, Experiment, RunSpec, SpecError, Stages

__all__ = ["EXPERIMENTS", "get_experiment", "use_experiment", "run_stage", "Experiment", "RunSpec", "SpecError",
           "Stages", "SCALES"]

_MODULES = ["demo", "start_off", "imagenette", "nested_lookahead", "optimizer_state", "optimizer_tour",
            "optimizers_from_scratch", "data_paths", "paper_cifar", "imagenette_leaderboard", "lr_robustness",
            "float_paths"]
EXPERIMENTS = {m: import_module(f".{m}", __name__).EXPERIMENT for m in _MODULES}
_USERS = {}  # name -> a user's Experiment declared in this process (the latest one of that name)


def use_experiment(experiment):
    """The name of ``experiment`` (an :class:`Experiment` or a name), an Experiment object being made
    findable by that name in this process; the sweep, plan and report functions take either."""
    if not isinstance(experiment, Experiment):
        return experiment
    if EXPERIMENTS.get(experiment.name, experiment) is not experiment:
        raise SpecError(f"experiment name {experiment.name!r} is a built-in experiment's; choose another")
    if experiment.name not in EXPERIMENTS:
        _USERS[experiment.name] = experiment
    return experiment.name


def get_experiment(name):
    name = use_experiment(name)
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    if name in _USERS:
        return _USERS[name]
    raise SpecError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} (or give a .toml file)")


def run_stage(spec, seed):
    """The stage (``Experiment.stages``) of ``spec`` run with ``seed``: "tuning", "confirmation", or None
    (none declared, or the experiment not findable in this process, e.g. a user's on a Ray worker)."""
    try:
        return get_experiment(spec.experiment).stage_of(spec.scale, seed)
    except SpecError:
        return None
